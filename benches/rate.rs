//! The rate limiter's cost per frame: `FrameRate::check` with every quota on
//! and rates high enough never to refuse, as the relay calls it once per
//! frame. Compare with `benches/frame.rs` (decoding the same frame).

use std::hint::black_box;
use std::num::NonZeroU32;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wsguard::limits::{FrameRate, FrameRateConfig};

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
    group.throughput(Throughput::Elements(1));
    for (name, cfg) in [("all quotas", all_on), ("messages only", messages_only)] {
        let mut quota = FrameRate::new(&cfg).expect("quotas on");
        group.bench_function(format!("check 64-byte data frame, {name}"), |b| {
            b.iter(|| quota.check(black_box(false), black_box(64)))
        });
    }
    group.finish();
}

criterion_group!(benches, rate);
criterion_main!(benches);
