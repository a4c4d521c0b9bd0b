//! The `[origin] allow` list: parsing its entries (exact origins, `https://*.domain`
//! wildcards, `null`) and matching `Origin` header values against them.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use super::refusal::{OriginRefusal, MAX_ORIGIN_LEN};
use super::serialized::{normalize_host, split_origin, write_origin, Origin, Scheme};

/// How much of a bad entry an [`EntryError`] repeats, so a pasted blob does not flood the log.
const MAX_ECHO_LEN: usize = 120;

pub(super) const WILDCARD_SHAPE: &str =
    "wildcard must be the whole left-most label, as in https://*.example.com";
const WILDCARD_EVERYTHING: &str =
    "an allow-list of everything is no allow-list; remove [origin] or list origins";

// === impl Wildcard ===

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

// === impl AllowEntry ===

/// One parsed `[origin] allow` entry; `"…".parse::<AllowEntry>()` says what is wrong with a
/// bad one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry(Kind);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Null,
    Exact(Origin),
    Wildcard(Wildcard),
}

impl FromStr for AllowEntry {
    type Err = EntryError;

    fn from_str(entry: &str) -> Result<AllowEntry, EntryError> {
        parse_kind(entry)
            .map(AllowEntry)
            .map_err(|message| EntryError {
                entry: echo(entry),
                message,
            })
    }
}

fn parse_kind(entry: &str) -> Result<Kind, &'static str> {
    match entry {
        "null" => return Ok(Kind::Null),
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
        return parts.into_origin().map(Kind::Exact);
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
    Ok(Kind::Wildcard(Wildcard {
        scheme: parts.scheme,
        dot_suffix: format!(".{suffix}"),
        port: parts.port,
    }))
}

// === impl EntryError ===

/// A bad `[origin] allow` entry: (a prefix of) its text, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    pub entry: String,
    pub message: &'static str,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Escaped, so an entry holding a line break cannot forge a line of output.
        write!(f, "\"{}\": {}", self.entry.escape_debug(), self.message)
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

// === impl AllowList ===

/// The validated `[origin] allow` list. An empty list is valid: it refuses every browser and,
/// with `allow_missing`, admits only clients that send no `Origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The parsed `[origin] allow` entries; `allow_missing` = requests without Origin are
    /// allowed (non-browser clients). A duplicate entry is harmless and listed once.
    pub fn new(entries: impl IntoIterator<Item = AllowEntry>, allow_missing: bool) -> AllowList {
        let mut list = AllowList {
            exact: HashSet::new(),
            wildcards: Vec::new(),
            allow_null: false,
            allow_missing,
            listed: Vec::new(),
        };
        for AllowEntry(kind) in entries {
            let shown = match kind {
                Kind::Null if !list.allow_null => {
                    list.allow_null = true;
                    "null".to_owned()
                }
                Kind::Exact(origin) if !list.exact.contains(&origin) => {
                    let shown = origin.to_string();
                    list.exact.insert(origin);
                    shown
                }
                Kind::Wildcard(w) if !list.wildcards.contains(&w) => {
                    let shown = w.to_string();
                    list.wildcards.push(w);
                    shown
                }
                _ => continue, // a duplicate: harmless, listed once
            };
            list.listed.push(shown);
        }
        list
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
        let origin = Origin::parse(text).map_err(|_| OriginRefusal::Malformed)?;
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
