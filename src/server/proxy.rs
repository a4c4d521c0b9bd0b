//! The configuration in force: [`Proxy`] is what one configuration compiles to (TLS
//! acceptor, trusted proxies, per-IP quotas, relay settings), and [`ProxyHandle`]
//! swaps it on reload. Connections keep the `Arc<Proxy>` they started with.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use tokio_rustls::TlsAcceptor;

use crate::client_ip::TrustedProxies;
use crate::config::{Config, FrameLimits, LimitsConfig, MaskKeyPolicy};
use crate::frame::FramePolicy;
use crate::limits::IpLimitsConfig;
use crate::relay;
use crate::state::State;
use crate::upstream::RoundRobin;

/// Everything a connection needs, shared read-only between connections.
pub struct Proxy {
    pub(super) config: Config,
    pub(super) round_robin: Vec<RoundRobin>,
    pub(super) tls: Option<TlsAcceptor>,
    pub(super) trusted: TrustedProxies,
    /// Applied to the process-wide per-IP tables when this configuration takes over, and
    /// what the shared tier is asked with.
    pub(super) ip_limits: IpLimitsConfig,
    /// What every relay starts from, built once per configuration.
    pub(super) relay: relay::Settings,
}

/// Why the proxy could not start. Each names what to fix.
#[derive(Debug)]
pub enum StartError {
    Tls(crate::tls::TlsError),
    Bind(SocketAddr, std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Tls(e) => write!(f, "TLS: {e}"),
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

// === impl Proxy ===

impl Proxy {
    /// Loads what the configuration points at (certificates). Binds nothing.
    pub fn new(config: Config) -> Result<Proxy, StartError> {
        let tls = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => Some(TlsAcceptor::from(
                crate::tls::server_config(cert, key).map_err(StartError::Tls)?,
            )),
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
            client_rate: config.rate,
            backend_rate: config.backend_rate,
            close_timeout: config.server.close_timeout,
            idle_timeout: config.server.idle_timeout,
            ping_interval: config.server.ping_interval,
            pong_timeout: config.server.pong_timeout,
            deflate: None,
            inspect_backend: config.deflate.inspect_backend,
        };
        Ok(Proxy {
            ip_limits: ip_limits(&config.limits),
            config,
            round_robin,
            tls,
            trusted,
            relay,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
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
        state.ip_limits.reconfigure(&proxy.ip_limits);
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

    /// Applies `proxy` to connections accepted from now on (SIGHUP), and its per-IP quotas
    /// and caps to the process-wide tables, whose counts stay as they are.
    pub fn replace(&self, proxy: Proxy) {
        self.state.ip_limits.reconfigure(&proxy.ip_limits);
        let proxy = Arc::new(proxy);
        match self.current.write() {
            Ok(mut p) => *p = proxy,
            Err(poisoned) => *poisoned.into_inner() = proxy,
        }
    }
}
