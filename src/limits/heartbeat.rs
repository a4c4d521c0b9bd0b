//! Application heartbeats: data frames whose whole payload is a keep-alive of the chat
//! framework (Engine.IO's `2`/`3`, graphql-ws' `{"type":"ping"}`, …). Charged as control
//! frames, and let past a throttled burst (see the relay's delay mode), so a framework's own
//! ping timeout does not drop a client the proxy is merely slowing down. Pure: matches a
//! frame's wire bytes.

use std::fmt;
use std::sync::Arc;

/// Largest heartbeat payload: a control frame's (RFC 6455 §5.5), so one is never streamed.
pub const MAX_HEARTBEAT_LEN: usize = 125;

/// The default heartbeats, each with the framework that sends it: Engine.IO v3/v4 ping and
/// pong (Socket.IO), graphql-transport-ws ping and pong, SignalR's JSON ping, SockJS's
/// server heartbeat.
pub const DEFAULT_HEARTBEATS: &[&str] = &[
    "2",
    "3",
    "{\"type\":\"ping\"}",
    "{\"type\":\"pong\"}",
    "{\"type\":6}\u{1e}",
    "h",
];

/// A set of heartbeat payloads, shared by every connection of a configuration.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Heartbeats {
    payloads: Arc<[Box<[u8]>]>,
    /// Longest payload: frames longer than it are told apart with one comparison.
    longest: usize,
}

// === impl Heartbeats ===

impl Heartbeats {
    /// `payloads` must each be 1..=[`MAX_HEARTBEAT_LEN`] bytes (the configuration checks).
    pub fn new<P: AsRef<[u8]>>(payloads: impl IntoIterator<Item = P>) -> Heartbeats {
        let payloads: Arc<[Box<[u8]>]> = payloads
            .into_iter()
            .map(|p| Box::from(p.as_ref()))
            .collect();
        let longest = payloads.iter().map(|p| p.len()).max().unwrap_or(0);
        debug_assert!(longest <= MAX_HEARTBEAT_LEN);
        Heartbeats { payloads, longest }
    }

    pub fn payloads(&self) -> impl Iterator<Item = &[u8]> {
        self.payloads.iter().map(|p| &**p)
    }

    /// Whether `frame`, one whole frame's wire bytes (masked or not), is a final,
    /// uncompressed text frame whose payload is one of the heartbeats. Only a message of
    /// one frame can be one, and an uncompressed one leaves a deflate context untouched,
    /// so it may go ahead of other messages.
    pub fn matches(&self, frame: &[u8]) -> bool {
        if frame.len() > self.longest + 6 || frame.len() < 3 || frame[0] != 0x81 {
            return false;
        }
        let len = usize::from(frame[1] & 0x7f);
        let masked = frame[1] & 0x80 != 0;
        let start = if masked { 6 } else { 2 };
        if len > MAX_HEARTBEAT_LEN || frame.len() != start + len {
            return false;
        }
        let mut payload = [0u8; MAX_HEARTBEAT_LEN];
        let payload = &mut payload[..len];
        payload.copy_from_slice(&frame[start..]);
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= frame[2 + i % 4];
            }
        }
        self.payloads().any(|p| p == payload)
    }
}

impl fmt::Debug for Heartbeats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.payloads().map(String::from_utf8_lossy))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut f = vec![0x81, payload.len() as u8];
        match mask {
            Some(m) => {
                f[1] |= 0x80;
                f.extend_from_slice(&m);
                f.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
            }
            None => f.extend_from_slice(payload),
        }
        f
    }

    #[test]
    fn whole_payload_matches_masked_or_not() {
        let h = Heartbeats::new(DEFAULT_HEARTBEATS);
        let mask = Some([0x12, 0x34, 0x56, 0x78]);
        for p in DEFAULT_HEARTBEATS {
            assert!(h.matches(&text(p.as_bytes(), mask)), "{p}");
            assert!(h.matches(&text(p.as_bytes(), None)), "{p}");
        }
        for p in [&b"22"[..], b"", b"{\"type\":\"ping\"} ", b"4"] {
            assert!(!h.matches(&text(p, mask)), "{p:?}");
        }
    }

    #[test]
    fn only_a_final_uncompressed_text_frame_is_one() {
        let h = Heartbeats::new(["2"]);
        let mut f = text(b"2", None);
        assert!(h.matches(&f));
        for first in [0x01, 0x82, 0xc1, 0x80, 0x89] {
            f[0] = first;
            assert!(!h.matches(&f), "{first:#x}");
        }
        // A length that disagrees with the bytes given.
        assert!(!h.matches(&[0x81, 0x02, b'2']));
        assert!(!Heartbeats::default().matches(&text(b"2", None)));
    }
}
