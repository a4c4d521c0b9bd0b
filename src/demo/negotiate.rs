//! The chat backend's side of permessage-deflate negotiation (RFC 7692 §5, §7.1).
//!
//! yawc's own server negotiation reads a single offer and ignores unknown
//! parameters, so the backend picks the offer itself and hands yawc the
//! agreed response. Policy: accept the first valid offer as the client asked,
//! never ask for more than that (so no `client_max_window_bits` in the answer:
//! the backend inflates with a full window, which reads any smaller one).

use http::header::{HeaderMap, SEC_WEBSOCKET_EXTENSIONS};

const NAME: &str = "permessage-deflate";

/// The `Sec-WebSocket-Extensions` response value for the first acceptable
/// permessage-deflate offer in `headers`, or None to decline them all.
pub fn agree(headers: &HeaderMap) -> Option<String> {
    // A value that is not text cannot be split into offers; it offers nothing.
    headers
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(answer)
}

/// What the client asked for in one offer.
#[derive(Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: bool,
}

/// The answer to one offer, or None if it is not permessage-deflate, is
/// malformed (RFC 7692 §5: unknown or repeated parameter, bad value), or asks
/// for an 8-bit server window, which zlib cannot produce.
fn answer(offer: &str) -> Option<String> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(NAME) {
        return None;
    }
    let mut o = Offer::default();
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim_end(), Some(unquote(v.trim_start())?)),
            None => (param, None),
        };
        match (name, value) {
            ("server_no_context_takeover", None) if !o.server_no_context_takeover => {
                o.server_no_context_takeover = true;
            }
            ("client_no_context_takeover", None) if !o.client_no_context_takeover => {
                o.client_no_context_takeover = true;
            }
            ("server_max_window_bits", Some(v)) if o.server_max_window_bits.is_none() => {
                o.server_max_window_bits = Some(window_bits(v)?);
            }
            ("client_max_window_bits", v) if !o.client_max_window_bits => {
                if let Some(v) = v {
                    window_bits(v)?;
                }
                o.client_max_window_bits = true;
            }
            _ => return None,
        }
    }
    if o.server_max_window_bits == Some(8) {
        return None;
    }
    let mut out = NAME.to_owned();
    // §7.1.1.1: accepting an offer with server_no_context_takeover means echoing it.
    if o.server_no_context_takeover {
        out.push_str("; server_no_context_takeover");
    }
    if o.client_no_context_takeover {
        out.push_str("; client_no_context_takeover");
    }
    // §7.1.2.1: the answer may not name a larger server window than was offered.
    if let Some(bits) = o.server_max_window_bits {
        out.push_str(&format!("; server_max_window_bits={bits}"));
    }
    Some(out)
}

/// A parameter value with the optional quotes of RFC 7692 §7.1 removed.
fn unquote(v: &str) -> Option<&str> {
    match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"'),
        None => Some(v),
    }
}

/// §7.1.2: a decimal 8..=15 without leading zeroes.
fn window_bits(v: &str) -> Option<u8> {
    if v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|b| (8..=15).contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn agree_to(values: &[&str]) -> Option<String> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_str(v).unwrap());
        }
        agree(&h)
    }

    #[test]
    fn chromium_offer_is_accepted_without_narrowing_its_window() {
        assert_eq!(
            agree_to(&["permessage-deflate; client_max_window_bits"]).as_deref(),
            Some("permessage-deflate")
        );
    }

    #[test]
    fn context_takeover_and_server_window_are_echoed() {
        assert_eq!(
            agree_to(&[
                "permessage-deflate; client_max_window_bits=10; server_no_context_takeover; \
                 client_no_context_takeover; server_max_window_bits=\"12\""
            ])
            .as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=12"
            )
        );
    }

    #[test]
    fn malformed_offers_are_declined_and_the_next_one_taken() {
        for bad in [
            "permessage-deflate; foo",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=\"9",
            "permessage-deflate; client_max_window_bits; client_max_window_bits",
            // A valid offer the backend cannot honour: zlib has no 256-byte window.
            "permessage-deflate; server_max_window_bits=8",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(agree_to(&[bad]), None, "{bad}");
            assert_eq!(
                agree_to(&[bad, "permessage-deflate; server_max_window_bits=9"]).as_deref(),
                Some("permessage-deflate; server_max_window_bits=9"),
                "{bad}"
            );
        }
    }

    #[test]
    fn offers_split_on_commas_and_the_first_valid_one_wins() {
        assert_eq!(
            agree_to(&["foo, PerMessage-Deflate ;client_no_context_takeover, permessage-deflate"])
                .as_deref(),
            Some("permessage-deflate; client_no_context_takeover")
        );
        assert_eq!(agree_to(&[]), None);
    }
}
