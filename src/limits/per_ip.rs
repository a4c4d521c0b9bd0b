//! Per-client-IP limits ([`IpLimits`]): concurrent connections and the handshake quota of
//! each client key ([`ip_key`]), the quota on `governor`'s GCRA. Pure: no sockets, no tokio;
//! both tables have a stated bound. The tables outlive configuration reloads:
//! [`IpLimits::reconfigure`] changes quotas and caps and keeps every count.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::{Clock, MonotonicClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};

/// Default for [`IpLimitsConfig::max_tracked_ips`]: 100,000 keys. One handshake-limiter entry
/// costs ~50 bytes with the map's overhead, so the store stays under ~5 MB however many
/// addresses a flood uses, while 100k distinct clients per quota period is far above what one
/// wsguard instance serves.
pub const DEFAULT_MAX_TRACKED_IPS: u32 = 100_000;

/// Shortest time between two automatic housekeeping runs started by [`IpLimits::handshake`]
/// when the store is full: 1 s. A run walks the whole store, so without this a flood from
/// fresh addresses would pay O(store) per handshake.
pub const AUTO_HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

/// IPv6 clients are keyed by this prefix length: 64. One subscriber or host normally gets a
/// whole /64 and can pick any address in it, so a per-address key would not limit anyone.
pub const IPV6_KEY_PREFIX: u8 = 64;

/// Per-client-IP limits. `None` turns a limit off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpLimitsConfig {
    /// Concurrent connections from one client key (see [`ip_key`]).
    pub connections_per_ip: Option<NonZeroU32>,
    /// Sustained WebSocket handshakes per minute from one client key.
    pub handshakes_per_ip_per_minute: Option<NonZeroU32>,
    /// Handshakes that may arrive at once; `None` = the per-minute rate.
    pub handshake_burst: Option<NonZeroU32>,
    /// Cap on keys held by each of the two per-IP tables; default [`DEFAULT_MAX_TRACKED_IPS`].
    pub max_tracked_ips: u32,
}

impl Default for IpLimitsConfig {
    fn default() -> Self {
        IpLimitsConfig {
            connections_per_ip: None,
            handshakes_per_ip_per_minute: None,
            handshake_burst: None,
            max_tracked_ips: DEFAULT_MAX_TRACKED_IPS,
        }
    }
}

impl IpLimitsConfig {
    fn handshake_quota(&self) -> Option<Quota> {
        self.handshakes_per_ip_per_minute
            .map(|rate| Quota::per_minute(rate).allow_burst(self.handshake_burst.unwrap_or(rate)))
    }

    fn max_keys(&self) -> usize {
        usize::try_from(self.max_tracked_ips).unwrap_or(usize::MAX)
    }
}

/// Why [`IpLimits`] refused a client. The answers are mapped in `refusal.rs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpRefusal {
    /// The client key already holds `connections_per_ip` connections.
    TooManyConnections,
    /// The client key is over `handshakes_per_ip_per_minute`.
    TooManyHandshakes { retry_after: Duration },
    /// A new client key while `max_tracked_ips` keys hold live connections: the table is
    /// full, and the connection cap never fails open.
    TooManyTrackedIps,
}

impl IpRefusal {
    /// Bounded metric label.
    pub fn label(&self) -> &'static str {
        match self {
            IpRefusal::TooManyConnections => "ip_connections",
            IpRefusal::TooManyHandshakes { .. } => "ip_handshake_rate",
            IpRefusal::TooManyTrackedIps => "ip_table_full",
        }
    }
}

impl fmt::Display for IpRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpRefusal::TooManyConnections => f.write_str("too many connections from this client"),
            IpRefusal::TooManyHandshakes { retry_after } => write!(
                f,
                "too many handshakes from this client; retry in {} ms",
                retry_after.as_millis()
            ),
            IpRefusal::TooManyTrackedIps => f.write_str("too many distinct clients connected"),
        }
    }
}

/// The key a client is limited under: IPv4 by address, IPv6 by its /64 ([`IPV6_KEY_PREFIX`]);
/// an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) counts as its IPv4 address.
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(a) => {
            let mask = u128::MAX << (128 - u32::from(IPV6_KEY_PREFIX));
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
        v4 => v4,
    }
}

type HandshakeLimiter<C> =
    RateLimiter<IpAddr, BoundedStore, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The handshake quota in force, as a limiter over the shared [`Buckets`].
#[derive(Debug)]
struct Handshakes<C: Clock> {
    limiter: HandshakeLimiter<C>,
    quota: Quota,
}

/// Per-client-IP limits, shared by all connections and kept across reloads.
///
/// Bounds: the handshake table holds at most `max_tracked_ips` keys (plus at most one per
/// concurrent caller of [`IpLimits::handshake`], from the unlocked size check). When a new key
/// finds it full, idle keys are evicted (at most once per [`AUTO_HOUSEKEEPING_INTERVAL`]); if it
/// is still full the handshake is allowed untracked (fails open, counted in
/// [`IpLimits::untracked_handshakes`]) while tracked keys stay limited. A key is idle, and
/// evictable, once its bucket has refilled: at most `60 s × burst / rate` plus two refill
/// intervals after its last handshake. The connection table holds only keys with a live
/// connection, at most `max_tracked_ips`; past that new keys are refused
/// ([`IpRefusal::TooManyTrackedIps`]): the connection cap never fails open. A lower
/// `max_tracked_ips` from [`IpLimits::reconfigure`] evicts nothing at once: new keys wait
/// until the tables are below it.
#[derive(Debug)]
pub struct IpLimits<C: Clock = MonotonicClock> {
    /// `None` while `handshakes_per_ip` is off.
    handshakes: RwLock<Option<Handshakes<C>>>,
    buckets: Arc<Buckets>,
    conns: Arc<ConnTable>,
    /// Earliest time (ns since `start`) of the next automatic housekeeping.
    next_auto: AtomicU64,
    housekeeping_busy: AtomicBool,
    clock: C,
    start: C::Instant,
}

impl IpLimits {
    pub fn new(cfg: &IpLimitsConfig) -> IpLimits {
        Self::with_clock(cfg, MonotonicClock)
    }
}

impl<C: Clock + Clone> IpLimits<C> {
    /// As [`IpLimits::new`] with a chosen clock (tests use `FakeRelativeClock`).
    pub fn with_clock(cfg: &IpLimitsConfig, clock: C) -> IpLimits<C> {
        let start = clock.now();
        let limits = IpLimits {
            handshakes: RwLock::new(None),
            buckets: Arc::new(Buckets::default()),
            conns: Arc::new(ConnTable::default()),
            next_auto: AtomicU64::new(0),
            housekeeping_busy: AtomicBool::new(false),
            clock,
            start,
        };
        limits.reconfigure(cfg);
        limits
    }

    /// Applies new quotas and caps (a configuration reload). Connections held and handshake
    /// buckets stay as they are and are measured against the new values from now on: each
    /// bucket keeps the handshakes it holds, refilled at the new rate; turning
    /// `handshakes_per_ip` off forgets the buckets. Connections opened while
    /// `connections_per_ip` was off are not counted if it is turned on.
    pub fn reconfigure(&self, cfg: &IpLimitsConfig) {
        self.buckets.cap.store(cfg.max_keys(), Ordering::Relaxed);
        self.conns.max_ips.store(cfg.max_keys(), Ordering::Relaxed);
        let cap = cfg.connections_per_ip.map_or(0, NonZeroU32::get);
        self.conns.cap.store(cap, Ordering::Relaxed);
        let quota = cfg.handshake_quota();
        let mut handshakes = self
            .handshakes
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let old = handshakes.as_ref().map(|h| h.quota);
        if old == quota {
            return;
        }
        let now = self.clock.now().duration_since(self.start).as_u64();
        if let (Some(old), Some(new)) = (old, quota) {
            // No handshake is checked meanwhile: the write lock is held.
            self.buckets
                .rescale(now, old.replenish_interval(), new.replenish_interval());
        }
        *handshakes = quota.map(|quota| {
            // governor keeps times relative to the limiter's start, which it reads from the
            // clock right after `now`: the stored times are off by the nanoseconds between
            // the two reads, consistently for one limiter.
            let offset = now;
            let store = BoundedStore {
                buckets: Arc::clone(&self.buckets),
                offset,
            };
            Handshakes {
                limiter: RateLimiter::new(quota, store, self.clock.clone()),
                quota,
            }
        });
        if handshakes.is_none() {
            self.buckets.map.clear();
        }
    }

    /// Takes a connection slot for `ip` (keyed by [`ip_key`]); the permit frees it on drop.
    /// Call at accept, before TLS. Always `Ok` when `connections_per_ip` is off.
    pub fn connect(&self, ip: IpAddr) -> Result<ConnectionPermit, IpRefusal> {
        let cap = self.conns.cap.load(Ordering::Relaxed);
        if cap == 0 {
            return Ok(ConnectionPermit {
                table: None,
                key: ip,
            });
        }
        let key = ip_key(ip);
        let mut counts = self.conns.lock();
        if let Some(n) = counts.get_mut(&key) {
            if *n >= cap {
                return Err(IpRefusal::TooManyConnections);
            }
            *n += 1;
        } else if counts.len() >= self.conns.max_ips.load(Ordering::Relaxed) {
            return Err(IpRefusal::TooManyTrackedIps);
        } else {
            counts.insert(key, 1);
        }
        drop(counts);
        Ok(ConnectionPermit {
            table: Some(Arc::clone(&self.conns)),
            key,
        })
    }

    /// Counts one handshake for `ip` (keyed by [`ip_key`]).
    pub fn handshake(&self, ip: IpAddr) -> Result<(), IpRefusal> {
        let handshakes = self
            .handshakes
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(Handshakes { limiter, .. }) = handshakes.as_ref() else {
            return Ok(());
        };
        if limiter.len() >= self.buckets.cap.load(Ordering::Relaxed) {
            self.auto_housekeeping(limiter);
        }
        limiter
            .check_key(&ip_key(ip))
            .map_err(|not_until| IpRefusal::TooManyHandshakes {
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }

    /// Drops idle state: handshake keys whose bucket has refilled (`retain_recent`), then
    /// frees the spare capacity of both tables. Call on a timer (every 10 s); also run by
    /// [`IpLimits::handshake`] when its table is full.
    pub fn housekeeping(&self) {
        let handshakes = self
            .handshakes
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        self.sweep(handshakes.as_ref().map(|h| &h.limiter));
    }

    /// Keys held by both tables together (≤ 2 × `max_tracked_ips`, see the type's doc).
    pub fn tracked_ips(&self) -> usize {
        self.buckets.map.len() + self.conns.lock().len()
    }

    /// Handshakes let through untracked because the table was full (a metric).
    pub fn untracked_handshakes(&self) -> u64 {
        self.buckets.untracked.load(Ordering::Relaxed)
    }

    fn sweep(&self, limiter: Option<&HandshakeLimiter<C>>) {
        if let Some(limiter) = limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let mut counts = self.conns.lock();
        counts.retain(|_, n| *n > 0);
        if counts.capacity() > 2 * counts.len() + 64 {
            counts.shrink_to_fit();
        }
    }

    fn auto_housekeeping(&self, limiter: &HandshakeLimiter<C>) {
        let now = self.clock.now().duration_since(self.start).as_u64();
        let next = self.next_auto.load(Ordering::Acquire);
        let interval = u64::try_from(AUTO_HOUSEKEEPING_INTERVAL.as_nanos()).unwrap_or(u64::MAX);
        if now < next || self.housekeeping_busy.swap(true, Ordering::AcqRel) {
            return;
        }
        self.next_auto
            .store(now.saturating_add(interval), Ordering::Release);
        self.sweep(Some(limiter));
        self.housekeeping_busy.store(false, Ordering::Release);
    }
}

// === impl ConnectionPermit ===

/// One connection slot of one client key; freed on drop.
#[derive(Debug)]
#[must_use = "the slot is freed when the permit is dropped"]
pub struct ConnectionPermit {
    table: Option<Arc<ConnTable>>,
    key: IpAddr,
}

impl ConnectionPermit {
    /// The key the slot is held under (see [`ip_key`]).
    pub fn key(&self) -> IpAddr {
        self.key
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let Some(table) = &self.table else { return };
        let mut counts = table.lock();
        if let Some(n) = counts.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// Live connections per client key; an entry exists only while its count is above zero.
#[derive(Debug, Default)]
struct ConnTable {
    counts: Mutex<HashMap<IpAddr, u32>>,
    /// `connections_per_ip`; 0 = off.
    cap: AtomicU32,
    max_ips: AtomicUsize,
}

impl ConnTable {
    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, u32>> {
        // Every critical section is a single counter update, so a panic cannot leave it torn.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl BoundedStore ===

/// The handshake buckets, kept across reloads.
#[derive(Debug, Default)]
struct Buckets {
    /// Per key: GCRA theoretical arrival time in ns since the [`IpLimits`]' start; 0 = none.
    map: DashMap<IpAddr, AtomicU64>,
    cap: AtomicUsize,
    untracked: AtomicU64,
}

impl Buckets {
    /// Restates every bucket's debt (how far its theoretical arrival time is ahead of `now`)
    /// from one refill interval to another: a bucket keeps the number of handshakes it holds.
    fn rescale(&self, now: u64, from: Duration, to: Duration) {
        let (from, to) = (from.as_nanos().max(1), to.as_nanos().max(1));
        if from == to {
            return;
        }
        for cell in self.map.iter() {
            let tat = cell.load(Ordering::Relaxed);
            if tat > now {
                let debt = u128::from(tat - now) * to / from;
                let debt = u64::try_from(debt).unwrap_or(u64::MAX);
                cell.store(now.saturating_add(debt), Ordering::Relaxed);
            }
        }
    }
}

/// governor's state store over [`Buckets`], with a cap: a key that is not yet stored while the
/// store is full is decided as a fresh key and not stored (fails open). governor's own
/// `DashMapStateStore` inserts every key it is asked about, so it cannot keep a cap. governor
/// sees times relative to its limiter's start, `offset` ns after the `IpLimits`' start; the
/// buckets hold them relative to the latter, so a limiter with a new quota reads them as they
/// are.
#[derive(Debug)]
struct BoundedStore {
    buckets: Arc<Buckets>,
    offset: u64,
}

impl BoundedStore {
    /// The compare-and-swap loop of governor's `InMemoryState` (which is not public), across
    /// the offset. A time before this limiter's start reads as its start: for GCRA both are
    /// a full bucket.
    fn replace<T, F, E>(&self, cell: &AtomicU64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let decode = |v: u64| (v != 0).then(|| Nanos::new(v.saturating_sub(self.offset)));
        let mut prev = cell.load(Ordering::Acquire);
        loop {
            let (outcome, next) = f(decode(prev))?;
            let next = next.as_u64().saturating_add(self.offset);
            match cell.compare_exchange_weak(prev, next, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return Ok(outcome),
                Err(actual) => prev = actual,
            }
        }
    }
}

impl StateStore for BoundedStore {
    type Key = IpAddr;

    fn measure_and_replace<T, F, E>(&self, key: &IpAddr, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let buckets = &self.buckets;
        if let Some(cell) = buckets.map.get(key) {
            return self.replace(&cell, f);
        }
        if buckets.map.len() >= buckets.cap.load(Ordering::Relaxed) {
            buckets.untracked.fetch_add(1, Ordering::Relaxed);
            return f(None).map(|(outcome, _)| outcome);
        }
        let cell = buckets.map.entry(*key).or_default();
        self.replace(&cell, f)
    }
}

impl ShrinkableKeyedStateStore<IpAddr> for BoundedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        let below = drop_below.as_u64().saturating_add(self.offset);
        self.buckets
            .map
            .retain(|_, tat| tat.load(Ordering::Relaxed) > below);
    }

    fn shrink_to_fit(&self) {
        self.buckets.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.buckets.map.len()
    }

    fn is_empty(&self) -> bool {
        self.buckets.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::net::Ipv4Addr;

    use crate::limits::test_values::{ms, nz};

    fn ip_limits(cfg: IpLimitsConfig) -> (Arc<IpLimits<FakeRelativeClock>>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (Arc::new(IpLimits::with_clock(&cfg, clock.clone())), clock)
    }

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn ip_limits_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<IpLimits>();
        check::<ConnectionPermit>();
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_prefix_and_mapped_ipv4_by_address() {
        let p = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(ip_key(p("2001:db8:1:2:aaaa::1")), p("2001:db8:1:2::"));
        assert_eq!(
            ip_key(p("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            p("2001:db8:1:2::")
        );
        assert_ne!(ip_key(p("2001:db8:1:3::1")), p("2001:db8:1:2::"));
        assert_eq!(ip_key(p("::ffff:192.0.2.7")), p("192.0.2.7"));
        assert_eq!(ip_key(p("192.0.2.7")), p("192.0.2.7"));

        let (limits, _clock) = ip_limits(IpLimitsConfig {
            connections_per_ip: nz(1),
            ..Default::default()
        });
        let _a = limits.connect(p("2001:db8::1")).unwrap();
        assert_eq!(
            limits.connect(p("2001:db8::2")).unwrap_err(),
            IpRefusal::TooManyConnections
        );
        let _b = limits.connect(p("2001:db8:0:1::1")).unwrap();
        let _c = limits.connect(p("192.0.2.1")).unwrap();
        assert!(limits.connect(p("::ffff:192.0.2.1")).is_err());
    }

    #[test]
    fn connection_permits_release_on_drop() {
        let (limits, _clock) = ip_limits(IpLimitsConfig {
            connections_per_ip: nz(2),
            ..Default::default()
        });
        let a = limits.connect(v4(1)).unwrap();
        let b = limits.connect(v4(1)).unwrap();
        assert_eq!(
            limits.connect(v4(1)).unwrap_err(),
            IpRefusal::TooManyConnections
        );
        let other = limits.connect(v4(2)).unwrap();
        assert_eq!(limits.tracked_ips(), 2);
        drop(a);
        let c = limits.connect(v4(1)).unwrap();
        drop((b, c, other));
        assert_eq!(limits.tracked_ips(), 0, "entries go with their last permit");
    }

    #[test]
    fn connection_cap_off_tracks_nothing() {
        let (limits, _clock) = ip_limits(IpLimitsConfig::default());
        let permits: Vec<_> = (0..1000).map(|i| limits.connect(v4(i)).unwrap()).collect();
        assert_eq!(limits.tracked_ips(), 0);
        drop(permits);
    }

    #[test]
    fn full_connection_table_refuses_new_keys_not_old_ones() {
        let (limits, _clock) = ip_limits(IpLimitsConfig {
            connections_per_ip: nz(2),
            max_tracked_ips: 3,
            ..Default::default()
        });
        let held: Vec<_> = (0..3).map(|i| limits.connect(v4(i)).unwrap()).collect();
        assert_eq!(
            limits.connect(v4(9)).unwrap_err(),
            IpRefusal::TooManyTrackedIps
        );
        let again = limits.connect(v4(0)).unwrap();
        drop(held);
        let _new = limits.connect(v4(9)).unwrap();
        drop(again);
        assert_eq!(limits.tracked_ips(), 1);
    }

    #[test]
    fn handshake_quota_burst_refusal_refill() {
        let (limits, clock) = ip_limits(IpLimitsConfig {
            handshakes_per_ip_per_minute: nz(6),
            handshake_burst: nz(2),
            ..Default::default()
        });
        assert_eq!(limits.handshake(v4(1)), Ok(()));
        assert_eq!(limits.handshake(v4(1)), Ok(()));
        let refused = limits.handshake(v4(1)).unwrap_err();
        assert_eq!(
            refused,
            IpRefusal::TooManyHandshakes {
                retry_after: Duration::from_secs(10)
            }
        );
        assert_eq!(refused.label(), "ip_handshake_rate");
        assert_eq!(limits.handshake(v4(2)), Ok(()), "keys are independent");
        clock.advance(Duration::from_secs(10));
        assert_eq!(limits.handshake(v4(1)), Ok(()));
        assert!(limits.handshake(v4(1)).is_err());
    }

    /// Required: a flood from 100,000 distinct addresses leaves nothing behind once its
    /// quota period is over. Stated bound after housekeeping: the keys used in the last
    /// quota period — here none, so 0.
    #[test]
    fn hundred_thousand_ips_are_forgotten_after_housekeeping() {
        let (limits, clock) = ip_limits(IpLimitsConfig {
            connections_per_ip: nz(4),
            handshakes_per_ip_per_minute: nz(30),
            handshake_burst: nz(10),
            ..Default::default()
        });
        for i in 0..100_000u32 {
            let ip = if i % 2 == 0 {
                v4(0x0a00_0000 + i)
            } else {
                IpAddr::V6(Ipv6Addr::from(
                    (0x2001_0db8_u128 << 96) | (u128::from(i) << 64) | 7,
                ))
            };
            let permit = limits.connect(ip).unwrap();
            limits.handshake(ip).unwrap();
            drop(permit);
        }
        assert_eq!(
            limits.tracked_ips(),
            100_000,
            "connection entries go on drop; handshake keys stay"
        );
        assert_eq!(limits.untracked_handshakes(), 0);
        // One client stays active.
        clock.advance(Duration::from_secs(61));
        limits.handshake(v4(1)).unwrap();
        limits.housekeeping();
        assert!(limits.tracked_ips() <= 1, "{}", limits.tracked_ips());
    }

    #[test]
    fn flood_past_the_cap_keeps_the_bound_and_fails_open_only_for_new_keys() {
        let (limits, clock) = ip_limits(IpLimitsConfig {
            handshakes_per_ip_per_minute: nz(1),
            max_tracked_ips: 1000,
            ..Default::default()
        });
        for i in 0..5000 {
            limits.handshake(v4(i)).unwrap();
        }
        assert_eq!(limits.tracked_ips(), 1000);
        assert_eq!(limits.untracked_handshakes(), 4000);
        // A tracked key is still limited while the table is full.
        assert!(limits.handshake(v4(0)).is_err());
        // After its keys go idle, the next new key triggers eviction and is tracked again.
        clock.advance(Duration::from_secs(121));
        limits.handshake(v4(10_000)).unwrap();
        assert_eq!(limits.tracked_ips(), 1);
        assert!(limits.handshake(v4(10_000)).is_err());
        assert_eq!(limits.untracked_handshakes(), 4000);
    }

    #[test]
    fn automatic_housekeeping_is_throttled() {
        let (limits, clock) = ip_limits(IpLimitsConfig {
            handshakes_per_ip_per_minute: nz(60_000), // one per ms: keys go idle after 2 ms
            handshake_burst: nz(1),
            max_tracked_ips: 10,
            ..Default::default()
        });
        for i in 0..10 {
            limits.handshake(v4(i)).unwrap();
        }
        limits.handshake(v4(100)).unwrap(); // full: a run evicts nothing, fails open
        assert_eq!(
            (limits.tracked_ips(), limits.untracked_handshakes()),
            (10, 1)
        );
        clock.advance(ms(10)); // all idle, but the last run was 10 ms ago
        limits.handshake(v4(101)).unwrap();
        assert_eq!(
            (limits.tracked_ips(), limits.untracked_handshakes()),
            (10, 2)
        );
        clock.advance(AUTO_HOUSEKEEPING_INTERVAL);
        limits.handshake(v4(102)).unwrap();
        assert_eq!(
            (limits.tracked_ips(), limits.untracked_handshakes()),
            (1, 2)
        );
    }

    #[test]
    fn reconfigure_keeps_the_counts_and_applies_new_quotas_and_caps() {
        let cfg = |conns: u32, burst: u32| IpLimitsConfig {
            connections_per_ip: nz(conns),
            handshakes_per_ip_per_minute: nz(6),
            handshake_burst: nz(burst),
            ..Default::default()
        };
        let (limits, clock) = ip_limits(cfg(2, 2));
        let _held = [
            limits.connect(v4(1)).unwrap(),
            limits.connect(v4(1)).unwrap(),
        ];
        limits.handshake(v4(1)).unwrap();
        limits.handshake(v4(1)).unwrap();
        clock.advance(ms(500));
        limits.reconfigure(&cfg(2, 2));
        assert_eq!(
            limits.connect(v4(1)).unwrap_err(),
            IpRefusal::TooManyConnections
        );
        // The same quota: the same bucket, to the nanosecond.
        assert_eq!(
            limits.handshake(v4(1)).unwrap_err(),
            IpRefusal::TooManyHandshakes {
                retry_after: ms(9_500)
            }
        );
        // A larger burst and cap apply to what is held now.
        limits.reconfigure(&cfg(3, 3));
        let _third = limits.connect(v4(1)).unwrap();
        assert_eq!(
            limits.connect(v4(1)).unwrap_err(),
            IpRefusal::TooManyConnections
        );
        limits.handshake(v4(1)).unwrap();
        assert!(limits.handshake(v4(1)).is_err());
        // Off forgets the buckets; on again starts from full ones.
        limits.reconfigure(&IpLimitsConfig::default());
        assert_eq!(
            limits.tracked_ips(),
            1,
            "no buckets; the held connections' key"
        );
        limits.reconfigure(&cfg(3, 1));
        limits.handshake(v4(1)).unwrap();
        assert!(limits.handshake(v4(1)).is_err());
    }

    #[test]
    fn a_new_quota_on_the_real_clock_reads_the_buckets_as_they_are() {
        let per_minute = |rate: u32| IpLimitsConfig {
            handshakes_per_ip_per_minute: nz(rate),
            handshake_burst: nz(2),
            ..Default::default()
        };
        let limits = IpLimits::new(&per_minute(6));
        limits.handshake(v4(1)).unwrap();
        limits.handshake(v4(1)).unwrap();
        limits.reconfigure(&per_minute(12));
        // Twice the rate: the next cell is due in about 5 s, not 10 s.
        let Err(IpRefusal::TooManyHandshakes { retry_after }) = limits.handshake(v4(1)) else {
            panic!("the emptied bucket was kept");
        };
        assert!(
            retry_after > ms(4_900) && retry_after <= ms(5_000),
            "{retry_after:?}"
        );
        // And back: the bucket holds the same two handshakes at the old rate.
        limits.reconfigure(&per_minute(6));
        let Err(IpRefusal::TooManyHandshakes { retry_after }) = limits.handshake(v4(1)) else {
            panic!("the emptied bucket was kept");
        };
        assert!(
            retry_after > ms(9_900) && retry_after <= ms(10_000),
            "{retry_after:?}"
        );
    }

    #[test]
    fn a_lower_max_tracked_ips_refuses_new_keys_until_there_is_room() {
        let cfg = |max: u32| IpLimitsConfig {
            connections_per_ip: nz(1),
            max_tracked_ips: max,
            ..Default::default()
        };
        let (limits, _clock) = ip_limits(cfg(3));
        let held: Vec<_> = (0..3).map(|i| limits.connect(v4(i)).unwrap()).collect();
        limits.reconfigure(&cfg(2));
        assert_eq!(
            limits.connect(v4(9)).unwrap_err(),
            IpRefusal::TooManyTrackedIps
        );
        drop(held);
        let _new = limits.connect(v4(9)).unwrap();
    }
}
