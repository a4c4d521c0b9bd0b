//! wsguard's policy file: TOML → raw serde structs (`deny_unknown_fields`) → validated [`Config`].
//! Nothing is clamped or guessed; [`ConfigErrors`] lists every problem as `file:LINE: KEY: fix`.
//! Units: sizes are bytes or binary units ("64 KiB"); durations need a unit ("10s", "500ms");
//! limits that can be disabled also take "off". Origins and trusted proxies are parsed during
//! validation too, so [`Config`] carries the compiled allow-list and networks and nothing later
//! can fail on them.

mod advice;
mod auth;
mod check;
mod defaults;
mod deflate;
mod effective;
mod error;
mod fleet;
mod http;
mod keys;
mod rates;
mod raw;
mod routes;
#[cfg(test)]
mod tests;
mod units;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth::config::{AuthConfig, RouteAuth};
use crate::client_ip::TrustedProxies;
use crate::fleet::SharedConfig;
use crate::limits::{FrameRateConfig, Heartbeats};
use crate::origin::AllowList;

pub use crate::framework::{Framework, HttpConfig, RouteHttp};
pub use defaults::*;
pub use error::{ConfigErrors, ConfigProblem};
pub use units::{format_duration, format_size};

// === validated configuration ===

/// A validated configuration; every default is filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file name (or origin name) it was read from, for messages about its contents.
    pub source_name: String,
    pub server: ServerConfig,
    pub origin: OriginConfig,
    /// Client → backend limits; after validation every field is `Some`.
    pub frames: FrameLimits,
    /// Client → backend mask-key rule (`[frames] mask_key_policy`).
    pub mask_key_policy: MaskKeyPolicy,
    /// Backend → client limits; `None` = unlimited (the default).
    pub backend_frames: FrameLimits,
    /// Client → backend rates, per connection (`[rate]`).
    pub rate: RateConfig,
    /// Backend → client rates, per connection (`[backend_rate]`); every rate off by default.
    pub backend_rate: RateConfig,
    /// Connection counts, per-IP limits and trusted proxies (`[limits]`).
    pub limits: LimitsConfig,
    /// permessage-deflate (`[deflate]`).
    pub deflate: DeflateConfig,
    /// The pass-through half of routes (`[http]`).
    pub http: HttpConfig,
    /// At least one; paths are unique per match kind.
    pub routes: Vec<Route>,
    /// `[auth.NAME]` sections, in file order; routes refer to them by index.
    pub auth: Vec<AuthConfig>,
    pub admin: AdminConfig,
    pub demo: DemoConfig,
}

/// `[server]`: listener, TLS files and connection timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// PEM certificate chain, resolved against the config file's directory. Validation
    /// guarantees `tls_cert` and `tls_key` are both `Some` (wss://) or both `None` (plain ws://).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key; see `tls_cert`.
    pub tls_key: Option<PathBuf>,
    pub handshake_timeout: Duration,
    pub max_request_head: u64,
    pub backend_connect_timeout: Duration,
    pub close_timeout: Duration,
    /// On SIGTERM, how long to wait for close handshakes before exiting.
    pub shutdown_timeout: Duration,
    /// No frame in either direction for this long → close 1001 both ways.
    pub idle_timeout: Duration,
    /// The proxy pings clients idle this long; `None` = off (the default).
    /// Validation guarantees it is shorter than `idle_timeout`.
    pub ping_interval: Option<Duration>,
    /// A client that does not answer a proxy ping within this is closed with 1001.
    pub pong_timeout: Duration,
}

/// `[admin]`: the admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// `None` = no admin listener (the default). Never equal to `server.listen`.
    pub listen: Option<SocketAddr>,
}

/// `[rate] on_limit` / `[backend_rate] on_limit`: what happens to a connection over its rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLimit {
    /// Close the connection.
    Close,
    /// Stop reading until the rate allows more (backpressure).
    Delay,
}

/// Token-bucket rates for one direction of one connection; `None` = no limit. After
/// validation each burst is `Some` exactly when its rate is, and is >= it (defaults above).
/// The quotas are the rate limiter's own type, so the relay uses them as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateConfig {
    pub quota: FrameRateConfig,
    pub on_limit: OnLimit,
    /// Application heartbeats: charged as control frames, and let past a throttled burst.
    pub heartbeats: Heartbeats,
}

/// `[limits]`: connection counts, per-IP limits and trusted proxies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Concurrent connections in total; over → 503.
    pub max_connections: u32,
    /// Concurrent connections per client IP; over → 429. `None` = off.
    pub connections_per_ip: Option<NonZeroU32>,
    /// Handshakes per client IP per minute; over → 429 with Retry-After. `None` = off.
    pub handshakes_per_ip: Option<NonZeroU32>,
    /// Handshakes at once per client IP; `Some` exactly when `handshakes_per_ip` is.
    pub handshake_burst: Option<NonZeroU32>,
    /// Bound on client IPs with per-IP state.
    pub max_tracked_ips: u32,
    /// Networks whose X-Forwarded-For / PROXY header is believed.
    pub trusted_proxies: TrustedProxies,
    /// Expect a PROXY protocol v1/v2 header from trusted peers; validation guarantees
    /// `trusted_proxies` is not empty when this is true.
    pub proxy_protocol: bool,
    /// `[limits.shared]`: the per-IP limits fleet-wide, through Redis. `None` = this process
    /// alone.
    pub shared: Option<SharedConfig>,
    /// Failed authentications per client IP per minute; over → 429. `None` = off.
    pub auth_failures_per_ip: Option<NonZeroU32>,
    /// Failed authentications at once per client IP; `Some` exactly when
    /// `auth_failures_per_ip` is.
    pub auth_failure_burst: Option<NonZeroU32>,
}

/// `[origin]`: which browser origins may open a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginConfig {
    /// The parsed `allow` entries, and `allow_missing`.
    pub allow: AllowList,
    pub mode: OriginMode,
}

/// `[origin] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginMode {
    /// Refuse a disallowed Origin with 403.
    Enforce,
    /// Log and count a disallowed Origin, let it through.
    Report,
}

/// Size limits for one direction; `None` = no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameLimits {
    pub max_frame_size: Option<u64>,
    pub max_message_size: Option<u64>,
    pub max_fragments: Option<u64>,
}

pub use crate::deflate::{DeflateConfig, DeflateMode};
/// `[frames] mask_key_policy`: the frame engine's own type.
pub use crate::frame::MaskKeyPolicy;

/// One `[[route]]`: which request paths go to which backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Starts with "/", no query, no whitespace, no dot segments.
    pub path: String,
    pub path_match: PathMatch,
    /// At least one.
    pub backends: Vec<Backend>,
    /// Allow-list offered to the backend; empty = forward the client's offer unchanged.
    pub subprotocols: Vec<String>,
    /// Overrides `[deflate] mode` on this route.
    pub deflate: Option<DeflateMode>,
    /// `auth`, `keep_token` and `max_session`.
    pub auth: RouteAuth,
    /// `http` and `framework`: `None` for a route of upgrades only.
    pub http: Option<RouteHttp>,
}

/// `[[route]] match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathMatch {
    Exact,
    /// Segment boundary: "/chat" matches "/chat" and "/chat/…", not "/chatroom".
    Prefix,
}

/// A backend address; `host` is a name, IPv4 or IPv6 (without brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub host: String,
    pub port: u16,
}

/// `[demo]`: addresses used only by `wsguard demo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoConfig {
    pub backend_listen: SocketAddr,
    pub page_listen: SocketAddr,
    /// The file sets a `[demo]` key: only then does `wsguard check` print the section,
    /// which means nothing to a proxy that never runs `wsguard demo`.
    pub in_file: bool,
}

// === impl Config ===

impl Config {
    /// Parse and validate `src`; `origin_name` names it in messages, and relative TLS paths
    /// resolve against its directory (no directory = left as written).
    pub fn from_str(src: &str, origin_name: &str) -> Result<Config, ConfigErrors> {
        validate::load(src, origin_name)
    }

    /// Read and validate a file; relative TLS paths resolve against the file's directory.
    pub fn from_file(path: &Path) -> Result<Config, ConfigErrors> {
        let name = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::one(
                &name,
                ConfigProblem::new("", None, format!("cannot read the config file: {e}")),
            )
        })?;
        Self::from_str(&src, &name)
    }

    /// The route for a request path: an exact match beats a prefix; the longest prefix wins.
    pub fn route_for(&self, path: &str) -> Option<&Route> {
        self.route_index(path).map(|i| &self.routes[i])
    }

    /// The index in `routes` of the route for `path`: an exact match, else the longest
    /// prefix.
    pub fn route_index(&self, path: &str) -> Option<usize> {
        let matching = || {
            self.routes
                .iter()
                .enumerate()
                .filter(|(_, r)| r.matches(path))
        };
        matching()
            .find(|(_, r)| r.path_match == PathMatch::Exact)
            .or_else(|| matching().max_by_key(|(_, r)| r.path.len()))
            .map(|(i, _)| i)
    }

    /// The effective settings, every default filled in, as TOML (for `wsguard check`).
    pub fn to_effective_toml(&self) -> String {
        effective::render(self)
    }
}

// === impl Route ===

impl Route {
    /// Does `path` (a request path; any `?query` or `#fragment` is ignored) fall under this route?
    /// Paths with dot segments or encoded dots, slashes or backslashes never match, so a
    /// prefix route cannot be escaped with "/chat/../admin".
    pub fn matches(&self, path: &str) -> bool {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        if has_dot_segment(path) || has_encoded_separator(path) {
            return false;
        }
        match self.path_match {
            PathMatch::Exact => path == self.path,
            PathMatch::Prefix => path.strip_prefix(self.path.as_str()).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('/') || self.path.ends_with('/')
            }),
        }
    }
}

fn has_dot_segment(path: &str) -> bool {
    path.split(['/', '\\']).any(|seg| seg == "." || seg == "..")
}

fn has_encoded_separator(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    ["%2e", "%2f", "%5c"].iter().any(|e| lower.contains(e))
}

impl fmt::Display for PathMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathMatch::Exact => "exact",
            PathMatch::Prefix => "prefix",
        })
    }
}

impl fmt::Display for OriginMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OriginMode::Enforce => "enforce",
            OriginMode::Report => "report",
        })
    }
}

impl fmt::Display for OnLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnLimit::Close => "close",
            OnLimit::Delay => "delay",
        })
    }
}

impl fmt::Display for MaskKeyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MaskKeyPolicy::Strict => "strict",
            MaskKeyPolicy::Rfc => "rfc",
        })
    }
}

// === impl Backend ===

impl Backend {
    /// Parse "host:port", "1.2.3.4:port" or "[v6]:port"; the error says how to write it.
    pub fn parse(s: &str) -> Result<Backend, String> {
        let example = "e.g. \"127.0.0.1:9000\", \"chat.internal:9000\" or \"[::1]:9000\"";
        if s.contains("://") {
            return Err(format!(
                "\"{s}\" has a scheme; write only host:port, {example}"
            ));
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("\"{s}\" has no closing \"]\"; write {example}"))?;
            host.parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("\"{host}\" in \"{s}\" is not an IPv6 address"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| format!("\"{s}\" has no port; write {example}"))?;
            (host, port)
        } else {
            let (host, port) = s
                .rsplit_once(':')
                .ok_or_else(|| format!("\"{s}\" has no port; write host:port, {example}"))?;
            if host.contains(':') {
                return Err(format!(
                    "IPv6 address in \"{s}\" needs brackets, e.g. \"[::1]:9000\""
                ));
            }
            check_host(host).map_err(|why| format!("\"{s}\": {why}; write {example}"))?;
            (host, port)
        };
        let port = match port.parse::<u16>() {
            Ok(0) | Err(_) => {
                return Err(format!(
                    "\"{port}\" in \"{s}\" is not a port (1..=65535); write {example}"
                ))
            }
            Ok(p) => p,
        };
        Ok(Backend {
            host: host.to_owned(),
            port,
        })
    }
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("host is empty".into());
    }
    if host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return host
            .parse::<std::net::Ipv4Addr>()
            .map(|_| ())
            .map_err(|_| format!("\"{host}\" is not an IPv4 address"));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if host.len() > 253 || !host.trim_end_matches('.').split('.').all(label_ok) {
        return Err(format!("\"{host}\" is not a valid host name"));
    }
    Ok(())
}

impl fmt::Display for Backend {
    /// host:port, with brackets around an IPv6 host (usable as an HTTP Host header).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}
