//! The WebSocket frame codec (RFC 6455 §5), sans-I/O. Layered bottom-up, each
//! module using only those below it:
//!
//! - [`coding`], [`mask`], [`utf8`]: wire numbers, masking, streaming UTF-8;
//! - [`error`]: [`Violation`], the one error every layer returns;
//! - [`header`], [`close`]: the frame header and received close payloads;
//! - [`rules`]: the configurable per-direction rules ([`FramePolicy`]);
//! - [`decoder`]: [`Decoder`], which runs all of them over a byte stream;
//! - [`encoder`]: [`ControlFrame`], the proxy's own close and ping frames.

pub mod close;
pub mod coding;
pub mod decoder;
pub mod encoder;
pub mod error;
pub mod header;
pub mod mask;
pub mod rules;
pub mod utf8;

pub use coding::OpCode;
pub use decoder::{Decoder, Event};
pub use encoder::ControlFrame;
pub use error::Violation;
pub use header::FrameHeader;
pub use rules::{FramePolicy, MaskKeyPolicy, Role};
