//! The proxy's own frames: close (RFC 6455 §5.5.1) and ping (§5.5.2). Everything
//! else the proxy sends is forwarded as it arrived; these are the only frames it
//! builds, all here, with the one header encoder ([`FrameHeader::to_bytes`]),
//! masked when they go to a backend (§5.3). Built on the stack: no allocation.

use super::coding::{OpCode, MAX_CONTROL_PAYLOAD};
use super::header::FrameHeader;
use super::mask::apply_mask;

/// A close payload is at most 125 bytes (§5.5): 2 for the code, 123 for the reason.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD as usize - 2;

/// Control payloads are at most 125 bytes, so the header is 2 bytes plus the key.
const MAX_CONTROL_FRAME: usize = 2 + 4 + MAX_CONTROL_PAYLOAD as usize;

/// One FIN control frame, ready to write.
#[derive(Clone, Copy, Debug)]
pub struct ControlFrame {
    bytes: [u8; MAX_CONTROL_FRAME],
    len: usize,
}

// === impl ControlFrame ===

impl ControlFrame {
    /// A close frame with `code` and `reason`, the reason cut at a char boundary
    /// to fit 123 bytes. The caller picks a code that may be sent (see
    /// [`super::close::is_valid_close_code`]); it is not checked here.
    pub fn close(code: u16, reason: &str, mask: Option<[u8; 4]>) -> Self {
        let mut end = reason.len().min(MAX_CLOSE_REASON);
        // Index 0 is always a boundary, so this stops; `str::floor_char_boundary` needs 1.91.
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let reason = reason.get(..end).unwrap_or_default();
        Self::new(
            OpCode::Close,
            [&code.to_be_bytes(), reason.as_bytes()],
            mask,
        )
    }

    /// The answer to a close frame that carried `code` (`None`: an empty
    /// payload): the code echoed, as RFC 6455 §5.5.1 suggests, with no reason.
    pub fn close_reply(code: Option<u16>, mask: Option<[u8; 4]>) -> Self {
        match code {
            Some(code) => Self::close(code, "", mask),
            None => Self::new(OpCode::Close, [&[], &[]], mask),
        }
    }

    /// A ping carrying `payload`, cut to 125 bytes.
    pub fn ping(payload: &[u8], mask: Option<[u8; 4]>) -> Self {
        Self::new(OpCode::Ping, [payload, &[]], mask)
    }

    /// The frame's wire bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// A frame whose payload is `parts` one after the other, cut to 125 bytes.
    fn new(opcode: OpCode, parts: [&[u8]; 2], mask: Option<[u8; 4]>) -> Self {
        let payload_len = (parts[0].len() + parts[1].len()).min(MAX_CONTROL_PAYLOAD as usize);
        let (head, head_len) = FrameHeader::fin(opcode, mask, payload_len as u64).to_bytes();
        let mut frame = Self {
            bytes: [0; MAX_CONTROL_FRAME],
            len: head_len,
        };
        frame.bytes[..head_len].copy_from_slice(&head[..head_len]);
        let end = head_len + payload_len;
        for part in parts {
            let take = part.len().min(end - frame.len);
            frame.bytes[frame.len..frame.len + take].copy_from_slice(&part[..take]);
            frame.len += take;
        }
        if let Some(key) = mask {
            apply_mask(&mut frame.bytes[head_len..end], key, 0);
        }
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::super::close::parse_close;
    use super::*;

    /// Parses `frame` as the decoder's header parser sees it: (header, unmasked payload).
    fn parse(frame: &ControlFrame) -> (FrameHeader, Vec<u8>) {
        let bytes = frame.as_bytes();
        let (h, n) = FrameHeader::parse(bytes).unwrap().unwrap();
        let mut payload = bytes[n..].to_vec();
        assert_eq!(payload.len() as u64, h.payload_len);
        if let Some(key) = h.mask {
            apply_mask(&mut payload, key, 0);
        }
        (h, payload)
    }

    #[test]
    fn close_round_trips() {
        for mask in [None, Some([0xA1, 0xB2, 0xC3, 0xD4])] {
            let (h, payload) = parse(&ControlFrame::close(1008, "rate limit", mask));
            assert!(h.fin && h.opcode == OpCode::Close && h.mask == mask);
            assert_eq!(parse_close(&payload), Ok(Some(1008)));
            assert_eq!(&payload[2..], b"rate limit");
        }
    }

    #[test]
    fn close_reason_is_cut_at_a_char_boundary() {
        // 61 two-byte chars = 122 bytes, then a 3-byte char that would cross 123.
        let reason = format!("{}€", "é".repeat(61));
        let (h, payload) = parse(&ControlFrame::close(1000, &reason, None));
        assert_eq!(h.payload_len, 2 + 122);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }

    #[test]
    fn close_reply_echoes_the_code_or_nothing() {
        let key = Some([9, 8, 7, 6]);
        let (h, payload) = parse(&ControlFrame::close_reply(Some(4000), key));
        assert!(h.fin && h.opcode == OpCode::Close && h.mask == key);
        assert_eq!(payload, 4000u16.to_be_bytes());
        let (h, payload) = parse(&ControlFrame::close_reply(None, None));
        assert!(h.opcode == OpCode::Close && h.mask.is_none());
        assert!(payload.is_empty());
    }

    #[test]
    fn ping_round_trips_and_is_capped() {
        let key = Some([1, 2, 3, 4]);
        let (h, payload) = parse(&ControlFrame::ping(b"wsguard!", key));
        assert!(h.fin && h.opcode == OpCode::Ping && h.mask == key);
        assert_eq!(payload, b"wsguard!");
        let (h, payload) = parse(&ControlFrame::ping(&[7; 200], None));
        assert_eq!(h.payload_len, MAX_CONTROL_PAYLOAD);
        assert_eq!(payload, [7; 125]);
    }
}
