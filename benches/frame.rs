//! Micro-benchmarks of the frame engine's hot paths: masking, header parsing,
//! decoding a stream of client frames, and UTF-8 validation.
//!
//! `cargo bench --bench frame` (add `-- mask` to run one group). The relay's
//! cost per message is mostly these plus syscalls; `bench/` measures the whole.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wsguard::frame::mask::apply_mask;
use wsguard::frame::utf8::Utf8Validator;
use wsguard::frame::{Decoder, FrameHeader, OpCode};
use wsguard::frame::{FramePolicy, MaskKeyPolicy, Role};

const SIZES: [usize; 6] = [64, 512, 4 << 10, 16 << 10, 64 << 10, 1 << 20];

fn mask(c: &mut Criterion) {
    let mut g = c.benchmark_group("mask");
    for size in SIZES {
        let mut buf = vec![0x5Au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("offset0", size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box([1, 2, 3, 4]), 0));
        });
        // A chunk that starts mid key (what the decoder sees after a short read).
        g.bench_with_input(BenchmarkId::new("offset3", size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf[1..]), black_box([1, 2, 3, 4]), 3));
        });
    }
    g.finish();
}

/// One complete client frame: header (masked) plus `payload` masked with `key`.
fn client_frame(opcode: OpCode, payload: &[u8], key: [u8; 4], out: &mut Vec<u8>) {
    FrameHeader::fin(opcode, Some(key), payload.len() as u64).encode(out);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key, 0);
}

fn header(c: &mut Criterion) {
    let mut g = c.benchmark_group("header_parse");
    for len in [64usize, 16 << 10, 1 << 20] {
        let mut bytes = Vec::new();
        FrameHeader::fin(OpCode::Binary, Some([1, 2, 3, 4]), len as u64).encode(&mut bytes);
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(len), &bytes, |b, bytes| {
            b.iter(|| FrameHeader::parse(black_box(bytes)));
        });
    }
    g.finish();
}

/// Text that is valid UTF-8 of exactly `len` bytes: mostly ASCII with a
/// 2-, 3- and 4-byte code point in every 64 bytes, like chat text.
fn chat_text(len: usize) -> Vec<u8> {
    let unit = "é€𝄞 hello, this is a chat message with some words in it..";
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        out.extend_from_slice(unit.as_bytes());
    }
    out.truncate(len);
    // Cut back to a char boundary and pad with ASCII.
    while std::str::from_utf8(&out).is_err() {
        out.pop();
    }
    out.resize(len, b'.');
    out
}

fn policy() -> FramePolicy {
    // The proxy's defaults: 64 KiB frames, 1 MiB messages, 128 fragments.
    FramePolicy {
        max_frame_size: Some(64 << 10),
        max_message_size: Some(1 << 20),
        max_fragments: Some(128),
        mask_key_policy: MaskKeyPolicy::Strict,
    }
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    let cases: [(&str, OpCode, usize, usize); 4] = [
        ("binary_64B_x64", OpCode::Binary, 64, 64),
        ("text_128B_x64", OpCode::Text, 128, 64),
        ("binary_16KiB_x4", OpCode::Binary, 16 << 10, 4),
        ("text_16KiB_x4", OpCode::Text, 16 << 10, 4),
    ];
    for (name, opcode, size, count) in cases {
        let payload = chat_text(size);
        let mut stream = Vec::new();
        for i in 0..count as u32 {
            // The strict mask-key policy refuses repeated keys: vary them.
            let key = (i.wrapping_mul(0x9E37_79B9) | 1).to_le_bytes();
            client_frame(opcode, &payload, key, &mut stream);
        }
        g.throughput(Throughput::Bytes(stream.len() as u64));
        let policy = policy();
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut dec = Decoder::new(Role::Client, policy.clone());
                let mut pos = 0;
                let mut frames = 0;
                while pos < stream.len() {
                    let (n, event) = dec.feed(&stream[pos..]).expect("valid stream");
                    pos += n;
                    frames += usize::from(event.is_some());
                }
                assert_eq!(frames, count);
            });
        });
    }
    g.finish();
}

fn utf8(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8");
    for size in [128usize, 16 << 10] {
        let chat = chat_text(size);
        let ascii = vec![b'a'; size];
        g.throughput(Throughput::Bytes(size as u64));
        for (name, text) in [("chat", &chat), ("ascii", &ascii)] {
            g.bench_with_input(BenchmarkId::new(name, size), text, |b, text| {
                b.iter(|| {
                    let mut v = Utf8Validator::new();
                    // 256-byte steps, as the decoder unmasks text in its scratch buffer.
                    for part in text.chunks(256) {
                        v.push(black_box(part)).expect("valid");
                    }
                    v.finish().expect("complete")
                });
            });
        }
    }
    g.finish();
}

criterion_group!(benches, mask, header, decode, utf8);
criterion_main!(benches);
