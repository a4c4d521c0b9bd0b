//! Deterministic JSON-like chat messages and their permessage-deflate payloads.
//!
//! Shared (by `#[path]`) with the inflate micro-benchmark in `benches/`, so
//! the load generator and the micro-benchmark measure the same bytes.

use flate2::{Compress, Compression, FlushCompress, Status};

const WORDS: [&str; 48] = [
    "the", "a", "to", "and", "is", "it", "you", "that", "in", "of", "for", "on", "this", "with",
    "deploy", "staging", "review", "merge", "build", "ticket", "meeting", "lunch", "today",
    "tomorrow", "thanks", "sure", "ok", "can", "we", "should", "maybe", "later", "done", "fixed",
    "broken", "again", "please", "check", "logs", "server", "latency", "release", "branch",
    "looks", "good", "ship", "rollback", "cache",
];
const ROOMS: [&str; 6] = ["general", "random", "ops", "frontend", "backend", "release"];
const USERS: [&str; 8] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
];

/// xorshift64*: a fixed, seedable sequence, so every run sends the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

/// Chat message number `seq`, exactly `len` bytes of ASCII JSON (`len` at
/// least 512): a chat service's envelope, a line of text of random words, then
/// read receipts up to `len`. Like real chat JSON, the keys and names repeat,
/// so it deflates about 3.5 times on its own.
pub fn message(seq: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let (room, user) = (rng.pick(&ROOMS), rng.pick(&USERS));
    let ts = 1_764_547_200_000 + seq * 1_337;
    let mut text = String::new();
    while text.len() < 120 {
        text.push_str(rng.pick(&WORDS));
        text.push(' ');
    }
    let mut out = format!(
        "{{\"type\":\"message\",\"room\":\"{room}\",\"seq\":{seq},\"ts\":{ts},\
         \"user\":{{\"name\":\"{user}\",\"status\":\"online\",\
         \"avatar\":\"/avatars/{user}.png\"}},\"text\":\"{}\",\"read_by\":[",
        text.trim_end()
    )
    .into_bytes();
    let tail = b"]}";
    let mut first = true;
    loop {
        let state = ["delivered", "read"][(rng.next() & 1) as usize];
        let receipt = format!(
            "{}{{\"user\":\"{}\",\"state\":\"{state}\"}}",
            if first { "" } else { "," },
            rng.pick(&USERS),
        );
        if out.len() + receipt.len() + tail.len() > len {
            break;
        }
        out.extend_from_slice(receipt.as_bytes());
        first = false;
    }
    // JSON allows the padding as whitespace.
    out.resize(len - tail.len(), b' ');
    out.extend_from_slice(tail);
    out
}

/// The permessage-deflate payload of `message` without context takeover: a
/// raw DEFLATE stream with a sync flush and its trailing 00 00 FF FF removed
/// (RFC 7692 section 7.2.1). `c` is reset first, so messages are independent.
pub fn deflate(c: &mut Compress, message: &[u8]) -> Vec<u8> {
    c.reset();
    // A sync flush of incompressible input can grow it by a few bytes per block.
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 64);
    let mut input = message;
    loop {
        let before = c.total_in();
        let status = c
            .compress_vec(input, &mut out, FlushCompress::Sync)
            .expect("deflating into a Vec cannot fail");
        input = &input[(c.total_in() - before) as usize..];
        // Done when all input is in and the flush left spare room in `out`.
        if input.is_empty() && out.len() < out.capacity() && status != Status::BufError {
            break;
        }
        out.reserve(4096);
    }
    debug_assert!(out.ends_with(&[0, 0, 0xFF, 0xFF]));
    out.truncate(out.len() - 4);
    out
}

/// A compressor like a browser's for permessage-deflate: raw DEFLATE, default
/// level, a 32 KiB window.
pub fn compressor() -> Compress {
    Compress::new_with_window_bits(Compression::default(), false, 15)
}
