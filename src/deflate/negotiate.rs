//! permessage-deflate negotiation on both legs (RFC 7692 §5 and §7.1,
//! <https://www.rfc-editor.org/rfc/rfc7692#section-7.1>): pure, no I/O.
//!
//! The client's offers go to the backend, tightened by the policy; a malformed
//! offer is declined (dropped), never refused. The backend's response must
//! accept exactly one of the offers sent; wsguard then relays to the client a
//! response that may tighten it further (`client_no_context_takeover`, a
//! lower `client_max_window_bits`), as §7.1.1.2 and §7.1.2.2 allow.

use std::fmt::{self, Write as _};

use super::params::{self, Element};

/// The extension's registered name.
pub const NAME: &str = "permessage-deflate";

/// Window sizes (base-2 logarithm) RFC 7692 §7.1.2 allows.
pub const MIN_WINDOW_BITS: u8 = 8;
pub const MAX_WINDOW_BITS: u8 = 15;

/// At most this many offers go to a backend: a client listing hundreds of
/// them gains nothing but makes the backend do the work.
const MAX_OFFERS: usize = 8;

/// What the configuration allows (`[deflate]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Let the peers keep LZ77 context between messages.
    pub context_takeover: bool,
    /// Largest window either peer may compress with.
    pub max_window_bits: u8,
}

/// The four parameters of one offer or response, each known and present at
/// most once, values in range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Params {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (allowed in an offer only).
    pub client_max_window_bits: Option<Option<u8>>,
}

/// The offers sent to a backend (at least one), and the policy they were
/// made under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiation {
    pub policy: Policy,
    pub offers: Vec<Offer>,
}

/// One client offer as received, and as tightened for the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    pub client: Params,
    pub sent: Params,
}

/// What was agreed: the response relayed to the client, which both peers
/// compress by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub response: Params,
}

impl Negotiated {
    /// The client keeps LZ77 context from one message to the next.
    pub fn client_context_takeover(&self) -> bool {
        !self.response.client_no_context_takeover
    }

    /// The backend keeps LZ77 context from one message to the next.
    pub fn server_context_takeover(&self) -> bool {
        !self.response.server_no_context_takeover
    }
}

/// Why a backend's `Sec-WebSocket-Extensions` cannot be accepted (a 502).
pub type Rejected = &'static str;

// === impl Params ===

impl Params {
    /// Reads one extension element's parameters; `response` requires a value
    /// on `client_max_window_bits`. `None` for anything RFC 7692 §7.1 does
    /// not allow: an unknown or repeated parameter, a value on a flag, a
    /// window size that is missing, out of range or has leading zeros.
    fn parse(el: &Element<'_>, response: bool) -> Option<Params> {
        if !el.valid {
            return None;
        }
        let mut p = Params::default();
        let mut seen = [false; 4];
        for (name, value) in &el.params {
            let i = match name.to_ascii_lowercase().as_str() {
                "server_no_context_takeover" => 0,
                "client_no_context_takeover" => 1,
                "server_max_window_bits" => 2,
                "client_max_window_bits" => 3,
                _ => return None,
            };
            if std::mem::replace(&mut seen[i], true) {
                return None;
            }
            match (i, value.as_deref()) {
                (0, None) => p.server_no_context_takeover = true,
                (1, None) => p.client_no_context_takeover = true,
                (2, Some(v)) => p.server_max_window_bits = Some(window_bits(v)?),
                (3, Some(v)) => p.client_max_window_bits = Some(Some(window_bits(v)?)),
                (3, None) if !response => p.client_max_window_bits = Some(None),
                _ => return None,
            }
        }
        Some(p)
    }

    /// Whether `self`, a response, accepts `offer` (§7.1): what the offer
    /// asked of the server is granted, and nothing it did not offer is used.
    fn accepts(&self, offer: &Params) -> bool {
        let server_bits_ok = match (offer.server_max_window_bits, self.server_max_window_bits) {
            (Some(asked), Some(got)) => got <= asked,
            (Some(_), None) => false,
            (None, _) => true,
        };
        let client_bits_ok = match (offer.client_max_window_bits, self.client_max_window_bits) {
            (None, Some(_)) => false,
            (Some(Some(hint)), Some(Some(got))) => got <= hint,
            _ => true,
        };
        (self.server_no_context_takeover || !offer.server_no_context_takeover)
            && server_bits_ok
            && client_bits_ok
    }
}

/// `1*DIGIT` without leading zeros, 8 to 15 (§7.1.2.1).
fn window_bits(v: &str) -> Option<u8> {
    if v.starts_with('0') || v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = v.parse().ok()?;
    (MIN_WINDOW_BITS..=MAX_WINDOW_BITS)
        .contains(&bits)
        .then_some(bits)
}

impl fmt::Display for Params {
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
        match self.client_max_window_bits {
            Some(Some(bits)) => write!(f, "; client_max_window_bits={bits}"),
            Some(None) => f.write_str("; client_max_window_bits"),
            None => Ok(()),
        }
    }
}

// === impl Policy ===

impl Policy {
    /// The offers to send the backend: each of the client's valid
    /// permessage-deflate offers, in order, tightened. Malformed offers and
    /// other extensions are dropped; so is an offer whose client window
    /// cannot be bounded (`max_window_bits` below 15, and the client did not
    /// offer `client_max_window_bits`, so no response may limit it).
    pub fn offers<'a>(&self, header_values: impl IntoIterator<Item = &'a [u8]>) -> Vec<Offer> {
        header_values
            .into_iter()
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(params::elements)
            .filter(|el| el.name.eq_ignore_ascii_case(NAME))
            .filter_map(|el| Params::parse(&el, false))
            .filter_map(|client| self.tighten(client).map(|sent| Offer { client, sent }))
            .take(MAX_OFFERS)
            .collect()
    }

    /// The negotiation to start with the backend, if the client made an
    /// offer that can be sent.
    pub fn negotiation<'a>(
        &self,
        header_values: impl IntoIterator<Item = &'a [u8]>,
    ) -> Option<Negotiation> {
        let offers = self.offers(header_values);
        (!offers.is_empty()).then_some(Negotiation {
            policy: *self,
            offers,
        })
    }

    fn tighten(&self, client: Params) -> Option<Params> {
        let max = self.max_window_bits;
        if max < MAX_WINDOW_BITS && client.client_max_window_bits.is_none() {
            return None;
        }
        let mut sent = client;
        if !self.context_takeover {
            // The relayed response will forbid client context takeover, so
            // telling the backend lets it keep no context either.
            sent.server_no_context_takeover = true;
            sent.client_no_context_takeover = true;
        }
        if max < MAX_WINDOW_BITS {
            sent.server_max_window_bits =
                Some(client.server_max_window_bits.map_or(max, |b| b.min(max)));
        }
        if let Some(Some(hint)) = client.client_max_window_bits {
            sent.client_max_window_bits = Some(Some(hint.min(max)));
        }
        Some(sent)
    }

    /// The response the client gets.
    fn relayed(&self, offer: &Offer, backend: Params) -> Negotiated {
        let max = self.max_window_bits;
        let client_bits = [
            backend.client_max_window_bits.flatten(),
            offer.client.client_max_window_bits.flatten(),
            Some(max),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(MAX_WINDOW_BITS);
        let response = Params {
            server_no_context_takeover: backend.server_no_context_takeover,
            client_no_context_takeover: backend.client_no_context_takeover
                || !self.context_takeover,
            server_max_window_bits: backend.server_max_window_bits,
            // Only a client that offered the parameter may be limited (§7.1.2.2).
            client_max_window_bits: match offer.client.client_max_window_bits {
                Some(_) if client_bits < MAX_WINDOW_BITS => Some(Some(client_bits)),
                _ => None,
            },
        };
        Negotiated { response }
    }
}

/// Checks the backend's `Sec-WebSocket-Extensions` against what was sent
/// (`None`: no extension was offered). `Ok(None)`: the backend accepted
/// none, so nothing is compressed.
pub fn accept<'a>(
    sent: Option<&Negotiation>,
    header_values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Option<Negotiated>, Rejected> {
    let mut elements = Vec::new();
    for v in header_values {
        let v = std::str::from_utf8(v).map_err(|_| MALFORMED)?;
        for el in params::elements(v) {
            if elements.len() == 1 {
                return Err("backend accepted more than one extension");
            }
            elements.push(el);
        }
    }
    let Some(el) = elements.pop() else {
        return Ok(None);
    };
    let sent = match sent {
        Some(sent) if el.name.eq_ignore_ascii_case(NAME) => sent,
        _ => return Err("backend chose an extension that was not offered"),
    };
    let response = Params::parse(&el, true).ok_or(MALFORMED)?;
    let offer = sent
        .offers
        .iter()
        .find(|o| response.accepts(&o.sent))
        .ok_or("backend's permessage-deflate parameters were not offered")?;
    Ok(Some(sent.policy.relayed(offer, response)))
}

const MALFORMED: Rejected = "backend's permessage-deflate response is malformed";

/// The `Sec-WebSocket-Extensions` value for a list of offers.
pub fn offer_header(offers: &[Offer]) -> String {
    let mut out = String::new();
    for (i, o) in offers.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{}", o.sent);
    }
    out
}

#[cfg(test)]
mod tests;
