//! The shared tier of the per-IP limits (`[limits.shared]`): one handshake quota and one
//! connection cap per client key for a whole fleet of wsguard instances, kept in Redis.
//!
//! The local tables ([`crate::limits::IpLimits`]) stay the first tier and refuse cheap floods
//! without a round trip; a handshake that passes them asks Redis once ([`SharedLimits::admit`]):
//! one Lua script, on the Redis server's clock, checks the connection leases of the client key
//! and its GCRA handshake bucket and takes both or neither. A connection then holds a
//! [`Lease`], renewed in batches by one task per process and removed when it ends; the leases
//! of an instance that dies expire within one lease period.
//!
//! Redis slow or down: the answer comes from `on_error` within `timeout`, and until Redis
//! answers again (probed every second in the background) handshakes do not wait for it.

mod config;
mod leases;
mod scripts;
mod store;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::Script;

use crate::limits::{ip_key, IpLimitsConfig, IpRefusal};
use crate::metrics::{OutcomeLabels, SharedMetrics};

pub use config::{OnError, SharedConfig, DEFAULT_KEY_PREFIX, DEFAULT_LEASE, DEFAULT_TIMEOUT};
pub use leases::Lease;
pub use store::StoreError;

use leases::Leases;
use scripts::Admitted;
use store::Health;

/// The shared tier of one process. Built once at start ([`SharedLimits::start`]); a reload
/// changes the quotas it is asked with, never its store.
pub struct SharedLimits {
    conn: ConnectionManager,
    timeout: Duration,
    on_error: OnError,
    lease: Duration,
    prefix: String,
    admit: Script,
    leases: Arc<Leases>,
    health: Arc<Health>,
    metrics: SharedMetrics,
}

/// The shared tier's answer for one handshake.
#[derive(Debug)]
pub enum Verdict {
    /// Within the fleet's limits (or let through by `on_error = "open"`); the lease is held
    /// while the connection lives (`None` when `connections_per_ip` is off).
    Allowed(Option<Lease>),
    /// Over the fleet-wide `connections_per_ip` or `handshakes_per_ip`.
    Refused(IpRefusal),
    /// The store did not answer in time and `on_error = "closed"`.
    Unavailable,
}

impl SharedLimits {
    /// Connects lazily (a store that is down at start is `on_error` until it answers) and
    /// starts the lease task. Fails only on what the configuration points at: the password
    /// or CA file, or a URL the client refuses.
    pub fn start(cfg: &SharedConfig, metrics: SharedMetrics) -> Result<SharedLimits, StoreError> {
        let (conn, store) = store::connect(cfg)?;
        let instance = store::instance_id();
        let health = Arc::new(Health::new(metrics.clone(), cfg.on_error));
        let leases = Leases::start(
            conn.clone(),
            leases::Settings {
                instance: instance.clone(),
                lease: cfg.lease,
                timeout: cfg.timeout,
            },
            health.clone(),
            metrics.clone(),
        );
        tracing::info!(
            store = %store,
            instance = %instance,
            lease_ms = cfg.lease.as_millis() as u64,
            on_error = %cfg.on_error,
            "shared limits: per-IP quotas are fleet-wide"
        );
        Ok(SharedLimits {
            conn,
            timeout: cfg.timeout,
            on_error: cfg.on_error,
            lease: cfg.lease,
            prefix: cfg.key_prefix.clone(),
            admit: Script::new(scripts::ADMIT),
            leases,
            health,
            metrics,
        })
    }

    /// Checks `ip`'s fleet-wide quotas against `limits` (the configuration in force) and, when
    /// allowed with `connections_per_ip` on, leases one connection slot. Never waits longer
    /// than `timeout`.
    pub async fn admit(&self, ip: IpAddr, limits: &IpLimitsConfig) -> Verdict {
        let quota = scripts::Quota::of(limits);
        if quota.is_off() {
            return Verdict::Allowed(None);
        }
        let (conn_key, rate_key) = scripts::keys(&self.prefix, ip_key(ip));
        let mut lease = (quota.connections > 0).then(|| self.leases.reserve(conn_key.clone()));
        let answer = if self.health.is_up() {
            let answer = self.ask(&quota, &conn_key, &rate_key, lease.as_mut()).await;
            match &answer {
                Ok(_) => self.health.succeeded(),
                Err(e) => self.health.failed(e),
            }
            answer.ok()
        } else {
            None
        };
        let (verdict, outcome) = match answer {
            Some(Admitted::Yes) => (Verdict::Allowed(hold(lease)), "allowed"),
            Some(Admitted::No(refusal)) => (Verdict::Refused(refusal), refusal.label()),
            // Admitted without the store: the lease is written into it once it answers.
            None if self.on_error == OnError::Open => (Verdict::Allowed(hold(lease)), "error_open"),
            None => (Verdict::Unavailable, "error_closed"),
        };
        self.metrics
            .decisions
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        verdict
    }

    /// Removes this process's leases from the store, bounded by a lease renewal: called once
    /// the drain is over.
    pub async fn release_all(&self) {
        let mut conn = self.conn.clone();
        self.leases.release_all(&mut conn, self.lease / 3).await;
    }

    /// One admission script, bounded by `timeout`.
    async fn ask(
        &self,
        quota: &scripts::Quota,
        conn_key: &str,
        rate_key: &str,
        mut lease: Option<&mut Lease>,
    ) -> Result<Admitted, StoreError> {
        let mut invocation = self.admit.key(conn_key);
        invocation.key(rate_key);
        let member = lease.as_deref().map(Lease::member);
        quota.args(&mut invocation, member.as_deref(), self.lease);
        if let Some(lease) = lease.as_deref_mut() {
            lease.sent();
        }
        let mut conn = self.conn.clone();
        let started = Instant::now();
        let call = async {
            match invocation.invoke_async(&mut conn).await {
                // A connection the store closed while this instance was idle (a Redis
                // restart) is found by the first command after it, which the client answers
                // by reconnecting: one retry within the same timeout keeps that handshake
                // from being decided by on_error.
                Err(e) if e.is_connection_dropped() || e.is_io_error() => {
                    invocation.invoke_async(&mut conn).await
                }
                answer => answer,
            }
        };
        let answer = tokio::time::timeout(self.timeout, call).await;
        self.metrics
            .seconds
            .observe(started.elapsed().as_secs_f64());
        let admitted = scripts::admitted(answer.map_err(|_| StoreError::Timeout)??)?;
        if admitted != Admitted::Yes {
            if let Some(lease) = lease {
                lease.not_added();
            }
        }
        Ok(admitted)
    }
}

impl Drop for SharedLimits {
    fn drop(&mut self) {
        self.leases.stop();
    }
}

fn hold(lease: Option<Lease>) -> Option<Lease> {
    lease.map(|mut l| {
        l.hold();
        l
    })
}
