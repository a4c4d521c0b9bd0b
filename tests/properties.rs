//! Property tests for the byte-level building blocks the relay trusts across
//! read boundaries: masking at any offset, streaming UTF-8, and the relay's
//! buffer of whole frames.

use proptest::prelude::*;
use wsguard::frame::mask::apply_mask;
use wsguard::frame::utf8::Utf8Validator;
use wsguard::frame::{Decoder, Event, FrameHeader, FramePolicy, MaskKeyPolicy, OpCode, Role};
use wsguard::relay::buffer::FrameBuf;

/// RFC 6455 §5.3 written out: byte i of the payload is XORed with key[i % 4].
fn mask_by_definition(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) % 4];
    }
}

/// Sorted cut points inside `0..=len` from arbitrary numbers.
fn cuts(len: usize, raw: &[usize]) -> Vec<usize> {
    let mut c: Vec<usize> = raw.iter().map(|r| r % (len + 1)).collect();
    c.sort_unstable();
    c
}

/// Bytes that are often valid UTF-8 and often broken in interesting places:
/// real text, text with bytes flipped or cut, and raw bytes.
fn utf8ish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<String>().prop_map(String::into_bytes),
        (any::<String>(), any::<usize>(), any::<u8>()).prop_map(|(s, at, b)| {
            let mut v = s.into_bytes();
            if !v.is_empty() {
                let i = at % v.len();
                v[i] = b;
            }
            v
        }),
        (any::<String>(), any::<usize>()).prop_map(|(s, cut)| {
            let v = s.into_bytes();
            let n = cut % (v.len() + 1);
            v[..n].to_vec()
        }),
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(0x80u8..=0xF7, 0..16),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn masking_twice_is_identity(
        data in prop::collection::vec(any::<u8>(), 0..300),
        key in any::<[u8; 4]>(),
        offset in 0usize..1 << 20,
    ) {
        let mut buf = data.clone();
        apply_mask(&mut buf, key, offset);
        apply_mask(&mut buf, key, offset);
        prop_assert_eq!(buf, data);
    }

    #[test]
    fn masking_matches_the_definition(
        data in prop::collection::vec(any::<u8>(), 0..300),
        key in any::<[u8; 4]>(),
        offset in 0usize..1 << 20,
    ) {
        let mut fast = data.clone();
        let mut slow = data;
        apply_mask(&mut fast, key, offset);
        mask_by_definition(&mut slow, key, offset);
        prop_assert_eq!(fast, slow);
    }

    #[test]
    fn split_masking_equals_whole_masking(
        data in prop::collection::vec(any::<u8>(), 0..300),
        key in any::<[u8; 4]>(),
        start in 0usize..1 << 20,
        raw_cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut whole = data.clone();
        apply_mask(&mut whole, key, start);
        let mut split = data;
        let mut from = 0;
        for cut in cuts(split.len(), &raw_cuts).into_iter().chain([split.len()]) {
            apply_mask(&mut split[from..cut], key, start + from);
            from = cut;
        }
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn streaming_utf8_any_split_matches_std(
        bytes in utf8ish(),
        raw_cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let expected = std::str::from_utf8(&bytes).is_ok();
        let mut v = Utf8Validator::new();
        let mut from = 0;
        let mut ok = true;
        for cut in cuts(bytes.len(), &raw_cuts).into_iter().chain([bytes.len()]) {
            if v.push(&bytes[from..cut]).is_err() {
                ok = false;
                break;
            }
            from = cut;
        }
        let ok = ok && v.finish().is_ok();
        prop_assert_eq!(ok, expected, "{:x?} cut at {:?}", bytes, cuts(bytes.len(), &raw_cuts));
    }

    #[test]
    fn streaming_utf8_fails_at_the_first_impossible_byte(bytes in utf8ish()) {
        // Byte by byte: the push that fails is the byte after which the
        // prefix can no longer be completed into valid UTF-8.
        let completable = |b: &[u8]| match std::str::from_utf8(b) {
            Ok(_) => true,
            Err(e) => e.error_len().is_none(),
        };
        let first_bad = (1..=bytes.len()).find(|&k| !completable(&bytes[..k])).map(|k| k - 1);
        let mut v = Utf8Validator::new();
        let failed_at = bytes.iter().position(|b| v.push(&[*b]).is_err());
        prop_assert_eq!(failed_at, first_bad);
    }
}

// === the relay's buffer ===

/// Small sizes so that short random streams reach every state of the buffer:
/// growth, compaction, shrinking, and frames larger than the largest buffer
/// (streamed), while a control frame (at most 127 bytes unmasked) still fits.
type SmallBuf = FrameBuf<16, 160>;
const SMALL_MAX: usize = 160;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Binary,
    Ping,
    /// Cut by the relay (the backend must not see an unsolicited pong).
    Pong,
}

fn kind() -> impl Strategy<Value = (Kind, usize)> {
    prop_oneof![
        (Just(Kind::Binary), 0usize..400),
        (Just(Kind::Ping), 0usize..=125),
        (Just(Kind::Pong), 0usize..=125),
    ]
}

/// One unmasked FIN frame whose payload bytes say which frame they belong to.
fn wire_frame(opcode: OpCode, len: usize, tag: u8, out: &mut Vec<u8>) {
    FrameHeader::fin(opcode, None, len as u64).encode(out);
    out.extend((0..len).map(|i| tag.wrapping_add(i as u8)));
}

/// Next size from a cycled list, at least 1 and at most `cap`.
fn next_size(sizes: &[usize], at: &mut usize, cap: usize) -> usize {
    let n = sizes[*at % sizes.len()];
    *at += 1;
    n.clamp(1, cap.max(1))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Drives `FrameBuf` the way the relay's pump does, with a real decoder,
    /// random read and write sizes and random frames: the destination gets
    /// exactly the frames that were not cut, in order, nothing after a close
    /// frame or a broken rule, and whenever everything released is written
    /// it stands between frames, or inside a frame larger than the buffer
    /// exactly when the buffer says it is mid-frame.
    #[test]
    fn buffer_forwards_whole_frames_in_order(
        frames in prop::collection::vec(kind(), 0..24),
        ending in 0u8..3,
        early in 0usize..64,
        reads in prop::collection::vec(0usize..300, 1..8),
        writes in prop::collection::vec(0usize..300, 1..8),
        idle in any::<bool>(),
    ) {
        // The stream, what must come out, and where its frames end.
        let (mut input, mut expected, mut ends) = (Vec::new(), Vec::new(), vec![0]);
        let mut big = Vec::new();
        for (i, &(kind, len)) in frames.iter().enumerate() {
            let opcode = match kind {
                Kind::Binary => OpCode::Binary,
                Kind::Ping => OpCode::Ping,
                Kind::Pong => OpCode::Pong,
            };
            let start = input.len();
            wire_frame(opcode, len, i as u8, &mut input);
            if !matches!(kind, Kind::Pong) {
                expected.extend_from_slice(&input[start..]);
                ends.push(expected.len());
                big.push(input.len() - start > SMALL_MAX);
            }
        }
        match ending {
            // A close frame, then a frame that must never be read.
            1 => {
                // Code 1000: the payload bytes count up from the tag.
                wire_frame(OpCode::Close, 2, 0x03, &mut input);
                let last = input.len() - 1;
                input[last] = 0xE8;
                let start = expected.len();
                expected.extend_from_slice(&input[input.len() - 4..]);
                ends.push(expected.len());
                big.push(expected.len() - start > SMALL_MAX);
                wire_frame(OpCode::Binary, 3, 9, &mut input);
            }
            // A frame with a reserved opcode: the decoder refuses it.
            2 => wire_frame(OpCode::Reserved(3), 5, 0, &mut input),
            _ => {}
        }

        let early = early.min(input.len());
        let mut buf = SmallBuf::new(&input[..early]);
        let mut read = early;
        let policy = FramePolicy {
            max_frame_size: None,
            max_message_size: None,
            max_fragments: None,
            mask_key_policy: MaskKeyPolicy::Rfc,
        };
        let mut dec = Decoder::new(Role::Server, policy);
        let (mut out, mut stopped) = (Vec::new(), false);
        let (mut r, mut w) = (0, 0);
        loop {
            while !stopped && !buf.unparsed().is_empty() {
                let (n, event) = match dec.feed(buf.unparsed()) {
                    Ok(step) => step,
                    Err(_) => {
                        buf.discard_unreleased();
                        stopped = true;
                        break;
                    }
                };
                buf.consume(n);
                match event {
                    None if n == 0 => break,
                    None => {}
                    Some(Event::Pong) => buf.cut_frame(),
                    Some(Event::Close { .. }) => {
                        buf.drop_unparsed();
                        buf.release_frame();
                        stopped = true;
                    }
                    Some(_) => buf.release_frame(),
                }
            }
            let released = buf.output().len();
            if released > 0 {
                let n = next_size(&writes, &mut w, released);
                out.extend_from_slice(&buf.output()[..n]);
                buf.written(n);
                continue;
            }
            // Everything released is written: where does the destination stand?
            match ends.binary_search(&out.len()) {
                Ok(_) => prop_assert!(!buf.is_mid_frame(), "mid-frame at a boundary {}", out.len()),
                Err(i) => {
                    prop_assert!(buf.is_mid_frame(), "inside frame {} but not mid-frame", i - 1);
                    prop_assert!(big[i - 1], "frame {} fits but was streamed", i - 1);
                }
            }
            if stopped {
                break;
            }
            buf.make_room();
            if !buf.output().is_empty() {
                continue;
            }
            if idle {
                buf.idle();
            }
            if read == input.len() {
                break;
            }
            let spare = buf.spare();
            let n = next_size(&reads, &mut r, spare.len().min(input.len() - read));
            spare[..n].copy_from_slice(&input[read..read + n]);
            read += n;
            buf.filled(n);
        }
        prop_assert_eq!(out.len(), expected.len());
        prop_assert!(out == expected, "the destination got other bytes");
    }
}

/// A direction that waits with nothing held holds no storage; one that holds
/// the start of a frame keeps it in the smallest storage that fits.
#[test]
fn idle_buffer_holds_only_a_partial_frame() {
    let mut buf = SmallBuf::new(&[]);
    assert_eq!(buf.capacity(), 0);
    let mut dec = Decoder::new(
        Role::Server,
        FramePolicy {
            max_frame_size: None,
            max_message_size: None,
            max_fragments: None,
            mask_key_policy: MaskKeyPolicy::Rfc,
        },
    );
    let (mut whole, mut next) = (Vec::new(), Vec::new());
    wire_frame(OpCode::Binary, 5, 1, &mut whole);
    wire_frame(OpCode::Binary, 9, 2, &mut next);
    // One whole frame and the first 4 bytes of the next, read in one burst.
    whole.extend_from_slice(&next[..4]);
    let spare = buf.spare();
    assert_eq!(
        spare.len(),
        SMALL_MAX,
        "a burst reads into the largest storage"
    );
    spare[..whole.len()].copy_from_slice(&whole);
    buf.filled(whole.len());
    while !buf.unparsed().is_empty() {
        let (n, event) = dec.feed(buf.unparsed()).unwrap();
        buf.consume(n);
        if event.is_some() {
            buf.release_frame();
        }
        if n == 0 {
            break;
        }
    }
    assert_eq!(buf.output(), &whole[..7]);
    buf.written(7);
    buf.make_room();
    buf.idle();
    assert_eq!(
        buf.capacity(),
        16,
        "the partial frame moved to the smallest storage"
    );
    // The rest of the frame arrives; once it is written nothing is held.
    let spare = buf.spare();
    spare[..7].copy_from_slice(&next[4..]);
    buf.filled(7);
    let (n, event) = dec.feed(buf.unparsed()).unwrap();
    assert_eq!((n, event.is_some()), (7, true));
    buf.consume(n);
    buf.release_frame();
    assert_eq!(buf.output(), &next[..]);
    buf.written(next.len());
    buf.make_room();
    buf.idle();
    assert_eq!(buf.capacity(), 0, "an idle direction holds no storage");
}
