//! Connection leases: this process's live connections in the store, one sorted-set member
//! each, renewed in batches (one pipeline per renewal, at a third of the lease) and removed
//! when the connection ends. One task per process does all of it, in order, so a removal is
//! never overtaken by the renewal of the same lease. While the store is down the task probes
//! it every second; when it answers, the next renewal writes every live lease back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Pipeline, Script};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::{sleep_until, timeout, Instant};

use super::scripts::{micros, RENEW};
use super::store::{Health, StoreError};
use crate::metrics::SharedMetrics;

/// How often a store that is down is asked whether it is back.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Leases per renewal script: bounds the time one script holds the store.
const RENEW_CHUNK: usize = 500;
/// Removals kept while the store is down; past this many, the members left behind expire
/// within one lease instead.
const MAX_PENDING_REMOVALS: usize = 10_000;

pub(super) struct Settings {
    pub instance: String,
    pub lease: Duration,
    pub timeout: Duration,
}

/// The leases of this process.
pub(super) struct Leases {
    instance: String,
    next_id: AtomicU64,
    /// Live leases: id → connection-set key.
    live: Mutex<HashMap<u64, Arc<str>>>,
    /// Ended leases whose members are still to be removed from the store.
    ended: Mutex<Vec<(Arc<str>, u64)>>,
    wake: Notify,
    metrics: SharedMetrics,
    task: Mutex<Option<AbortHandle>>,
}

/// One connection's lease. Dropping it removes the member from the store (soon, in the lease
/// task), if the store may hold it.
#[derive(Debug)]
pub struct Lease {
    leases: Arc<Leases>,
    id: u64,
    key: Arc<str>,
    state: LeaseState,
}

/// Where a lease stands; the store may hold its member once it is `Sent` or `Held`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaseState {
    /// Not in the store: not asked yet, or the store answered without adding it.
    Reserved,
    /// The admission script carrying it was sent and its answer not seen.
    Sent,
    /// Admitted: in the live table, renewed until dropped.
    Held,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is one map or vector operation: a panic cannot tear it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Leases {
    /// The table, and its task on the current runtime.
    pub(super) fn start(
        conn: ConnectionManager,
        settings: Settings,
        health: Arc<Health>,
        metrics: SharedMetrics,
    ) -> Arc<Leases> {
        let leases = Arc::new(Leases {
            instance: settings.instance.clone(),
            next_id: AtomicU64::new(1),
            live: Mutex::new(HashMap::new()),
            ended: Mutex::new(Vec::new()),
            wake: Notify::new(),
            metrics,
            task: Mutex::new(None),
        });
        let task = tokio::spawn(run(Arc::clone(&leases), conn, settings, health));
        *lock(&leases.task) = Some(task.abort_handle());
        leases
    }

    /// A new lease for the connection set `key`, not yet held.
    pub(super) fn reserve(self: &Arc<Self>, key: String) -> Lease {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Lease {
            leases: Arc::clone(self),
            id,
            key: key.into(),
            state: LeaseState::Reserved,
        }
    }

    fn member(&self, id: u64) -> String {
        format!("{}:{id}", self.instance)
    }

    /// Stops the task (the process is going, or a test is over).
    pub(super) fn stop(&self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }

    /// Removes every lease of this process from the store, live ones included: the last act
    /// of a draining instance, so its clients find their slots free on the other instances.
    pub(super) async fn release_all(&self, conn: &mut ConnectionManager, bound: Duration) {
        let mut all = std::mem::take(&mut *lock(&self.ended));
        all.extend(lock(&self.live).drain().map(|(id, key)| (key, id)));
        self.metrics.leases.set(0);
        if !all.is_empty() {
            let _ = timeout(bound, self.remove(conn, all)).await;
        }
    }

    async fn remove(
        &self,
        conn: &mut ConnectionManager,
        ended: Vec<(Arc<str>, u64)>,
    ) -> Result<(), StoreError> {
        for chunk in ended.chunks(RENEW_CHUNK) {
            let mut pipe = Pipeline::new();
            for (key, id) in chunk {
                pipe.zrem(&**key, self.member(*id)).ignore();
            }
            pipe.exec_async(conn).await?;
        }
        Ok(())
    }

    /// One pipeline of renewal scripts over every live lease; loads the script once if the
    /// store lost it.
    async fn renew(
        &self,
        conn: &mut ConnectionManager,
        script: &Script,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let live: Vec<(Arc<str>, u64)> = lock(&self.live)
            .iter()
            .map(|(id, key)| (Arc::clone(key), *id))
            .collect();
        if live.is_empty() {
            // Nothing to renew: still ask, so the health is known on an idle instance too.
            return Ok(redis::cmd("PING").exec_async(conn).await?);
        }
        let mut pipe = Pipeline::new();
        for chunk in live.chunks(RENEW_CHUNK) {
            let cmd = pipe.cmd("EVALSHA").arg(script.get_hash()).arg(chunk.len());
            for (key, _) in chunk {
                cmd.arg(&**key);
            }
            cmd.arg(micros(lease));
            for (_, id) in chunk {
                cmd.arg(self.member(*id));
            }
            cmd.ignore();
        }
        match pipe.exec_async(conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                script.load_async(conn).await?;
                pipe.exec_async(conn).await?;
            }
            other => other?,
        }
        Ok(())
    }
}

impl Lease {
    /// The member this lease is stored under (made when needed: a held lease keeps only its
    /// id, which the renewals format the same way).
    pub(super) fn member(&self) -> String {
        self.leases.member(self.id)
    }

    /// The admission script carrying this lease is about to be sent.
    pub(super) fn sent(&mut self) {
        self.state = LeaseState::Sent;
    }

    /// The store's answer was seen and it did not add the member.
    pub(super) fn not_added(&mut self) {
        self.state = LeaseState::Reserved;
    }

    /// The connection is admitted: renewed from now on until dropped.
    pub(super) fn hold(&mut self) {
        self.state = LeaseState::Held;
        let mut live = lock(&self.leases.live);
        live.insert(self.id, Arc::clone(&self.key));
        self.leases.metrics.leases.set(live.len() as i64);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let leases = &self.leases;
        if self.state == LeaseState::Held {
            let mut live = lock(&leases.live);
            live.remove(&self.id);
            leases.metrics.leases.set(live.len() as i64);
        }
        if self.state != LeaseState::Reserved {
            let mut ended = lock(&leases.ended);
            if ended.len() < MAX_PENDING_REMOVALS {
                ended.push((Arc::clone(&self.key), self.id));
            }
            leases.wake.notify_one();
        }
    }
}

/// The lease task: removals as they come, renewals every third of a lease, a probe every
/// second while the store is down.
async fn run(
    leases: Arc<Leases>,
    mut conn: ConnectionManager,
    settings: Settings,
    health: Arc<Health>,
) {
    let script = Script::new(RENEW);
    let every = settings.lease / 3;
    // A batch may take longer than one admission; it must end before the next is due.
    let bound = (every / 2).max(settings.timeout);
    // The first round probes at once, so the log tells at start whether the store answers.
    let mut next = Instant::now();
    let mut renew_at = next;
    loop {
        tokio::select! {
            // While the store is down removals wait for it (the wake-up is kept): it may still
            // hold the member of a connection that ended meanwhile, or add it late (an
            // admission it answered after `timeout`), and that member would count until it
            // expires.
            () = leases.wake.notified(), if health.is_up() => {
                let ended = std::mem::take(&mut *lock(&leases.ended));
                if !ended.is_empty() {
                    // Not retried: a member left behind expires within one lease.
                    report(&health, timeout(bound, leases.remove(&mut conn, ended)).await);
                }
            }
            () = sleep_until(next) => {
                if !health.is_up() {
                    let ping = redis::cmd("PING");
                    let answer = timeout(PROBE_INTERVAL / 2, ping.exec_async(&mut conn)).await;
                    report(&health, answer.map(|r| r.map_err(StoreError::from)));
                    // Back up: every live lease is written back now, not at the next renewal.
                    renew_at = Instant::now();
                }
                if health.is_up() && Instant::now() >= renew_at {
                    report(&health, timeout(bound, leases.renew(&mut conn, &script, settings.lease)).await);
                    renew_at = Instant::now() + every;
                }
                // A tick every second even while up: an admission may find the store down at
                // any moment, and the probes must start within a second, not at the next renewal.
                let tick = Instant::now() + PROBE_INTERVAL;
                next = if health.is_up() { tick.min(renew_at) } else { tick };
            }
        }
    }
}

fn report(health: &Health, outcome: Result<Result<(), StoreError>, tokio::time::error::Elapsed>) {
    match outcome {
        Ok(Ok(())) => health.succeeded(),
        Ok(Err(e)) => health.failed(&e),
        Err(_) => health.failed(&StoreError::Timeout),
    }
}
