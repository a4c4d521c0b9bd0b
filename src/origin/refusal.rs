//! Why an `Origin` is refused, and the length cap every parser here applies: the leaf the
//! rest of the module builds on.

use std::fmt;

/// Longest `Origin` value or allow-list entry that is parsed: 2 KiB. A real origin is a scheme,
/// a host of at most 253 bytes and a port, so anything longer is a mistake or an attack; refusing
/// it before parsing bounds the work and allocation per request (header values may be 16 KiB).
pub const MAX_ORIGIN_LEN: usize = 2048;

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
    /// No `Origin`, but `Sec-Fetch-Site: cross-site`: a browser sent a pass-through
    /// request from another site (an `<img>` or `<script>` tag, a navigation).
    CrossSite,
}
// === impl OriginRefusal ===

impl OriginRefusal {
    /// Metric and log label.
    pub fn label(&self) -> &'static str {
        match self {
            OriginRefusal::Missing => "origin_missing",
            OriginRefusal::Multiple => "origin_multiple",
            OriginRefusal::Null => "origin_null",
            OriginRefusal::Malformed => "origin_malformed",
            OriginRefusal::NotAllowed => "origin_not_allowed",
            OriginRefusal::CrossSite => "origin_cross_site",
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
            OriginRefusal::CrossSite => "cross-site request without an origin",
        }
    }
}

impl fmt::Display for OriginRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}
