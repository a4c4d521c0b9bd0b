//! Authentication at the handshake (`[auth.NAME]`, `[[route]] auth`).

mod cache;
mod config;
pub mod forward;
pub mod http;
pub mod jwks;

pub use config::*;
