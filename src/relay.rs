//! The only async frame code: two directions over real sockets, each a
//! [`Pump`] that reads into one bounded buffer, runs every byte through the
//! sans-I/O [`Decoder`], and forwards the original bytes of whole frames with
//! one write per burst. A slow reader stops its writer (back-pressure); the
//! close handshake and every failure end in [`finish`] with the close codes of
//! `DESIGN.md`.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::timeout;

use crate::frame::{close, Decoder, Event, Violation};
use crate::policy::{FramePolicy, Role};

/// Per-direction buffer. Frames that fit are forwarded whole, so a violation
/// found later in the frame never leaves half a frame at the peer; 64 KiB
/// holds the default `max_frame_size` frame with its header.
const BUF_SIZE: usize = 64 * 1024 + 14;

/// Which peer ended the connection, and how: the connection's log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub ended_by: Ender,
    /// Close code sent to (or relayed to) the client, if any.
    pub client_code: Option<u16>,
    pub violation: Option<Violation>,
    pub frames_up: u64,
    pub bytes_up: u64,
    pub frames_down: u64,
    pub bytes_down: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ender {
    /// The client started the close handshake.
    Client,
    /// The backend started the close handshake.
    Backend,
    /// The client broke a rule.
    ClientViolation,
    /// The backend broke a rule.
    BackendViolation,
    /// The client's TCP connection ended without a close frame.
    ClientGone,
    /// The backend's TCP connection ended without a close frame.
    BackendGone,
    /// The proxy is shutting down.
    Shutdown,
}

// === impl Ender ===

impl Ender {
    /// Log and metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Ender::Client => "client",
            Ender::Backend => "backend",
            Ender::ClientViolation => "client_violation",
            Ender::BackendViolation => "backend_violation",
            Ender::ClientGone => "client_gone",
            Ender::BackendGone => "backend_gone",
            Ender::Shutdown => "shutdown",
        }
    }
}

/// Why a pump stopped.
#[derive(Debug)]
enum Stop {
    /// A close frame was forwarded; carries its code.
    Closed(Option<u16>),
    /// The source ended (EOF or read error) without a close frame.
    SourceGone,
    /// Writing to the destination failed.
    DestinationGone,
    Violation(Violation),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Client to backend.
    Up,
    /// Backend to client.
    Down,
}

/// One direction: reads `src`, forwards accepted frames to `dst`.
struct Pump<R, W> {
    src: R,
    dst: W,
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
    /// The destination has received whole frames only, so a close frame may
    /// be written to it.
    aligned: bool,
    closed: Option<Option<u16>>,
    /// Stop at a close frame without forwarding it: used when the proxy
    /// itself closed the other peer and answers in its own words.
    swallow_close: bool,
    /// Set when the backend sent a ping the client has not answered yet.
    /// The down pump sets it; the up pump forwards a client pong only while
    /// it is set, so unsolicited pongs never reach the backend.
    ping_outstanding: Arc<AtomicBool>,
    dir: Dir,
    frames: u64,
    bytes: u64,
}

// === impl Pump ===

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Pump<R, W> {
    fn new(
        src: R,
        dst: W,
        dir: Dir,
        dec: Decoder,
        early: &[u8],
        ping_outstanding: Arc<AtomicBool>,
    ) -> Self {
        let mut buf = vec![0u8; BUF_SIZE.max(early.len())].into_boxed_slice();
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
            aligned: true,
            closed: None,
            swallow_close: false,
            ping_outstanding,
            dir,
            frames: 0,
            bytes: 0,
        }
    }

    /// Relays until a close frame is forwarded, a peer goes away, or a rule is
    /// broken. Cancel-safe: all progress lives in `self`, so the other
    /// direction can stop this one between any two awaits.
    async fn run(&mut self) -> Stop {
        loop {
            if let Err(v) = self.decode() {
                // Frames before the offending one were accepted: deliver them.
                self.end = self.frame_end;
                self.parsed = self.frame_end;
                self.mark = self.frame_end;
                return match self.flush().await {
                    Ok(()) => Stop::Violation(v),
                    Err(_) => Stop::DestinationGone,
                };
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
                // One frame is larger than the buffer: stream what the decoder
                // accepted so far. Its rules have been checked up to here.
                self.mark = self.parsed;
                continue;
            }
            match self.src.read(&mut self.buf[self.end..]).await {
                Ok(0) | Err(_) => return Stop::SourceGone,
                Ok(n) => self.end += n,
            }
        }
    }

    /// Runs the decoder over everything read; moves `mark` to the last
    /// complete frame.
    fn decode(&mut self) -> Result<(), Violation> {
        while self.closed.is_none() && self.parsed < self.end {
            let (n, event) = self.dec.feed(&self.buf[self.parsed..self.end])?;
            self.parsed += n;
            let Some(event) = event else {
                if n == 0 {
                    break;
                }
                continue;
            };
            match (self.dir, event) {
                (Dir::Down, Event::Ping) => self.ping_outstanding.store(true, Ordering::Relaxed),
                (Dir::Up, Event::Pong) if !self.ping_outstanding.swap(false, Ordering::Relaxed) => {
                    self.cut_frame();
                    continue;
                }
                _ => {}
            }
            if let Event::Close { code } = event {
                // Nothing may follow a close frame (RFC 6455 §5.5.1).
                self.closed = Some(code);
                self.end = self.parsed;
                if self.swallow_close {
                    break;
                }
            }
            self.frames += 1;
            self.frame_end = self.parsed;
            self.mark = self.parsed;
        }
        Ok(())
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
    async fn flush(&mut self) -> io::Result<()> {
        while self.head < self.mark {
            let n = self.dst.write(&self.buf[self.head..self.mark]).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.head += n;
            self.bytes += n as u64;
        }
        self.aligned = self.head == self.frame_end;
        self.dst.flush().await
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

    /// Sends our own close frame when the destination is between frames;
    /// masked towards the backend (we are its client, RFC 6455 §5.3).
    async fn send_close(&mut self, code: u16, reason: &str, masked: bool) -> io::Result<()> {
        if !self.aligned {
            return Ok(());
        }
        let mask = masked.then(random_mask);
        // 2-byte header, 4-byte mask, at most 125 bytes of payload.
        let mut frame = Vec::with_capacity(131);
        close::encode_close(code, reason, mask, &mut frame);
        self.dst.write_all(&frame).await?;
        self.dst.flush().await
    }

    /// Reads and discards until the source ends, so the peer's close reply
    /// is consumed and our socket closes with FIN rather than RST.
    async fn drain(&mut self) {
        while let Ok(n) = self.src.read(&mut self.buf).await {
            if n == 0 {
                break;
            }
        }
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

/// Per-connection relay settings, from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub client_policy: FramePolicy,
    pub backend_policy: FramePolicy,
    /// Wait for a peer's close frame or TCP close at most this long.
    pub close_timeout: Duration,
}

/// Relays frames between `client` and `backend` until the connection ends.
/// `client_early`/`backend_early` are bytes that arrived with the handshakes.
pub async fn relay<C, B>(
    client: C,
    client_early: &[u8],
    backend: B,
    backend_early: &[u8],
    settings: Settings,
    mut drain: watch::Receiver<bool>,
) -> Summary
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let Settings {
        client_policy,
        backend_policy,
        close_timeout,
    } = settings;
    let (cr, cw) = tokio::io::split(client);
    let (br, bw) = tokio::io::split(backend);
    let pings = Arc::new(AtomicBool::new(false));
    let mut up = Pump::new(
        cr,
        bw,
        Dir::Up,
        Decoder::new(Role::Client, client_policy),
        client_early,
        pings.clone(),
    );
    let mut down = Pump::new(
        br,
        cw,
        Dir::Down,
        Decoder::new(Role::Server, backend_policy),
        backend_early,
        pings,
    );

    let (ended_by, violation, client_code) = tokio::select! {
        stop = up.run() => on_up_stop(stop, &mut up, &mut down, close_timeout).await,
        stop = down.run() => on_down_stop(stop, &mut up, &mut down, close_timeout).await,
        () = draining(&mut drain) => {
            let going_away = Some((1001, "going away"));
            fail(&mut up, &mut down, going_away, going_away, close_timeout).await;
            (Ender::Shutdown, None, Some(1001))
        }
    };
    Summary {
        ended_by,
        client_code,
        violation,
        frames_up: up.frames,
        bytes_up: up.bytes,
        frames_down: down.frames,
        bytes_down: down.bytes,
    }
}

/// Resolves once the proxy starts draining; never if the signal is gone.
async fn draining(drain: &mut watch::Receiver<bool>) {
    if drain.wait_for(|&d| d).await.is_err() {
        std::future::pending::<()>().await;
    }
}

type Up<C, B> = Pump<tokio::io::ReadHalf<C>, tokio::io::WriteHalf<B>>;
type Down<C, B> = Pump<tokio::io::ReadHalf<B>, tokio::io::WriteHalf<C>>;
type Outcome = (Ender, Option<Violation>, Option<u16>);

async fn on_up_stop<C, B>(
    stop: Stop,
    up: &mut Up<C, B>,
    down: &mut Down<C, B>,
    wait: Duration,
) -> Outcome
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    match stop {
        Stop::Closed(code) => {
            // The client's close went to the backend; relay the backend's
            // answer (and any frames before it), then close the client's TCP
            // connection first: the proxy is the server there (RFC 6455 §7.1.1).
            let reply = timeout(wait, down.run()).await;
            let _ = timeout(wait, down.dst.shutdown()).await;
            let backend_code = match reply {
                Ok(Stop::Closed(c)) => c,
                _ => code,
            };
            let _ = timeout(wait, up.dst.shutdown()).await;
            let _ = timeout(wait, down.drain()).await;
            (Ender::Client, None, backend_code)
        }
        Stop::Violation(v) => {
            // Close the backend first and relay its answers to the frames
            // already accepted (its close reply is not relayed), so the
            // client loses nothing it was owed; then close the client.
            let code = v.close_code();
            let told = timeout(wait, up.send_close(1001, "", true))
                .await
                .is_ok_and(|r| r.is_ok());
            if told {
                down.swallow_close = true;
                let _ = timeout(wait, down.run()).await;
                let _ = timeout(wait, up.dst.shutdown()).await;
            }
            let to_backend = (!told).then_some((1001, ""));
            fail(up, down, Some((code, v.reason())), to_backend, wait).await;
            if told {
                let _ = timeout(wait, down.drain()).await;
            }
            (Ender::ClientViolation, Some(v), Some(code))
        }
        Stop::SourceGone => {
            fail(up, down, None, Some((1001, "client went away")), wait).await;
            (Ender::ClientGone, None, None)
        }
        Stop::DestinationGone => {
            fail(up, down, Some((1011, "backend went away")), None, wait).await;
            (Ender::BackendGone, None, Some(1011))
        }
    }
}

async fn on_down_stop<C, B>(
    stop: Stop,
    up: &mut Up<C, B>,
    down: &mut Down<C, B>,
    wait: Duration,
) -> Outcome
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    match stop {
        Stop::Closed(code) => {
            // The backend's close went to the client; relay the client's
            // answer to the backend, then close both.
            let _ = timeout(wait, up.run()).await;
            let _ = timeout(wait, down.dst.shutdown()).await;
            let _ = timeout(wait, up.dst.shutdown()).await;
            let _ = timeout(wait, down.drain()).await;
            (Ender::Backend, None, code)
        }
        Stop::Violation(v) => {
            tracing::debug!(rule = v.label(), "backend broke a frame rule");
            fail(
                up,
                down,
                Some((1011, "backend protocol error")),
                Some((v.close_code(), v.reason())),
                wait,
            )
            .await;
            (Ender::BackendViolation, Some(v), Some(1011))
        }
        Stop::SourceGone => {
            fail(up, down, Some((1011, "backend went away")), None, wait).await;
            (Ender::BackendGone, None, Some(1011))
        }
        Stop::DestinationGone => {
            fail(up, down, None, Some((1001, "client went away")), wait).await;
            (Ender::ClientGone, None, None)
        }
    }
}

/// Fails the connection (RFC 6455 §7.1.7): delivers what was accepted,
/// sends each live peer its close frame, closes our sending side and waits a
/// bounded time for each peer to close theirs.
async fn fail<C, B>(
    up: &mut Up<C, B>,
    down: &mut Down<C, B>,
    to_client: Option<(u16, &str)>,
    to_backend: Option<(u16, &str)>,
    wait: Duration,
) where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    // Writes first (each bounded), then wait for both peers at once.
    let mut drain_client = false;
    if let Some((code, reason)) = to_client {
        let sent = async {
            down.flush().await?;
            down.send_close(code, reason, false).await?;
            down.dst.shutdown().await
        };
        drain_client = timeout(wait, sent).await.is_ok_and(|r| r.is_ok());
    }
    let mut drain_backend = false;
    if let Some((code, reason)) = to_backend {
        let sent = async {
            up.flush().await?;
            up.send_close(code, reason, true).await?;
            up.dst.shutdown().await
        };
        drain_backend = timeout(wait, sent).await.is_ok_and(|r| r.is_ok());
    }
    let _ = timeout(wait, async {
        tokio::join!(
            async {
                if drain_client {
                    up.drain().await;
                }
            },
            async {
                if drain_backend {
                    down.drain().await;
                }
            }
        )
    })
    .await;
}
