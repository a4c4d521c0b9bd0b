//! `[limits.shared]` once validated.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Default `key_prefix`: every key wsguard writes starts with it.
pub const DEFAULT_KEY_PREFIX: &str = "wsguard:";
/// Default `timeout` (100 ms) for one admission: a store on the same network answers in
/// well under a millisecond, so this only bounds what a sick store costs a handshake.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);
/// Default `lease` (30 s): how long a dead instance's connections keep counting. Renewed
/// every third of it, so 30 s is one small pipeline per 10 s per instance.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// What a handshake gets when the store does not answer within `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Let it through on the local limits alone (counted, logged on each transition).
    Open,
    /// Refuse it with 503.
    Closed,
}

impl fmt::Display for OnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnError::Open => "open",
            OnError::Closed => "closed",
        })
    }
}

/// `[limits.shared]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedConfig {
    /// `redis://host:port/db`, `rediss://…` or `unix:///path`; validation guarantees it
    /// carries no password.
    pub url: String,
    /// The password, first line of this file; resolved against the config file's directory.
    pub password_file: Option<PathBuf>,
    /// PEM roots for `rediss://` instead of the system's.
    pub ca_file: Option<PathBuf>,
    pub key_prefix: String,
    pub timeout: Duration,
    pub on_error: OnError,
    pub lease: Duration,
}
