//! One direction of a relay: read into one bounded buffer, run every byte
//! through the sans-I/O decoder, apply the direction's rate quota, and
//! forward the original bytes of whole frames with one write per burst.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::config::OnLimit;
use crate::frame::{ControlFrame, Decoder, Event, Violation};
use crate::limits::FrameRate;

/// Largest per-direction buffer. Frames that fit are forwarded whole, so a
/// violation found later in the frame never leaves half a frame at the peer;
/// this holds the default `max_frame_size` frame with its header.
const MAX_BUF: usize = 64 * 1024 + 14;

/// Buffer of an idle direction. Most connections are idle most of the time;
/// the buffer grows (doubling, up to `MAX_BUF`) when a read fills it or a
/// frame does not fit, and shrinks back when the source has nothing more to
/// read. 1 KiB holds a typical chat message.
const MIN_BUF: usize = 1024;

/// A grown buffer goes back to `MIN_BUF` after the source is quiet this
/// long: long enough that a busy connection keeps its buffer between bursts.
const TRIM_AFTER: Duration = Duration::from_secs(1);

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
    /// Over the direction's rate quota with `on_limit = "close"`.
    RateLimited,
}

/// A direction's rate quota and what to do when it is exceeded.
pub(super) struct Rate {
    pub quota: FrameRate,
    pub on_limit: OnLimit,
}

/// One direction: reads `src`, forwards accepted frames to `dst`.
pub(super) struct Pump<R, W> {
    pub src: R,
    pub dst: W,
    dec: Decoder,
    buf: Box<[u8]>,
    /// `buf[head..mark]` is accepted and waits to be written.
    head: usize,
    mark: usize,
    /// End of the last complete frame.
    frame_end: usize,
    /// `buf[..parsed]` went through the decoder; `buf[..end]` was read.
    parsed: usize,
    end: usize,
    /// Wire bytes of the frame being decoded (for the byte quota).
    frame_bytes: u64,
    /// Part of a frame larger than the buffer was released to the
    /// destination and the rest was not: no frame of the proxy's own may be
    /// written until the frame ends. Kept apart from the indices, which
    /// compaction moves.
    mid_frame: bool,
    closed: Option<Option<u16>>,
    /// Stop at a close frame without forwarding it: used when the proxy
    /// itself closed the other peer and answers in its own words.
    pub swallow_close: bool,
    /// Set when the backend sent a ping the client has not answered yet.
    /// The down pump sets it; the up pump forwards a client pong only while
    /// it is set, so unsolicited pongs never reach the backend.
    backend_ping: Arc<AtomicBool>,
    /// The token of the proxy's own unanswered ping (up pump only): the
    /// client's pong with it is the proxy's, never forwarded.
    pub proxy_ping: Option<[u8; PING_TOKEN]>,
    rate: Option<Rate>,
    /// The event of a decoded frame still waiting for its quota.
    pending: Option<Event>,
    dir: Dir,
    /// When the source last completed a frame.
    pub last_frame: Instant,
    pub frames: u64,
    pub bytes: u64,
    /// Times a frame had to wait for the quota (`on_limit = "delay"`).
    pub throttled: u64,
}

// === impl Pump ===

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Pump<R, W> {
    pub fn new(
        (src, dst): (R, W),
        dir: Dir,
        dec: Decoder,
        early: &[u8],
        backend_ping: Arc<AtomicBool>,
        rate: Option<Rate>,
    ) -> Self {
        let mut buf = vec![0u8; MIN_BUF.max(early.len())].into_boxed_slice();
        buf[..early.len()].copy_from_slice(early);
        Pump {
            src,
            dst,
            dec,
            buf,
            head: 0,
            mark: 0,
            frame_end: 0,
            parsed: 0,
            end: early.len(),
            frame_bytes: 0,
            mid_frame: false,
            closed: None,
            swallow_close: false,
            backend_ping,
            proxy_ping: None,
            rate,
            pending: None,
            dir,
            last_frame: Instant::now(),
            frames: 0,
            bytes: 0,
            throttled: 0,
        }
    }

    /// Relays until a close frame is forwarded, a peer goes away, a rule is
    /// broken or the quota says close. Cancel-safe: all progress lives in
    /// `self`, so the caller can stop this between any two awaits.
    pub async fn run(&mut self) -> Stop {
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
                Ok(Some(wait)) => {
                    if self.flush().await.is_err() {
                        return Stop::DestinationGone;
                    }
                    if let Some(Rate {
                        on_limit: OnLimit::Close,
                        ..
                    }) = self.rate
                    {
                        self.discard_rest();
                        return Stop::RateLimited;
                    }
                    // Delay: read nothing more (TCP back-pressure) until the
                    // quota lets the pending frame pass.
                    self.throttled += 1;
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Ok(None) => {}
            }
            if self.mark > self.head {
                if self.flush().await.is_err() {
                    return Stop::DestinationGone;
                }
                continue;
            }
            if let Some(code) = self.closed {
                return Stop::Closed(code);
            }
            self.compact();
            if self.end == self.buf.len() {
                if self.buf.len() < MAX_BUF {
                    self.resize(self.buf.len() * 2);
                    continue;
                }
                // One frame is larger than the buffer: stream what the decoder
                // accepted so far. Its rules have been checked up to here.
                self.mark = self.parsed;
                self.mid_frame = true;
                continue;
            }
            if self.end == 0 && self.buf.len() > MIN_BUF {
                // Empty and grown: give the big buffer back once the source
                // has been quiet for a while. Under load the read is ready
                // first and the timer is never even registered; dropping a
                // pending read loses nothing.
                let quiet = tokio::select! {
                    biased;
                    read = self.src.read(&mut self.buf) => Some(read),
                    () = tokio::time::sleep(TRIM_AFTER) => None,
                };
                match quiet {
                    Some(Ok(0) | Err(_)) => return Stop::SourceGone,
                    Some(Ok(n)) => {
                        self.end = n;
                        continue;
                    }
                    None => self.resize(MIN_BUF),
                }
            }
            let room = self.buf.len() - self.end;
            match self.src.read(&mut self.buf[self.end..]).await {
                Ok(0) | Err(_) => return Stop::SourceGone,
                Ok(n) => {
                    self.end += n;
                    // A read that fills the buffer says a burst is on.
                    if n == room && self.buf.len() < MAX_BUF {
                        self.resize(self.buf.len() * 2);
                    }
                }
            }
        }
    }

    /// Runs the decoder over everything read, accepting each frame that its
    /// quota allows. `Ok(Some(wait))`: the frame ending at `parsed` is over
    /// the quota and may pass after `wait`.
    fn decode(&mut self) -> Result<Option<Duration>, Violation> {
        // The clock is read once per pass, and only if a frame ended: it is
        // the same burst for the idle timer and the quotas.
        let mut clock_read = false;
        if let Some(event) = self.pending {
            self.tick(&mut clock_read);
            if let Some(wait) = self.over_quota(event) {
                return Ok(Some(wait));
            }
            self.accept(event);
        }
        while self.closed.is_none() && self.parsed < self.end {
            let (n, event) = self.dec.feed(&self.buf[self.parsed..self.end])?;
            self.parsed += n;
            self.frame_bytes += n as u64;
            let Some(event) = event else {
                if n == 0 {
                    break;
                }
                continue;
            };
            self.tick(&mut clock_read);
            if let Some(wait) = self.over_quota(event) {
                self.pending = Some(event);
                return Ok(Some(wait));
            }
            self.accept(event);
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

    /// Charges the frame just decoded to the quota; `Some(wait)` if over.
    fn over_quota(&mut self, event: Event) -> Option<Duration> {
        let rate = self.rate.as_mut()?;
        let control = !matches!(event, Event::DataEnd { .. });
        rate.quota.check(control, self.frame_bytes).err()
    }

    /// The frame `buf[frame_end..parsed]` passed every rule: forward it, or
    /// consume it here if it is a pong the backend must not see.
    fn accept(&mut self, event: Event) {
        self.pending = None;
        self.frame_bytes = 0;
        match (self.dir, event) {
            (Dir::Down, Event::Ping) => self.backend_ping.store(true, Ordering::Relaxed),
            (Dir::Up, Event::Pong) => {
                let token = self.proxy_ping;
                if token.is_some_and(|t| self.dec.control_payload() == t) {
                    self.proxy_ping = None;
                    self.cut_frame();
                    return;
                }
                if !self.backend_ping.swap(false, Ordering::Relaxed) {
                    self.cut_frame();
                    return;
                }
            }
            _ => {}
        }
        if let Event::Close { code } = event {
            // Nothing may follow a close frame (RFC 6455 §5.5.1).
            self.closed = Some(code);
            self.end = self.parsed;
            if self.swallow_close {
                return;
            }
        }
        self.frames += 1;
        self.frame_end = self.parsed;
        self.mark = self.parsed;
        // A streamed frame ends here: releasing its rest completes it.
        self.mid_frame = false;
    }

    /// Drops everything after the last accepted frame.
    fn discard_rest(&mut self) {
        self.end = self.frame_end;
        self.parsed = self.frame_end;
        self.mark = self.frame_end;
        self.pending = None;
    }

    /// Removes the frame just decoded (`buf[frame_end..parsed]`): it is
    /// never forwarded. Only control frames are cut, so at most 131 bytes
    /// plus what follows them in this burst move.
    fn cut_frame(&mut self) {
        let start = self.frame_end;
        self.buf.copy_within(self.parsed..self.end, start);
        self.end -= self.parsed - start;
        self.parsed = start;
    }

    /// Writes `buf[head..mark]` and flushes (TLS keeps records until then).
    pub async fn flush(&mut self) -> io::Result<()> {
        while self.head < self.mark {
            let n = self.dst.write(&self.buf[self.head..self.mark]).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.head += n;
            self.bytes += n as u64;
        }
        self.dst.flush().await
    }

    /// Replaces the buffer with one of `size` bytes (capped at `MAX_BUF`,
    /// never below what it holds), keeping `buf[..end]`.
    fn resize(&mut self, size: usize) {
        let size = size.min(MAX_BUF).max(self.end);
        let mut buf = vec![0u8; size].into_boxed_slice();
        buf[..self.end].copy_from_slice(&self.buf[..self.end]);
        self.buf = buf;
    }

    /// Moves unwritten bytes to the front so the next read has room.
    fn compact(&mut self) {
        if self.head == 0 {
            return;
        }
        if self.head == self.end || self.end == self.buf.len() {
            self.buf.copy_within(self.head..self.end, 0);
            for i in [
                &mut self.mark,
                &mut self.frame_end,
                &mut self.parsed,
                &mut self.end,
            ] {
                *i -= self.head.min(*i);
            }
            self.head = 0;
        }
    }

    /// Whether the destination is between frames with nothing pending, so
    /// the proxy may write a frame of its own.
    pub fn idle_output(&self) -> bool {
        !self.mid_frame && self.head == self.mark
    }

    /// Writes a frame of the proxy's own; the caller checks
    /// [`Pump::idle_output`] first.
    pub async fn send_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        self.dst.write_all(frame).await?;
        self.dst.flush().await
    }

    /// Delivers what was accepted, then the proxy's close frame, masked
    /// towards the backend (we are its client, RFC 6455 §5.3). `Ok(false)`:
    /// the destination is mid-frame, where no frame can go, and nothing
    /// more was written.
    pub async fn send_close(&mut self, code: u16, reason: &str) -> io::Result<bool> {
        self.flush().await?;
        if self.mid_frame {
            return Ok(false);
        }
        let mask = (self.dir == Dir::Up).then(random_mask);
        self.send_frame(ControlFrame::close(code, reason, mask).as_bytes())
            .await?;
        Ok(true)
    }

    /// Reads and discards until the source ends, so the peer's close reply
    /// is consumed and our socket closes with FIN rather than RST.
    pub async fn drain(&mut self) {
        while let Ok(n) = self.src.read(&mut self.buf).await {
            if n == 0 {
                break;
            }
        }
    }
}

pub(super) fn random_mask() -> [u8; 4] {
    let mut key = [0u8; 4];
    // A fixed fallback is still a valid mask; the OS source does not fail in
    // practice.
    if getrandom::fill(&mut key).is_err() {
        key = [0x5a, 0xa5, 0x3c, 0xc3];
    }
    key
}
