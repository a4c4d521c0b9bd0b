//! Process-wide state that outlives configuration reloads: the metrics, the per-IP limit
//! tables and their shared tier, the drain signal (the readiness `/healthz` reports), the set of live connection
//! tasks and the count of open connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::auth::AuthFailures;
use crate::config::HttpConfig;
use crate::config::LimitsConfig;
use crate::fleet::{SharedLimits, StoreError};
use crate::limits::{IpLimits, IpLimitsConfig};
use crate::metrics::Metrics;

pub struct State {
    pub metrics: Arc<Metrics>,
    /// Connections and handshake buckets per client IP; a reload changes their quotas and
    /// caps, never their counts.
    pub ip_limits: Arc<IpLimits>,
    /// The per-IP limits fleet-wide (`[limits.shared]`), asked after the local tables.
    pub shared: Option<SharedLimits>,
    /// Failed authentications per client IP (`auth_failures_per_ip`).
    pub auth_failures: AuthFailures,
    /// Pass-through requests per client IP: in flight (the "connections" of these tables)
    /// and the request quota (their "handshakes"), `[http]`'s limits.
    pub http_limits: IpLimits,
    /// Pass-through requests in flight, for `[http] max_held_requests`.
    held: Arc<AtomicUsize>,
    drain: watch::Sender<bool>,
    tracker: TaskTracker,
    /// Connections open now, for `max_connections`.
    open: AtomicUsize,
}

// === impl State ===

impl Default for State {
    /// Per-IP limits off until a configuration applies them; no shared tier.
    fn default() -> Self {
        let (ip_limits, metrics) = State::tables();
        State::assemble(ip_limits, metrics, None)
    }
}

impl State {
    /// The state for `limits`: with its shared tier when `[limits.shared]` is set (on the
    /// current tokio runtime). The shared store is fixed for the process's life.
    pub fn new(limits: &LimitsConfig) -> Result<State, StoreError> {
        let (ip_limits, mut metrics) = State::tables();
        let shared = match &limits.shared {
            Some(cfg) => Some(SharedLimits::start(cfg, metrics.register_shared())?),
            None => None,
        };
        Ok(State::assemble(ip_limits, metrics, shared))
    }

    fn tables() -> (Arc<IpLimits>, Metrics) {
        let ip_limits = Arc::new(IpLimits::new(&IpLimitsConfig::default()));
        let counted = Arc::clone(&ip_limits);
        let metrics = Metrics::new(move || counted.untracked_handshakes());
        (ip_limits, metrics)
    }

    fn assemble(ip_limits: Arc<IpLimits>, metrics: Metrics, shared: Option<SharedLimits>) -> State {
        State {
            metrics: Arc::new(metrics),
            ip_limits,
            shared,
            auth_failures: AuthFailures::default(),
            http_limits: IpLimits::new(&IpLimitsConfig::default()),
            held: Arc::new(AtomicUsize::new(0)),
            drain: watch::Sender::new(false),
            tracker: TaskTracker::new(),
            open: AtomicUsize::new(0),
        }
    }

    /// Applies a configuration's per-IP quotas and caps (at start and on reload); the
    /// counts stay as they are.
    pub fn apply_limits(&self, limits: &LimitsConfig, ip_limits: &IpLimitsConfig) {
        self.ip_limits.reconfigure(ip_limits);
        self.auth_failures.reconfigure(
            limits.auth_failures_per_ip,
            limits.auth_failure_burst,
            limits.max_tracked_ips,
        );
    }

    /// Applies `[http]`'s per-IP request limits (at start and on reload).
    pub fn apply_http(&self, http: &HttpConfig, max_tracked_ips: u32) {
        self.http_limits.reconfigure(&IpLimitsConfig {
            connections_per_ip: http.held_requests_per_ip,
            handshakes_per_ip_per_minute: http.requests_per_ip,
            handshake_burst: http.request_burst,
            max_tracked_ips,
        });
    }

    /// Counts a pass-through request as in flight until the value is dropped; `None` when
    /// `most` already are.
    pub fn hold_request(&self, most: u32) -> Option<HeldRequest> {
        let most = usize::try_from(most).unwrap_or(usize::MAX);
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < most).then_some(n + 1)
            })
            .ok()
            .map(|_| HeldRequest(Arc::clone(&self.held)))
    }

    /// Drops idle per-IP state; on a timer.
    pub fn housekeeping(&self) {
        self.http_limits.housekeeping();
        self.ip_limits.housekeeping();
        self.auth_failures.housekeeping();
    }

    /// True once shutdown began: `/healthz` answers 503.
    pub fn draining(&self) -> bool {
        *self.drain.borrow()
    }

    /// Turns true when shutdown begins.
    pub fn drain_signal(&self) -> watch::Receiver<bool> {
        self.drain.subscribe()
    }

    /// Tells every relay to close with 1001, and takes no more connection tasks.
    pub fn start_drain(&self) {
        self.drain.send_replace(true);
        self.tracker.close();
    }

    /// The live connection tasks (and relays), waited for by the drain.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Counts a connection as open (in `connections_active` too) until the value is dropped.
    pub fn open_connection(self: &Arc<Self>) -> OpenConnection {
        self.metrics.connections_active.inc();
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(Arc::clone(self))
    }
}

/// One pass-through request in flight.
pub struct HeldRequest(Arc<AtomicUsize>);

impl Drop for HeldRequest {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One open connection; keeps the counts right however its tasks end.
pub struct OpenConnection(Arc<State>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.metrics.connections_active.dec();
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}
