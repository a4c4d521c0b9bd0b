//! permessage-deflate (RFC 7692) on the load generator's side: the offer,
//! checking the server's answer, payloads built from pre-compressed bodies,
//! and inflating echoes to check them.

use flate2::{Decompress, FlushDecompress};

use crate::ws::TAG_LEN;

/// No context takeover either way: what a browser ends up with through
/// wsguard's defaults, offered directly so the blind proxies' backend
/// settles on the same.
pub const OFFER: &str =
    "permessage-deflate; client_no_context_takeover; server_no_context_takeover";

/// The tail a sender strips and a receiver appends (RFC 7692 section 7.2.1).
const TAIL: [u8; 4] = [0, 0, 0xFF, 0xFF];

/// Whether the server's `Sec-WebSocket-Extensions` value (if any) accepted
/// `OFFER`; an answer we did not offer, or one that keeps the server's
/// context (each echo is inflated on its own), is an error.
pub fn accepted(value: Option<&str>) -> Result<bool, String> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(false);
    };
    let mut params = value.split(';').map(str::trim);
    if params.next() != Some("permessage-deflate") || value.contains(',') {
        return Err(format!("extensions answered with {value:?}"));
    }
    let mut server_reset = false;
    for p in params {
        let (name, arg) = p.split_once('=').map_or((p, None), |(n, a)| {
            (n.trim(), Some(a.trim().trim_matches('"')))
        });
        match (name, arg) {
            ("server_no_context_takeover", None) => server_reset = true,
            ("client_no_context_takeover", None) => {}
            // Echoes are inflated with a 32 KiB window, which reads any smaller one.
            ("server_max_window_bits", Some(bits))
                if bits.parse::<u8>().is_ok_and(|b| (8..=15).contains(&b)) => {}
            _ => return Err(format!("permessage-deflate answered with {value:?}")),
        }
    }
    if !server_reset {
        return Err(format!("{value:?} lacks server_no_context_takeover"));
    }
    Ok(true)
}

/// The start of a compressed payload: a stored (uncompressed) DEFLATE block
/// holding the tag, so the body can be compressed once for the whole run.
pub fn stored_tag(tag: &[u8; TAG_LEN]) -> [u8; 5 + TAG_LEN] {
    let len = TAG_LEN as u16;
    let mut out = [0u8; 5 + TAG_LEN];
    // BFINAL 0, BTYPE 00 (stored), padded to the byte; LEN and its complement.
    out[1..3].copy_from_slice(&len.to_le_bytes());
    out[3..5].copy_from_slice(&(!len).to_le_bytes());
    out[5..].copy_from_slice(tag);
    out
}

/// One decompressor per connection, reset for every message.
pub struct Inflater {
    d: Decompress,
    input: Vec<u8>,
    output: Vec<u8>,
}

impl Inflater {
    pub fn new() -> Inflater {
        Inflater {
            d: Decompress::new_with_window_bits(false, 15),
            input: Vec::new(),
            output: Vec::new(),
        }
    }

    /// The message `payload` inflates to, if it is at most `limit` bytes.
    pub fn message(&mut self, payload: &[u8], limit: usize) -> Result<&[u8], String> {
        self.d.reset(false);
        self.input.clear();
        self.input.extend_from_slice(payload);
        self.input.extend_from_slice(&TAIL);
        self.output.clear();
        self.output.reserve(limit + 1);
        self.d
            .decompress_vec(&self.input, &mut self.output, FlushDecompress::Sync)
            .map_err(|e| format!("echo does not inflate: {e}"))?;
        if self.d.total_in() < self.input.len() as u64 || self.output.len() > limit {
            return Err(format!("echo inflates to more than {limit} bytes"));
        }
        Ok(&self.output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat;

    #[test]
    fn stored_tag_then_precompressed_body_inflates_to_both() {
        let tag = *b"0123456789abcdef";
        let body = chat::message(3, 1008);
        let mut payload = stored_tag(&tag).to_vec();
        payload.extend_from_slice(&chat::deflate(&mut chat::compressor(), &body));
        assert!(payload.len() < body.len() / 2, "{} bytes", payload.len());
        let mut inf = Inflater::new();
        let plain = inf.message(&payload, 1024).unwrap().to_vec();
        assert_eq!(&plain[..TAG_LEN], &tag);
        assert_eq!(&plain[TAG_LEN..], &body[..]);
        // Reset between messages: the same payload inflates again.
        assert_eq!(inf.message(&payload, 1024).unwrap(), &plain[..]);
        assert!(inf.message(&payload, 1023).is_err());
        assert!(inf.message(&[0xFF; 8], 1024).is_err());
    }

    #[test]
    fn answers() {
        assert_eq!(accepted(None), Ok(false));
        assert_eq!(
            accepted(Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
            )),
            Ok(true)
        );
        assert_eq!(
            accepted(Some(
                "permessage-deflate;server_no_context_takeover;server_max_window_bits=10"
            )),
            Ok(true)
        );
        for bad in [
            "permessage-deflate",
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=16",
            "x-webkit-deflate-frame",
            "permessage-deflate; server_no_context_takeover, permessage-deflate",
        ] {
            assert!(accepted(Some(bad)).is_err(), "{bad}");
        }
    }
}
