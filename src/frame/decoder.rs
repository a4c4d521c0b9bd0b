//! The sans-I/O decoder for one direction of a relayed connection (RFC 6455 §5,
//! <https://www.rfc-editor.org/rfc/rfc6455#section-5>): bytes in, events or a
//! [`Violation`] out. It never copies or changes the payload it forwards. It sits on
//! top of the codec: header parsing, the rules, masking, UTF-8 and close payloads,
//! and, when permessage-deflate was negotiated, the inflate that lets the size
//! caps and UTF-8 run on what a compressed message means (RFC 7692).

#[cfg(test)]
mod tests;

use super::close;
use super::coding::{OpCode, MAX_CONTROL_PAYLOAD};
use super::error::Violation;
use super::header::FrameHeader;
use super::mask::apply_mask;
use super::rules::{self, FramePolicy, Role, RuleState};
use super::utf8::Utf8Validator;
use crate::deflate::Inflater;

/// Bytes of masked text unmasked per step for UTF-8 checking. Larger steps
/// mean fewer validator calls: 4 KiB checks a 16 KiB text message ~1.5× faster
/// than 256 B (`cargo bench --bench frame -- decode/text`).
const SCRATCH_LEN: usize = 4096;

thread_local! {
    /// Unmasking space, one per thread: zeroed once, not per call (a fresh
    /// 4 KiB stack array per call made 128-byte text 2× slower), and not
    /// part of any connection's state.
    static SCRATCH: std::cell::RefCell<[u8; SCRATCH_LEN]> =
        const { std::cell::RefCell::new([0; SCRATCH_LEN]) };
}

/// What a completed frame means to the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A data frame (text/binary/continuation) ended; `fin` ends the message.
    DataEnd { opcode: OpCode, fin: bool },
    /// Payload in [`Decoder::control_payload`].
    Ping,
    /// Payload in [`Decoder::control_payload`].
    Pong,
    /// `code` is `None` for an empty payload; the reason (valid UTF-8) is
    /// `control_payload()[2..]`.
    Close { code: Option<u16> },
}

/// The frame whose payload is being consumed.
#[derive(Clone, Copy, Debug)]
struct Frame {
    opcode: OpCode,
    fin: bool,
    mask: Option<[u8; 4]>,
    len: u64,
    done: u64,
    /// What the payload rules read of it.
    payload: Payload,
}

/// How a data frame's payload is inspected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Payload {
    /// Only its length counts (binary, or a control frame's own rules).
    Opaque,
    /// UTF-8 checked as it arrives.
    Text,
    /// Compressed: inflated, the inflated bytes counted against the caps and,
    /// for text, UTF-8 checked.
    Inflate { text: bool },
}

/// permessage-deflate on this direction.
#[derive(Debug)]
struct Deflate {
    /// `None`: compressed frames pass without being inflated
    /// (`inspect_backend = false`); their caps apply to the wire size.
    inflater: Option<Inflater>,
    frame_out: u64,
    message_out: u64,
    /// Inflated size of the last compressed frame that ended.
    last_frame_out: Option<u64>,
}

/// Decoder for one direction of one connection. Holds no heap memory, but
/// for a decompressor while a compressed message is open (or, with context
/// takeover, once one was seen).
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    policy: FramePolicy,
    rules: RuleState,
    frame: Option<Frame>,
    utf8: Utf8Validator,
    control: [u8; MAX_CONTROL_PAYLOAD as usize],
    control_len: u8,
    /// Boxed: most connections never negotiate it, and every one pays for
    /// the decoder's inline size.
    deflate: Option<Box<Deflate>>,
    failed: Option<Violation>,
}

// === impl Decoder ===

impl Decoder {
    pub fn new(role: Role, policy: FramePolicy) -> Self {
        Self {
            role,
            policy,
            rules: RuleState::default(),
            frame: None,
            utf8: Utf8Validator::new(),
            control: [0; MAX_CONTROL_PAYLOAD as usize],
            control_len: 0,
            deflate: None,
            failed: None,
        }
    }

    /// permessage-deflate was negotiated for this direction: RSV1 may start a
    /// message. With an inflater, compressed messages are inflated to be
    /// inspected; without, they pass as opaque bytes.
    pub fn with_deflate(mut self, inflater: Option<Inflater>) -> Self {
        self.rules.allow_rsv1();
        self.deflate = Some(Box::new(Deflate {
            inflater,
            frame_out: 0,
            message_out: 0,
            last_frame_out: None,
        }));
        self
    }

    /// The inflated payload size of the frame that just ended, if it was
    /// compressed and inflated.
    pub fn inflated_len(&self) -> Option<u64> {
        self.deflate.as_ref().and_then(|d| d.last_frame_out)
    }

    /// Consumes a prefix of `input` and reports at most one event: `(consumed, event)`.
    ///
    /// - A header is consumed only when complete; a short header gives `(0, None)`.
    /// - Payload is consumed as far as present and never modified; text, close, ping
    ///   and pong payloads are unmasked into scratch space to be checked.
    /// - When the consumed bytes end a frame, its event is returned with them; a call
    ///   never goes past the end of a frame.
    ///
    /// Header rules fire once the header is whole, before any payload; UTF-8 fails at
    /// the first impossible byte; close code and reason are checked at the frame end.
    /// After a violation the decoder is dead: the connection must be closed, and every
    /// later call returns the same violation.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), Violation> {
        if let Some(v) = self.failed {
            return Err(v);
        }
        let result = self.feed_inner(input);
        if let Err(v) = result {
            self.failed = Some(v);
        }
        result
    }

    /// True when no frame is partially consumed.
    pub fn at_frame_boundary(&self) -> bool {
        self.frame.is_none()
    }

    /// True from the header of a data message's first frame to the end of its FIN
    /// frame; at a frame boundary this means a fragmented message is open.
    pub fn in_message(&self) -> bool {
        self.rules.message().is_some()
    }

    /// Unmasked payload of the last ping, pong or close frame (at most 125 bytes).
    pub fn control_payload(&self) -> &[u8] {
        &self.control[..usize::from(self.control_len)]
    }

    fn feed_inner(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), Violation> {
        let (mut frame, mut used) = match self.frame.take() {
            Some(frame) => (frame, 0),
            None => match FrameHeader::parse(input)? {
                Some((h, n)) => (self.start_frame(&h)?, n),
                None => return Ok((0, None)),
            },
        };
        let available = input.get(used..).unwrap_or_default();
        // Bounded by `available.len()`, so the cast back to usize is exact.
        let take = (frame.len - frame.done).min(available.len() as u64) as usize;
        let chunk = &available[..take];
        self.inspect(&frame, chunk)?;
        frame.done += take as u64;
        used += take;
        if frame.done < frame.len {
            self.frame = Some(frame);
            return Ok((used, None));
        }
        Ok((used, Some(self.end_frame(&frame)?)))
    }

    fn start_frame(&mut self, h: &FrameHeader) -> Result<Frame, Violation> {
        rules::check_header(self.role, &self.policy, &mut self.rules, h)?;
        if h.opcode == OpCode::Text {
            self.utf8 = Utf8Validator::new();
        }
        if let Some(d) = self.deflate.as_deref_mut() {
            d.last_frame_out = None;
        }
        let payload = if h.opcode.is_control() {
            self.control_len = 0;
            Payload::Opaque
        } else {
            let text = self.rules.message() == Some(OpCode::Text);
            match &mut self.deflate {
                Some(d) if self.rules.compressed() => {
                    d.frame_out = 0;
                    if h.opcode != OpCode::Continue {
                        d.message_out = 0;
                    }
                    match d.inflater {
                        Some(_) => Payload::Inflate { text },
                        None => Payload::Opaque,
                    }
                }
                _ if text => Payload::Text,
                _ => Payload::Opaque,
            }
        };
        Ok(Frame {
            opcode: h.opcode,
            fin: h.fin,
            mask: h.mask,
            len: h.payload_len,
            done: 0,
            payload,
        })
    }

    /// Runs the payload rules over the next `chunk` of `frame`'s payload.
    fn inspect(&mut self, frame: &Frame, chunk: &[u8]) -> Result<(), Violation> {
        // Only the key phase matters for masking, so `done % 4` is all we need.
        let phase = (frame.done % 4) as usize;
        if frame.opcode.is_control() {
            // The header check capped control payloads at 125 bytes.
            let start = usize::from(self.control_len);
            let end = start + chunk.len();
            let dst = self
                .control
                .get_mut(start..end)
                .ok_or(Violation::ControlFrameTooLong { len: frame.len })?;
            dst.copy_from_slice(chunk);
            if let Some(key) = frame.mask {
                apply_mask(dst, key, phase);
            }
            self.control_len = end as u8;
        } else if frame.payload != Payload::Opaque {
            match frame.mask {
                None => self.read_payload(frame.payload, chunk)?,
                Some(key) => SCRATCH.with_borrow_mut(|scratch| {
                    for (i, part) in chunk.chunks(SCRATCH_LEN).enumerate() {
                        let buf = &mut scratch[..part.len()];
                        buf.copy_from_slice(part);
                        apply_mask(buf, key, phase + i * SCRATCH_LEN);
                        self.read_payload(frame.payload, buf)?;
                    }
                    Ok::<(), Violation>(())
                })?,
            }
        }
        Ok(())
    }

    /// Checks unmasked payload bytes: as text, or inflated.
    fn read_payload(&mut self, payload: Payload, bytes: &[u8]) -> Result<(), Violation> {
        match payload {
            Payload::Inflate { text } => self.inflate(text, Some(bytes)),
            _ => push_text(&mut self.utf8, bytes),
        }
    }

    /// Inflates the next compressed `bytes` of the open message, or with
    /// `None` ends it (what the data held back, then the decompressor is
    /// freed, or kept with context takeover). Every inflated chunk meets the
    /// caps, and UTF-8 for text.
    fn inflate(&mut self, text: bool, bytes: Option<&[u8]>) -> Result<(), Violation> {
        let (policy, utf8) = (&self.policy, &mut self.utf8);
        let Some(Deflate {
            inflater: Some(inflater),
            frame_out,
            message_out,
            ..
        }) = self.deflate.as_deref_mut()
        else {
            return Ok(());
        };
        let mut sink = |out: &[u8]| {
            count_inflated(policy, frame_out, message_out, out.len())?;
            if text {
                push_text(utf8, out)?;
            }
            Ok::<(), Violation>(())
        };
        match bytes {
            Some(bytes) => inflater.push(bytes, &mut sink),
            None => inflater.finish(&mut sink),
        }
    }

    fn end_frame(&mut self, frame: &Frame) -> Result<Event, Violation> {
        Ok(match frame.opcode {
            OpCode::Ping => Event::Ping,
            OpCode::Pong => Event::Pong,
            OpCode::Close => Event::Close {
                code: close::parse_close(self.control_payload())?,
            },
            opcode => {
                if let (Payload::Inflate { text }, true) = (frame.payload, frame.fin) {
                    self.inflate(text, None)?;
                }
                if let Some(d) = &mut self.deflate {
                    if let Payload::Inflate { .. } = frame.payload {
                        d.last_frame_out = Some(d.frame_out);
                    }
                }
                let text = matches!(
                    frame.payload,
                    Payload::Text | Payload::Inflate { text: true }
                );
                if text && frame.fin {
                    self.utf8
                        .finish()
                        .map_err(|_| Violation::TruncatedUtf8Text)?;
                }
                self.rules.end_data_frame(frame.fin);
                Event::DataEnd {
                    opcode,
                    fin: frame.fin,
                }
            }
        })
    }
}

fn push_text(utf8: &mut Utf8Validator, bytes: &[u8]) -> Result<(), Violation> {
    utf8.push(bytes).map_err(|_| Violation::InvalidUtf8Text)
}

/// Counts `n` more inflated bytes of the frame and the message against the
/// caps (RFC 7692 leaves them to the receiver): 1009 the moment either is
/// passed, mid-frame included.
fn count_inflated(
    policy: &FramePolicy,
    frame_out: &mut u64,
    message_out: &mut u64,
    n: usize,
) -> Result<(), Violation> {
    *frame_out = frame_out.saturating_add(n as u64);
    *message_out = message_out.saturating_add(n as u64);
    if let Some(max) = policy.max_frame_size.filter(|&m| *frame_out > m) {
        return Err(Violation::InflatedFrameTooLarge {
            len: *frame_out,
            max,
        });
    }
    if let Some(max) = policy.max_message_size.filter(|&m| *message_out > m) {
        return Err(Violation::InflatedMessageTooLarge {
            size: *message_out,
            max,
        });
    }
    Ok(())
}
