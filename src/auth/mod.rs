//! Authentication at the handshake (`[auth.NAME]`, `[[route]] auth`).

mod config;
pub mod http;
pub mod jwks;

pub use config::*;
