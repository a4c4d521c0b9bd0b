//! Flood limits: per-connection frame quotas ([`FrameRate`]) and per-client-IP connection and
//! handshake limits ([`IpLimits`]), on `governor`'s GCRA. Pure: no sockets, no tokio; every
//! keyed store here has a stated bound (STYLE anti-pattern 4).

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
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};

/// Default for [`IpLimitsConfig::max_tracked_ips`]: 100,000 keys. One handshake-limiter entry
/// costs ~50 bytes with the map's overhead, so the store stays under ~5 MB however many
/// addresses a flood uses, while 100k distinct clients per quota period is far above what one
/// wsguard instance serves.
pub const DEFAULT_MAX_TRACKED_IPS: usize = 100_000;

/// Shortest time between two automatic housekeeping runs started by [`IpLimits::handshake`]
/// when the store is full: 1 s. A run walks the whole store, so without this a flood from
/// fresh addresses would pay O(store) per handshake.
pub const AUTO_HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

/// IPv6 clients are keyed by this prefix length: 64. One subscriber or host normally gets a
/// whole /64 and can pick any address in it, so a per-address key would not limit anyone.
pub const IPV6_KEY_PREFIX: u8 = 64;

/// governor limiter for one quantity of one connection: a few words, no heap.
type DirectLimiter<C> =
    RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Rate configuration for one direction of a connection. A rate of `None` turns that quota off;
/// a burst of `None` means "equal to the rate" (one second's worth).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameRateConfig {
    /// Data frames (text, binary, continuation; each fragment counts) per second.
    pub messages_per_second: Option<NonZeroU32>,
    pub burst: Option<NonZeroU32>,
    /// Payload bytes per second, all frames (control frames included). governor keeps whole
    /// nanoseconds per byte, rounded down: the rate is up to 0.1% generous at 1 MiB/s, and
    /// rates above 10^9 bytes/s behave as 10^9.
    pub bytes_per_second: Option<NonZeroU32>,
    /// Bytes that may arrive at once after an idle period. See [`FrameRate::check`] for
    /// frames larger than this.
    pub burst_bytes: Option<NonZeroU32>,
    /// Ping, pong and close frames per second.
    pub control_per_second: Option<NonZeroU32>,
    pub control_burst: Option<NonZeroU32>,
}

/// Per-connection frame quota for one direction (client → backend, optionally backend → client).
/// `None` from [`FrameRate::new`] when all are off.
#[derive(Debug)]
pub struct FrameRate<C: Clock = BurstClock> {
    messages: Option<DirectLimiter<C>>,
    control: Option<DirectLimiter<C>>,
    bytes: Option<(DirectLimiter<C>, Quota)>,
    clock: C,
    /// The frame last refused, and the part of its cost already charged.
    pending: Option<Pending>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pending {
    control: bool,
    payload_len: u64,
    counted: bool,
    bytes_left: u64,
}

fn quota(rate: Option<NonZeroU32>, burst: Option<NonZeroU32>) -> Option<Quota> {
    rate.map(|r| Quota::per_second(r).allow_burst(burst.unwrap_or(r)))
}

// === impl FrameRate ===

impl FrameRate {
    /// A quota on a [`BurstClock`]; `None` when every rate is off, so the relay pays nothing.
    pub fn new(cfg: &FrameRateConfig) -> Option<FrameRate> {
        Self::with_clock(cfg, BurstClock::new())
    }

    /// Sets the time every check uses until the next call: the relay reads the real clock
    /// once per burst of frames, not once per frame and quota.
    pub fn tick(&self, now: std::time::Instant) {
        self.clock.set(now);
    }
}

/// governor's clock for the frame quotas, set by the relay once per burst. Each governor
/// check reads its clock, and `clock_gettime` was 8% of the relay's CPU in `perf` (three
/// reads per 64-byte message); one read per burst costs nothing measurable.
#[derive(Clone, Debug)]
pub struct BurstClock {
    start: std::time::Instant,
    /// Nanoseconds since `start`, as of the last [`BurstClock::set`].
    now: Arc<AtomicU64>,
}

// === impl BurstClock ===

impl BurstClock {
    pub fn new() -> BurstClock {
        BurstClock {
            start: std::time::Instant::now(),
            now: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves the clock to `now` (never backwards).
    pub fn set(&self, now: std::time::Instant) {
        let nanos =
            u64::try_from(now.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        self.now.fetch_max(nanos, Ordering::Relaxed);
    }
}

impl Default for BurstClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for BurstClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.now.load(Ordering::Relaxed))
    }
}

impl<C: Clock + Clone> FrameRate<C> {
    /// As [`FrameRate::new`] with a chosen clock (tests use `governor::clock::FakeRelativeClock`).
    pub fn with_clock(cfg: &FrameRateConfig, clock: C) -> Option<FrameRate<C>> {
        let limiter = |q: Quota| RateLimiter::direct_with_clock(q, clock.clone());
        let messages = quota(cfg.messages_per_second, cfg.burst).map(limiter);
        let control = quota(cfg.control_per_second, cfg.control_burst).map(limiter);
        let bytes = quota(cfg.bytes_per_second, cfg.burst_bytes).map(|q| (limiter(q), q));
        if messages.is_none() && control.is_none() && bytes.is_none() {
            return None;
        }
        Some(FrameRate {
            messages,
            control,
            bytes,
            clock,
            pending: None,
        })
    }

    /// Charges one frame: called once per frame header, `control` for ping/pong/close.
    ///
    /// `Ok(())`: within every quota. `Err(wait)`: over a quota; `wait` is how long until the
    /// frame would pass. With `on_limit = "close"` the relay closes (1008). With `"delay"` it
    /// stops reading for `wait` (TCP back-pressure) and calls `check` again with the **same
    /// arguments**, until `Ok`. The parts of a frame's cost that passed are remembered, so a
    /// retried frame is never charged twice; a call for a different frame forgets them.
    ///
    /// A frame with `payload_len > burst_bytes` can never fit the byte bucket at once. It is
    /// charged in chunks of `burst_bytes`: the first chunk needs a full bucket (idle long
    /// enough) and empties it, then each `Err(wait)` is the refill time of the next chunk, so
    /// the frame passes after about `(payload_len - burst_bytes) / bytes_per_second` and the
    /// bucket ends empty: the byte rate holds and the frame is never refused for good. Under
    /// `"close"` the first `Err` closes, so configuration should keep
    /// `burst_bytes >= max_frame_size` there.
    pub fn check(&mut self, control: bool, payload_len: u64) -> Result<(), Duration> {
        let mut p = match self.pending.take() {
            Some(p) if p.control == control && p.payload_len == payload_len => p,
            _ => Pending {
                control,
                payload_len,
                counted: false,
                bytes_left: payload_len,
            },
        };
        let mut wait = Duration::ZERO;
        if !p.counted {
            let frames = if control {
                &self.control
            } else {
                &self.messages
            };
            match frames.as_ref().map(|l| l.check()) {
                None | Some(Ok(())) => p.counted = true,
                Some(Err(not_until)) => wait = not_until.wait_time_from(self.clock.now()),
            }
        }
        match &self.bytes {
            None => p.bytes_left = 0,
            Some((limiter, q)) if p.bytes_left > 0 => {
                let burst = q.burst_size();
                let chunk = chunk_of(p.bytes_left, burst);
                // A chunk never exceeds the burst, so InsufficientCapacity cannot happen.
                if let Ok(outcome) = limiter.check_n(chunk) {
                    match outcome {
                        Ok(()) => {
                            p.bytes_left -= u64::from(chunk.get());
                            if p.bytes_left > 0 {
                                // The bucket was full and is now empty: the next chunk needs
                                // exactly its own refill time.
                                let next = chunk_of(p.bytes_left, burst);
                                let per_byte = q.replenish_interval().max(Duration::from_nanos(1));
                                wait = wait.max(per_byte.saturating_mul(next.get()));
                            }
                        }
                        Err(not_until) => {
                            wait = wait.max(not_until.wait_time_from(self.clock.now()));
                        }
                    }
                }
            }
            Some(_) => {}
        }
        if p.counted && p.bytes_left == 0 {
            Ok(())
        } else {
            self.pending = Some(p);
            Err(wait)
        }
    }
}

fn chunk_of(left: u64, burst: NonZeroU32) -> NonZeroU32 {
    match u32::try_from(left) {
        Ok(l) if l < burst.get() => NonZeroU32::new(l).unwrap_or(burst),
        _ => burst,
    }
}

// === IpLimits ===

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
    pub max_tracked_ips: usize,
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
        let untracked = Arc::new(AtomicU64::new(0));
        let handshakes = cfg.handshakes_per_ip_per_minute.map(|rate| {
            let q = Quota::per_minute(rate).allow_burst(cfg.handshake_burst.unwrap_or(rate));
            let store = BoundedStore {
                map: DashMap::new(),
                cap: cfg.max_tracked_ips,
                untracked: Arc::clone(&untracked),
            };
            RateLimiter::new(q, store, clock.clone())
        });
        let conns = Arc::new(ConnTable {
            counts: Mutex::new(HashMap::new()),
            cap: cfg.connections_per_ip,
            max_ips: cfg.max_tracked_ips,
        });
        let start = clock.now();
        IpLimits {
            handshakes,
            untracked,
            conns,
            max_tracked_ips: cfg.max_tracked_ips,
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
    use governor::clock::FakeRelativeClock;
    use std::net::Ipv4Addr;

    fn nz(n: u32) -> Option<NonZeroU32> {
        NonZeroU32::new(n)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn frame_rate(cfg: FrameRateConfig) -> (FrameRate<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (
            FrameRate::with_clock(&cfg, clock.clone()).expect("a quota is on"),
            clock,
        )
    }

    #[test]
    fn all_rates_off_is_none() {
        assert!(FrameRate::new(&FrameRateConfig::default()).is_none());
        let only_bursts = FrameRateConfig {
            burst: nz(5),
            burst_bytes: nz(5),
            ..Default::default()
        };
        assert!(FrameRate::new(&only_bursts).is_none());
        assert!(FrameRate::new(&FrameRateConfig {
            bytes_per_second: nz(1),
            ..Default::default()
        })
        .is_some());
    }

    #[test]
    fn message_burst_then_refusal_then_refill() {
        let (mut rate, clock) = frame_rate(FrameRateConfig {
            messages_per_second: nz(10),
            burst: nz(3),
            ..Default::default()
        });
        for _ in 0..3 {
            assert_eq!(rate.check(false, 10), Ok(()));
        }
        assert_eq!(rate.check(false, 10), Err(ms(100)));
        clock.advance(ms(99));
        assert_eq!(rate.check(false, 10), Err(ms(1)));
        clock.advance(ms(1));
        assert_eq!(rate.check(false, 10), Ok(()));
        assert_eq!(rate.check(false, 10), Err(ms(100)));
        // A long idle period refills only up to the burst.
        clock.advance(Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(rate.check(false, 10), Ok(()));
        }
        assert!(rate.check(false, 10).is_err());
    }

    #[test]
    fn control_frames_have_their_own_quota() {
        let (mut rate, _clock) = frame_rate(FrameRateConfig {
            messages_per_second: nz(1),
            control_per_second: nz(2),
            ..Default::default()
        });
        assert_eq!(rate.check(false, 0), Ok(()));
        assert!(rate.check(false, 0).is_err());
        assert_eq!(rate.check(true, 0), Ok(()));
        assert_eq!(rate.check(true, 0), Ok(()));
        assert_eq!(rate.check(true, 0), Err(ms(500)));
        // Control off, data on: control frames are free.
        let (mut rate, _clock) = frame_rate(FrameRateConfig {
            messages_per_second: nz(1),
            ..Default::default()
        });
        for _ in 0..100 {
            assert_eq!(rate.check(true, 125), Ok(()));
        }
    }

    #[test]
    fn byte_quota_counts_payload_of_every_frame() {
        let (mut rate, clock) = frame_rate(FrameRateConfig {
            bytes_per_second: nz(1000),
            burst_bytes: nz(1000),
            ..Default::default()
        });
        assert_eq!(rate.check(false, 600), Ok(()));
        assert_eq!(rate.check(true, 125), Ok(()));
        assert_eq!(rate.check(false, 600), Err(ms(325)));
        clock.advance(ms(325));
        assert_eq!(rate.check(false, 600), Ok(()));
        assert_eq!(
            rate.check(false, 0),
            Ok(()),
            "an empty frame costs no bytes"
        );
    }

    #[test]
    fn delayed_frame_is_not_charged_twice() {
        let (mut rate, clock) = frame_rate(FrameRateConfig {
            messages_per_second: nz(1),
            burst: nz(2),
            bytes_per_second: nz(100),
            burst_bytes: nz(100),
            ..Default::default()
        });
        assert_eq!(rate.check(false, 100), Ok(()));
        // Message quota passes (its last cell), byte quota does not.
        assert_eq!(rate.check(false, 50), Err(ms(500)));
        clock.advance(ms(500));
        // Half a message cell has refilled: a second message charge would fail.
        assert_eq!(rate.check(false, 50), Ok(()));
        // Both quotas refused: the wait is the longer one.
        assert_eq!(rate.check(false, 100), Err(ms(1000)));
    }

    #[test]
    fn a_different_frame_forgets_the_pending_charge() {
        let (mut rate, clock) = frame_rate(FrameRateConfig {
            messages_per_second: nz(1),
            bytes_per_second: nz(100),
            ..Default::default()
        });
        assert_eq!(rate.check(false, 150), Err(ms(500)));
        clock.advance(ms(500));
        // Not a retry of the 150-byte frame: the message cell it took is forfeit.
        assert_eq!(rate.check(false, 10), Err(ms(500)));
    }

    #[test]
    fn frame_larger_than_burst_passes_after_paying_the_remainder() {
        let (mut rate, clock) = frame_rate(FrameRateConfig {
            bytes_per_second: nz(1000),
            burst_bytes: nz(1000),
            ..Default::default()
        });
        // Full bucket: the first chunk empties it, then each wait refills one chunk.
        assert_eq!(rate.check(false, 2500), Err(ms(1000)));
        clock.advance(ms(1000));
        assert_eq!(rate.check(false, 2500), Err(ms(500)));
        clock.advance(ms(500));
        assert_eq!(rate.check(false, 2500), Ok(()));
        // (2500 - 1000) / 1000 s = 1.5 s in all, and the bucket is empty afterwards.
        assert_eq!(rate.check(false, 1), Err(ms(1)));

        // Not a full bucket: first wait until it is full.
        clock.advance(Duration::from_secs(10));
        assert_eq!(rate.check(false, 400), Ok(()));
        assert_eq!(rate.check(false, 2500), Err(ms(400)));
    }

    #[test]
    fn huge_frame_is_delayed_never_refused_for_good() {
        let (mut rate, clock) = frame_rate(FrameRateConfig {
            bytes_per_second: nz(1 << 20),
            burst_bytes: nz(64 << 10),
            ..Default::default()
        });
        let len = 16u64 << 20; // 16 MiB at 1 MiB/s with a 64 KiB burst
        let mut waited = Duration::ZERO;
        let mut rounds = 0;
        while let Err(wait) = rate.check(false, len) {
            assert!(wait > Duration::ZERO);
            clock.advance(wait);
            waited += wait;
            rounds += 1;
            assert!(rounds <= 256, "must finish");
        }
        // (16 MiB - 64 KiB) at 1 MiB/s = 15.9375 s; governor rounds the per-byte interval
        // down to whole nanoseconds (953 ns, not 953.67), so the rate is 0.07% generous.
        let expected = Duration::from_secs_f64(15.9375);
        assert!(
            waited <= expected && waited > expected.mul_f64(0.999),
            "{waited:?}"
        );
    }

    // === IpLimits ===

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
        check::<FrameRate>();
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
