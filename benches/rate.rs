//! The rate limiter's cost per frame, as the relay pays it: one clock read
//! (`tick`) per burst of 16 pipelined frames, then `FrameRate::check` per
//! frame, with rates high enough never to refuse. Compare with
//! `benches/frame.rs` (decoding the same frames).

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wsguard::limits::{Charge, FrameRate, FrameRateConfig};

/// Frames per read burst in the 64-byte pipelined benchmark (16 in flight).
const BURST: u64 = 16;

fn rate(c: &mut Criterion) {
    let high = NonZeroU32::new(4_000_000_000);
    let all_on = FrameRateConfig {
        messages_per_second: high,
        burst: high,
        bytes_per_second: high,
        burst_bytes: high,
        control_per_second: high,
        control_burst: high,
    };
    let messages_only = FrameRateConfig {
        messages_per_second: high,
        burst: high,
        ..FrameRateConfig::default()
    };
    let mut group = c.benchmark_group("rate_limiter");
    group.throughput(Throughput::Elements(BURST));
    for (name, cfg) in [("all quotas", all_on), ("messages only", messages_only)] {
        let mut quota = FrameRate::new(&cfg).expect("quotas on");
        group.bench_function(format!("64-byte data frames, {name}"), |b| {
            b.iter(|| {
                quota.tick(Instant::now());
                for _ in 0..BURST {
                    let _ = black_box(quota.check(black_box(Charge::Data), black_box(64)));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, rate);
criterion_main!(benches);
