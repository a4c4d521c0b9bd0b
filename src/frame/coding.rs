//! The numbers RFC 6455 puts on the wire that every layer of the codec
//! shares: opcodes (§5.2, §11.8), the control-frame payload cap (§5.5) and
//! the close status codes wsguard sends (§7.4.1). Depends on nothing, so the
//! error type and the header parser above it can both use it.

/// Largest control-frame payload (§5.5).
pub const MAX_CONTROL_PAYLOAD: u64 = 125;

/// Close status codes (§7.4.1) that the proxy sends or maps a broken rule to.
pub mod close_code {
    /// A peer goes away: the proxy shuts down, a connection idles out, or
    /// the other peer left.
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A close frame without a status code, as logged and counted; never sent (§7.1.5).
    pub const NO_STATUS_RECEIVED: u16 = 1005;
    /// Text (or a close reason) that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// The mask-key policy or a rate limit.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A frame or message over its cap.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Sent to the client when the backend failed.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// Frame opcode (RFC 6455 §5.2, §11.8). Values 3–7 and 11–15 are kept as `Reserved`
/// so the rules can refuse them by name instead of the parser guessing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    Continue,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
    Reserved(u8),
}

// === impl OpCode ===

impl OpCode {
    /// Decodes the low four bits of `v`.
    pub fn from_u8(v: u8) -> Self {
        match v & 0x0F {
            0 => Self::Continue,
            1 => Self::Text,
            2 => Self::Binary,
            8 => Self::Close,
            9 => Self::Ping,
            10 => Self::Pong,
            other => Self::Reserved(other),
        }
    }

    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continue => 0,
            Self::Text => 1,
            Self::Binary => 2,
            Self::Close => 8,
            Self::Ping => 9,
            Self::Pong => 10,
            Self::Reserved(v) => v & 0x0F,
        }
    }

    /// Control opcodes have the high bit of the nibble set (§5.5).
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x08 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcode_nibble_round_trips() {
        for v in 0..16u8 {
            assert_eq!(OpCode::from_u8(v).as_u8(), v);
            assert_eq!(OpCode::from_u8(v).is_control(), v >= 8);
        }
    }
}
