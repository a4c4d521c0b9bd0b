//! Decoder tests: one per rule (exact close code and label), split-invariance of a
//! valid stream, and fail-fast UTF-8.

use super::*;
use crate::frame::rules::{MaskKeyPolicy, MASK_KEY_REPEAT_LIMIT};

fn unlimited() -> FramePolicy {
    FramePolicy {
        max_frame_size: None,
        max_message_size: None,
        max_fragments: None,
        mask_key_policy: MaskKeyPolicy::Strict,
    }
}

/// Length field form for a built frame: minimal, or forced wider (non-minimal,
/// which §5.2 forbids).
#[derive(Clone, Copy)]
enum LenForm {
    Minimal,
    Bits16,
    Bits64,
}

/// Builds wire bytes; masks with a fresh key per frame when `masked`.
struct Wire {
    masked: bool,
    seed: u32,
    form: LenForm,
    bytes: Vec<u8>,
}

impl Wire {
    fn client() -> Self {
        Self {
            masked: true,
            seed: 0x1234_5678,
            form: LenForm::Minimal,
            bytes: Vec::new(),
        }
    }

    fn server() -> Self {
        Self {
            masked: false,
            ..Self::client()
        }
    }

    fn next_key(&mut self) -> [u8; 4] {
        self.seed = self
            .seed
            .wrapping_mul(1_664_525)
            .wrapping_add(1_013_904_223);
        self.seed.to_be_bytes()
    }

    fn frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) -> &mut Self {
        let mask = if self.masked {
            Some(self.next_key())
        } else {
            None
        };
        self.frame_with(fin, opcode, mask, payload)
    }

    fn frame_with(
        &mut self,
        fin: bool,
        opcode: OpCode,
        mask: Option<[u8; 4]>,
        payload: &[u8],
    ) -> &mut Self {
        let h = FrameHeader {
            fin,
            ..FrameHeader::fin(opcode, mask, payload.len() as u64)
        };
        let mut hdr = Vec::new();
        h.encode(&mut hdr);
        let mask_bit = hdr[1] & 0x80;
        let len = payload.len() as u64;
        match self.form {
            LenForm::Minimal => self.bytes.extend_from_slice(&hdr[..2 + ext_len(&hdr)]),
            LenForm::Bits16 if len <= 0xFFFF => {
                self.bytes.extend_from_slice(&[hdr[0], mask_bit | 126]);
                self.bytes.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                self.bytes.extend_from_slice(&[hdr[0], mask_bit | 127]);
                self.bytes.extend_from_slice(&len.to_be_bytes());
            }
        }
        if let Some(key) = mask {
            self.bytes.extend_from_slice(&key);
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut self.bytes[start..], key, 0);
        }
        self
    }
}

fn ext_len(hdr: &[u8]) -> usize {
    match hdr[1] & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    }
}

/// Feeds all of `bytes` and returns the violation it must produce.
fn refuse(role: Role, policy: FramePolicy, bytes: &[u8]) -> Violation {
    let mut dec = Decoder::new(role, policy);
    let mut pos = 0;
    loop {
        match dec.feed(&bytes[pos..]) {
            Err(v) => {
                // The decoder stays dead.
                assert_eq!(dec.feed(&[]), Err(v));
                return v;
            }
            Ok((0, None)) => panic!("stream accepted, {} bytes left", bytes.len() - pos),
            Ok((n, _)) => pos += n,
        }
    }
}

fn assert_refused(role: Role, policy: FramePolicy, bytes: &[u8], code: u16, label: &str) {
    let v = refuse(role, policy, bytes);
    assert_eq!((v.close_code(), v.label()), (code, label), "{v}");
    assert!(v.reason().len() <= 40);
}

/// Frames built by `build` (client frames: masked) must be refused with this
/// close code and label.
fn client_refused(build: impl FnOnce(&mut Wire) -> &mut Wire, code: u16, label: &str) {
    let bytes = build(&mut Wire::client()).bytes.clone();
    assert_refused(Role::Client, unlimited(), &bytes, code, label);
}

/// As [`client_refused`], for backend frames (unmasked).
fn server_refused(build: impl FnOnce(&mut Wire) -> &mut Wire, code: u16, label: &str) {
    let bytes = build(&mut Wire::server()).bytes.clone();
    assert_refused(Role::Server, unlimited(), &bytes, code, label);
}

type Log = Vec<(usize, Event, Vec<u8>)>;

/// Relays `bytes` arriving in the given chunk sizes, like the relay does: append,
/// then feed until no progress. Logs (offset, event, control payload).
fn run(role: Role, policy: FramePolicy, bytes: &[u8], sizes: &mut dyn FnMut() -> usize) -> Log {
    let mut dec = Decoder::new(role, policy);
    let mut buf = Vec::new();
    let (mut pos, mut log) = (0, Vec::new());
    while buf.len() < bytes.len() {
        let end = (buf.len() + sizes().max(1)).min(bytes.len());
        buf.extend_from_slice(&bytes[buf.len()..end]);
        loop {
            let (n, ev) = dec.feed(&buf[pos..]).expect("valid stream");
            pos += n;
            if let Some(ev) = ev {
                let payload = match ev {
                    Event::DataEnd { .. } => Vec::new(),
                    _ => dec.control_payload().to_vec(),
                };
                log.push((pos, ev, payload));
            }
            if n == 0 && ev.is_none() {
                break;
            }
        }
    }
    assert_eq!(pos, bytes.len());
    assert!(dec.at_frame_boundary() && !dec.in_message());
    log
}

/// Tiny deterministic PRNG (xorshift32) for random splits.
fn xorshift(seed: u32) -> impl FnMut() -> usize {
    let mut s = seed;
    move || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        // Mostly small reads, sometimes large ones.
        if s.is_multiple_of(8) {
            (s % 5000) as usize
        } else {
            (s % 23) as usize
        }
    }
}

fn valid_stream(wire: &mut Wire) -> Vec<u8> {
    let euro = "€".as_bytes();
    let long_text: String = "aé€𝄞 ".repeat(7000);
    let mut text1 = b"h\xc3\xa9llo ".to_vec();
    text1.extend_from_slice(&euro[..2]);
    let mut text2 = euro[2..].to_vec();
    text2.extend_from_slice(" wörld".as_bytes());
    let clef = "𝄞".as_bytes();
    wire.frame(false, OpCode::Text, &text1)
        .frame(true, OpCode::Ping, b"p1")
        .frame(false, OpCode::Continue, &text2)
        .frame(true, OpCode::Pong, b"")
        .frame(false, OpCode::Continue, &clef[..1])
        .frame(true, OpCode::Continue, &clef[1..])
        .frame(true, OpCode::Binary, &[0xFF; 200])
        .frame(true, OpCode::Text, long_text.as_bytes())
        .frame(true, OpCode::Text, b"")
        .frame(false, OpCode::Binary, b"")
        .frame(true, OpCode::Ping, &[7; 125])
        .frame(true, OpCode::Continue, &[0x80; 70_000])
        .frame(true, OpCode::Close, b"\x03\xe8bye");
    std::mem::take(&mut wire.bytes)
}

#[test]
fn stream_is_split_invariant() {
    for (role, mut wire) in [
        (Role::Client, Wire::client()),
        (Role::Server, Wire::server()),
    ] {
        let bytes = valid_stream(&mut wire);
        let whole = run(role, unlimited(), &bytes, &mut || usize::MAX);
        assert_eq!(whole.len(), 13);
        assert_eq!(whole[1].1, Event::Ping);
        assert_eq!(whole[1].2, b"p1");
        assert_eq!(
            whole[5].1,
            Event::DataEnd {
                opcode: OpCode::Continue,
                fin: true
            }
        );
        assert_eq!(whole[12].1, Event::Close { code: Some(1000) });
        assert_eq!(&whole[12].2[2..], b"bye");
        assert_eq!(run(role, unlimited(), &bytes, &mut || 1), whole);
        for seed in [1, 7, 0xDEAD_BEEF, 42] {
            assert_eq!(run(role, unlimited(), &bytes, &mut xorshift(seed)), whole);
        }
    }
}

#[test]
fn non_minimal_length_is_a_protocol_error_in_both_directions() {
    for role in [Role::Client, Role::Server] {
        let wire = |form| Wire {
            form,
            masked: role == Role::Client,
            ..Wire::client()
        };
        for (form, payload, bits) in [
            (LenForm::Bits16, &[1u8; 125][..], 16),
            (LenForm::Bits64, &[1; 0xFFFF][..], 64),
            (LenForm::Bits64, &[], 64),
        ] {
            let mut w = wire(form);
            w.frame(true, OpCode::Binary, payload);
            let v = refuse(role, unlimited(), &w.bytes);
            let len = payload.len() as u64;
            assert_eq!(v, Violation::NonMinimalLength { len, bits });
            assert_eq!((v.close_code(), v.label()), (1002, "non_minimal_length"));
        }
        // A control frame too, before its other rules.
        let bytes = wire(LenForm::Bits16)
            .frame(true, OpCode::Close, b"\x03\xe8")
            .bytes
            .clone();
        assert_refused(role, unlimited(), &bytes, 1002, "non_minimal_length");
    }
}

#[test]
fn decoder_is_small() {
    assert!(
        std::mem::size_of::<Decoder>() <= 400,
        "{}",
        std::mem::size_of::<Decoder>()
    );
}

#[test]
fn utf8_fails_fast_mid_frame() {
    let mut payload = vec![b'a'; 100];
    payload[2] = 0xFF;
    let bytes = Wire::client()
        .frame(true, OpCode::Text, &payload)
        .bytes
        .clone();
    let mut dec = Decoder::new(Role::Client, unlimited());
    // 2-byte header + 4-byte key + 3 payload bytes.
    let v = dec.feed(&bytes[..9]).unwrap_err();
    assert_eq!((v.close_code(), v.label()), (1007, "invalid_utf8_text"));
}

#[test]
fn utf8_fails_at_bad_continuation_split_across_frames() {
    let bytes = Wire::client()
        .frame(false, OpCode::Text, b"ok\xf4")
        .frame(true, OpCode::Continue, b"\x90\x80\x80")
        .bytes
        .clone();
    let mut dec = Decoder::new(Role::Client, unlimited());
    assert!(matches!(
        dec.feed(&bytes),
        Ok((9, Some(Event::DataEnd { fin: false, .. })))
    ));
    // Header + key + the one byte 0x90.
    assert_eq!(dec.feed(&bytes[9..16]), Err(Violation::InvalidUtf8Text));
}

#[test]
fn utf8_incomplete_at_message_end() {
    client_refused(
        |w| {
            w.frame(false, OpCode::Text, b"ok")
                .frame(true, OpCode::Continue, b"\xe2\x82")
        },
        1007,
        "truncated_utf8_text",
    );
}

#[test]
fn binary_is_not_utf8_checked() {
    let bytes = Wire::client()
        .frame(true, OpCode::Binary, b"\xff\xfe")
        .bytes
        .clone();
    let log = run(Role::Client, unlimited(), &bytes, &mut || usize::MAX);
    assert_eq!(
        log[0].1,
        Event::DataEnd {
            opcode: OpCode::Binary,
            fin: true
        }
    );
}

#[test]
fn masking_direction() {
    let unmasked = Wire::server()
        .frame(true, OpCode::Text, b"hi")
        .bytes
        .clone();
    assert_refused(Role::Client, unlimited(), &unmasked, 1002, "unmasked_frame");
    let masked = Wire::client()
        .frame(true, OpCode::Text, b"hi")
        .bytes
        .clone();
    assert_refused(Role::Server, unlimited(), &masked, 1002, "masked_frame");
}

#[test]
fn strict_mask_key_policy() {
    let zero = Wire::client()
        .frame_with(true, OpCode::Binary, Some([0; 4]), b"x")
        .bytes
        .clone();
    assert_refused(Role::Client, unlimited(), &zero, 1008, "zero_mask_key");
    let key = Some([1, 2, 3, 4]);
    let mut w = Wire::client();
    w.frame_with(true, OpCode::Binary, key, b"a")
        .frame_with(true, OpCode::Ping, key, b"");
    let two = w.bytes.clone();
    assert_eq!(
        run(Role::Client, unlimited(), &two, &mut || usize::MAX).len(),
        2
    );
    let three = w.frame_with(true, OpCode::Text, key, b"c").bytes.clone();
    let v = refuse(Role::Client, unlimited(), &three);
    assert_eq!(
        v,
        Violation::RepeatedMaskKey {
            frames: MASK_KEY_REPEAT_LIMIT
        }
    );
    assert_eq!((v.close_code(), v.label()), (1008, "repeated_mask_key"));
    // A different key in between resets the run.
    let mut w = Wire::client();
    w.frame_with(true, OpCode::Binary, key, b"a")
        .frame_with(true, OpCode::Binary, key, b"b")
        .frame(true, OpCode::Binary, b"c")
        .frame_with(true, OpCode::Binary, key, b"d");
    assert_eq!(
        run(Role::Client, unlimited(), &w.bytes, &mut || usize::MAX).len(),
        4
    );
    // The RFC policy only checks the mask bit.
    let rfc = FramePolicy {
        mask_key_policy: MaskKeyPolicy::Rfc,
        ..unlimited()
    };
    let mut all = zero;
    all.extend_from_slice(&three);
    assert_eq!(run(Role::Client, rfc, &all, &mut || usize::MAX).len(), 4);
}

#[test]
fn reserved_bits_and_opcodes() {
    for bit in [0x40, 0x20, 0x10] {
        let mut bytes = Wire::client().frame(true, OpCode::Text, b"x").bytes.clone();
        bytes[0] |= bit;
        assert_refused(Role::Client, unlimited(), &bytes, 1002, "reserved_bits");
    }
    for op in (3..=7).chain(11..=15) {
        let bytes = Wire::client()
            .frame(true, OpCode::Reserved(op), b"")
            .bytes
            .clone();
        assert_refused(Role::Client, unlimited(), &bytes, 1002, "reserved_opcode");
    }
}

#[test]
fn control_frame_shape() {
    client_refused(
        |w| w.frame(true, OpCode::Ping, &[0; 126]),
        1002,
        "control_frame_too_long",
    );
    let frag = Wire::client().frame(false, OpCode::Pong, b"").bytes.clone();
    assert_refused(
        Role::Client,
        unlimited(),
        &frag,
        1002,
        "fragmented_control_frame",
    );
    server_refused(
        |w| w.frame(false, OpCode::Close, b""),
        1002,
        "fragmented_control_frame",
    );
}

#[test]
fn fragment_sequence() {
    client_refused(
        |w| w.frame(true, OpCode::Continue, b"x"),
        1002,
        "unexpected_continuation",
    );
    client_refused(
        |w| {
            w.frame(false, OpCode::Text, b"a")
                .frame(true, OpCode::Ping, b"")
                .frame(true, OpCode::Binary, b"b")
        },
        1002,
        "expected_continuation",
    );
    client_refused(
        |w| {
            w.frame(false, OpCode::Binary, b"a")
                .frame(true, OpCode::Continue, b"b")
                .frame(true, OpCode::Continue, b"c")
        },
        1002,
        "unexpected_continuation",
    );
}

#[test]
fn length_msb_is_checked_before_caps() {
    let mut bytes = vec![0x82, 0xFF];
    bytes.extend_from_slice(&u64::MAX.to_be_bytes());
    bytes.extend_from_slice(&[1, 2, 3, 4]);
    let capped = FramePolicy {
        max_frame_size: Some(10),
        ..unlimited()
    };
    assert_refused(Role::Client, capped, &bytes, 1002, "length_msb_set");
}

#[test]
fn frame_size_cap_fires_on_header_alone() {
    let bytes = Wire::client()
        .frame(true, OpCode::Binary, &[0; 70_000])
        .bytes
        .clone();
    let policy = FramePolicy {
        max_frame_size: Some(65_536),
        ..unlimited()
    };
    let mut dec = Decoder::new(Role::Client, policy.clone());
    let v = dec.feed(&bytes[..14]).unwrap_err();
    assert_eq!((v.close_code(), v.label()), (1009, "frame_too_large"));
    assert_eq!(
        v.to_string(),
        "frame of 70000 bytes over max_frame_size 65536"
    );
    let exact = Wire::client()
        .frame(true, OpCode::Binary, &[0; 65_536])
        .bytes
        .clone();
    assert_eq!(run(Role::Client, policy, &exact, &mut || 4096).len(), 1);
}

#[test]
fn message_size_cap() {
    let policy = FramePolicy {
        max_message_size: Some(100),
        ..unlimited()
    };
    let bytes = Wire::client()
        .frame(false, OpCode::Binary, &[0; 60])
        .frame(true, OpCode::Continue, &[0; 41])
        .bytes
        .clone();
    assert_refused(
        Role::Client,
        policy.clone(),
        &bytes,
        1009,
        "message_too_large",
    );
    // Exactly at the cap passes, and the total restarts with each message.
    let ok = Wire::client()
        .frame(false, OpCode::Binary, &[0; 60])
        .frame(true, OpCode::Continue, &[0; 40])
        .frame(true, OpCode::Text, &[b'a'; 100])
        .bytes
        .clone();
    assert_eq!(run(Role::Client, policy, &ok, &mut || usize::MAX).len(), 3);
    // The largest legal length after a first fragment: no overflow, reported exactly.
    let mut huge = Wire::client()
        .frame(false, OpCode::Binary, &[0; 60])
        .bytes
        .clone();
    huge.extend_from_slice(&[0x80, 0xFF]);
    huge.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
    huge.extend_from_slice(&[5, 6, 7, 8]);
    let policy = FramePolicy {
        max_message_size: Some(1 << 40),
        ..unlimited()
    };
    let v = refuse(Role::Client, policy, &huge);
    let size = 60 + (u64::MAX >> 1);
    assert_eq!(v, Violation::MessageTooLarge { size, max: 1 << 40 });
}

#[test]
fn fragment_count_cap() {
    let policy = FramePolicy {
        max_fragments: Some(3),
        ..unlimited()
    };
    let mut w = Wire::client();
    w.frame(false, OpCode::Text, b"a")
        .frame(false, OpCode::Continue, b"b");
    let three = w.frame(true, OpCode::Continue, b"c").bytes.clone();
    assert_eq!(
        run(Role::Client, policy.clone(), &three, &mut || usize::MAX).len(),
        3
    );
    let mut w = Wire::client();
    w.frame(false, OpCode::Binary, b"")
        .frame(false, OpCode::Continue, b"")
        .frame(false, OpCode::Continue, b"");
    let four = w.frame(true, OpCode::Continue, b"").bytes.clone();
    assert_refused(Role::Client, policy, &four, 1009, "too_many_fragments");
}

#[test]
fn close_payload_rules() {
    client_refused(
        |w| w.frame(true, OpCode::Close, b"\x03"),
        1002,
        "close_length_one",
    );
    for code in [999u16, 1005, 1006, 1015, 2000, 5000] {
        let bytes = Wire::client()
            .frame(true, OpCode::Close, &code.to_be_bytes())
            .bytes
            .clone();
        assert_refused(
            Role::Client,
            unlimited(),
            &bytes,
            1002,
            "invalid_close_code",
        );
    }
    server_refused(
        |w| w.frame(true, OpCode::Close, b"\x03\xe8\xc3\x28"),
        1007,
        "invalid_utf8_close_reason",
    );
    let empty = Wire::client().frame(true, OpCode::Close, b"").bytes.clone();
    let log = run(Role::Client, unlimited(), &empty, &mut || 1);
    assert_eq!(log[0].1, Event::Close { code: None });
}

#[test]
fn zero_length_frame_ends_with_its_header() {
    let bytes = Wire::client()
        .frame(true, OpCode::Binary, b"")
        .bytes
        .clone();
    let mut dec = Decoder::new(Role::Client, unlimited());
    assert_eq!(dec.feed(&bytes[..5]), Ok((0, None)));
    assert_eq!(
        dec.feed(&bytes),
        Ok((
            6,
            Some(Event::DataEnd {
                opcode: OpCode::Binary,
                fin: true
            })
        ))
    );
}

#[test]
fn violation_texts_are_short_and_numbered() {
    let all = [
        Violation::RepeatedMaskKey { frames: 3 },
        Violation::ControlFrameTooLong { len: 126 },
        Violation::MessageTooLarge {
            size: 101,
            max: 100,
        },
        Violation::TooManyFragments { max: 3 },
        Violation::InvalidCloseCode { code: 1005 },
        Violation::ExpectedContinuation,
        Violation::NonMinimalLength { len: 5, bits: 16 },
    ];
    for v in all {
        assert!(v.reason().len() <= 40);
        assert!(v
            .label()
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()));
    }
    assert_eq!(
        Violation::MessageTooLarge {
            size: 101,
            max: 100
        }
        .to_string(),
        "message of 101 bytes over max_message_size 100"
    );
    assert_eq!(
        Violation::NonMinimalLength { len: 5, bits: 16 }.to_string(),
        "payload length 5 in a 16-bit field, not the shortest form"
    );
}

#[test]
fn random_input_never_panics() {
    let mut next = xorshift(99);
    for role in [Role::Client, Role::Server] {
        for _ in 0..3000 {
            let len = next() % 64;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let policy = FramePolicy {
                max_message_size: Some(50),
                max_fragments: Some(2),
                ..unlimited()
            };
            let mut dec = Decoder::new(role, policy);
            let mut pos = 0;
            loop {
                let end = (pos + next()).min(bytes.len());
                match dec.feed(&bytes[pos..end]) {
                    Ok((0, None)) if end == bytes.len() => break,
                    Ok((n, _)) => pos += n,
                    Err(_) => break,
                }
            }
        }
    }
}

#[test]
fn utf8_checked_across_unmasking_steps() {
    // Text is unmasked in SCRATCH_LEN steps: a code point cut by a step
    // boundary is valid, and a bad byte on either side of one is found.
    for at in [
        SCRATCH_LEN - 2,
        SCRATCH_LEN - 1,
        SCRATCH_LEN,
        2 * SCRATCH_LEN - 1,
    ] {
        let mut payload = vec![b'a'; 3 * SCRATCH_LEN];
        payload[at..at + 3].copy_from_slice("€".as_bytes());
        let bytes = Wire::client()
            .frame(true, OpCode::Text, &payload)
            .bytes
            .clone();
        let log = run(Role::Client, unlimited(), &bytes, &mut || usize::MAX / 2);
        assert_eq!(log.len(), 1, "€ at {at}");

        payload[at + 1] = b'a';
        let bytes = Wire::client()
            .frame(true, OpCode::Text, &payload)
            .bytes
            .clone();
        let v = refuse(Role::Client, unlimited(), &bytes);
        assert_eq!(v.close_code(), 1007, "broken € at {at}");
    }
}

// --- permessage-deflate -------------------------------------------------------

/// Raw DEFLATE as a permessage-deflate sender writes it (trailer removed).
fn deflated(data: &[u8]) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    out.truncate(out.len() - 4);
    out
}

/// Appends a frame with RSV1 set.
fn rsv1_frame<'w>(w: &'w mut Wire, fin: bool, opcode: OpCode, payload: &[u8]) -> &'w mut Wire {
    let at = w.bytes.len();
    w.frame(fin, opcode, payload);
    w.bytes[at] |= 0x40;
    w
}

fn inflating(policy: FramePolicy) -> Decoder {
    Decoder::new(Role::Client, policy).with_deflate(Some(Inflater::new(false)))
}

/// Feeds everything; the events, or the violation.
fn feed_all(dec: &mut Decoder, mut bytes: &[u8]) -> Result<Vec<Event>, Violation> {
    let mut events = Vec::new();
    while !bytes.is_empty() {
        let (n, event) = dec.feed(bytes)?;
        bytes = &bytes[n..];
        events.extend(event);
    }
    Ok(events)
}

#[test]
fn compressed_text_is_inflated_across_fragments() {
    let text = "héllo wörld ".repeat(300);
    let z = deflated(text.as_bytes());
    let (a, b) = z.split_at(z.len() / 2);
    let mut w = Wire::client();
    rsv1_frame(&mut w, false, OpCode::Text, a);
    w.frame(true, OpCode::Ping, b"p");
    w.frame(true, OpCode::Continue, b);
    let mut dec = inflating(unlimited());
    let events = feed_all(&mut dec, &w.bytes).unwrap();
    assert_eq!(events.len(), 3);
    // The continuation carried the rest of the inflated message.
    let last = dec.inflated_len().unwrap();
    assert!(last > 0 && last < text.len() as u64, "{last}");
}

#[test]
fn inflated_size_is_forgotten_by_the_next_frame() {
    let mut w = Wire::client();
    rsv1_frame(&mut w, true, OpCode::Binary, &deflated(&[7; 5000]));
    let mut dec = inflating(unlimited());
    feed_all(&mut dec, &w.bytes).unwrap();
    assert_eq!(dec.inflated_len(), Some(5000));
    let ping = Wire::client().frame(true, OpCode::Ping, b"").bytes.clone();
    feed_all(&mut dec, &ping).unwrap();
    assert_eq!(dec.inflated_len(), None);
}

#[test]
fn rsv1_placement() {
    let refuse_inflating = |bytes: &[u8]| feed_all(&mut inflating(unlimited()), bytes).unwrap_err();
    let z = deflated(b"hello");
    let mut w = Wire::client();
    w.frame(false, OpCode::Text, b"he");
    rsv1_frame(&mut w, true, OpCode::Continue, b"llo");
    let v = refuse_inflating(&w.bytes);
    assert_eq!(
        (v.close_code(), v.label()),
        (1002, "compressed_continuation")
    );
    let mut w = Wire::client();
    rsv1_frame(&mut w, true, OpCode::Ping, b"");
    let v = refuse_inflating(&w.bytes);
    assert_eq!(
        (v.close_code(), v.label()),
        (1002, "compressed_control_frame")
    );
    // Not negotiated: RSV1 is a reserved bit like the others.
    let mut w = Wire::client();
    rsv1_frame(&mut w, true, OpCode::Text, &z);
    assert_refused(Role::Client, unlimited(), &w.bytes, 1002, "reserved_bits");
    // RSV2 stays reserved when compression is negotiated.
    let mut bytes = Wire::client().frame(true, OpCode::Text, b"x").bytes.clone();
    bytes[0] |= 0x20;
    assert_eq!(refuse_inflating(&bytes).label(), "reserved_bits");
}

#[test]
fn inflated_bytes_meet_the_caps_mid_frame() {
    let z = deflated(&vec![0; 1 << 20]);
    let mut w = Wire::client();
    rsv1_frame(&mut w, true, OpCode::Binary, &z);
    let policy = FramePolicy {
        max_frame_size: Some(64 << 10),
        ..unlimited()
    };
    let v = feed_all(&mut inflating(policy), &w.bytes).unwrap_err();
    assert_eq!((v.close_code(), v.label()), (1009, "frame_too_large"));
    let policy = FramePolicy {
        max_message_size: Some(64 << 10),
        ..unlimited()
    };
    let v = feed_all(&mut inflating(policy), &w.bytes).unwrap_err();
    assert_eq!((v.close_code(), v.label()), (1009, "message_too_large"));
    assert!(v.to_string().contains("inflates"), "{v}");
}

#[test]
fn bad_compressed_data_and_utf8_are_1007() {
    let mut w = Wire::client();
    rsv1_frame(&mut w, true, OpCode::Binary, &[0xff, 0xff, 0xff]);
    let v = feed_all(&mut inflating(unlimited()), &w.bytes).unwrap_err();
    assert_eq!((v.close_code(), v.label()), (1007, "bad_deflate_data"));
    let mut w = Wire::client();
    rsv1_frame(&mut w, true, OpCode::Text, &deflated(b"ok \xff"));
    let v = feed_all(&mut inflating(unlimited()), &w.bytes).unwrap_err();
    assert_eq!((v.close_code(), v.label()), (1007, "invalid_utf8_text"));
}

#[test]
fn blind_decoder_checks_rsv1_but_not_the_data() {
    let sender = Decoder::new(Role::Server, unlimited()).with_deflate(None);
    let mut w = Wire::server();
    rsv1_frame(&mut w, true, OpCode::Text, &[0xff, 0xff, 0xfe]);
    let mut dec = sender;
    assert_eq!(feed_all(&mut dec, &w.bytes).unwrap().len(), 1);
    assert_eq!(dec.inflated_len(), None);
    let mut w = Wire::server();
    rsv1_frame(&mut w, true, OpCode::Close, &[]);
    assert_eq!(
        feed_all(&mut dec, &w.bytes).unwrap_err().label(),
        "compressed_control_frame"
    );
}
