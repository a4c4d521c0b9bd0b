//! permessage-deflate negotiation (RFC 7692 §5, §7.1) for the demo's
//! backends (the chat backend and both `wsguard-echo` modes): the client's
//! offers, parsed strictly, and the response each backend answers with.
//! yawc's own server negotiation reads a single offer and ignores unknown
//! parameters, so the backends pick the offer themselves. Written apart from
//! wsguard's own negotiation on purpose: a backend that shared the proxy's
//! parser would share its mistakes.

use std::fmt;

use http::header::{HeaderMap, SEC_WEBSOCKET_EXTENSIONS};

const NAME: &str = "permessage-deflate";

/// One well-formed permessage-deflate offer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offer {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value (the client merely supports it).
    pub client_max_window_bits: Option<Option<u8>>,
}

/// The accepted offer's parameters as sent back in `Sec-WebSocket-Extensions`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Response {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: Option<u8>,
    pub client_max_window_bits: Option<u8>,
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(NAME)?;
        if self.server_no_context_takeover {
            f.write_str("; server_no_context_takeover")?;
        }
        if self.client_no_context_takeover {
            f.write_str("; client_no_context_takeover")?;
        }
        if let Some(bits) = self.server_max_window_bits {
            write!(f, "; server_max_window_bits={bits}")?;
        }
        if let Some(bits) = self.client_max_window_bits {
            write!(f, "; client_max_window_bits={bits}")?;
        }
        Ok(())
    }
}

/// The well-formed permessage-deflate offers in `values` (every
/// `Sec-WebSocket-Extensions` header, in order), in the client's order of
/// preference. Other extensions and malformed offers are left out: a server
/// declines what it cannot read rather than failing the handshake.
pub fn offers<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Vec<Offer> {
    values
        .into_iter()
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .filter_map(parse_offer)
        .collect()
}

/// A correct server's answer: the first offer, each parameter honoured as
/// asked. It compresses with the window the client allows and inflates with the
/// largest, so `client_max_window_bits` needs no answer. An 8-bit server window
/// is accepted too: zlib cannot compress with one and uses 9 bits (yawc raises
/// 8 to 9), but zlib never matches farther back than 250 bytes with 9 bits, so
/// the stream fits the 256-byte window the client inflates with.
pub fn strict_response(offers: &[Offer]) -> Option<Response> {
    offers.first().map(|o| Response {
        server_no_context_takeover: o.server_no_context_takeover,
        client_no_context_takeover: o.client_no_context_takeover,
        server_max_window_bits: o.server_max_window_bits,
        client_max_window_bits: None,
    })
}

/// The chat backend's answer to the offers in `headers` (the strict one), as
/// the `Sec-WebSocket-Extensions` value; `None` declines them all.
pub fn agree(headers: &HeaderMap) -> Option<String> {
    let values = headers.get_all(SEC_WEBSOCKET_EXTENSIONS).iter();
    strict_response(&offers(values.map(|v| v.as_bytes()))).map(|r| r.to_string())
}

/// The answer of a server that echoes the client's compressed frames verbatim:
/// the first offer under which that echo inflates at the client. The client
/// must compress with a window no larger than the one it inflates our frames
/// with, and must not carry context between messages if its inflater may drop
/// it (`server_no_context_takeover`).
pub fn lenient_response(offers: &[Offer]) -> Option<Response> {
    offers.iter().find_map(|o| {
        let server_bits = o.server_max_window_bits.unwrap_or(15);
        let client_max_window_bits = match o.client_max_window_bits {
            // The client may compress with 15 bits: only a 15-bit window inflates that.
            None if server_bits < 15 => return None,
            None => None,
            // §7.1.2.2: the answer may only lower the client's own hint.
            Some(hint) => Some(hint.map_or(server_bits, |h| h.min(server_bits))),
        };
        Some(Response {
            server_no_context_takeover: o.server_no_context_takeover,
            client_no_context_takeover: o.server_no_context_takeover,
            server_max_window_bits: o.server_max_window_bits,
            client_max_window_bits,
        })
    })
}

/// One extension from the list; `None` unless it is a well-formed
/// permessage-deflate offer: no unknown or repeated parameter, no value on a
/// flag, window bits a plain decimal 8..=15 (a quoted value counts as its
/// content, RFC 6455 §9.1).
fn parse_offer(extension: &str) -> Option<Offer> {
    let mut parts = extension.split(';');
    if !parts.next()?.trim().eq_ignore_ascii_case(NAME) {
        return None;
    }
    let mut offer = Offer::default();
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim())?)),
            None => (param.trim(), None),
        };
        let (flag, repeated) = match name {
            "server_no_context_takeover" => {
                let seen = std::mem::replace(&mut offer.server_no_context_takeover, true);
                (true, seen)
            }
            "client_no_context_takeover" => {
                let seen = std::mem::replace(&mut offer.client_no_context_takeover, true);
                (true, seen)
            }
            "server_max_window_bits" => {
                let bits = window_bits(value?)?;
                (false, offer.server_max_window_bits.replace(bits).is_some())
            }
            "client_max_window_bits" => {
                let bits = value.map(window_bits).map_or(Some(None), |b| b.map(Some))?;
                (false, offer.client_max_window_bits.replace(bits).is_some())
            }
            _ => return None,
        };
        if repeated || (flag && value.is_some()) {
            return None;
        }
    }
    Some(offer)
}

fn unquote(v: &str) -> Option<&str> {
    match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"'),
        None => Some(v),
    }
}

/// 8..=15 written without sign or leading zero (RFC 7692 §7.1.2.1).
fn window_bits(v: &str) -> Option<u8> {
    if v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|b| (8..=15).contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Vec<Offer> {
        offers([v.as_bytes()])
    }

    #[test]
    fn parses_every_parameter() {
        let o = parse(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits",
        );
        assert_eq!(
            o,
            [Offer {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: Some(10),
                client_max_window_bits: Some(None),
            }]
        );
        assert_eq!(
            parse("x-foo, PerMessage-Deflate ; client_max_window_bits = \"9\"")[0]
                .client_max_window_bits,
            Some(Some(9))
        );
    }

    #[test]
    fn declines_malformed_offers_and_keeps_the_rest() {
        for bad in [
            "permessage-deflate; foo",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits=9; client_max_window_bits",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=09",
            "permessage-deflate; client_max_window_bits=+9",
            "permessage-deflate; client_max_window_bits=\"9",
            "permessage-deflate; client_no_context_takeover=1",
            "permessage-deflate;",
        ] {
            assert_eq!(parse(bad), [], "{bad}");
        }
        let two = parse("permessage-deflate; foo, permessage-deflate; server_max_window_bits=8");
        assert_eq!(two.len(), 1);
        assert_eq!(two[0].server_max_window_bits, Some(8));
        // Offers from several headers keep their order.
        let o = offers([
            &b"permessage-deflate"[..],
            b"permessage-deflate; server_no_context_takeover",
        ]);
        assert!(!o[0].server_no_context_takeover && o[1].server_no_context_takeover);
    }

    #[test]
    fn strict_answers_the_first_offer_as_asked() {
        let o = parse(
            "permessage-deflate; server_max_window_bits=8; server_no_context_takeover; \
             client_max_window_bits=9, permessage-deflate",
        );
        let r = strict_response(&o).unwrap();
        assert_eq!(
            r.to_string(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=8"
        );
        assert_eq!(strict_response(&[]), None);
    }

    #[test]
    fn lenient_answers_so_a_verbatim_echo_inflates() {
        let r = |v: &str| lenient_response(&parse(v)).map(|r| r.to_string());
        // A smaller server window without client_max_window_bits cannot work: skipped.
        assert_eq!(
            r("permessage-deflate; server_max_window_bits=10, permessage-deflate").as_deref(),
            Some("permessage-deflate")
        );
        assert_eq!(r("permessage-deflate; server_max_window_bits=10"), None);
        assert_eq!(
            r("permessage-deflate; server_max_window_bits=10; client_max_window_bits").as_deref(),
            Some("permessage-deflate; server_max_window_bits=10; client_max_window_bits=10")
        );
        // Never above the client's own hint.
        assert_eq!(
            r("permessage-deflate; server_max_window_bits=12; client_max_window_bits=9").as_deref(),
            Some("permessage-deflate; server_max_window_bits=12; client_max_window_bits=9")
        );
        assert_eq!(
            r("permessage-deflate; client_max_window_bits").as_deref(),
            Some("permessage-deflate; client_max_window_bits=15")
        );
        assert_eq!(
            r("permessage-deflate; server_no_context_takeover").as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
    }
}
