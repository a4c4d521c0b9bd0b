//! The header-time rules for one direction: RFC 6455 §5
//! (<https://www.rfc-editor.org/rfc/rfc6455#section-5>) plus wsguard's own caps and
//! mask-key policy, as configured ([`FramePolicy`]), and what they remember between
//! frames ([`RuleState`]). Each broken rule is one [`Violation`].

use super::coding::{OpCode, MAX_CONTROL_PAYLOAD};
use super::error::Violation;
use super::header::FrameHeader;

/// Which peer sent the frames a decoder checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Frames sent by the client: must be masked (§5.3).
    Client,
    /// Frames sent by the backend: must not be masked (§5.1).
    Server,
}

/// How much the proxy trusts a client's mask keys (§10.3 wants them unpredictable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskKeyPolicy {
    /// Refuse an all-zero key, or the same key on [`MASK_KEY_REPEAT_LIMIT`] frames in a row (1008).
    Strict,
    /// Only the mask bit is checked.
    Rfc,
}

/// Frames in a row with an identical key that break [`MaskKeyPolicy::Strict`]. Two equal
/// keys happen by chance (1 in 2^32); three in a row mean a fixed or broken generator.
pub const MASK_KEY_REPEAT_LIMIT: u8 = 3;

/// Caps for one direction. `None` means unlimited.
#[derive(Clone, Debug)]
pub struct FramePolicy {
    /// Largest payload of a single frame; refused from the header, before any payload.
    pub max_frame_size: Option<u64>,
    /// Largest sum of payloads of one (possibly fragmented) data message.
    pub max_message_size: Option<u64>,
    /// Most frames in one data message.
    pub max_fragments: Option<u32>,
    /// Ignored for [`Role::Server`].
    pub mask_key_policy: MaskKeyPolicy,
}

/// What the header rules remember between frames of one direction.
#[derive(Clone, Copy, Debug, Default)]
pub struct RuleState {
    /// Opcode of the data message in progress: set by its first frame's header,
    /// cleared at the end of its FIN frame.
    message: Option<OpCode>,
    /// The message in progress is compressed (RSV1 on its first frame).
    compressed: bool,
    /// permessage-deflate was negotiated: RSV1 may start a message.
    rsv1_allowed: bool,
    message_size: u64,
    fragments: u32,
    last_key: Option<[u8; 4]>,
    key_run: u8,
}

// === impl RuleState ===

impl RuleState {
    /// The opcode (Text or Binary) of the data message in progress, if any.
    pub fn message(&self) -> Option<OpCode> {
        self.message
    }

    /// Whether the data message in progress is compressed.
    pub fn compressed(&self) -> bool {
        self.compressed
    }

    /// permessage-deflate was negotiated for this direction (RFC 7692 §6).
    pub fn allow_rsv1(&mut self) {
        self.rsv1_allowed = true;
    }

    /// Records that a data frame's payload ended; a FIN frame ends its message.
    pub fn end_data_frame(&mut self, fin: bool) {
        if fin {
            self.message = None;
        }
    }
}

/// Checks one header against every header-time rule, in this order:
///
/// 1. reserved bits (RSV1 only if permessage-deflate was negotiated), reserved opcode,
///    mask bit for the role (the frame cannot be read);
/// 2. control-frame shape: no RSV1, FIN, length ≤ 125, a close payload of 1 byte;
/// 3. fragment sequence, RSV1 only on a message's first frame (RFC 7692 §6.1);
/// 4. mask-key policy (1008);
/// 5. caps (1009): frame size, message size, fragment count.
///
/// Protocol errors (1002) come before policy (1008) and caps (1009) so a malformed
/// frame is reported as malformed. A length field with the top bit set or not in its
/// shortest form is refused earlier still, by [`FrameHeader::parse`]. On error `state`
/// may be partly updated; the connection is closed anyway.
pub fn check_header(
    role: Role,
    policy: &FramePolicy,
    state: &mut RuleState,
    h: &FrameHeader,
) -> Result<(), Violation> {
    let rsv1 = h.rsv1 && !state.rsv1_allowed;
    let rsv = u8::from(rsv1) << 2 | u8::from(h.rsv2) << 1 | u8::from(h.rsv3);
    if rsv != 0 {
        return Err(Violation::ReservedBits { rsv });
    }
    if let OpCode::Reserved(opcode) = h.opcode {
        return Err(Violation::ReservedOpcode { opcode });
    }
    match (role, h.mask) {
        (Role::Client, None) => return Err(Violation::UnmaskedClientFrame),
        (Role::Server, Some(_)) => return Err(Violation::MaskedServerFrame),
        _ => {}
    }
    if h.opcode.is_control() {
        check_control(h)?;
    } else {
        check_sequence(state, h)?;
    }
    if let (Role::Client, MaskKeyPolicy::Strict, Some(key)) = (role, policy.mask_key_policy, h.mask)
    {
        check_mask_key(state, key)?;
    }
    if let Some(max) = policy.max_frame_size {
        if h.payload_len > max {
            return Err(Violation::FrameTooLarge {
                len: h.payload_len,
                max,
            });
        }
    }
    if !h.opcode.is_control() {
        check_message_caps(policy, state, h)?;
    }
    Ok(())
}

fn check_control(h: &FrameHeader) -> Result<(), Violation> {
    if h.rsv1 {
        return Err(Violation::CompressedControlFrame);
    }
    if !h.fin {
        return Err(Violation::FragmentedControlFrame);
    }
    if h.payload_len > MAX_CONTROL_PAYLOAD {
        return Err(Violation::ControlFrameTooLong { len: h.payload_len });
    }
    if h.opcode == OpCode::Close && h.payload_len == 1 {
        return Err(Violation::CloseLengthOne);
    }
    Ok(())
}

/// §5.4: a continuation needs an open message; a new message needs none open.
fn check_sequence(state: &mut RuleState, h: &FrameHeader) -> Result<(), Violation> {
    match (h.opcode, state.message) {
        (OpCode::Continue, None) => Err(Violation::UnexpectedContinuation),
        (OpCode::Continue, Some(_)) if h.rsv1 => Err(Violation::CompressedContinuation),
        (OpCode::Continue, Some(_)) => Ok(()),
        (_, Some(_)) => Err(Violation::ExpectedContinuation),
        (opcode, None) => {
            state.message = Some(opcode);
            state.compressed = h.rsv1;
            state.message_size = 0;
            state.fragments = 0;
            Ok(())
        }
    }
}

fn check_mask_key(state: &mut RuleState, key: [u8; 4]) -> Result<(), Violation> {
    if key == [0; 4] {
        return Err(Violation::ZeroMaskKey);
    }
    if state.last_key == Some(key) {
        state.key_run = state.key_run.saturating_add(1);
    } else {
        state.last_key = Some(key);
        state.key_run = 1;
    }
    if state.key_run >= MASK_KEY_REPEAT_LIMIT {
        return Err(Violation::RepeatedMaskKey {
            frames: state.key_run,
        });
    }
    Ok(())
}

/// Running totals are checked as `len > max - so_far` so no sum can overflow.
fn check_message_caps(
    policy: &FramePolicy,
    state: &mut RuleState,
    h: &FrameHeader,
) -> Result<(), Violation> {
    if let Some(max) = policy.max_message_size {
        if h.payload_len > max.saturating_sub(state.message_size) {
            let size = state.message_size.saturating_add(h.payload_len);
            return Err(Violation::MessageTooLarge { size, max });
        }
    }
    state.message_size = state.message_size.saturating_add(h.payload_len);
    state.fragments = state.fragments.saturating_add(1);
    if let Some(max) = policy.max_fragments {
        if state.fragments > max {
            return Err(Violation::TooManyFragments { max });
        }
    }
    Ok(())
}
