//! permessage-deflate (RFC 7692), inspected: the negotiation on both legs
//! ([`negotiate`]) and the bounded inflate that lets every frame rule run on
//! the inflated bytes ([`inflate`]). wsguard never compresses anything: it
//! forwards the peers' compressed bytes as they came.

pub mod inflate;
pub mod negotiate;
mod params;

use std::fmt;

pub use inflate::{InflateError, Inflater};
pub use negotiate::{Negotiated, Negotiation, Offer, Policy};

/// `[deflate]`: permessage-deflate (RFC 7692).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    pub mode: DeflateMode,
    /// Let the peers keep LZ77 context between messages.
    pub context_takeover: bool,
    /// 8..=15: the largest window either peer may compress with.
    pub max_window_bits: u8,
    /// Inflate backend → client compressed frames too.
    pub inspect_backend: bool,
}

/// `[deflate] mode`, and its per-route override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeflateMode {
    /// Negotiate permessage-deflate and inflate every compressed message to inspect it.
    Inspect,
    /// Strip the extension: nothing is compressed.
    Off,
}

// === impl DeflateConfig ===

impl DeflateConfig {
    /// The negotiation policy on a route with `route_mode` (its override),
    /// or `None` when the mode there is off.
    pub fn policy(&self, route_mode: Option<DeflateMode>) -> Option<Policy> {
        match route_mode.unwrap_or(self.mode) {
            DeflateMode::Off => None,
            DeflateMode::Inspect => Some(Policy {
                context_takeover: self.context_takeover,
                max_window_bits: self.max_window_bits,
            }),
        }
    }
}

impl fmt::Display for DeflateMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeflateMode::Inspect => "inspect",
            DeflateMode::Off => "off",
        })
    }
}
