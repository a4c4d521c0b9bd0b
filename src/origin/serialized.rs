//! One serialized origin (RFC 6454 §6.2, `scheme://host[:port]`): splitting it into its parts
//! and normalizing the host the way a browser does, so that every spelling of one origin
//! compares equal.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use idna::AsciiDenyList;

use super::refusal::MAX_ORIGIN_LEN;

/// DNS limits (RFC 1035 §2.3.4); a host beyond them cannot be where a page was loaded from.
const MAX_HOST_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

// === impl Scheme ===

/// Only the schemes a browser puts in `Origin` for a page that can open a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// Writes `scheme://host[:port]`, leaving out the default port as RFC 6454 §6.2 does.
pub(super) fn write_origin(
    f: &mut fmt::Formatter<'_>,
    scheme: Scheme,
    host: &str,
    port: u16,
) -> fmt::Result {
    write!(f, "{}://{}", scheme.as_str(), host)?;
    if port != scheme.default_port() {
        write!(f, ":{port}")?;
    }
    Ok(())
}

// === impl Origin ===

/// A normalized tuple origin. The port is always explicit, so `https://a.com` and
/// `https://a.com:443` are the same value; the host is lower-case ASCII (punycode for IDN).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Origin {
    pub(super) scheme: Scheme,
    pub(super) host: String,
    pub(super) port: u16,
}

impl Origin {
    /// Parses a serialized origin: an `Origin` header value (already known to be printable
    /// ASCII) or an exact allow-list entry. Error texts are written for config authors; the
    /// header path only counts them.
    pub(super) fn parse(input: &str) -> Result<Origin, &'static str> {
        split_origin(input)?.into_origin()
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_origin(f, self.scheme, &self.host, self.port)
    }
}

// === splitting and normalizing ===

/// The pieces of `scheme://host[:port]`, host not yet normalized (may hold `*` or Unicode).
pub(super) struct Parts<'a> {
    pub(super) scheme: Scheme,
    pub(super) host: &'a str,
    pub(super) port: u16,
}

impl Parts<'_> {
    /// The origin these parts spell, its host normalized.
    pub(super) fn into_origin(self) -> Result<Origin, &'static str> {
        let (host, _) = normalize_host(self.host)?;
        Ok(Origin {
            scheme: self.scheme,
            host,
            port: self.port,
        })
    }
}

/// Splits an origin into scheme, raw host and port, refusing everything a serialized origin
/// cannot contain.
pub(super) fn split_origin(input: &str) -> Result<Parts<'_>, &'static str> {
    if input.len() > MAX_ORIGIN_LEN {
        return Err("longer than 2048 bytes; an origin is only scheme://host[:port]");
    }
    if input.is_empty() {
        return Err("empty; write an origin such as https://chat.example.com");
    }
    if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters; remove them");
    }
    let Some((scheme, rest)) = input.split_once("://") else {
        return Err("not an origin; write scheme://host[:port], as in https://chat.example.com");
    };
    let scheme = if scheme.eq_ignore_ascii_case("https") {
        Scheme::Https
    } else if scheme.eq_ignore_ascii_case("http") {
        Scheme::Http
    } else if scheme.eq_ignore_ascii_case("wss") || scheme.eq_ignore_ascii_case("ws") {
        // Origin carries the origin of the page that opened the socket, never the socket URL,
        // so a ws/wss entry would silently match nothing.
        return Err("Origin is the web page's origin, never ws:// or wss://; write https:// (or http://) with the page's host");
    } else {
        return Err("scheme must be http or https, the schemes of web pages that open WebSockets");
    };
    if rest.contains('@') {
        return Err("userinfo (user@) is not part of an origin; keep only scheme://host[:port]");
    }
    if let Some(at) = rest.find(['/', '?', '#']) {
        return Err(if rest.get(at..) == Some("/") {
            "an origin has no trailing '/'; remove it"
        } else {
            "an origin has no path, query or fragment; keep only scheme://host[:port]"
        });
    }
    if rest.contains(['%', '\\']) {
        return Err("percent-encoding or '\\' in the host; write the host name literally");
    }
    let (host, port) = match rest.strip_prefix('[') {
        Some(bracketed) => {
            let Some((inside, after)) = bracketed.split_once(']') else {
                return Err("IPv6 literal without closing ']'");
            };
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or("only :port may follow an IPv6 literal, as in http://[::1]:8080")?,
                ),
            };
            // inside + the two brackets, still borrowed from `rest`.
            (rest.get(..inside.len() + 2).unwrap_or(rest), port)
        }
        None if rest.contains(['[', ']']) => {
            return Err("'[' and ']' may only enclose a whole IPv6 host, as in http://[::1]:8080");
        }
        None => match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        },
    };
    if host.is_empty() {
        return Err("empty host; write scheme://host[:port]");
    }
    let port = match port {
        None => scheme.default_port(),
        Some(port) => parse_port(port)?,
    };
    Ok(Parts { scheme, host, port })
}

/// Decimal 1..=65535 written the way a browser serializes it. Port 0 is refused: nothing can be
/// served from TCP port 0, so such an origin is forged or a typo.
fn parse_port(port: &str) -> Result<u16, &'static str> {
    if port.is_empty() {
        return Err("empty port after ':'; remove the ':' or write the port");
    }
    if port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("port must be a number from 1 to 65535");
    }
    if port == "0" {
        return Err("port 0 cannot serve a web page; write the real port");
    }
    if port.starts_with('0') {
        return Err("port has a leading zero; write it as a plain number, as in :8443");
    }
    match port.parse::<u16>() {
        Ok(port) => Ok(port),
        Err(_) => Err("port must be a number from 1 to 65535"),
    }
}

/// A normalized host, and whether it is an IP literal (wildcards need a domain name).
pub(super) fn normalize_host(host: &str) -> Result<(String, bool), &'static str> {
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').unwrap_or(inner);
        return match inner.parse::<Ipv6Addr>() {
            // Display gives the RFC 5952 form, so every spelling of one address compares equal.
            Ok(ip) => Ok((format!("[{ip}]"), true)),
            Err(_) => Err("not a valid IPv6 literal"),
        };
    }
    // Browsers keep a trailing dot (`https://example.com.` is its own origin to them); folding it
    // into `example.com` would allow what the config did not list, so it is refused outright.
    if host.ends_with('.') {
        return Err("trailing '.' in the host; remove it");
    }
    // UTS 46 with the URL deny list is what browsers apply: lower-cases, maps, converts IDN to
    // punycode and validates existing xn-- labels. The result is re-checked below.
    let ascii = idna::domain_to_ascii_cow(host.as_bytes(), AsciiDenyList::URL)
        .map_err(|_| "not a valid host name (IDNA conversion failed)")?;
    if ascii.len() > MAX_HOST_LEN {
        return Err("host name longer than 253 bytes");
    }
    let mut labels = 0usize;
    let mut last = "";
    for label in ascii.split('.') {
        if label.is_empty() {
            return Err(if ascii.ends_with('.') {
                "trailing '.' in the host; remove it"
            } else {
                "empty label ('..') in the host"
            });
        }
        if label.len() > MAX_LABEL_LEN {
            return Err("host label longer than 63 bytes");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err("host may hold only letters, digits, '-', '_' and '.'");
        }
        labels += 1;
        last = label;
    }
    // A numeric last label makes the whole host an IPv4 address in URL parsing. Browsers send
    // only the dotted-quad form, so `127.1` or `0x7f.0.0.1` is not something a page has.
    let numeric =
        last.bytes().all(|b| b.is_ascii_digit()) || (last.len() > 1 && last.starts_with("0x"));
    if numeric {
        return match ascii.parse::<Ipv4Addr>() {
            Ok(ip) if labels == 4 && ip.to_string() == ascii => Ok((ascii.into_owned(), true)),
            _ => Err("numeric host must be a dotted-quad IPv4 address such as 127.0.0.1"),
        };
    }
    Ok((ascii.into_owned(), false))
}
