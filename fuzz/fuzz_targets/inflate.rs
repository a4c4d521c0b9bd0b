//! Differential: wsguard's streaming `Inflater`, fed each message's
//! compressed data in the fuzzer's pieces with a sink that refuses more than
//! a cap of inflated bytes per message, against a one-shot inflate of the
//! same stream (the message data with the RFC 7692 trailer appended, after the
//! earlier messages' when context is kept) with the same cap.
//!
//! The verdict is the first thing the inflated stream breaks: more than `cap`
//! bytes inflated before the data goes bad or ends is "over cap", whatever
//! comes after. Then the verdict (ok, over cap, bad data, data after the final
//! block) must match, the inflated bytes must match (all of them, or the
//! first `cap + 1` when over the cap), and no sink call may carry more than
//! 8 KiB.
//!
//! The same messages, each piece one masked frame (RSV1 on the first), also go
//! through a `Decoder` with permessage-deflate and the cap as its message size
//! limit: it reaches the same verdict (or, for text, a UTF-8 refusal, or the
//! wire-size refusal when the compressed bytes alone pass the cap), never
//! reports more inflated bytes than the cap, and when it accepts a message its
//! frames' inflated sizes add up to the reference's.
#![no_main]

use arbitrary::Arbitrary;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use libfuzzer_sys::fuzz_target;
use wsguard::deflate::{InflateError, Inflater};
use wsguard::frame::{Decoder, Event, FrameHeader, MaskKeyPolicy, OpCode};
use wsguard::frame::{FramePolicy, Role, Violation};

/// The most a single sink call may carry (the Inflater's output step).
const CHUNK_MAX: usize = 8 << 10;
/// RFC 7692 §7.2.2.
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Bound on a message's plain text before compression, to keep runs fast.
const PLAIN_MAX: usize = 128 << 10;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Inflated bytes allowed per message.
    cap: u16,
    context_takeover: bool,
    messages: Vec<Message>,
}

#[derive(Arbitrary, Debug)]
struct Message {
    /// A text message for the decoder (UTF-8 checked on the inflated bytes).
    text: bool,
    data: Data,
    /// Piece sizes the data arrives in (0 = an empty push), cycled.
    splits: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
enum Data {
    Raw(Vec<u8>),
    /// Deflated by a compressor that lives for the whole input (so messages
    /// may refer back to earlier ones) unless `fresh`.
    Deflated {
        plain: Vec<u8>,
        /// The plain text repeated this many times more: large inflated
        /// sizes from small inputs.
        repeat: u8,
        level: u8,
        fresh: bool,
        /// End with a final block instead of a sync flush.
        last: bool,
        /// Keep only this many bytes.
        cut: Option<u16>,
        /// XOR the byte at this position (modulo the length) with this value.
        corrupt: Option<(u16, u8)>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    OverCap,
    Bad(InflateError),
}

impl From<InflateError> for Verdict {
    fn from(e: InflateError) -> Self {
        Verdict::Bad(e)
    }
}

/// Raw DEFLATE of `plain`, as a permessage-deflate sender writes it.
fn deflate(c: &mut Compress, plain: &[u8], last: bool) -> Vec<u8> {
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    // Stored blocks at worst: 5 bytes per 64 KiB, plus the flush.
    let mut out = Vec::with_capacity(plain.len() + plain.len() / 8 + 128);
    let before = c.total_in();
    c.compress_vec(plain, &mut out, flush).unwrap();
    assert_eq!(c.total_in() - before, plain.len() as u64);
    if !last && out.ends_with(&TRAILER) {
        out.truncate(out.len() - TRAILER.len());
    }
    out
}

fn message_bytes(data: &Data, shared: &mut Compress) -> Vec<u8> {
    let (plain, repeat, level, fresh, last, cut, corrupt) = match data {
        Data::Raw(raw) => return raw.clone(),
        Data::Deflated {
            plain,
            repeat,
            level,
            fresh,
            last,
            cut,
            corrupt,
        } => (plain, repeat, level, fresh, last, cut, corrupt),
    };
    let times = usize::from(*repeat) + 1;
    let times = times.min(PLAIN_MAX / plain.len().max(1)).max(1);
    let plain = plain.repeat(times);
    let level = Compression::new(u32::from(*level % 10));
    let mut out = if *fresh {
        deflate(&mut Compress::new(level, false), &plain, *last)
    } else {
        deflate(shared, &plain, *last)
    };
    if *last {
        shared.reset();
    }
    if let Some(n) = cut {
        out.truncate(usize::from(*n));
    }
    if let (Some((at, x)), false) = (corrupt, out.is_empty()) {
        let at = usize::from(*at) % out.len();
        out[at] ^= x;
    }
    out
}

/// The fuzzer's piece sizes for `len` bytes of data: at least one piece, and
/// every seventh at least one byte long, so zero-length splits end.
fn pieces(len: usize, splits: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = len;
    while rest > 0 || out.is_empty() {
        let i = out.len() + 1;
        let n = splits
            .get(i % splits.len().max(1))
            .map_or(rest, |&n| usize::from(n))
            .max(usize::from(i % 7 == 0))
            .min(rest);
        out.push(n);
        rest -= n;
    }
    out
}

/// wsguard's Inflater over one message: the verdict and the inflated bytes
/// its sink accepted or refused.
fn streamed(
    inflater: &mut Inflater,
    data: &[u8],
    pieces: &[usize],
    cap: usize,
) -> (Verdict, Vec<u8>) {
    let mut got = Vec::new();
    let mut sink = |b: &[u8]| {
        assert!(b.len() <= CHUNK_MAX, "sink got {} bytes at once", b.len());
        got.extend_from_slice(b);
        if got.len() > cap {
            return Err(Verdict::OverCap);
        }
        Ok(())
    };
    let mut rest = data;
    let mut result = Ok(());
    for &n in pieces {
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        result = inflater.push(piece, &mut sink);
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        result = inflater.finish(&mut sink);
    }
    (result.err().unwrap_or(Verdict::Ok), got)
}

/// The message as masked client frames, one per piece, RSV1 on the first.
fn frames(data: &[u8], pieces: &[usize], text: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = data;
    for (i, &n) in pieces.iter().enumerate() {
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        let opcode = match (i, text) {
            (0, true) => OpCode::Text,
            (0, false) => OpCode::Binary,
            _ => OpCode::Continue,
        };
        let key = [i as u8, 0x5a, 0xa5, 0x0f];
        let mut h = FrameHeader::fin(opcode, Some(key), n as u64);
        h.fin = i + 1 == pieces.len();
        h.rsv1 = i == 0;
        h.encode(&mut out);
        out.extend(piece.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
    }
    out
}

/// Feeds one message's frames to `dec`: the verdict and the inflated size of
/// each frame, checked against `cap` as they come.
fn decoded(dec: &mut Decoder, mut wire: &[u8], cap: usize) -> Result<u64, Violation> {
    let mut total = 0;
    while !wire.is_empty() {
        let (n, event) = dec.feed(wire)?;
        wire = &wire[n..];
        if let Some(Event::DataEnd { .. }) = event {
            total += dec
                .inflated_len()
                .expect("a compressed frame's inflated size");
            assert!(
                total <= cap as u64,
                "decoder let {total} inflated bytes through"
            );
        }
    }
    Ok(total)
}

/// How the one-shot reference run over a stream ended.
enum End {
    /// A final block ended after this many input bytes.
    Final(usize),
    /// The data went bad.
    Bad,
    /// The input ran out, or the output reached the limit.
    Open,
}

/// One-shot inflate of `stream`, producing at most `limit` bytes.
fn one_shot(stream: &[u8], limit: usize) -> (End, Vec<u8>) {
    let mut d = Decompress::new(false);
    let mut out = vec![0; limit];
    let status = d.decompress(stream, &mut out, FlushDecompress::Sync);
    out.truncate(d.total_out() as usize);
    let end = match status {
        Err(_) => End::Bad,
        Ok(Status::StreamEnd) => End::Final(d.total_in() as usize),
        Ok(_) => End::Open,
    };
    (end, out)
}

fuzz_target!(|input: Input| {
    let cap = usize::from(input.cap);
    let mut inflater = Inflater::new(input.context_takeover);
    let policy = FramePolicy {
        max_frame_size: None,
        max_message_size: Some(cap as u64),
        max_fragments: None,
        mask_key_policy: MaskKeyPolicy::Rfc,
    };
    let mut decoder = Decoder::new(Role::Client, policy).with_deflate(Some(Inflater::new(input.context_takeover)));
    let mut shared = Compress::new(Compression::default(), false);
    // The reference's stream since the LZ77 context last started over, and
    // what it inflated to.
    let mut stream = Vec::new();
    let mut history = Vec::new();
    for msg in &input.messages {
        let data = message_bytes(&msg.data, &mut shared);
        let pieces = pieces(data.len(), &msg.splits);
        let (verdict, got) = streamed(&mut inflater, &data, &pieces, cap);
        let by_decoder = decoded(&mut decoder, &frames(&data, &pieces, msg.text), cap);

        if !input.context_takeover {
            stream.clear();
            history.clear();
        }
        let start = stream.len();
        stream.extend_from_slice(&data);
        stream.extend_from_slice(&TRAILER);
        let (end, out) = one_shot(&stream, history.len() + cap + 1);
        assert_eq!(out[..history.len()], history[..], "earlier messages");
        let want = &out[history.len()..];
        let expected = match end {
            _ if want.len() > cap => Verdict::OverCap,
            End::Bad => Verdict::Bad(InflateError::BadData),
            // The final block ends the data, or the trailer completes it.
            End::Final(n) if n == start + data.len() || n == stream.len() => Verdict::Ok,
            End::Final(_) => Verdict::Bad(InflateError::DataAfterFinalBlock),
            End::Open => Verdict::Ok,
        };
        assert_eq!(verdict, expected, "cap {cap}");
        if verdict == Verdict::OverCap {
            assert!(got.len() <= cap + CHUNK_MAX);
            assert!(got[..=cap] == *want, "inflated bytes differ");
        } else {
            // Refused or not, the sink saw all that inflated.
            assert!(got == want, "inflated bytes differ");
        }
        // Text adds the UTF-8 check: an impossible byte (or, at the end, a
        // truncated character) among the inflated bytes may be refused first.
        let bad_text =
            msg.text && std::str::from_utf8(want).is_err_and(|e| e.error_len().is_some());
        match (verdict, by_decoder) {
            (Verdict::Ok, Ok(total)) => {
                assert!(!msg.text || std::str::from_utf8(want).is_ok());
                assert_eq!(total, want.len() as u64);
            }
            (Verdict::Ok, Err(Violation::InvalidUtf8Text | Violation::TruncatedUtf8Text))
                if msg.text && std::str::from_utf8(want).is_err() => {}
            (_, Err(Violation::InvalidUtf8Text)) if bad_text => {}
            // The cap holds for the compressed size too, checked at each header.
            (_, Err(Violation::MessageTooLarge { .. })) if data.len() > cap => {}
            (Verdict::OverCap, Err(Violation::InflatedMessageTooLarge { .. })) => {}
            (Verdict::Bad(e), Err(v)) => assert_eq!(v, Violation::from(e)),
            (v, d) => panic!("inflater {v:?}, decoder {d:?}"),
        }
        if verdict != Verdict::Ok || by_decoder.is_err() {
            // The connection is closed: neither is used again.
            return;
        }
        if matches!(end, End::Final(_)) {
            // A final block ends the LZ77 stream: the next message starts anew.
            stream.clear();
            history.clear();
        } else {
            history.extend_from_slice(want);
        }
    }
});
