//! The Redis connection (one multiplexed connection per process, reconnected in the
//! background by the client's connection manager), the store's errors, and its health: up
//! or down, with one log line and a gauge on each change.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

use super::config::{OnError, SharedConfig};
use crate::metrics::{KindLabels, SharedMetrics};

/// Why the store could not be set up, or did not answer.
#[derive(Debug)]
pub enum StoreError {
    /// `password_file` or `ca_file` could not be read.
    File(PathBuf, std::io::Error),
    /// The client refused the URL or the TLS settings.
    Setup(String),
    /// No answer within `timeout`.
    Timeout,
    /// Connect, read or write failed (refused, reset, closed).
    Connection(String),
    /// The store refused the credentials (NOAUTH, WRONGPASS, NOPERM).
    Auth(String),
    /// The store answered with an error (a script error, OOM, a read-only replica).
    Server(String),
    /// An answer the scripts never give.
    Reply,
}

impl StoreError {
    /// Bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::File(..) | StoreError::Setup(_) => "setup",
            StoreError::Timeout => "timeout",
            StoreError::Connection(_) => "connection",
            StoreError::Auth(_) => "auth",
            StoreError::Server(_) => "server",
            StoreError::Reply => "reply",
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::File(path, e) => write!(f, "cannot read {}: {e}", path.display()),
            StoreError::Setup(e) => write!(f, "{e}"),
            StoreError::Timeout => f.write_str("no answer within limits.shared.timeout"),
            StoreError::Connection(e) | StoreError::Auth(e) | StoreError::Server(e) => {
                f.write_str(e)
            }
            StoreError::Reply => f.write_str("unexpected reply to a wsguard script"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> StoreError {
        // The client's messages name the command and the server's reason, never the
        // password.
        let text = e.to_string();
        if e.is_timeout() {
            StoreError::Timeout
        } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
            StoreError::Connection(text)
        } else if e.kind() == redis::ErrorKind::AuthenticationFailed
            // A refused AUTH at connect is a client-side kind without a server code.
            || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
        {
            StoreError::Auth(text)
        } else {
            StoreError::Server(text)
        }
    }
}

/// The connection manager for `cfg`, and the store as log lines name it. Lazy, so a store
/// that is down at start does not stop wsguard; reconnects with a short backoff whenever a
/// command finds the connection broken.
pub(super) fn connect(cfg: &SharedConfig) -> Result<(ConnectionManager, String), StoreError> {
    let setup = |e: redis::RedisError| StoreError::Setup(e.to_string());
    let mut info = cfg.url.as_str().into_connection_info().map_err(setup)?;
    let described = describe(&info);
    if let Some(path) = &cfg.password_file {
        let password = read_secret(path)?;
        let settings = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(settings);
    }
    let client = match &cfg.ca_file {
        Some(path) => {
            let root = std::fs::read(path).map_err(|e| StoreError::File(path.clone(), e))?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root),
            };
            Client::build_with_tls(info, certs).map_err(setup)?
        }
        None => Client::open(info).map_err(setup)?,
    };
    let manager = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(cfg.timeout.max(CONNECT_TIMEOUT_FLOOR)))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    let conn = ConnectionManager::new_lazy_with_config(client, manager).map_err(setup)?;
    Ok((conn, described))
}

/// A connection attempt gets at least this long, even with a shorter command timeout: a TLS
/// handshake to a remote store takes a few round trips.
const CONNECT_TIMEOUT_FLOOR: Duration = Duration::from_secs(1);

/// The password: the file's first line, without its line ending.
fn read_secret(path: &PathBuf) -> Result<String, StoreError> {
    let text = std::fs::read_to_string(path).map_err(|e| StoreError::File(path.clone(), e))?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        let empty = std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is empty");
        return Err(StoreError::File(path.clone(), empty));
    }
    Ok(line.to_owned())
}

/// The store for log lines: its address, never its credentials.
fn describe(info: &ConnectionInfo) -> String {
    let db = info.redis_settings().db();
    match info.addr() {
        ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}/{db}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}/{db}"),
        ConnectionAddr::Unix(path) => format!("unix://{}", path.display()),
        _ => "redis".to_owned(),
    }
}

/// This process among the fleet's leases: random, so a restarted instance never renews or
/// removes the leases of its previous life.
pub(super) fn instance_id() -> String {
    let mut bytes = [0u8; 8];
    // Without randomness the process id still tells instances on one host apart.
    if getrandom::fill(&mut bytes).is_err() {
        bytes[..4].copy_from_slice(&std::process::id().to_be_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether the store answers; shared by the admissions and the lease task.
pub(super) struct Health {
    up: AtomicBool,
    on_error: OnError,
    metrics: SharedMetrics,
}

impl Health {
    pub(super) fn new(metrics: SharedMetrics, on_error: OnError) -> Health {
        metrics.up.set(1);
        Health {
            up: AtomicBool::new(true),
            on_error,
            metrics,
        }
    }

    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub(super) fn succeeded(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            self.metrics.up.set(1);
            tracing::info!("shared store answers again: per-IP limits are fleet-wide again");
        }
    }

    /// Counts `e` and marks the store down.
    pub(super) fn failed(&self, e: &StoreError) {
        self.metrics
            .errors
            .get_or_create(&KindLabels { kind: e.kind() })
            .inc();
        if self.up.swap(false, Ordering::Relaxed) {
            self.metrics.up.set(0);
            let policy = match self.on_error {
                OnError::Open => "handshakes pass on the local limits alone",
                OnError::Closed => "handshakes are refused with 503",
            };
            tracing::warn!(error = %e, kind = e.kind(), on_error = %self.on_error, "shared store unavailable: {policy} until it answers");
        } else {
            tracing::debug!(error = %e, kind = e.kind(), "shared store still unavailable");
        }
    }
}
