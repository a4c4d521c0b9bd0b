//! Per-connection frame quotas ([`FrameRate`]) on `governor`'s GCRA, read
//! against a [`BurstClock`] the relay sets once per burst of frames. Pure: no
//! sockets, no tokio; one direction of one connection each, no heap.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

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
    /// The numbers the limiters were built from, for the refusal's words.
    cfg: FrameRateConfig,
    /// The frame last refused, and the part of its cost already charged.
    pending: Option<Pending>,
}

/// What a frame is charged as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charge {
    /// A data frame: one message cell and its bytes.
    Data,
    /// A ping, pong or close frame: one control cell and its bytes.
    Control,
    /// One control cell and no bytes: an application heartbeat (a data frame whose whole
    /// payload is a configured heartbeat, at most 125 bytes), or a ping or pong that goes
    /// ahead of a throttled burst. Never remembered as pending (see [`FrameRate::check`]).
    ControlCell,
}

/// The quota a frame went over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    Messages,
    Bytes,
    Control,
}

// === impl Bucket ===

impl Bucket {
    /// The configuration key of the bucket's rate: the log's and the close reason's name.
    pub fn label(self) -> &'static str {
        match self {
            Bucket::Messages => "messages_per_second",
            Bucket::Bytes => "bytes_per_second",
            Bucket::Control => "control_per_second",
        }
    }
}

/// A frame over its quota: how long until it would pass, and the bucket that holds it
/// back longest, with that bucket's configured rate and burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Over {
    pub wait: Duration,
    pub limit: RateLimit,
}

/// A bucket with its numbers, as configured; shown as the configuration says them
/// (`messages_per_second 100, burst 1000`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub bucket: Bucket,
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pending {
    charge: Charge,
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
            cfg: *cfg,
            pending: None,
        })
    }

    /// One cell of a frame limiter (`None`: no limit); `Err` is how long until one is free.
    fn cell(&self, limiter: &Option<DirectLimiter<C>>) -> Result<(), Duration> {
        match limiter.as_ref().map(|l| l.check()) {
            None | Some(Ok(())) => Ok(()),
            Some(Err(not_until)) => Err(not_until.wait_time_from(self.clock.now())),
        }
    }

    /// `bucket` with its configured numbers (a burst not set is the rate).
    fn limit(&self, bucket: Bucket) -> RateLimit {
        let c = &self.cfg;
        let (rate, burst) = match bucket {
            Bucket::Messages => (c.messages_per_second, c.burst),
            Bucket::Bytes => (c.bytes_per_second, c.burst_bytes),
            Bucket::Control => (c.control_per_second, c.control_burst),
        };
        let per_second = rate.map_or(0, NonZeroU32::get);
        RateLimit {
            bucket,
            per_second,
            burst: burst.map_or(per_second, NonZeroU32::get),
        }
    }

    /// Charges one frame: called once per frame, as `charge` says.
    ///
    /// `Ok(())`: within every quota. `Err(over)`: over a quota; `over.wait` is how long until
    /// the frame would pass, `over.limit` the bucket that holds it back longest. With
    /// `on_limit = "close"` the relay closes (1008). With `"delay"` it holds the frame for
    /// `wait` and calls `check` again with the **same arguments**, until `Ok`. The parts of a frame's cost that passed are remembered, so a
    /// retried frame is never charged twice; a call for a different frame forgets them.
    ///
    /// A frame with `payload_len > burst_bytes` can never fit the byte bucket at once. It is
    /// charged in chunks of `burst_bytes`: the first chunk needs a full bucket (idle long
    /// enough) and empties it, then each `Err(wait)` is the refill time of the next chunk, so
    /// the frame passes after about `(payload_len - burst_bytes) / bytes_per_second` and the
    /// bucket ends empty: the byte rate holds and the frame is never refused for good. Under
    /// `"close"` the first `Err` closes, so configuration should keep
    /// `burst_bytes >= max_frame_size` there.
    ///
    /// [`Charge::ControlCell`] is never remembered: it may be charged while another frame
    /// waits (it goes ahead of a throttled burst) without touching that frame's progress.
    pub fn check(&mut self, charge: Charge, payload_len: u64) -> Result<(), Over> {
        if charge == Charge::ControlCell {
            return self.cell(&self.control).map_err(|wait| Over {
                wait,
                limit: self.limit(Bucket::Control),
            });
        }
        let mut p = match self.pending.take() {
            Some(p) if p.charge == charge && p.payload_len == payload_len => p,
            _ => Pending {
                charge,
                payload_len,
                counted: false,
                bytes_left: payload_len,
            },
        };
        let mut wait = Duration::ZERO;
        let mut holder = Bucket::Messages;
        if !p.counted {
            let (frames, bucket) = match charge {
                Charge::Data => (&self.messages, Bucket::Messages),
                _ => (&self.control, Bucket::Control),
            };
            match self.cell(frames) {
                Ok(()) => p.counted = true,
                Err(cell_wait) => {
                    wait = cell_wait;
                    holder = bucket;
                }
            }
        }
        let frame_wait = wait;
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
            if wait > frame_wait || p.counted {
                holder = Bucket::Bytes;
            }
            Err(Over {
                wait,
                limit: self.limit(holder),
            })
        }
    }
}

fn chunk_of(left: u64, burst: NonZeroU32) -> NonZeroU32 {
    match u32::try_from(left) {
        Ok(l) if l < burst.get() => NonZeroU32::new(l).unwrap_or(burst),
        _ => burst,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    use crate::limits::test_values::{ms, nz};
    use Charge::{Control, ControlCell, Data};

    fn wait_of(over: Over) -> Duration {
        over.wait
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
            assert_eq!(rate.check(Data, 10).map_err(wait_of), Ok(()));
        }
        assert_eq!(rate.check(Data, 10).map_err(wait_of), Err(ms(100)));
        clock.advance(ms(99));
        assert_eq!(rate.check(Data, 10).map_err(wait_of), Err(ms(1)));
        clock.advance(ms(1));
        assert_eq!(rate.check(Data, 10).map_err(wait_of), Ok(()));
        assert_eq!(rate.check(Data, 10).map_err(wait_of), Err(ms(100)));
        // A long idle period refills only up to the burst.
        clock.advance(Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(rate.check(Data, 10).map_err(wait_of), Ok(()));
        }
        assert!(rate.check(Data, 10).map_err(wait_of).is_err());
    }

    #[test]
    fn control_frames_have_their_own_quota() {
        let (mut rate, _clock) = frame_rate(FrameRateConfig {
            messages_per_second: nz(1),
            control_per_second: nz(2),
            ..Default::default()
        });
        assert_eq!(rate.check(Data, 0).map_err(wait_of), Ok(()));
        assert!(rate.check(Data, 0).map_err(wait_of).is_err());
        assert_eq!(rate.check(Control, 0).map_err(wait_of), Ok(()));
        assert_eq!(rate.check(Control, 0).map_err(wait_of), Ok(()));
        assert_eq!(rate.check(Control, 0).map_err(wait_of), Err(ms(500)));
        // Control off, data on: control frames are free.
        let (mut rate, _clock) = frame_rate(FrameRateConfig {
            messages_per_second: nz(1),
            ..Default::default()
        });
        for _ in 0..100 {
            assert_eq!(rate.check(Control, 125).map_err(wait_of), Ok(()));
        }
    }

    #[test]
    fn byte_quota_counts_payload_of_every_frame() {
        let (mut rate, clock) = frame_rate(FrameRateConfig {
            bytes_per_second: nz(1000),
            burst_bytes: nz(1000),
            ..Default::default()
        });
        assert_eq!(rate.check(Data, 600).map_err(wait_of), Ok(()));
        assert_eq!(rate.check(Control, 125).map_err(wait_of), Ok(()));
        assert_eq!(rate.check(Data, 600).map_err(wait_of), Err(ms(325)));
        clock.advance(ms(325));
        assert_eq!(rate.check(Data, 600).map_err(wait_of), Ok(()));
        assert_eq!(
            rate.check(Data, 0).map_err(wait_of),
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
        assert_eq!(rate.check(Data, 100).map_err(wait_of), Ok(()));
        // Message quota passes (its last cell), byte quota does not.
        assert_eq!(rate.check(Data, 50).map_err(wait_of), Err(ms(500)));
        clock.advance(ms(500));
        // Half a message cell has refilled: a second message charge would fail.
        assert_eq!(rate.check(Data, 50).map_err(wait_of), Ok(()));
        // Both quotas refused: the wait is the longer one.
        assert_eq!(rate.check(Data, 100).map_err(wait_of), Err(ms(1000)));
    }

    #[test]
    fn a_different_frame_forgets_the_pending_charge() {
        let (mut rate, clock) = frame_rate(FrameRateConfig {
            messages_per_second: nz(1),
            bytes_per_second: nz(100),
            ..Default::default()
        });
        assert_eq!(rate.check(Data, 150).map_err(wait_of), Err(ms(500)));
        clock.advance(ms(500));
        // Not a retry of the 150-byte frame: the message cell it took is forfeit.
        assert_eq!(rate.check(Data, 10).map_err(wait_of), Err(ms(500)));
    }

    #[test]
    fn frame_larger_than_burst_passes_after_paying_the_remainder() {
        let (mut rate, clock) = frame_rate(FrameRateConfig {
            bytes_per_second: nz(1000),
            burst_bytes: nz(1000),
            ..Default::default()
        });
        // Full bucket: the first chunk empties it, then each wait refills one chunk.
        assert_eq!(rate.check(Data, 2500).map_err(wait_of), Err(ms(1000)));
        clock.advance(ms(1000));
        assert_eq!(rate.check(Data, 2500).map_err(wait_of), Err(ms(500)));
        clock.advance(ms(500));
        assert_eq!(rate.check(Data, 2500).map_err(wait_of), Ok(()));
        // (2500 - 1000) / 1000 s = 1.5 s in all, and the bucket is empty afterwards.
        assert_eq!(rate.check(Data, 1).map_err(wait_of), Err(ms(1)));

        // Not a full bucket: first wait until it is full.
        clock.advance(Duration::from_secs(10));
        assert_eq!(rate.check(Data, 400).map_err(wait_of), Ok(()));
        assert_eq!(rate.check(Data, 2500).map_err(wait_of), Err(ms(400)));
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
        while let Err(wait) = rate.check(Data, len).map_err(wait_of) {
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

    #[test]
    fn a_refusal_names_the_bucket_that_holds_the_frame_longest() {
        let (mut rate, clock) = frame_rate(FrameRateConfig {
            messages_per_second: nz(10),
            burst: nz(2),
            bytes_per_second: nz(1000),
            burst_bytes: nz(1000),
            control_per_second: nz(1),
            ..Default::default()
        });
        let messages = RateLimit {
            bucket: Bucket::Messages,
            per_second: 10,
            burst: 2,
        };
        assert_eq!(rate.check(Data, 10), Ok(()));
        assert_eq!(rate.check(Data, 10), Ok(()));
        assert_eq!(
            rate.check(Data, 10),
            Err(Over {
                wait: ms(100),
                limit: messages
            })
        );
        assert_eq!(messages.to_string(), "messages_per_second 10, burst 2");
        clock.advance(ms(100));
        // Its message cell now passes; the 2000 bytes wait for the byte bucket.
        let over = rate.check(Data, 2000).unwrap_err();
        assert_eq!(over.limit.bucket, Bucket::Bytes);
        assert_eq!(
            over.limit.to_string(),
            "bytes_per_second 1000 B, burst 1000 B"
        );
        assert_eq!(rate.check(Control, 0), Ok(()));
        let over = rate.check(Control, 0).unwrap_err();
        assert_eq!(over.limit.bucket, Bucket::Control);
        assert_eq!(over.limit.burst, 1, "an unset burst is the rate");
    }

    #[test]
    fn a_heartbeat_costs_a_control_cell_and_no_bytes() {
        let (mut rate, clock) = frame_rate(FrameRateConfig {
            messages_per_second: nz(1),
            bytes_per_second: nz(100),
            control_per_second: nz(2),
            ..Default::default()
        });
        // Messages and bytes spent: a heartbeat still passes, twice (the control burst).
        assert_eq!(rate.check(Data, 100), Ok(()));
        assert!(rate.check(Data, 1).is_err());
        assert_eq!(rate.check(ControlCell, 1), Ok(()));
        assert_eq!(rate.check(ControlCell, 1), Ok(()));
        let over = rate.check(ControlCell, 1).unwrap_err();
        assert_eq!((over.wait, over.limit.bucket), (ms(500), Bucket::Control));
        clock.advance(ms(500));
        assert_eq!(rate.check(ControlCell, 1), Ok(()));
    }

    #[test]
    fn a_heartbeat_charged_while_a_frame_waits_keeps_that_frames_progress() {
        let (mut rate, clock) = frame_rate(FrameRateConfig {
            messages_per_second: nz(1),
            burst: nz(2),
            bytes_per_second: nz(100),
            control_per_second: nz(10),
            ..Default::default()
        });
        assert_eq!(rate.check(Data, 100), Ok(()));
        // Its message cell (the last one) passes, its bytes wait.
        assert_eq!(rate.check(Data, 50).map_err(wait_of), Err(ms(500)));
        assert_eq!(rate.check(ControlCell, 1), Ok(()));
        clock.advance(ms(500));
        // Only the bytes are left to pay: a second message cell would take another 500 ms.
        assert_eq!(rate.check(Data, 50), Ok(()));
    }

    #[test]
    fn frame_rate_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<FrameRate>();
    }
}
