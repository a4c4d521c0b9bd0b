//! `Origin` allow-list against cross-site WebSocket hijacking (RFC 6455 §10.2): parses header
//! values and `[origin] allow` entries into RFC 6454 §6.2 serialized origins and matches them.
//! Pure and bounded: no I/O, no panics, nothing longer than [`MAX_ORIGIN_LEN`] is parsed.

use std::collections::HashSet;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use idna::AsciiDenyList;

/// Longest `Origin` value or allow-list entry that is parsed: 2 KiB. A real origin is a scheme,
/// a host of at most 253 bytes and a port, so anything longer is a mistake or an attack; refusing
/// it before parsing bounds the work and allocation per request (header values may be 16 KiB).
pub const MAX_ORIGIN_LEN: usize = 2048;

/// DNS limits (RFC 1035 §2.3.4); a host beyond them cannot be where a page was loaded from.
const MAX_HOST_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// How much of a bad entry an [`EntryError`] repeats, so a pasted blob does not flood the log.
const MAX_ECHO_LEN: usize = 120;

const WILDCARD_SHAPE: &str =
    "wildcard must be the whole left-most label, as in https://*.example.com";
const WILDCARD_EVERYTHING: &str =
    "an allow-list of everything is no allow-list; remove [origin] or list origins";

// === impl Scheme ===

/// Only the schemes a browser puts in `Origin` for a page that can open a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scheme {
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
fn write_origin(f: &mut fmt::Formatter<'_>, scheme: Scheme, host: &str, port: u16) -> fmt::Result {
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
struct Origin {
    scheme: Scheme,
    host: String,
    port: u16,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_origin(f, self.scheme, &self.host, self.port)
    }
}

/// `https://*.example.com[:port]`: any host with at least one more label in front of the suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wildcard {
    scheme: Scheme,
    /// Kept with its leading dot (`.example.com`) so a plain `ends_with` cannot match
    /// `evilexample.com`, and a non-empty host label is needed in front of it.
    dot_suffix: String,
    port: u16,
}

impl Wildcard {
    fn matches(&self, origin: &Origin) -> bool {
        self.scheme == origin.scheme
            && self.port == origin.port
            && origin.host.len() > self.dot_suffix.len()
            && origin.host.ends_with(&self.dot_suffix)
    }
}

impl fmt::Display for Wildcard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = format!("*{}", self.dot_suffix);
        write_origin(f, self.scheme, &host, self.port)
    }
}

// === parsing ===

/// The pieces of `scheme://host[:port]`, host not yet normalized (may hold `*` or Unicode).
struct Parts<'a> {
    scheme: Scheme,
    host: &'a str,
    port: u16,
}

/// Splits an origin into scheme, raw host and port, refusing everything a serialized origin
/// cannot contain. Error texts are written for config authors; the header path only counts them.
fn split_origin(input: &str) -> Result<Parts<'_>, &'static str> {
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
fn normalize_host(host: &str) -> Result<(String, bool), &'static str> {
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

/// Parses the value of an `Origin` header (already known to be printable ASCII).
fn parse_header_origin(value: &str) -> Result<Origin, &'static str> {
    let parts = split_origin(value)?;
    let (host, _) = normalize_host(parts.host)?;
    Ok(Origin {
        scheme: parts.scheme,
        host,
        port: parts.port,
    })
}

/// One allow-list entry after parsing.
enum Entry {
    Null,
    Exact(Origin),
    Wildcard(Wildcard),
}

fn parse_entry(entry: &str) -> Result<Entry, &'static str> {
    match entry {
        "null" => return Ok(Entry::Null),
        "*" | "*://*" => return Err(WILDCARD_EVERYTHING),
        _ => {}
    }
    if entry.starts_with("*.") {
        return Err("a wildcard needs a scheme, as in https://*.example.com");
    }
    let parts = split_origin(entry)?;
    let Some(suffix) = parts.host.strip_prefix("*.") else {
        if parts.host == "*" {
            return Err(WILDCARD_EVERYTHING);
        }
        if parts.host.contains('*') {
            return Err(WILDCARD_SHAPE);
        }
        let (host, _) = normalize_host(parts.host)?;
        return Ok(Entry::Exact(Origin {
            scheme: parts.scheme,
            host,
            port: parts.port,
        }));
    };
    if suffix.contains('*') {
        return Err(WILDCARD_SHAPE);
    }
    let (suffix, is_ip) = normalize_host(suffix)?;
    if is_ip {
        return Err("a wildcard needs a domain name after '*.', not an IP address");
    }
    if !suffix.contains('.') {
        return Err("a wildcard over a whole top-level domain is too broad; name the site's domain, as in https://*.example.com");
    }
    Ok(Entry::Wildcard(Wildcard {
        scheme: parts.scheme,
        dot_suffix: format!(".{suffix}"),
        port: parts.port,
    }))
}

// === impl EntryError ===

/// One bad `[origin] allow` entry: its position, (a prefix of) its text, and how to fix it.
#[derive(Debug)]
pub struct EntryError {
    pub index: usize,
    pub entry: String,
    pub message: String,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[origin] allow[{}] = {:?}: {}",
            self.index, self.entry, self.message
        )
    }
}

impl std::error::Error for EntryError {}

/// The first `MAX_ECHO_LEN` bytes of `s`, cut on a char boundary.
fn echo(s: &str) -> String {
    if s.len() <= MAX_ECHO_LEN {
        return s.to_owned();
    }
    let mut end = MAX_ECHO_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", s.get(..end).unwrap_or(""))
}

// === impl OriginRefusal ===

/// Why a handshake's `Origin` was refused (answered with 403). Labels are bounded metric keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginRefusal {
    /// No `Origin` header and `allow_missing` is off.
    Missing,
    /// Two or more `Origin` headers; which one a backend would read is unknowable.
    Multiple,
    /// `Origin: null` (sandboxed iframes, `file:` pages, some redirects) and `"null"` not listed.
    Null,
    /// Not a serialized origin: bytes, syntax, length, scheme, port or host are wrong.
    Malformed,
    /// A well-formed origin that is not on the allow-list.
    NotAllowed,
}

impl OriginRefusal {
    /// Metric and log label.
    pub fn label(&self) -> &'static str {
        match self {
            OriginRefusal::Missing => "origin_missing",
            OriginRefusal::Multiple => "origin_multiple",
            OriginRefusal::Null => "origin_null",
            OriginRefusal::Malformed => "origin_malformed",
            OriginRefusal::NotAllowed => "origin_not_allowed",
        }
    }

    /// Human text for the 403 body.
    pub fn reason(&self) -> &'static str {
        match self {
            OriginRefusal::Missing => "origin header required",
            OriginRefusal::Multiple => "more than one origin header",
            OriginRefusal::Null => "origin null not allowed",
            OriginRefusal::Malformed => "malformed origin header",
            OriginRefusal::NotAllowed => "origin not allowed",
        }
    }
}

impl fmt::Display for OriginRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

// === impl AllowList ===

/// The validated `[origin] allow` list. An empty list is valid: it refuses every browser and,
/// with `allow_missing`, admits only clients that send no `Origin`.
#[derive(Debug, Clone)]
pub struct AllowList {
    exact: HashSet<Origin>,
    /// Linear scan; config lists hold a handful of wildcards.
    wildcards: Vec<Wildcard>,
    allow_null: bool,
    allow_missing: bool,
    /// Normalized entries in config order without duplicates, for `wsguard check`.
    listed: Vec<String>,
}

impl AllowList {
    /// `entries` from config `[origin] allow`; `allow_missing` = requests without Origin are
    /// allowed (non-browser clients). Every bad entry is reported, not only the first.
    pub fn new(entries: &[String], allow_missing: bool) -> Result<AllowList, Vec<EntryError>> {
        let mut list = AllowList {
            exact: HashSet::new(),
            wildcards: Vec::new(),
            allow_null: false,
            allow_missing,
            listed: Vec::new(),
        };
        let mut errors = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let shown = match parse_entry(entry) {
                Err(message) => {
                    errors.push(EntryError {
                        index,
                        entry: echo(entry),
                        message: message.to_owned(),
                    });
                    continue;
                }
                Ok(Entry::Null) if !list.allow_null => {
                    list.allow_null = true;
                    "null".to_owned()
                }
                Ok(Entry::Exact(origin)) if !list.exact.contains(&origin) => {
                    let shown = origin.to_string();
                    list.exact.insert(origin);
                    shown
                }
                Ok(Entry::Wildcard(w)) if !list.wildcards.contains(&w) => {
                    let shown = w.to_string();
                    list.wildcards.push(w);
                    shown
                }
                Ok(_) => continue, // a duplicate: harmless, listed once
            };
            list.listed.push(shown);
        }
        if errors.is_empty() {
            Ok(list)
        } else {
            Err(errors)
        }
    }

    /// `values`: every `Origin` header value of the request, raw bytes (0, 1 or more).
    pub fn check(&self, values: &[&[u8]]) -> Result<(), OriginRefusal> {
        match values {
            [] if self.allow_missing => Ok(()),
            [] => Err(OriginRefusal::Missing),
            [value] => self.check_one(value),
            // Even identical copies: a proxy and a backend may each pick a different one.
            _ => Err(OriginRefusal::Multiple),
        }
    }

    fn check_one(&self, raw: &[u8]) -> Result<(), OriginRefusal> {
        // Length first, so a 16 KiB value costs one comparison. Printable ASCII only: a
        // serialized origin has no spaces, controls or raw Unicode (IDN arrives as punycode).
        if raw.len() > MAX_ORIGIN_LEN || !raw.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(OriginRefusal::Malformed);
        }
        // RFC 6454 §7.1: "null" is case-sensitive.
        if raw == b"null" {
            return if self.allow_null {
                Ok(())
            } else {
                Err(OriginRefusal::Null)
            };
        }
        let text = std::str::from_utf8(raw).map_err(|_| OriginRefusal::Malformed)?;
        let origin = parse_header_origin(text).map_err(|_| OriginRefusal::Malformed)?;
        if self.exact.contains(&origin) || self.wildcards.iter().any(|w| w.matches(&origin)) {
            Ok(())
        } else {
            Err(OriginRefusal::NotAllowed)
        }
    }

    /// Normalized entries (RFC 6454 §6.2 form, default port left out), for `wsguard check`.
    pub fn entries(&self) -> impl Iterator<Item = String> + '_ {
        self.listed.iter().cloned()
    }

    /// Whether requests without `Origin` pass.
    pub fn allows_missing(&self) -> bool {
        self.allow_missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OriginRefusal::*;

    fn list(entries: &[&str], allow_missing: bool) -> AllowList {
        let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        match AllowList::new(&entries, allow_missing) {
            Ok(list) => list,
            Err(errors) => panic!("entries refused: {errors:?}"),
        }
    }

    const ENTRIES: &[&str] = &[
        "https://chat.example.com",
        "http://localhost:8080",
        "https://*.example.com",
        "https://*.wild.test:8443",
        "https://bücher.example",
        "http://[::1]:3000",
        "http://127.0.0.1:8080",
        "https://a.com:443",
        "http://b.com",
    ];

    #[test]
    fn header_table() {
        let list = list(ENTRIES, false);
        let ok = Ok(());
        let huge = format!("https://{}.example.com", "a".repeat(3000));
        let cases: &[(&str, Result<(), OriginRefusal>)] = &[
            // exact and case-folding
            ("https://chat.example.com", ok),
            ("HTTPS://CHAT.Example.COM", ok),
            ("http://localhost:8080", ok),
            ("http://LOCALHOST:8080", ok),
            // default ports are explicit
            ("https://chat.example.com:443", ok),
            ("https://a.com", ok),
            ("https://a.com:443", ok),
            ("http://b.com", ok),
            ("http://b.com:80", ok),
            ("https://b.com", Err(NotAllowed)),
            ("http://b.com:8080", Err(NotAllowed)),
            // non-default ports must match exactly
            ("http://localhost", Err(NotAllowed)),
            ("http://localhost:80", Err(NotAllowed)),
            ("http://localhost:8081", Err(NotAllowed)),
            ("https://chat.example.com:8443", Err(NotAllowed)),
            // scheme mismatch
            ("http://chat.example.com", Err(NotAllowed)),
            ("http://a.example.com", Err(NotAllowed)),
            // wildcard depth and the never-match cases
            ("https://a.example.com", ok),
            ("https://a.b.example.com", ok),
            ("https://A.B.C.Example.com:443", ok),
            ("https://example.com", Err(NotAllowed)),
            ("https://evilexample.com", Err(NotAllowed)),
            ("https://a.evilexample.com", Err(NotAllowed)),
            ("https://example.com.evil.net", Err(NotAllowed)),
            ("https://a.example.com.evil.net", Err(NotAllowed)),
            ("https://a.example.com:8443", Err(NotAllowed)),
            ("https://x.wild.test:8443", ok),
            ("https://x.y.wild.test:8443", ok),
            ("https://x.wild.test", Err(NotAllowed)),
            ("https://wild.test:8443", Err(NotAllowed)),
            ("http://x.wild.test:8443", Err(NotAllowed)),
            ("https://*.example.com", Err(Malformed)),
            // IDN: the header carries punycode; raw Unicode bytes are not a serialized origin
            ("https://xn--bcher-kva.example", ok),
            ("https://XN--BCHER-KVA.example", ok),
            ("https://bücher.example", Err(Malformed)),
            ("https://bucher.example", Err(NotAllowed)),
            // IP literals
            ("http://[::1]:3000", ok),
            ("http://[0:0:0:0:0:0:0:1]:3000", ok),
            ("http://[::1]:3001", Err(NotAllowed)),
            ("http://[::1]", Err(NotAllowed)),
            ("http://[::1%25eth0]:3000", Err(Malformed)),
            ("http://[::1:3000", Err(Malformed)),
            ("http://[::1]x:3000", Err(Malformed)),
            ("http://::1:3000", Err(Malformed)),
            ("http://127.0.0.1:8080", ok),
            ("http://127.0.0.2:8080", Err(NotAllowed)),
            ("http://127.1:8080", Err(Malformed)),
            ("http://0127.0.0.1:8080", Err(Malformed)),
            ("http://0x7f.0.0.1:8080", Err(Malformed)),
            ("http://256.0.0.1:8080", Err(Malformed)),
            // not a bare origin
            ("https://chat.example.com.", Err(Malformed)),
            ("https://chat.example.com/", Err(Malformed)),
            ("https://chat.example.com/chat", Err(Malformed)),
            ("https://chat.example.com?x=1", Err(Malformed)),
            ("https://chat.example.com#x", Err(Malformed)),
            ("https://chat.example.com@evil.com", Err(Malformed)),
            ("https://user@chat.example.com", Err(Malformed)),
            ("https://evil.com#@chat.example.com", Err(Malformed)),
            ("https://evil.com\\@chat.example.com", Err(Malformed)),
            ("https://chat%2eexample.com", Err(Malformed)),
            ("https://a..example.com", Err(Malformed)),
            ("https://-_-.example.com", ok),
            ("https://a!b.example.com", Err(Malformed)),
            ("chat.example.com", Err(Malformed)),
            ("//chat.example.com", Err(Malformed)),
            ("https://", Err(Malformed)),
            ("https://:443", Err(Malformed)),
            ("", Err(Malformed)),
            // ports
            ("https://chat.example.com:", Err(Malformed)),
            ("https://chat.example.com:0", Err(Malformed)),
            ("https://chat.example.com:0443", Err(Malformed)),
            ("https://chat.example.com:65536", Err(Malformed)),
            (
                "https://chat.example.com:99999999999999999999",
                Err(Malformed),
            ),
            ("https://chat.example.com:-1", Err(Malformed)),
            ("https://chat.example.com:+443", Err(Malformed)),
            ("https://chat.example.com:443:443", Err(Malformed)),
            ("https://x.wild.test:65535", Err(NotAllowed)),
            // schemes
            ("wss://chat.example.com", Err(Malformed)),
            ("ws://localhost:8080", Err(Malformed)),
            ("ftp://chat.example.com", Err(Malformed)),
            ("chrome-extension://abcdef", Err(Malformed)),
            ("file://", Err(Malformed)),
            // whitespace and control characters
            (" https://chat.example.com", Err(Malformed)),
            ("https://chat.example.com ", Err(Malformed)),
            ("https://chat .example.com", Err(Malformed)),
            ("https://chat.example.com\t", Err(Malformed)),
            ("https://chat.example.com\r\nX-Evil: 1", Err(Malformed)),
            ("https://chat.example.com\0", Err(Malformed)),
            ("https://chat.example.com https://evil.com", Err(Malformed)),
            // null is case-sensitive (RFC 6454 §7.1) and refused unless listed
            ("null", Err(Null)),
            ("NULL", Err(Malformed)),
            ("Null", Err(Malformed)),
            (&huge, Err(Malformed)),
        ];
        for (value, want) in cases {
            assert_eq!(list.check(&[value.as_bytes()]), *want, "Origin: {value:?}");
        }
        assert!(cases.len() >= 40);
    }

    #[test]
    fn raw_bytes_that_are_not_ascii_are_malformed() {
        let list = list(ENTRIES, false);
        let bad: &[&[u8]] = &[
            b"https://chat.example.com\xff",
            b"\xc3\xa9",
            b"\x80",
            &[0u8; 16],
        ];
        for value in bad {
            assert_eq!(list.check(&[value]), Err(Malformed), "{value:?}");
        }
        // A 16 KiB value is refused on its length alone.
        let big = vec![b'a'; 16 * 1024];
        assert_eq!(list.check(&[&big]), Err(Malformed));
    }

    #[test]
    fn missing_multiple_and_null() {
        let strict = list(&["https://chat.example.com"], false);
        let lenient = list(&["https://chat.example.com", "null"], true);
        let good: &[u8] = b"https://chat.example.com";
        assert_eq!(strict.check(&[]), Err(Missing));
        assert_eq!(lenient.check(&[]), Ok(()));
        assert_eq!(strict.check(&[good, good]), Err(Multiple));
        assert_eq!(lenient.check(&[good, good]), Err(Multiple));
        assert_eq!(lenient.check(&[good, b"null", b"x"]), Err(Multiple));
        assert_eq!(strict.check(&[b"null"]), Err(Null));
        assert_eq!(lenient.check(&[b"null"]), Ok(()));
        assert_eq!(lenient.check(&[b"https://evil.com"]), Err(NotAllowed));
        assert!(lenient.allows_missing() && !strict.allows_missing());
    }

    #[test]
    fn empty_list_refuses_every_origin() {
        let list = list(&[], true);
        assert_eq!(list.check(&[]), Ok(()));
        assert_eq!(list.check(&[b"https://chat.example.com"]), Err(NotAllowed));
        assert_eq!(list.entries().count(), 0);
    }

    #[test]
    fn entries_are_normalized_and_deduplicated() {
        let list = list(
            &[
                "HTTPS://Chat.Example.com:443",
                "https://chat.example.com",
                "https://*.Bücher.example:8443",
                "null",
                "http://[0::1]",
                "http://localhost:80",
                "https://*.bücher.example:8443",
                "null",
            ],
            false,
        );
        let shown: Vec<String> = list.entries().collect();
        assert_eq!(
            shown,
            [
                "https://chat.example.com",
                "https://*.xn--bcher-kva.example:8443",
                "null",
                "http://[::1]",
                "http://localhost",
            ]
        );
        assert_eq!(
            list.check(&[b"https://a.xn--bcher-kva.example:8443"]),
            Ok(())
        );
    }

    #[test]
    fn entry_errors_table() {
        let cases: &[(&str, &str)] = &[
            ("*", "an allow-list of everything is no allow-list"),
            ("https://*", "an allow-list of everything is no allow-list"),
            ("*://*", "an allow-list of everything is no allow-list"),
            ("*.example.com", "needs a scheme"),
            ("https://a.*.example.com", WILDCARD_SHAPE),
            ("https://*a.example.com", WILDCARD_SHAPE),
            ("https://*.*.example.com", WILDCARD_SHAPE),
            ("https://example.*", WILDCARD_SHAPE),
            ("https://*.com", "too broad"),
            ("https://*.127.0.0.1", "not an IP address"),
            ("https://*.[::1]", "enclose a whole IPv6 host"),
            ("wss://chat.example.com", "never ws:// or wss://"),
            ("ws://localhost:8080", "never ws:// or wss://"),
            ("ftp://chat.example.com", "scheme must be http or https"),
            ("chat.example.com", "write scheme://host[:port]"),
            ("NULL", "write scheme://host[:port]"),
            ("", "empty"),
            (" https://chat.example.com", "whitespace"),
            ("https://chat.example.com/", "trailing '/'"),
            ("https://chat.example.com/chat", "no path"),
            ("https://user@chat.example.com", "userinfo"),
            ("https://chat.example.com.", "trailing '.'"),
            ("https://*.example.com.", "trailing '.'"),
            ("https://chat.example.com:0", "port 0"),
            ("https://chat.example.com:70000", "1 to 65535"),
            ("https://chat.example.com:08443", "leading zero"),
            ("https://chat.example.com:", "empty port"),
            ("https://chat%2eexample.com", "percent-encoding"),
            ("http://[::g]", "IPv6"),
            ("http://127.1", "dotted-quad"),
            ("https://a..example.com", "empty label"),
        ];
        let entries: Vec<String> = cases.iter().map(|(e, _)| e.to_string()).collect();
        let errors = match AllowList::new(&entries, false) {
            Ok(_) => panic!("bad entries accepted"),
            Err(errors) => errors,
        };
        assert_eq!(errors.len(), cases.len(), "every bad entry is reported");
        for (error, (index, (entry, want))) in errors.iter().zip(cases.iter().enumerate()) {
            assert_eq!(error.index, index);
            assert_eq!(error.entry, *entry);
            assert!(
                error.message.contains(want),
                "{entry:?}: {:?} lacks {want:?}",
                error.message
            );
        }
    }

    #[test]
    fn entry_errors_keep_good_entries_out_of_the_count_and_echo_briefly() {
        let long = format!("https://{}", "é".repeat(2000));
        let entries = vec![
            "https://ok.example.com".to_string(),
            "*".to_string(),
            "https://also-ok.example.com".to_string(),
            long,
        ];
        let errors = AllowList::new(&entries, false).err().unwrap_or_default();
        assert_eq!(errors.iter().map(|e| e.index).collect::<Vec<_>>(), [1, 3]);
        assert!(errors[1].entry.len() <= MAX_ECHO_LEN + '…'.len_utf8());
        assert!(errors[1].message.contains("2048"));
        assert!(errors[0].to_string().contains("allow[1]"));
    }

    #[test]
    fn labels_and_reasons_are_distinct() {
        let all = [Missing, Multiple, Null, Malformed, NotAllowed];
        let labels: HashSet<&str> = all.iter().map(|r| r.label()).collect();
        let reasons: HashSet<&str> = all.iter().map(|r| r.reason()).collect();
        assert_eq!((labels.len(), reasons.len()), (5, 5));
        assert_eq!(NotAllowed.reason(), "origin not allowed");
        assert!(labels.iter().all(|l| l.starts_with("origin_")));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let list = list(ENTRIES, true);
        let alphabet = b"hs:/[].*@%#?x0123456789abcdeflnu-_ \t\xff\xc3\xa9\x00";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 40) as usize;
            let mut value = b"https://".to_vec();
            for i in 0..len {
                let pick = (state.rotate_left(i as u32 * 5) % alphabet.len() as u64) as usize;
                value.push(alphabet[pick]);
            }
            let _ = list.check(&[&value]);
            let _ = list.check(&[&value[8..]]);
            if let Ok(text) = std::str::from_utf8(&value) {
                let _ = AllowList::new(&[text.to_string()], false);
            }
        }
    }
}
