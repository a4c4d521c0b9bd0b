//! `Origin` allow-list against cross-site WebSocket hijacking (RFC 6455 §10.2): parses header
//! values and `[origin] allow` entries into RFC 6454 §6.2 serialized origins and matches them.
//! Pure and bounded: no I/O, no panics, nothing longer than [`MAX_ORIGIN_LEN`] is parsed.
//! `refusal` holds the leaf types (why an origin is refused, the length cap), `serialized`
//! one origin's syntax and normalization, `allow` the entries, the list and the matching.

mod allow;
mod refusal;
mod serialized;
#[cfg(test)]
mod tests;

pub use allow::{AllowEntry, AllowList, EntryError};
pub use refusal::{OriginRefusal, MAX_ORIGIN_LEN};
