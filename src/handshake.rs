//! The upgrade request check (RFC 6455 §4.1–§4.2.1): pure, no I/O. Takes the
//! parsed request head and the policy, returns what to ask the backend for or
//! the [`Refusal`] to send. Checks run in a fixed order so one request always
//! gets the same answer.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderName};
use http::request::Parts;
use http::{Method, Version};
use sha1::{Digest, Sha1};

use crate::config::Config;
use crate::deflate::Negotiation;
use crate::origin::OriginRefusal;
use crate::refusal::Refusal;

/// RFC 6455 §1.3: appended to the key before hashing.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// At most this many subprotocols are offered to a backend: a client listing
/// thousands of them gains nothing but makes the backend do the work.
const MAX_SUBPROTOCOLS: usize = 16;

/// An upgrade request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// Index into `Config::routes`.
    pub route: usize,
    /// The `Sec-WebSocket-Accept` value the backend must answer with.
    pub accept: String,
    /// Subprotocols to offer the backend, in the client's order.
    pub protocols: Vec<String>,
    /// Set in `report` mode when the Origin would have been refused.
    pub origin_report: Option<OriginRefusal>,
    /// The permessage-deflate offers to send the backend, if any.
    pub deflate: Option<Negotiation>,
}

/// Checks an upgrade request in the documented order.
pub fn check(req: &Parts, config: &Config) -> Result<Upgrade, Refusal> {
    let h = &req.headers;
    let route = config.route_index(req.uri.path());

    if !has_token(h, header::UPGRADE, "websocket") {
        return Err(if route.is_some() {
            Refusal::NotWebSocket
        } else {
            Refusal::NoRoute
        });
    }
    if req.method != Method::GET {
        return Err(Refusal::BadMethod);
    }
    if req.version != Version::HTTP_11 {
        return Err(Refusal::BadHttpVersion);
    }
    if !has_token(h, header::CONNECTION, "upgrade") {
        return Err(Refusal::NoConnectionUpgrade);
    }
    if h.contains_key(header::TRANSFER_ENCODING)
        || h.get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes() != b"0")
    {
        return Err(Refusal::BodyOnUpgrade);
    }
    match single(h, header::SEC_WEBSOCKET_VERSION) {
        Some(v) if v.trim_ascii() == b"13" => {}
        _ => return Err(Refusal::UnsupportedVersion),
    }
    let key = single(h, header::SEC_WEBSOCKET_KEY).ok_or(Refusal::BadKey)?;
    if !key_is_valid(key) {
        return Err(Refusal::BadKey);
    }
    if single(h, header::HOST).is_none_or(|v| v.is_empty()) {
        return Err(Refusal::BadHost);
    }
    let route = route.ok_or(Refusal::NoRoute)?;

    let values: Vec<&[u8]> = h
        .get_all(header::ORIGIN)
        .iter()
        .take(2)
        .map(|v| v.as_bytes())
        .collect();
    let origin_report = match config.origin.allow.check(&values) {
        Ok(()) => None,
        Err(refusal) if config.origin.mode == crate::config::OriginMode::Report => Some(refusal),
        Err(refusal) => return Err(Refusal::Origin(refusal)),
    };

    let allowed = &config.routes[route].subprotocols;
    let protocols = offered_protocols(h)
        .filter(|p| allowed.is_empty() || allowed.iter().any(|a| a == p))
        .take(MAX_SUBPROTOCOLS)
        .map(str::to_owned)
        .collect();
    // Malformed offers and other extensions are declined, never refused.
    let deflate = config
        .deflate
        .policy(config.routes[route].deflate)
        .and_then(|p| {
            let offered = h.get_all(header::SEC_WEBSOCKET_EXTENSIONS).iter();
            p.negotiation(offered.map(|v| v.as_bytes()))
        });

    Ok(Upgrade {
        route,
        accept: accept_key(key),
        protocols,
        origin_report,
        deflate,
    })
}

/// `Sec-WebSocket-Accept` for a client key (RFC 6455 §4.2.2 step 5.4).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(ACCEPT_GUID);
    BASE64.encode(sha.finalize())
}

/// The subprotocol tokens a client offered, in order; entries that are not
/// RFC 9110 tokens are dropped rather than forwarded.
pub fn offered_protocols(h: &HeaderMap) -> impl Iterator<Item = &str> {
    h.get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| is_token(t))
}

/// The most of a declined offer a log line shows, in bytes.
const MAX_DECLINED_SHOWN: usize = 200;

/// For the log: the client's subprotocol offer when a route that lists `allowed`
/// subprotocols let none of it through, so the backend is offered none. In the client's
/// order, at most [`MAX_SUBPROTOCOLS`] entries and [`MAX_DECLINED_SHOWN`] bytes; values
/// starting with `token_prefix` are credentials and left out. `None` when something was
/// let through or nothing else was offered.
pub fn declined_offer(
    h: &HeaderMap,
    allowed: &[String],
    token_prefix: Option<&str>,
) -> Option<String> {
    if allowed.is_empty() || offered_protocols(h).any(|p| allowed.iter().any(|a| a == p)) {
        return None;
    }
    let shown: Vec<&str> = offered_protocols(h)
        .filter(|p| token_prefix.is_none_or(|t| !p.starts_with(t)))
        .take(MAX_SUBPROTOCOLS)
        .collect();
    if shown.is_empty() {
        return None;
    }
    let mut shown = shown.join(", ");
    // Tokens are ASCII: any byte is a character boundary.
    shown.truncate(MAX_DECLINED_SHOWN);
    Some(shown)
}

fn key_is_valid(key: &[u8]) -> bool {
    // 16 bytes encode to exactly 24 base64 characters with "==" padding.
    key.len() == 24 && BASE64.decode(key).is_ok_and(|k| k.len() == 16)
}

/// The value of a header that must appear exactly once.
fn single(h: &HeaderMap, name: HeaderName) -> Option<&[u8]> {
    let mut all = h.get_all(name).iter();
    match (all.next(), all.next()) {
        (Some(v), None) => Some(v.as_bytes()),
        _ => None,
    }
}

/// Whether a comma-separated header (any of its lines) holds `token`,
/// compared case-insensitively (RFC 9110 §5.6.1, §7.6.1).
pub fn has_token(h: &HeaderMap, name: HeaderName, token: &str) -> bool {
    h.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// RFC 9110 §5.6.2 token.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests;
