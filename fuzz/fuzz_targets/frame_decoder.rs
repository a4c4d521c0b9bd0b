//! Differential: one byte stream fed to `Decoder` all at once, one byte at a
//! time and in the fuzzer's own splits must give the same events (at the same
//! stream offsets, with the same control payloads), the same verdict, and, when
//! no rule was broken, the same consumed total.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wsguard::frame::{Decoder, Event, Violation};
use wsguard::frame::{FramePolicy, MaskKeyPolicy, Role};

#[derive(Arbitrary, Debug)]
struct Input {
    client: bool,
    strict: bool,
    /// Small caps so the fuzzer reaches them; `None` = unlimited.
    max_frame: Option<u16>,
    max_message: Option<u16>,
    max_fragments: Option<u8>,
    /// Chunk sizes for the third run (0 = an empty feed), cycled.
    splits: Vec<u8>,
    stream: Vec<u8>,
}

/// What a run saw: (stream offset after the event, event, control payload).
#[derive(Debug, PartialEq)]
struct Run {
    events: Vec<(usize, Event, Vec<u8>)>,
    verdict: Result<(), Violation>,
    consumed: usize,
}

/// Feeds `stream` in chunks of the given sizes the way the relay does: keep
/// what the decoder did not consume and add the next chunk to it.
fn run(dec: &mut Decoder, stream: &[u8], mut next_len: impl FnMut() -> usize) -> Run {
    let mut events = Vec::new();
    let mut consumed = 0;
    let mut have = 0;
    loop {
        let add = next_len().min(stream.len() - have);
        have += add;
        loop {
            let pending = &stream[consumed..have];
            match dec.feed(pending) {
                Err(v) => {
                    // A dead decoder repeats its verdict.
                    assert_eq!(dec.feed(pending), Err(v));
                    return Run {
                        events,
                        verdict: Err(v),
                        consumed,
                    };
                }
                Ok((n, event)) => {
                    assert!(n <= pending.len(), "consumed more than given");
                    consumed += n;
                    if let Some(e) = event {
                        assert!(dec.at_frame_boundary());
                        let payload = match e {
                            Event::DataEnd { .. } => Vec::new(),
                            _ => dec.control_payload().to_vec(),
                        };
                        events.push((consumed, e, payload));
                    } else if n == 0 {
                        break;
                    }
                }
            }
        }
        if have == stream.len() {
            return Run {
                events,
                verdict: Ok(()),
                consumed,
            };
        }
    }
}

fuzz_target!(|input: Input| {
    let policy = FramePolicy {
        max_frame_size: input.max_frame.map(u64::from),
        max_message_size: input.max_message.map(|n| u64::from(n) * 4),
        max_fragments: input.max_fragments.map(u32::from),
        mask_key_policy: if input.strict {
            MaskKeyPolicy::Strict
        } else {
            MaskKeyPolicy::Rfc
        },
    };
    let role = if input.client {
        Role::Client
    } else {
        Role::Server
    };
    let stream = &input.stream;

    let whole = run(&mut Decoder::new(role, policy.clone()), stream, || {
        stream.len()
    });
    let bytewise = run(&mut Decoder::new(role, policy.clone()), stream, || 1);
    let mut i = 0;
    let splits = &input.splits;
    let split = run(&mut Decoder::new(role, policy), stream, || {
        i += 1;
        // Every seventh chunk is at least one byte, so zero-length splits end.
        let n = splits
            .get(i % splits.len().max(1))
            .map_or(stream.len(), |&n| usize::from(n));
        n.max(usize::from(i % 7 == 0))
    });

    for other in [&bytewise, &split] {
        assert_eq!(whole.events, other.events);
        assert_eq!(whole.verdict, other.verdict);
        if whole.verdict.is_ok() {
            assert_eq!(whole.consumed, other.consumed);
        }
    }
    // When nothing was refused, all but an unfinished header (< 14 bytes) is consumed.
    if whole.verdict.is_ok() {
        assert!(stream.len() - whole.consumed < 14);
    }
});
