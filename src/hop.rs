//! What crosses the proxy and what stays on one hop, for both legs of every request: the
//! upgrade's backend handshake and the pass-through requests. RFC 9110 §7.6.1: `Connection`
//! and the headers it names describe one hop; wsguard also drops the forwarding headers it
//! sets itself and the identity headers authentication sets, so a client can spoof none of
//! them, and any value holding CR, LF or NUL, which no backend should be handed.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Request headers that describe this hop, not the request, plus those wsguard sets itself.
const NOT_FORWARDED: &[HeaderName] = &[
    header::CONNECTION,
    header::UPGRADE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::CONTENT_LENGTH,
    header::PROXY_AUTHORIZATION,
    header::SEC_WEBSOCKET_EXTENSIONS,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::FORWARDED,
];
const NOT_FORWARDED_NAMES: &[&str] = &[
    "keep-alive",
    "proxy-connection",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
];

/// Response headers that describe the backend's hop: the client's hop gets its own.
const NOT_RETURNED: &[HeaderName] = &[
    header::CONNECTION,
    header::UPGRADE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::PROXY_AUTHENTICATE,
];
const NOT_RETURNED_NAMES: &[&str] = &["keep-alive", "proxy-connection"];

/// The lowercase names a message's `Connection` headers list: hop-by-hop too.
pub fn named_in_connection(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether a value can be handed on: no CR, LF or NUL (RFC 9110 §5.5).
pub fn clean_value(value: &HeaderValue) -> bool {
    !value
        .as_bytes()
        .iter()
        .any(|&b| b == b'\r' || b == b'\n' || b == 0)
}

/// Whether a client's request header goes to the backend; `reserved` are the identity
/// headers authentication sets, `named` what the request's `Connection` lists.
pub fn forwards(
    name: &HeaderName,
    value: &HeaderValue,
    reserved: &[HeaderName],
    named: &[String],
) -> bool {
    let n = name.as_str();
    !(NOT_FORWARDED.contains(name)
        || NOT_FORWARDED_NAMES.contains(&n)
        || reserved.contains(name)
        || named.iter().any(|c| c == n)
        || !clean_value(value))
}

/// Whether a backend's response header goes to the client.
pub fn returns(name: &HeaderName, value: &HeaderValue, named: &[String]) -> bool {
    let n = name.as_str();
    !(NOT_RETURNED.contains(name)
        || NOT_RETURNED_NAMES.contains(&n)
        || named.iter().any(|c| c == n)
        || !clean_value(value))
}

/// `X-Forwarded-For`, `X-Forwarded-Proto` and `Forwarded` (RFC 7239) for a client at `peer`,
/// from what wsguard saw: the `Host` it was asked for is quoted only when it is printable.
pub fn forwarding(peer: SocketAddr, tls: bool, headers: &HeaderMap) -> [(&'static str, String); 3] {
    let ip = peer.ip();
    let proto = if tls { "https" } else { "http" };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        });
    let forwarded_for = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    let forwarded = match host {
        Some(h) => format!("for={forwarded_for};proto={proto};host=\"{h}\""),
        None => format!("for={forwarded_for};proto={proto}"),
    };
    [
        ("x-forwarded-for", ip.to_string()),
        ("x-forwarded-proto", proto.to_owned()),
        ("forwarded", forwarded),
    ]
}
