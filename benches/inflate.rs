//! Inflating permessage-deflate payloads as an inspecting proxy does: raw
//! DEFLATE with the 00 00 FF FF tail put back, streamed into a 4 KiB buffer
//! whose bytes are looked at and dropped. flate2's zlib-rs backend (what
//! wsguard links) against miniz_oxide's streaming API, for ~1 KiB chat
//! messages and a 64 KiB one, each with one decompressor reset per message or
//! a fresh one; `state` times reset and construction alone.
//!
//! `cargo bench --bench inflate` (add `-- inflate_1k` to run one group). The
//! heap each state holds is measured by `cargo run --release -p wsguard-bench
//! --example inflate_heap` (a counting allocator needs `unsafe`, which this
//! crate forbids).

#[path = "../bench/src/chat.rs"]
mod chat;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flate2::{Decompress, FlushDecompress};
use miniz_oxide::inflate::stream::{inflate, InflateState, MinReset, ZeroReset};
use miniz_oxide::{DataFormat, MZError, MZFlush};

/// The inspection buffer: inflated bytes are checked chunk by chunk.
const CHUNK: usize = 4 << 10;
/// Distinct 1 KiB messages cycled through, so no single one is cache-hot.
const MESSAGES: u64 = 64;
const SMALL: usize = 1 << 10;
const LARGE: usize = 64 << 10;

/// Payloads with the tail a receiver appends before inflating (RFC 7692 7.2.2).
fn payloads(messages: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut c = chat::compressor();
    messages
        .iter()
        .map(|m| {
            let mut p = chat::deflate(&mut c, m);
            p.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
            p
        })
        .collect()
}

/// A 64 KiB message: a JSON array of chat messages, like a history batch.
fn history() -> Vec<u8> {
    let mut out = b"[".to_vec();
    let mut seq = 0;
    while out.len() < LARGE - SMALL - 1 {
        out.extend_from_slice(&chat::message(1_000 + seq, SMALL));
        out.push(b',');
        seq += 1;
    }
    let last = LARGE - out.len() - 1;
    out.extend_from_slice(&chat::message(1_000 + seq, last));
    out.push(b']');
    out
}

/// Inflates all of `input` with zlib-rs through `out`; returns the inflated size.
fn zlib_rs(d: &mut Decompress, input: &[u8], out: &mut [u8]) -> usize {
    let (mut pos, mut total) = (0, 0);
    loop {
        let (in0, out0) = (d.total_in(), d.total_out());
        d.decompress(&input[pos..], out, FlushDecompress::None)
            .expect("the payloads are valid DEFLATE");
        pos += (d.total_in() - in0) as usize;
        let n = (d.total_out() - out0) as usize;
        total += black_box(&out[..n]).len();
        // A chunk that is not full means the inflater has nothing more to give.
        if pos == input.len() && n < out.len() {
            return total;
        }
    }
}

/// The same with miniz_oxide, which inflates into its own 32 KiB window and
/// copies out of it.
fn miniz(s: &mut InflateState, input: &[u8], out: &mut [u8]) -> usize {
    let (mut pos, mut total) = (0, 0);
    loop {
        let r = inflate(s, &input[pos..], out, MZFlush::None);
        match r.status {
            // Buf: no progress possible, i.e. all input consumed and flushed.
            Ok(_) | Err(MZError::Buf) => {}
            Err(e) => panic!("the payloads are valid DEFLATE: {e:?}"),
        }
        pos += r.bytes_consumed;
        total += black_box(&out[..r.bytes_written]).len();
        if pos == input.len() && r.bytes_written < out.len() {
            return total;
        }
    }
}

/// How a decompressor is prepared for the next message.
#[derive(Clone, Copy)]
enum Prep {
    /// zlib-rs with these window bits, `reset` between messages.
    ZlibReset(u8),
    /// A new zlib-rs decompressor (15 window bits) per message.
    ZlibFresh,
    /// miniz_oxide, reset without zeroing its window.
    MinizMinReset,
    /// miniz_oxide, reset zeroing its window (what `InflateState::reset` does).
    MinizZeroReset,
    /// A new boxed miniz_oxide state per message.
    MinizFresh,
}

const PREPS: [(&str, Prep); 6] = [
    ("zlib-rs-w15-reset", Prep::ZlibReset(15)),
    ("zlib-rs-w9-reset", Prep::ZlibReset(9)),
    ("zlib-rs-w15-fresh", Prep::ZlibFresh),
    ("miniz-minreset", Prep::MinizMinReset),
    ("miniz-zeroreset", Prep::MinizZeroReset),
    ("miniz-fresh", Prep::MinizFresh),
];

/// Times inflating one message per iteration, cycling through `inputs`.
fn inflate_group(c: &mut Criterion, name: &str, plain: &[Vec<u8>], inputs: &[Vec<u8>]) {
    let size = plain[0].len();
    let wire: usize = inputs.iter().map(Vec::len).sum::<usize>() / inputs.len();
    println!("{name}: {size} bytes per message, {wire} compressed (tail included)");
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(size as u64));
    let mut out = vec![0u8; CHUNK];
    for (id, prep) in PREPS {
        // Check once, untimed, that every message inflates to its full size.
        let mut z = Decompress::new_with_window_bits(false, 15);
        let mut m = InflateState::new_boxed(DataFormat::Raw);
        for (p, i) in plain.iter().zip(inputs) {
            z.reset(false);
            m.reset_as(ZeroReset);
            assert_eq!(zlib_rs(&mut z, i, &mut out), p.len());
            assert_eq!(miniz(&mut m, i, &mut out), p.len());
        }
        let mut next = inputs.iter().cycle();
        g.bench_function(BenchmarkId::from_parameter(id), |b| match prep {
            Prep::ZlibReset(bits) => {
                let mut d = Decompress::new_with_window_bits(false, bits);
                b.iter(|| {
                    d.reset(false);
                    zlib_rs(&mut d, next.next().unwrap(), &mut out)
                });
            }
            Prep::ZlibFresh => b.iter(|| {
                let mut d = Decompress::new_with_window_bits(false, 15);
                zlib_rs(&mut d, next.next().unwrap(), &mut out)
            }),
            Prep::MinizMinReset | Prep::MinizZeroReset => {
                let mut s = InflateState::new_boxed(DataFormat::Raw);
                b.iter(|| {
                    if matches!(prep, Prep::MinizMinReset) {
                        s.reset_as(MinReset);
                    } else {
                        s.reset_as(ZeroReset);
                    }
                    miniz(&mut s, next.next().unwrap(), &mut out)
                });
            }
            Prep::MinizFresh => b.iter(|| {
                let mut s = InflateState::new_boxed(DataFormat::Raw);
                miniz(&mut s, next.next().unwrap(), &mut out)
            }),
        });
    }
    g.finish();
}

fn inflate_1k(c: &mut Criterion) {
    let plain: Vec<Vec<u8>> = (0..MESSAGES).map(|i| chat::message(i, SMALL)).collect();
    let inputs = payloads(&plain);
    inflate_group(c, "inflate_1k", &plain, &inputs);
}

fn inflate_64k(c: &mut Criterion) {
    let plain = vec![history()];
    let inputs = payloads(&plain);
    inflate_group(c, "inflate_64k", &plain, &inputs);
}

/// Preparing a decompressor alone: what choosing reset or fresh costs.
fn state(c: &mut Criterion) {
    let mut g = c.benchmark_group("state");
    for bits in [15u8, 9] {
        let mut d = Decompress::new_with_window_bits(false, bits);
        // black_box(&mut ..): resets of one state must not merge across iterations.
        g.bench_function(format!("zlib-rs-w{bits}-reset"), |b| {
            b.iter(|| black_box(&mut d).reset(false))
        });
        g.bench_function(format!("zlib-rs-w{bits}-new"), |b| {
            b.iter(|| Decompress::new_with_window_bits(false, black_box(bits)))
        });
    }
    let mut s = InflateState::new_boxed(DataFormat::Raw);
    g.bench_function("miniz-minreset", |b| {
        b.iter(|| black_box(&mut *s).reset_as(MinReset))
    });
    g.bench_function("miniz-zeroreset", |b| {
        b.iter(|| black_box(&mut *s).reset_as(ZeroReset))
    });
    g.bench_function("miniz-new", |b| {
        b.iter(|| InflateState::new_boxed(black_box(DataFormat::Raw)))
    });
    g.finish();
}

criterion_group!(benches, inflate_1k, inflate_64k, state);
criterion_main!(benches);
