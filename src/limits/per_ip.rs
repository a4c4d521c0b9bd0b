//! Per-client-IP limits ([`IpLimits`]): concurrent connections and the handshake quota of
//! each client key ([`ip_key`]), the quota on `governor`'s GCRA. Pure: no sockets, no tokio;
//! both tables have a stated bound.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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

/// governor limiter for one quantity of one connection: a few words, no heap.
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

/// Why [`IpLimits`] refused a client. Intended answers: 429, 429 with `Retry-After`, 503
/// (the mapping itself belongs in `refusal.rs`).
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
            IpRefusal::TooManyHandshakes { retry_after } => {
                write!(
                    f,
                    "too many handshakes from this client; retry in {retry_after:?}"
                )
            }
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

/// Per-client-IP limits, shared (`Arc`) by all connections.
///
/// Bounds: the handshake table holds at most `max_tracked_ips` keys (plus at most one per
/// concurrent caller of [`IpLimits::handshake`], from the unlocked size check). When a new key
/// finds it full, idle keys are evicted (at most once per [`AUTO_HOUSEKEEPING_INTERVAL`]); if it
/// is still full the handshake is allowed untracked (fails open, counted in
/// [`IpLimits::untracked_handshakes`]) while tracked keys stay limited. A key is idle, and
/// evictable, once its bucket has refilled: at most `60 s × burst / rate` plus two refill
/// intervals after its last handshake. The connection table holds only keys with a live
/// connection, at most `max_tracked_ips`; past that new keys are refused
/// ([`IpRefusal::TooManyTrackedIps`]): the connection cap never fails open.
#[derive(Debug)]
pub struct IpLimits<C: Clock = MonotonicClock> {
    handshakes: Option<HandshakeLimiter<C>>,
    untracked: Arc<AtomicU64>,
    conns: Arc<ConnTable>,
    max_tracked_ips: usize,
    /// Earliest time (ns since `start`) of the next automatic housekeeping.
    next_auto: AtomicU64,
    housekeeping_busy: AtomicBool,
    clock: C,
    start: C::Instant,
}

impl IpLimits {
    pub fn new(cfg: IpLimitsConfig) -> IpLimits {
        Self::with_clock(cfg, MonotonicClock)
    }
}

impl<C: Clock + Clone> IpLimits<C> {
    /// As [`IpLimits::new`] with a chosen clock (tests use `FakeRelativeClock`).
    pub fn with_clock(cfg: IpLimitsConfig, clock: C) -> IpLimits<C> {
        let max_tracked_ips = usize::try_from(cfg.max_tracked_ips).unwrap_or(usize::MAX);
        let untracked = Arc::new(AtomicU64::new(0));
        let handshakes = cfg.handshakes_per_ip_per_minute.map(|rate| {
            let q = Quota::per_minute(rate).allow_burst(cfg.handshake_burst.unwrap_or(rate));
            let store = BoundedStore {
                map: DashMap::new(),
                cap: max_tracked_ips,
                untracked: Arc::clone(&untracked),
            };
            RateLimiter::new(q, store, clock.clone())
        });
        let conns = Arc::new(ConnTable {
            counts: Mutex::new(HashMap::new()),
            cap: cfg.connections_per_ip,
            max_ips: max_tracked_ips,
        });
        let start = clock.now();
        IpLimits {
            handshakes,
            untracked,
            conns,
            max_tracked_ips,
            next_auto: AtomicU64::new(0),
            housekeeping_busy: AtomicBool::new(false),
            clock,
            start,
        }
    }

    /// Takes a connection slot for `ip` (keyed by [`ip_key`]); the permit frees it on drop.
    /// Call at accept, before TLS. Always `Ok` when `connections_per_ip` is off.
    pub fn connect(&self, ip: IpAddr) -> Result<ConnectionPermit, IpRefusal> {
        let Some(cap) = self.conns.cap else {
            return Ok(ConnectionPermit {
                table: None,
                key: ip,
            });
        };
        let key = ip_key(ip);
        let mut counts = self.conns.lock();
        if let Some(n) = counts.get_mut(&key) {
            if *n >= cap.get() {
                return Err(IpRefusal::TooManyConnections);
            }
            *n += 1;
        } else if counts.len() >= self.conns.max_ips {
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
        let Some(limiter) = &self.handshakes else {
            return Ok(());
        };
        if limiter.len() >= self.max_tracked_ips {
            self.auto_housekeeping();
        }
        limiter
            .check_key(&ip_key(ip))
            .map_err(|not_until| IpRefusal::TooManyHandshakes {
                retry_after: not_until.wait_time_from(limiter.clock().now()),
            })
    }

    /// Drops idle state: handshake keys whose bucket has refilled (`retain_recent`), then
    /// frees the spare capacity of both tables. Call on a timer (every 10 s); also run by
    /// [`IpLimits::handshake`] when its table is full.
    pub fn housekeeping(&self) {
        if let Some(limiter) = &self.handshakes {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let mut counts = self.conns.lock();
        counts.retain(|_, n| *n > 0);
        if counts.capacity() > 2 * counts.len() + 64 {
            counts.shrink_to_fit();
        }
    }

    /// Keys held by both tables together (≤ 2 × `max_tracked_ips`, see the type's doc).
    pub fn tracked_ips(&self) -> usize {
        let handshakes = self.handshakes.as_ref().map_or(0, |l| l.len());
        handshakes + self.conns.lock().len()
    }

    /// Handshakes let through untracked because the table was full (a metric).
    pub fn untracked_handshakes(&self) -> u64 {
        self.untracked.load(Ordering::Relaxed)
    }

    fn auto_housekeeping(&self) {
        let now = self.clock.now().duration_since(self.start).as_u64();
        let next = self.next_auto.load(Ordering::Acquire);
        let interval = u64::try_from(AUTO_HOUSEKEEPING_INTERVAL.as_nanos()).unwrap_or(u64::MAX);
        if now < next || self.housekeeping_busy.swap(true, Ordering::AcqRel) {
            return;
        }
        self.next_auto
            .store(now.saturating_add(interval), Ordering::Release);
        self.housekeeping();
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
#[derive(Debug)]
struct ConnTable {
    counts: Mutex<HashMap<IpAddr, u32>>,
    cap: Option<NonZeroU32>,
    max_ips: usize,
}

impl ConnTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, u32>> {
        // Every critical section is a single counter update, so a panic cannot leave it torn.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl BoundedStore ===

/// governor's DashMap state store with a cap: a key that is not yet stored while the store
/// is full is decided as a fresh key and not stored (fails open). governor's own
/// `DashMapStateStore` inserts every key it is asked about, so it cannot keep a cap.
#[derive(Debug)]
struct BoundedStore {
    /// Per key: GCRA theoretical arrival time in ns since the limiter's start; 0 = none.
    map: DashMap<IpAddr, AtomicU64>,
    cap: usize,
    untracked: Arc<AtomicU64>,
}

impl StateStore for BoundedStore {
    type Key = IpAddr;

    fn measure_and_replace<T, F, E>(&self, key: &IpAddr, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if let Some(cell) = self.map.get(key) {
            return measure_and_replace_one(&cell, f);
        }
        if self.map.len() >= self.cap {
            self.untracked.fetch_add(1, Ordering::Relaxed);
            return f(None).map(|(outcome, _)| outcome);
        }
        let cell = self.map.entry(*key).or_default();
        measure_and_replace_one(&cell, f)
    }
}

impl ShrinkableKeyedStateStore<IpAddr> for BoundedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        self.map
            .retain(|_, tat| tat.load(Ordering::Relaxed) > drop_below.as_u64());
    }

    fn shrink_to_fit(&self) {
        self.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The compare-and-swap loop of governor's `InMemoryState` (which is not public).
fn measure_and_replace_one<T, F, E>(cell: &AtomicU64, f: F) -> Result<T, E>
where
    F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
{
    let decode = |v: u64| (v != 0).then(|| Nanos::new(v));
    let mut prev = cell.load(Ordering::Acquire);
    loop {
        let (outcome, next) = f(decode(prev))?;
        match cell.compare_exchange_weak(prev, next.as_u64(), Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => return Ok(outcome),
            Err(actual) => prev = actual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::test_values::{ms, nz};
    use governor::clock::FakeRelativeClock;
    use std::net::Ipv4Addr;

    fn ip_limits(cfg: IpLimitsConfig) -> (Arc<IpLimits<FakeRelativeClock>>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (Arc::new(IpLimits::with_clock(cfg, clock.clone())), clock)
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
}
