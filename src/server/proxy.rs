//! The configuration in force: [`Proxy`] is what one configuration compiles to (TLS
//! configuration, trusted proxies, per-IP quotas, relay settings), and [`ProxyHandle`]
//! swaps it on reload. Connections keep the `Arc<Proxy>` they started with.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use http::HeaderName;
use rustls::ServerConfig;

use crate::auth::config::{AuthError, AuthKind};
use crate::auth::Authenticator;
use crate::client_ip::TrustedProxies;
use crate::config::{Config, FrameLimits, LimitsConfig, MaskKeyPolicy};
use crate::frame::FramePolicy;
use crate::limits::IpLimitsConfig;
use crate::passthrough;
use crate::relay;
use crate::state::State;
use crate::upstream::RoundRobin;

/// Everything a connection needs, shared read-only between connections.
pub struct Proxy {
    pub(super) config: Config,
    pub(super) round_robin: Vec<RoundRobin>,
    pub(super) tls: Option<Arc<ServerConfig>>,
    pub(super) trusted: TrustedProxies,
    /// Applied to the process-wide per-IP tables when this configuration takes over, and
    /// what the shared tier is asked with.
    pub(super) ip_limits: IpLimitsConfig,
    /// What every relay starts from, built once per configuration.
    pub(super) relay: relay::Settings,
    /// One per `[auth.NAME]`, in `Config::auth` order.
    pub(super) auth: Vec<Arc<Authenticator>>,
    /// Every header an `[auth]` section sets for the backend: never taken from a client.
    pub(super) identity_headers: Vec<HeaderName>,
    /// The sticky tags of each route's backends, in `Config::routes` order.
    pub(super) tags: Vec<Vec<crate::sticky::Tag>>,
    /// The pooled backend client of pass-through requests.
    pub(super) http_client: passthrough::Client,
}

/// Why the proxy could not start. Each names what to fix.
#[derive(Debug)]
pub enum StartError {
    Tls(crate::tls::TlsError),
    Bind(SocketAddr, std::io::Error),
    /// An `[auth.NAME]` could not start.
    Auth(String, AuthError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Tls(e) => write!(f, "TLS: {e}"),
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::Auth(name, e) => write!(f, "[auth.{name}]: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

// === impl Proxy ===

impl Proxy {
    /// Loads what the configuration points at (certificates, auth keys) and starts its
    /// authentication (JWKS fetches, on the current tokio runtime). Binds nothing.
    pub fn new(config: Config, state: &State) -> Result<Proxy, StartError> {
        Proxy::build(config, state, &[])
    }

    /// As [`Proxy::new`], keeping the started `[auth]` sections of `previous` whose
    /// configuration is unchanged (their JWKS and caches go on).
    fn build(
        config: Config,
        state: &State,
        previous: &[Arc<Authenticator>],
    ) -> Result<Proxy, StartError> {
        let auth = config
            .auth
            .iter()
            .map(|cfg| match previous.iter().find(|a| a.config() == cfg) {
                Some(kept) => Ok(Arc::clone(kept)),
                None => Authenticator::start(cfg, &state.metrics.auth)
                    .map(Arc::new)
                    .map_err(|e| StartError::Auth(cfg.name.clone(), e)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let identity_headers = identity_headers(&config);
        let tls = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => {
                Some(crate::tls::server_config(cert, key).map_err(StartError::Tls)?)
            }
            _ => None,
        };
        let round_robin = config
            .routes
            .iter()
            .map(|_| RoundRobin::default())
            .collect();
        let trusted = config.limits.trusted_proxies.clone();
        let relay = relay::Settings {
            client_policy: frame_policy(&config.frames, config.mask_key_policy),
            backend_policy: frame_policy(&config.backend_frames, MaskKeyPolicy::Rfc),
            client_rate: config.rate.clone(),
            backend_rate: config.backend_rate.clone(),
            close_timeout: config.server.close_timeout,
            idle_timeout: config.server.idle_timeout,
            ping_interval: config.server.ping_interval,
            pong_timeout: config.server.pong_timeout,
            deflate: None,
            inspect_backend: config.deflate.inspect_backend,
            session_end: None,
        };
        let http_client = passthrough::client(&config.http, config.server.backend_connect_timeout);
        let tags = config.routes.iter().map(passthrough::tags).collect();
        Ok(Proxy {
            tags,
            http_client,
            ip_limits: ip_limits(&config.limits),
            config,
            round_robin,
            tls,
            trusted,
            relay,
            auth,
            identity_headers,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where a request for `uri` on route `index` goes: the backends to try in order, and
    /// the query they get (a framework session's tag taken off).
    pub(super) fn place(&self, index: usize, uri: &http::Uri) -> passthrough::Placement {
        let route = &self.config.routes[index];
        let start = self.round_robin[index].start(route.backends.len());
        passthrough::place(route, &self.tags[index], start, uri.path(), uri.query())
    }

    /// Whether a connection from `peer` starts with a PROXY header to read.
    pub(super) fn reads_proxy_header(&self, peer: IpAddr) -> bool {
        self.config.limits.proxy_protocol && self.trusted.contains(peer)
    }

    /// Whether a connection from `peer` is checked for a PROXY header it may not send.
    pub(super) fn refuses_proxy_header(&self, peer: IpAddr) -> bool {
        self.config.limits.proxy_protocol && !self.trusted.contains(peer)
    }
}

fn ip_limits(limits: &LimitsConfig) -> IpLimitsConfig {
    IpLimitsConfig {
        connections_per_ip: limits.connections_per_ip,
        handshakes_per_ip_per_minute: limits.handshakes_per_ip,
        handshake_burst: limits.handshake_burst,
        max_tracked_ips: limits.max_tracked_ips,
    }
}

/// The headers the `[auth]` sections set (claim headers, copied auth-service headers).
fn identity_headers(config: &Config) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = Vec::new();
    for auth in &config.auth {
        let set: Vec<&HeaderName> = match &auth.kind {
            AuthKind::Jwt(j) => j.claim_headers.iter().map(|(_, h)| h).collect(),
            AuthKind::Forward(f) => f.copy_headers.iter().collect(),
        };
        for name in set {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    names
}

fn frame_policy(limits: &FrameLimits, mask_key_policy: MaskKeyPolicy) -> FramePolicy {
    FramePolicy {
        max_frame_size: limits.max_frame_size,
        max_message_size: limits.max_message_size,
        max_fragments: limits
            .max_fragments
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        mask_key_policy,
    }
}

/// The configuration in force. A reload swaps it; connections keep the
/// `Arc<Proxy>` they started with, so they go on untouched.
#[derive(Clone)]
pub struct ProxyHandle {
    current: Arc<RwLock<Arc<Proxy>>>,
    state: Arc<State>,
}

// === impl ProxyHandle ===

impl ProxyHandle {
    /// Puts `proxy` in force over `state`'s per-IP tables.
    pub(super) fn new(proxy: Proxy, state: Arc<State>) -> ProxyHandle {
        state.apply_limits(&proxy.config.limits, &proxy.ip_limits);
        state.apply_http(&proxy.config.http, proxy.config.limits.max_tracked_ips);
        ProxyHandle {
            current: Arc::new(RwLock::new(Arc::new(proxy))),
            state,
        }
    }

    pub fn current(&self) -> Arc<Proxy> {
        match self.current.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Builds the proxy for `config` (keeping the `[auth]` sections that did not change)
    /// and puts it in force: the SIGHUP reload.
    pub fn reload(&self, config: Config) -> Result<(), StartError> {
        let proxy = Proxy::build(config, &self.state, &self.current().auth)?;
        self.replace(proxy);
        Ok(())
    }

    /// Applies `proxy` to connections accepted from now on, and its per-IP quotas and caps
    /// to the process-wide tables, whose counts stay as they are.
    fn replace(&self, proxy: Proxy) {
        self.state
            .apply_limits(&proxy.config.limits, &proxy.ip_limits);
        self.state
            .apply_http(&proxy.config.http, proxy.config.limits.max_tracked_ips);
        let proxy = Arc::new(proxy);
        match self.current.write() {
            Ok(mut p) => *p = proxy,
            Err(poisoned) => *poisoned.into_inner() = proxy,
        }
    }
}
