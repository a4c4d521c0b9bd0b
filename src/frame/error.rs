//! The one error of the codec: a broken frame rule. Each [`Violation`]
//! carries its close code (RFC 6455 §7.4.1), a short reason for the close
//! frame, a bounded metric label, and a Display line with the numbers for
//! the log. A leaf: every other part of the codec returns it.

use std::fmt;

use super::coding::close_code::{
    INVALID_PAYLOAD, MESSAGE_TOO_BIG, POLICY_VIOLATION, PROTOCOL_ERROR,
};
use super::coding::MAX_CONTROL_PAYLOAD;

/// A broken frame rule. Cheap to copy; maps to the wire in [`Violation::close_code`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    UnmaskedClientFrame,
    MaskedServerFrame,
    ZeroMaskKey,
    RepeatedMaskKey {
        frames: u8,
    },
    ReservedBits {
        rsv: u8,
    },
    ReservedOpcode {
        opcode: u8,
    },
    FragmentedControlFrame,
    ControlFrameTooLong {
        len: u64,
    },
    CloseLengthOne,
    UnexpectedContinuation,
    ExpectedContinuation,
    LengthMsbSet,
    /// A 16-bit length field carrying at most 125, or a 64-bit one carrying at
    /// most 0xFFFF: §5.2 requires the shortest form. `bits` is the field's width.
    NonMinimalLength {
        len: u64,
        bits: u8,
    },
    FrameTooLarge {
        len: u64,
        max: u64,
    },
    MessageTooLarge {
        size: u64,
        max: u64,
    },
    TooManyFragments {
        max: u32,
    },
    InvalidUtf8Text,
    TruncatedUtf8Text,
    InvalidCloseCode {
        code: u16,
    },
    InvalidUtf8CloseReason,
    /// RSV1 (permessage-deflate) on a ping, pong or close frame.
    CompressedControlFrame,
    /// RSV1 on a continuation: only a message's first frame carries it.
    CompressedContinuation,
    /// A compressed message's data does not inflate.
    BadDeflateData,
    /// Compressed data after a block marked final.
    DataAfterFinalBlock,
    /// A compressed frame inflates past `max_frame_size`; `len` is what was
    /// inflated when the cap was passed.
    InflatedFrameTooLarge {
        len: u64,
        max: u64,
    },
    /// A compressed message inflates past `max_message_size`.
    InflatedMessageTooLarge {
        size: u64,
        max: u64,
    },
}

impl From<crate::deflate::InflateError> for Violation {
    fn from(e: crate::deflate::InflateError) -> Self {
        match e {
            crate::deflate::InflateError::BadData => Self::BadDeflateData,
            crate::deflate::InflateError::DataAfterFinalBlock => Self::DataAfterFinalBlock,
        }
    }
}

// === impl Violation ===

impl Violation {
    /// The close code sent to the peer that broke the rule (§7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            Self::ZeroMaskKey | Self::RepeatedMaskKey { .. } => POLICY_VIOLATION,
            Self::FrameTooLarge { .. }
            | Self::MessageTooLarge { .. }
            | Self::TooManyFragments { .. }
            | Self::InflatedFrameTooLarge { .. }
            | Self::InflatedMessageTooLarge { .. } => MESSAGE_TOO_BIG,
            Self::InvalidUtf8Text
            | Self::TruncatedUtf8Text
            | Self::InvalidUtf8CloseReason
            | Self::BadDeflateData
            | Self::DataAfterFinalBlock => INVALID_PAYLOAD,
            _ => PROTOCOL_ERROR,
        }
    }

    /// Short reason for the close frame (at most 40 bytes).
    pub fn reason(&self) -> &'static str {
        self.names().1
    }

    /// Bounded metric/log label.
    pub fn label(&self) -> &'static str {
        self.names().0
    }

    /// (label, reason) of each rule, side by side.
    fn names(&self) -> (&'static str, &'static str) {
        match self {
            Self::UnmaskedClientFrame => ("unmasked_frame", "unmasked client frame"),
            Self::MaskedServerFrame => ("masked_frame", "masked server frame"),
            Self::ZeroMaskKey => ("zero_mask_key", "all-zero mask key"),
            Self::RepeatedMaskKey { .. } => ("repeated_mask_key", "repeated mask key"),
            Self::ReservedBits { .. } => ("reserved_bits", "reserved bits set"),
            Self::ReservedOpcode { .. } => ("reserved_opcode", "reserved opcode"),
            Self::FragmentedControlFrame => {
                ("fragmented_control_frame", "fragmented control frame")
            }
            Self::ControlFrameTooLong { .. } => {
                ("control_frame_too_long", "control frame over 125 bytes")
            }
            Self::CloseLengthOne => ("close_length_one", "close payload of 1 byte"),
            Self::UnexpectedContinuation => {
                ("unexpected_continuation", "continuation without a message")
            }
            Self::ExpectedContinuation => (
                "expected_continuation",
                "new message inside a fragmented one",
            ),
            Self::LengthMsbSet => ("length_msb_set", "64-bit length with top bit set"),
            Self::NonMinimalLength { .. } => {
                ("non_minimal_length", "length not in its shortest form")
            }
            Self::FrameTooLarge { .. } => ("frame_too_large", "frame too large"),
            Self::MessageTooLarge { .. } => ("message_too_large", "message too large"),
            Self::TooManyFragments { .. } => ("too_many_fragments", "too many fragments"),
            Self::InvalidUtf8Text => ("invalid_utf8_text", "invalid UTF-8 in text message"),
            Self::TruncatedUtf8Text => ("truncated_utf8_text", "text message ends mid code point"),
            Self::InvalidCloseCode { .. } => ("invalid_close_code", "invalid close code"),
            Self::InvalidUtf8CloseReason => {
                ("invalid_utf8_close_reason", "invalid UTF-8 in close reason")
            }
            Self::CompressedControlFrame => ("compressed_control_frame", "RSV1 on a control frame"),
            Self::CompressedContinuation => ("compressed_continuation", "RSV1 on a continuation"),
            Self::BadDeflateData => ("bad_deflate_data", "compressed data does not inflate"),
            Self::DataAfterFinalBlock => ("data_after_final_block", "data after the final block"),
            Self::InflatedFrameTooLarge { .. } => ("frame_too_large", "frame too large"),
            Self::InflatedMessageTooLarge { .. } => ("message_too_large", "message too large"),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RepeatedMaskKey { frames } => {
                write!(f, "same mask key on {frames} frames in a row")
            }
            Self::ReservedBits { rsv } => write!(f, "reserved bits {rsv:#05b} set, not negotiated"),
            Self::ReservedOpcode { opcode } => write!(f, "reserved opcode {opcode}"),
            Self::ControlFrameTooLong { len } => {
                write!(f, "control frame of {len} bytes over {MAX_CONTROL_PAYLOAD}")
            }
            Self::NonMinimalLength { len, bits } => {
                write!(
                    f,
                    "payload length {len} in a {bits}-bit field, not the shortest form"
                )
            }
            Self::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes over max_frame_size {max}")
            }
            Self::MessageTooLarge { size, max } => {
                write!(f, "message of {size} bytes over max_message_size {max}")
            }
            Self::TooManyFragments { max } => {
                write!(f, "message of more than max_fragments {max} frames")
            }
            Self::InvalidCloseCode { code } => write!(f, "invalid close code {code}"),
            Self::InflatedFrameTooLarge { len, max } => {
                write!(
                    f,
                    "frame inflates past {len} bytes, over max_frame_size {max}"
                )
            }
            Self::InflatedMessageTooLarge { size, max } => {
                write!(
                    f,
                    "message inflates past {size} bytes, over max_message_size {max}"
                )
            }
            other => f.write_str(other.reason()),
        }
    }
}

impl std::error::Error for Violation {}
