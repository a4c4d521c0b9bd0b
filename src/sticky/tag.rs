//! A backend's tag: 48 bits of SHA-256 over its address, written as 8 characters of
//! base64url.
//!
//! Base64url rather than base32: its alphabet is the one Engine.IO's base64id and SignalR's
//! tokens already use, so a tagged id needs no escaping in a query or in JSON, and 48 bits
//! are exactly 8 characters with no padding bits, so every 8-character string is one tag
//! and no tag has two spellings (base32 needs 10 characters, 2 bits of them unused).

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// What the hash covers before the address, so a tag is no other SHA-256 prefix.
const DOMAIN: &[u8] = b"wsguard sticky tag v1\0";

/// The length of a tag's text.
pub(crate) const LEN: usize = 8;

/// A backend's tag, computed from its address once per configuration.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag([u8; 6]);

/// The tag of the backend at `backend_addr` (its "host:port" as configured). The same on
/// every instance with the same address: no key, no state. With 48 bits, two backends of a
/// route collide with odds of about n²/2⁴⁹.
pub fn tag(backend_addr: &str) -> Tag {
    let mut hash = Sha256::new();
    hash.update(DOMAIN);
    hash.update(backend_addr.as_bytes());
    let digest = hash.finalize();
    let mut bits = [0; 6];
    bits.copy_from_slice(&digest[..6]);
    Tag(bits)
}

impl Tag {
    /// The tag `text` spells: exactly 8 base64url characters.
    pub(crate) fn parse(text: &[u8]) -> Option<Tag> {
        if text.len() != LEN {
            return None;
        }
        let mut bits = [0; 6];
        // 8 characters are 48 bits with none left over, so decoding is canonical.
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bits) {
            Ok(6) => Some(Tag(bits)),
            _ => None,
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [0; LEN];
        let n = URL_SAFE_NO_PAD
            .encode_slice(self.0, &mut text)
            .map_err(|_| fmt::Error)?;
        // base64url is ASCII.
        f.write_str(std::str::from_utf8(&text[..n]).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({self})")
    }
}
