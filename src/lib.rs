//! wsguard: a TLS-terminating WebSocket security proxy.
//!
//! ```text
//! client ──TCP──▶ server (accept, TLS, HTTP/1.1) ──▶ handshake check (method, version,
//!   key, Host, route, Origin, subprotocols) ──▶ upstream (connect, forward, verify 101 +
//!   Sec-WebSocket-Accept) ──▶ 101 to the client ──▶ relay: two directions, every frame
//!   through the sans-I/O frame decoder and its rules; original bytes forwarded.
//! ```
//!
//! Refusals are closed enums mapped to the wire in one place each:
//! [`refusal::Refusal`] (HTTP status) and [`frame::Violation`] (close code).

pub mod admin;
pub mod auth;
pub mod client_ip;
pub mod config;
pub mod deflate;
#[cfg(feature = "demo")]
pub mod demo;
#[cfg(feature = "demo")]
pub mod dev_certs;
pub mod fleet;
pub mod frame;
pub mod framework;
pub mod handshake;
pub mod hop;
pub mod limits;
pub mod metrics;
pub mod origin;
pub mod passthrough;
pub mod proxy_protocol;
pub mod refusal;
pub mod relay;
pub mod server;
pub mod state;
pub mod sticky;
pub mod tls;
pub mod upstream;
