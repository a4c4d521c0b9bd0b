//! Received close frames (RFC 6455 §5.5.1, §7.4): which status codes may travel
//! on the wire, and checking a close payload.

use super::error::Violation;

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
