//! One direction of a relay: read into its [`FrameBuf`], run every byte
//! through the sans-I/O decoder, apply the direction's rate quota, and
//! forward the original bytes of whole frames with one write per burst. Also
//! writes the proxy's own frames (close, ping) to its destination, and only
//! ever between frames.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::buffer::FrameBuf;
use super::source::{self, ReadReady};
use crate::config::OnLimit;
use crate::frame::{ControlFrame, Decoder, Event, Violation};
use crate::limits::{Charge, FrameRate, Heartbeats, Over, RateLimit};

mod ahead;

/// Size of a proxy ping's payload: a random token the pong must echo.
pub(super) const PING_TOKEN: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dir {
    /// Client to backend.
    Up,
    /// Backend to client.
    Down,
}

/// Why a pump stopped.
#[derive(Debug)]
pub(super) enum Stop {
    /// A close frame was forwarded (or swallowed); carries its code.
    Closed(Option<u16>),
    /// The source ended (EOF or read error) without a close frame.
    SourceGone,
    /// Writing to the destination failed.
    DestinationGone,
    Violation(Violation),
    /// Over the direction's rate quota with `on_limit = "close"`: the bucket.
    RateLimited(RateLimit),
}

/// A direction's rate quota, what to do when it is exceeded, and the heartbeats that are
/// charged as control frames.
pub(super) struct Rate {
    pub quota: FrameRate,
    pub on_limit: OnLimit,
    pub heartbeats: Heartbeats,
}

/// A decoded frame that passed every rule and waits for its quota; its bytes are in the
/// buffer's unreleased part, in order.
#[derive(Debug, Clone, Copy)]
struct Held {
    event: Event,
    /// Its wire bytes in the buffer.
    len: u32,
    charge: Charge,
    /// What it is charged: its wire bytes or, compressed, what it inflates to if more.
    cost: u64,
}

/// What a direction moved, for the connection's log line and metrics.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Counts {
    /// Frames forwarded.
    pub frames: u64,
    /// Bytes written to the destination.
    pub bytes: u64,
    /// Times a frame had to wait for the quota (`on_limit = "delay"`).
    pub throttled: u64,
}

/// One direction: reads `src`, forwards accepted frames to `dst`.
pub(super) struct Pump<R, W> {
    src: R,
    dst: W,
    dec: Decoder,
    buf: FrameBuf,
    /// Wire bytes of the frame being decoded (for the byte quota).
    frame_bytes: u64,
    closed: Option<Option<u16>>,
    /// Stop at a close frame without forwarding it: used when the proxy
    /// itself closed the other peer and answers in its own words.
    swallow_close: bool,
    /// Set when the backend sent a ping the client has not answered yet.
    /// The down pump sets it; the up pump forwards a client pong only while
    /// it is set, so unsolicited pongs never reach the backend.
    backend_ping: Arc<AtomicBool>,
    /// The token of the proxy's own unanswered ping (up pump only): the
    /// client's pong with it is the proxy's, never forwarded.
    proxy_ping: Option<[u8; PING_TOKEN]>,
    rate: Option<Rate>,
    /// Frames waiting for the quota, oldest first (more than one only in delay mode,
    /// where frames are decoded ahead of a throttled one to let heartbeats past).
    held: VecDeque<Held>,
    /// Wire bytes of the held frames.
    held_bytes: usize,
    /// Stop decoding ahead until the held frames are gone: the next frame is a control
    /// frame, the source ended, or the queue or the buffer is full.
    ahead_stopped: bool,
    /// A rule broken by a frame decoded ahead: it ends the pump once the held frames,
    /// which passed every rule, have gone.
    ahead_violation: Option<Violation>,
    dir: Dir,
    /// When the source last completed a frame.
    last_frame: Instant,
    counts: Counts,
}

// === impl Pump ===

impl<R: ReadReady, W: AsyncWrite + Unpin> Pump<R, W> {
    pub fn new(
        (src, dst): (R, W),
        dir: Dir,
        dec: Decoder,
        early: &[u8],
        backend_ping: Arc<AtomicBool>,
        rate: Option<Rate>,
    ) -> Self {
        Pump {
            src,
            dst,
            dec,
            buf: FrameBuf::new(early),
            frame_bytes: 0,
            closed: None,
            swallow_close: false,
            backend_ping,
            proxy_ping: None,
            rate,
            held: VecDeque::new(),
            held_bytes: 0,
            ahead_stopped: false,
            ahead_violation: None,
            dir,
            last_frame: Instant::now(),
            counts: Counts::default(),
        }
    }

    /// Relays until a close frame is forwarded, a peer goes away, a rule is
    /// broken or the quota says close. Cancel-safe: all progress lives in
    /// `self`, so the caller can stop this between any two awaits.
    pub async fn run(&mut self) -> Stop {
        let stop = self.relay().await;
        // The close handshake that follows can take seconds, for many
        // connections at once: it holds no burst storage meanwhile.
        self.buf.idle();
        stop
    }

    async fn relay(&mut self) -> Stop {
        loop {
            match self.decode() {
                Err(v) => {
                    // Frames before the offending one were accepted: deliver them.
                    self.discard_rest();
                    return match self.flush().await {
                        Ok(()) => Stop::Violation(v),
                        Err(_) => Stop::DestinationGone,
                    };
                }
                Ok(Some(over)) => {
                    if self.flush().await.is_err() {
                        return Stop::DestinationGone;
                    }
                    if let Some(Rate {
                        on_limit: OnLimit::Close,
                        ..
                    }) = self.rate
                    {
                        self.discard_rest();
                        return Stop::RateLimited(over.limit);
                    }
                    self.counts.throttled += 1;
                    if let Err(stop) = self.hold(over.wait).await {
                        return stop;
                    }
                    continue;
                }
                Ok(None) => {}
            }
            if !self.buf.output().is_empty() {
                if self.flush().await.is_err() {
                    return Stop::DestinationGone;
                }
                continue;
            }
            if let Some(code) = self.closed {
                return Stop::Closed(code);
            }
            self.buf.make_room();
            if !self.buf.output().is_empty() {
                // Part of a frame larger than the buffer: write it first.
                continue;
            }
            match source::fill(&mut self.src, &mut self.buf).await {
                Ok(0) | Err(_) => return Stop::SourceGone,
                Ok(n) => self.buf.filled(n),
            }
        }
    }

    /// Runs the decoder over everything read, accepting each frame that its
    /// quota allows, the held ones first. `Ok(Some(over))`: the first held frame
    /// is over the quota and may pass after `over.wait`.
    fn decode(&mut self) -> Result<Option<Over>, Violation> {
        // The clock is read once per pass, and only if a frame ended: it is
        // the same burst for the idle timer and the quotas.
        let mut clock_read = false;
        while let Some(&held) = self.held.front() {
            self.tick(&mut clock_read);
            if let Err(over) = self.charge(held.charge, held.cost) {
                return Ok(Some(over));
            }
            self.held.pop_front();
            self.held_bytes -= held.len as usize;
            self.accept(held.event, held.len as usize);
            if self.held.is_empty() {
                // A flush's queue is not kept for a connection that went quiet.
                self.held = VecDeque::new();
                self.ahead_stopped = false;
                if let Some(v) = self.ahead_violation.take() {
                    return Err(v);
                }
            }
        }
        while self.closed.is_none() {
            let Some(event) = self.next_frame()? else {
                break;
            };
            self.tick(&mut clock_read);
            let (charge, cost) = self.cost_of(event);
            let len = self.buf.unreleased().len();
            if let Err(over) = self.charge(charge, cost) {
                self.hold_frame(event, charge, cost, len);
                return Ok(Some(over));
            }
            self.accept(event, len);
        }
        Ok(None)
    }

    /// Feeds the decoder what was read until a frame ends (`Some`, its bytes
    /// the last unreleased ones) or it needs more bytes (`None`).
    fn next_frame(&mut self) -> Result<Option<Event>, Violation> {
        while !self.buf.unparsed().is_empty() {
            let (n, event) = self.dec.feed(self.buf.unparsed())?;
            self.buf.consume(n);
            self.frame_bytes += n as u64;
            if event.is_some() || n == 0 {
                return Ok(event);
            }
        }
        Ok(None)
    }

    /// Reads the clock for this pass if it was not read yet.
    fn tick(&mut self, clock_read: &mut bool) {
        if !*clock_read {
            *clock_read = true;
            self.last_frame = Instant::now();
            if let Some(rate) = &self.rate {
                rate.quota.tick(self.last_frame.into_std());
            }
        }
    }

    /// What the frame just decoded is charged as, and how many bytes. A
    /// compressed frame costs what it inflates to, if that is more: it is what
    /// the backend must process. A heartbeat is a whole frame of a few bytes:
    /// the cheap length test in [`Heartbeats::matches`] comes first.
    fn cost_of(&self, event: Event) -> (Charge, u64) {
        let bytes = self.frame_bytes.max(self.dec.inflated_len().unwrap_or(0));
        let charge = match (event, &self.rate) {
            (Event::DataEnd { .. }, Some(rate))
                if rate
                    .heartbeats
                    .matches(&self.buf.unreleased()[self.held_bytes..]) =>
            {
                Charge::ControlCell
            }
            (Event::DataEnd { .. }, _) => Charge::Data,
            _ => Charge::Control,
        };
        (charge, bytes)
    }

    /// Charges a frame to the quota (always passes without one).
    fn charge(&mut self, charge: Charge, cost: u64) -> Result<(), Over> {
        match self.rate.as_mut() {
            Some(rate) => rate.quota.check(charge, cost),
            None => Ok(()),
        }
    }

    /// Queues the frame just decoded (the last `len` unreleased bytes) behind the held ones.
    fn hold_frame(&mut self, event: Event, charge: Charge, cost: u64, len: usize) {
        self.frame_bytes = 0;
        self.held_bytes += len;
        self.held.push_back(Held {
            event,
            // At most the buffer's size.
            len: len as u32,
            charge,
            cost,
        });
    }

    /// The frame at the start of the unreleased bytes, `len` of them, passed
    /// every rule: forward it, or consume it here if it is a pong the backend
    /// must not see.
    fn accept(&mut self, event: Event, len: usize) {
        self.frame_bytes = 0;
        if !self.passes(event) {
            self.buf.cut_frame();
            return;
        }
        if let Event::Close { code } = event {
            // Nothing may follow a close frame (RFC 6455 §5.5.1).
            self.closed = Some(code);
            self.buf.drop_unparsed();
            if self.swallow_close {
                return;
            }
        }
        self.counts.frames += 1;
        self.buf.release(len);
    }

    /// Whether the control frame just decoded goes on; `false` for a client pong
    /// that answers the proxy's ping or no ping of the backend's. Notes a
    /// backend ping, which the client's next pong answers.
    fn passes(&mut self, event: Event) -> bool {
        match (self.dir, event) {
            (Dir::Down, Event::Ping) => self.backend_ping.store(true, Ordering::Relaxed),
            (Dir::Up, Event::Pong) => {
                let token = self.proxy_ping;
                if token.is_some_and(|t| self.dec.control_payload() == t) {
                    self.proxy_ping = None;
                    return false;
                }
                return self.backend_ping.swap(false, Ordering::Relaxed);
            }
            _ => {}
        }
        true
    }

    /// Drops everything after the last accepted frame.
    fn discard_rest(&mut self) {
        self.buf.discard_unreleased();
        self.held = VecDeque::new();
        self.held_bytes = 0;
        self.ahead_stopped = false;
        self.ahead_violation = None;
    }

    /// Writes what was released and flushes (TLS keeps records until then).
    /// A destination that is not ready lets the buffer move a small output
    /// out of the largest storage first ([`FrameBuf::idle`]): a slow reader
    /// keeps what it has not taken, not a burst's worth of storage.
    async fn flush(&mut self) -> io::Result<()> {
        loop {
            if self.buf.output().is_empty() {
                return self.dst.flush().await;
            }
            let (dst, buf) = (&mut self.dst, &mut self.buf);
            let mut waited = false;
            let n = std::future::poll_fn(|cx| {
                let write = Pin::new(&mut *dst).poll_write(cx, buf.output());
                if write.is_pending() && !waited {
                    waited = true;
                    buf.idle();
                }
                write
            })
            .await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.buf.written(n);
            self.counts.bytes += n as u64;
        }
    }

    /// Writes a frame of the proxy's own if the destination is between
    /// frames with nothing pending; masked towards the backend (we are its
    /// client, RFC 6455 §5.3). `Ok(false)`: not now, nothing written.
    async fn send_own(
        &mut self,
        frame: impl FnOnce(Option<[u8; 4]>) -> ControlFrame,
    ) -> io::Result<bool> {
        if self.buf.is_mid_frame() || !self.buf.output().is_empty() {
            return Ok(false);
        }
        let mask = (self.dir == Dir::Up).then(random_mask);
        self.dst.write_all(frame(mask).as_bytes()).await?;
        self.dst.flush().await?;
        Ok(true)
    }

    /// Delivers what was accepted, then the proxy's close frame. `Ok(false)`:
    /// the destination is mid-frame, where no frame can go, and nothing more
    /// was written.
    pub async fn send_close(&mut self, code: u16, reason: &str) -> io::Result<bool> {
        self.flush().await?;
        self.send_own(|mask| ControlFrame::close(code, reason, mask))
            .await
    }

    /// Answers a close frame the other peer sent with `code`, when the peer
    /// it was relayed to did not answer. `Ok(false)` as for [`Pump::send_close`].
    pub async fn send_close_reply(&mut self, code: Option<u16>) -> io::Result<bool> {
        self.flush().await?;
        self.send_own(|mask| ControlFrame::close_reply(code, mask))
            .await
    }

    /// Sends the proxy's ping with `token` if the destination is idle
    /// (between frames, nothing pending). `Ok(false)`: not sent.
    pub async fn send_ping(&mut self, token: &[u8; PING_TOKEN]) -> io::Result<bool> {
        self.send_own(|mask| ControlFrame::ping(token, mask)).await
    }

    /// Closes our sending side towards the destination.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.dst.shutdown().await
    }

    /// Reads and discards until the source ends, so the peer's close reply
    /// is consumed and our socket closes with FIN rather than RST.
    pub async fn drain(&mut self) {
        loop {
            self.buf.clear();
            if let Ok(0) | Err(_) = source::fill(&mut self.src, &mut self.buf).await {
                break;
            }
        }
    }
}

/// The pump's state as the relay sees it; no I/O.
impl<R, W> Pump<R, W> {
    /// From now on a close frame from the source ends [`Pump::run`] without
    /// being forwarded.
    pub fn swallow_close(&mut self) {
        self.swallow_close = true;
    }

    /// The client's pong with `token` answers the proxy's ping (up pump).
    pub fn expect_pong(&mut self, token: [u8; PING_TOKEN]) {
        self.proxy_ping = Some(token);
    }

    /// Whether the proxy's ping is still unanswered (up pump).
    pub fn awaiting_pong(&self) -> bool {
        self.proxy_ping.is_some()
    }

    /// When the source last completed a frame.
    pub fn last_frame(&self) -> Instant {
        self.last_frame
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }
}

fn random_mask() -> [u8; 4] {
    let mut key = [0u8; 4];
    // A fixed fallback is still a valid mask; the OS source does not fail in
    // practice.
    if getrandom::fill(&mut key).is_err() {
        key = [0x5a, 0xa5, 0x3c, 0xc3];
    }
    key
}
