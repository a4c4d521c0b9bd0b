//! Close frames (RFC 6455 §5.5.1, §7.4): which status codes may travel on the wire,
//! parsing a received close payload, and encoding the proxy's own close frames.

use super::coding::OpCode;
use super::error::Violation;
use super::header::FrameHeader;
use super::mask::apply_mask;

/// A close payload is at most 125 bytes (§5.5): 2 for the code, 123 for the reason.
pub const MAX_CLOSE_REASON: usize = 123;

/// Codes a peer may send (§7.4.1, §7.4.2 and the IANA registry): 1004–1006 and 1015 are
/// reserved or local-only, 1016–2999 unassigned, 3000–4999 for libraries and apps.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Checks an unmasked close payload and returns its code (`None` when empty).
///
/// Order: a 1-byte payload (1002), an invalid code (1002), then a non-UTF-8 reason (1007).
pub fn parse_close(payload: &[u8]) -> Result<Option<u16>, Violation> {
    match payload {
        [] => Ok(None),
        [_] => Err(Violation::CloseLengthOne),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(Violation::InvalidCloseCode { code });
            }
            if simdutf8::basic::from_utf8(reason).is_err() {
                return Err(Violation::InvalidUtf8CloseReason);
            }
            Ok(Some(code))
        }
    }
}

/// Appends one FIN close frame with `code` and `reason`, masked when `mask` is given
/// (toward a backend the proxy is the client and must mask, §5.3).
///
/// The reason is cut at a char boundary to fit 123 bytes. The caller picks a code that
/// may be sent (see [`is_valid_close_code`]); it is not checked here.
pub fn encode_close(code: u16, reason: &str, mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    // Index 0 is always a boundary, so this stops; `str::floor_char_boundary` needs 1.91.
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = reason.get(..end).unwrap_or_default();
    let header = FrameHeader {
        fin: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode: OpCode::Close,
        mask,
        payload_len: 2 + reason.len() as u64,
    };
    header.encode(out);
    let start = out.len();
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_code_table() {
        let valid = [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999];
        let invalid = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX];
        assert!(valid.into_iter().all(is_valid_close_code));
        assert!(!invalid.into_iter().any(is_valid_close_code));
    }

    #[test]
    fn encode_close_round_trips() {
        for mask in [None, Some([0xA1, 0xB2, 0xC3, 0xD4])] {
            let mut out = Vec::new();
            encode_close(1008, "rate limit", mask, &mut out);
            let (h, n) = FrameHeader::parse(&out).unwrap().unwrap();
            assert!(h.fin && h.opcode == OpCode::Close && h.mask == mask);
            let mut payload = out[n..].to_vec();
            assert_eq!(payload.len() as u64, h.payload_len);
            if let Some(key) = h.mask {
                apply_mask(&mut payload, key, 0);
            }
            assert_eq!(parse_close(&payload), Ok(Some(1008)));
            assert_eq!(&payload[2..], b"rate limit");
        }
    }

    #[test]
    fn encode_close_truncates_at_char_boundary() {
        // 61 two-byte chars = 122 bytes, then a 3-byte char that would cross 123.
        let reason = format!("{}€", "é".repeat(61));
        let mut out = Vec::new();
        encode_close(1000, &reason, None, &mut out);
        let (h, n) = FrameHeader::parse(&out).unwrap().unwrap();
        assert_eq!(h.payload_len, 2 + 122);
        assert!(std::str::from_utf8(&out[n + 2..]).is_ok());
        assert!(h.payload_len <= 125);
    }

    #[test]
    fn parse_close_rules() {
        assert_eq!(parse_close(&[]), Ok(None));
        assert_eq!(parse_close(&[3]), Err(Violation::CloseLengthOne));
        assert_eq!(
            parse_close(&[0x03, 0xED]),
            Err(Violation::InvalidCloseCode { code: 1005 })
        );
        assert_eq!(
            parse_close(&[0x03, 0xE8, 0xFF]),
            Err(Violation::InvalidUtf8CloseReason)
        );
    }
}
