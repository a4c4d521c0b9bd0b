//! The only async frame code: two directions over real sockets, each a pump
//! that reads into one bounded buffer ([`buffer::FrameBuf`]), runs every
//! byte through the sans-I/O decoder and the direction's rate quota, and
//! forwards the original bytes of whole frames with one write per burst. A slow reader
//! stops its writer (back-pressure). This module runs both pumps, the
//! liveness timers (idle timeout, proxy pings) and the close handshake, and
//! ends every failure with the close codes of `DESIGN.md`.

pub mod buffer;
mod pump;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{timeout, Instant};
use tokio_rustls::server::TlsStream;

use crate::config::RateConfig;
use crate::frame::coding::close_code::{GOING_AWAY, INTERNAL_ERROR, POLICY_VIOLATION};
use crate::frame::{Decoder, Violation};
use crate::frame::{FramePolicy, Role};
use crate::limits::FrameRate;
use pump::{Dir, Pump, Rate, Stop, PING_TOKEN};

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
    /// Waits imposed by the rate quotas in delay mode, per direction.
    pub throttled_up: u64,
    pub throttled_down: u64,
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
    /// The client went over its rate quota (`on_limit = "close"`).
    ClientRateLimited,
    /// The backend went over its rate quota (`on_limit = "close"`).
    BackendRateLimited,
    /// The client's TCP connection ended without a close frame.
    ClientGone,
    /// The backend's TCP connection ended without a close frame.
    BackendGone,
    /// No frame either way for `idle_timeout`.
    Idle,
    /// The client did not answer the proxy's ping within `pong_timeout`.
    NoPong,
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
            Ender::ClientRateLimited => "client_rate_limit",
            Ender::BackendRateLimited => "backend_rate_limit",
            Ender::ClientGone => "client_gone",
            Ender::BackendGone => "backend_gone",
            Ender::Idle => "idle",
            Ender::NoPong => "no_pong",
            Ender::Shutdown => "shutdown",
        }
    }
}

/// A stream the relay can read and write from its two directions at once.
/// A TCP stream splits into owned halves (no lock per read and write, which
/// `perf` showed at ~3% of the relay's time); TLS shares one state machine
/// and splits with `tokio::io::split`.
pub trait Split {
    type Read: AsyncRead + Unpin + Send;
    type Write: AsyncWrite + Unpin + Send;
    fn split(self) -> (Self::Read, Self::Write);
}

impl Split for TcpStream {
    type Read = OwnedReadHalf;
    type Write = OwnedWriteHalf;
    fn split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.into_split()
    }
}

impl Split for TlsStream<TcpStream> {
    type Read = ReadHalf<TlsStream<TcpStream>>;
    type Write = WriteHalf<TlsStream<TcpStream>>;
    fn split(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}

/// Relay settings, from the configuration; each connection starts its own
/// decoders and quotas from them.
#[derive(Debug, Clone)]
pub struct Settings {
    pub client_policy: FramePolicy,
    pub backend_policy: FramePolicy,
    pub client_rate: RateConfig,
    pub backend_rate: RateConfig,
    /// Wait for a peer's close frame or TCP close at most this long.
    pub close_timeout: Duration,
    /// No frame either way for this long: close 1001 both ways.
    pub idle_timeout: Duration,
    /// Ping a client that has been quiet this long (`None`: never).
    pub ping_interval: Option<Duration>,
    /// A proxy ping unanswered this long: close 1001 both ways.
    pub pong_timeout: Duration,
}

fn rate(settings: &RateConfig) -> Option<Rate> {
    Some(Rate {
        quota: FrameRate::new(&settings.quota)?,
        on_limit: settings.on_limit,
    })
}

/// Relays frames between `client` and `backend` until the connection ends.
/// `client_early`/`backend_early` are bytes that arrived with the handshakes;
/// they are copied into the pumps and freed, so the buffers they came in
/// (hyper's read buffer, the backend handshake's) are not kept alive.
pub async fn relay<C, B>(
    client: C,
    client_early: bytes::Bytes,
    backend: B,
    backend_early: Vec<u8>,
    settings: Settings,
    mut drain: watch::Receiver<bool>,
) -> Summary
where
    C: Split,
    B: Split,
{
    let backend_ping = Arc::new(AtomicBool::new(false));
    let (client_read, client_write) = client.split();
    let (backend_read, backend_write) = backend.split();
    let mut up = Pump::new(
        (client_read, backend_write),
        Dir::Up,
        Decoder::new(Role::Client, settings.client_policy.clone()),
        &client_early,
        backend_ping.clone(),
        rate(&settings.client_rate),
    );
    let mut down = Pump::new(
        (backend_read, client_write),
        Dir::Down,
        Decoder::new(Role::Server, settings.backend_policy.clone()),
        &backend_early,
        backend_ping,
        rate(&settings.backend_rate),
    );
    drop((client_early, backend_early));
    let wait = settings.close_timeout;
    let mut ping_sent: Option<Instant> = None;

    let (ended_by, violation, client_code) = loop {
        let deadline = next_timer(&settings, &up, &down, ping_sent);
        tokio::select! {
            stop = up.run() => break on_up_stop(stop, &mut up, &mut down, wait).await,
            stop = down.run() => break on_down_stop(stop, &mut up, &mut down, wait).await,
            () = draining(&mut drain) => {
                let going_away = Some((GOING_AWAY, "going away"));
                let told = fail(&mut up, &mut down, going_away, going_away, wait).await;
                break (Ender::Shutdown, None, told.then_some(GOING_AWAY));
            }
            () = tokio::time::sleep_until(deadline) => {
                let now = Instant::now();
                let last = up.last_frame().max(down.last_frame());
                if now >= last + settings.idle_timeout {
                    let idle = Some((GOING_AWAY, "idle timeout"));
                    let told = fail(&mut up, &mut down, idle, idle, wait).await;
                    break (Ender::Idle, None, told.then_some(GOING_AWAY));
                }
                match (ping_sent, up.awaiting_pong()) {
                    (Some(sent), true) if now >= sent + settings.pong_timeout => {
                        let gone = Some((GOING_AWAY, "no pong"));
                        let told = fail(&mut up, &mut down, gone, gone, wait).await;
                        break (Ender::NoPong, None, told.then_some(GOING_AWAY));
                    }
                    (_, false) => ping_sent = None,
                    _ => {}
                }
                if let Some(interval) = settings.ping_interval {
                    if ping_sent.is_none() && now >= up.last_frame() + interval {
                        let token = ping_token();
                        if matches!(timeout(wait, down.send_ping(&token)).await, Ok(Ok(true))) {
                            up.expect_pong(token);
                            ping_sent = Some(now);
                        }
                    }
                }
            }
        }
    };
    let (up, down) = (up.counts(), down.counts());
    Summary {
        ended_by,
        client_code,
        violation,
        frames_up: up.frames,
        bytes_up: up.bytes,
        frames_down: down.frames,
        bytes_down: down.bytes,
        throttled_up: up.throttled,
        throttled_down: down.throttled,
    }
}

/// When the liveness loop must next look: the idle deadline, the next ping,
/// or the pong deadline, whichever comes first.
fn next_timer<A, B, C, D>(
    s: &Settings,
    up: &Pump<A, B>,
    down: &Pump<C, D>,
    ping_sent: Option<Instant>,
) -> Instant {
    let last = up.last_frame().max(down.last_frame());
    let mut at = last + s.idle_timeout;
    if let Some(sent) = ping_sent {
        at = at.min(sent + s.pong_timeout);
    } else if let Some(interval) = s.ping_interval {
        at = at.min(up.last_frame() + interval);
    }
    at
}

/// A fresh token for a proxy ping.
fn ping_token() -> [u8; PING_TOKEN] {
    let mut token = *b"wsguard!";
    let _ = getrandom::fill(&mut token[4..]);
    token
}

async fn draining(drain: &mut watch::Receiver<bool>) {
    if drain.wait_for(|&d| d).await.is_err() {
        std::future::pending::<()>().await;
    }
}

type Outcome = (Ender, Option<Violation>, Option<u16>);

async fn on_up_stop<CR, CW, BR, BW>(
    stop: Stop,
    up: &mut Pump<CR, BW>,
    down: &mut Pump<BR, CW>,
    wait: Duration,
) -> Outcome
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    BR: AsyncRead + Unpin,
    BW: AsyncWrite + Unpin,
{
    match stop {
        Stop::Closed(code) => {
            // The client's close went to the backend; relay the backend's
            // answer (and any frames before it), then close the client's TCP
            // connection first: the proxy is the server there (RFC 6455 §7.1.1).
            let reply = timeout(wait, down.run()).await;
            let _ = timeout(wait, down.shutdown()).await;
            let backend_code = match reply {
                Ok(Stop::Closed(c)) => c,
                _ => code,
            };
            let _ = timeout(wait, up.shutdown()).await;
            let _ = timeout(wait, down.drain()).await;
            (Ender::Client, None, backend_code)
        }
        Stop::Violation(v) => {
            // Close the backend first and relay its answers to the frames
            // already accepted (its close reply is not relayed), so the
            // client loses nothing it was owed; then close the client.
            let code = v.close_code();
            let told = matches!(
                timeout(wait, up.send_close(GOING_AWAY, "")).await,
                Ok(Ok(true))
            );
            if told {
                down.swallow_close();
                let _ = timeout(wait, down.run()).await;
                let _ = timeout(wait, up.shutdown()).await;
            }
            let to_backend = (!told).then_some((GOING_AWAY, ""));
            let client_told = fail(up, down, Some((code, v.reason())), to_backend, wait).await;
            if told {
                let _ = timeout(wait, down.drain()).await;
            }
            (Ender::ClientViolation, Some(v), client_told.then_some(code))
        }
        Stop::RateLimited => {
            let limit = Some((POLICY_VIOLATION, "rate limit"));
            let told = fail(up, down, limit, Some((GOING_AWAY, "")), wait).await;
            (
                Ender::ClientRateLimited,
                None,
                told.then_some(POLICY_VIOLATION),
            )
        }
        Stop::SourceGone => {
            fail(up, down, None, Some((GOING_AWAY, "client went away")), wait).await;
            (Ender::ClientGone, None, None)
        }
        Stop::DestinationGone => {
            let told = fail(
                up,
                down,
                Some((INTERNAL_ERROR, "backend went away")),
                None,
                wait,
            )
            .await;
            (Ender::BackendGone, None, told.then_some(INTERNAL_ERROR))
        }
    }
}

async fn on_down_stop<CR, CW, BR, BW>(
    stop: Stop,
    up: &mut Pump<CR, BW>,
    down: &mut Pump<BR, CW>,
    wait: Duration,
) -> Outcome
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    BR: AsyncRead + Unpin,
    BW: AsyncWrite + Unpin,
{
    match stop {
        Stop::Closed(code) => {
            // The backend's close went to the client; relay the client's
            // answer to the backend, then close both.
            let _ = timeout(wait, up.run()).await;
            let _ = timeout(wait, down.shutdown()).await;
            let _ = timeout(wait, up.shutdown()).await;
            let _ = timeout(wait, down.drain()).await;
            (Ender::Backend, None, code)
        }
        Stop::Violation(v) => {
            tracing::debug!(rule = v.label(), "backend broke a frame rule");
            let told = fail(
                up,
                down,
                Some((INTERNAL_ERROR, "backend protocol error")),
                Some((v.close_code(), v.reason())),
                wait,
            )
            .await;
            (
                Ender::BackendViolation,
                Some(v),
                told.then_some(INTERNAL_ERROR),
            )
        }
        Stop::RateLimited => {
            let to_client = Some((INTERNAL_ERROR, "backend rate limit"));
            let told = fail(
                up,
                down,
                to_client,
                Some((POLICY_VIOLATION, "rate limit")),
                wait,
            )
            .await;
            (
                Ender::BackendRateLimited,
                None,
                told.then_some(INTERNAL_ERROR),
            )
        }
        Stop::SourceGone => {
            let told = fail(
                up,
                down,
                Some((INTERNAL_ERROR, "backend went away")),
                None,
                wait,
            )
            .await;
            (Ender::BackendGone, None, told.then_some(INTERNAL_ERROR))
        }
        Stop::DestinationGone => {
            fail(up, down, None, Some((GOING_AWAY, "client went away")), wait).await;
            (Ender::ClientGone, None, None)
        }
    }
}

/// Fails the connection (RFC 6455 §7.1.7): delivers what was accepted,
/// sends each live peer its close frame, closes our sending side and waits a
/// bounded time for each peer to close theirs. A peer in the middle of a
/// streamed frame cannot be sent a close frame: its connection is closed at
/// once and no reply is awaited. Returns whether a close frame was meant for
/// the client and it was not mid-frame.
async fn fail<CR, CW, BR, BW>(
    up: &mut Pump<CR, BW>,
    down: &mut Pump<BR, CW>,
    to_client: Option<(u16, &str)>,
    to_backend: Option<(u16, &str)>,
    wait: Duration,
) -> bool
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    BR: AsyncRead + Unpin,
    BW: AsyncWrite + Unpin,
{
    // Writes first (each bounded), then wait for both peers at once.
    let mut drain_client = false;
    let mut client_told = to_client.is_some();
    if let Some((code, reason)) = to_client {
        let sent = async {
            let sent = down.send_close(code, reason).await?;
            down.shutdown().await?;
            Ok::<_, std::io::Error>(sent)
        };
        match timeout(wait, sent).await {
            Ok(Ok(true)) => drain_client = true,
            Ok(Ok(false)) => client_told = false,
            _ => {}
        }
    }
    let mut drain_backend = false;
    if let Some((code, reason)) = to_backend {
        let sent = async {
            let sent = up.send_close(code, reason).await?;
            up.shutdown().await?;
            Ok::<_, std::io::Error>(sent)
        };
        drain_backend = matches!(timeout(wait, sent).await, Ok(Ok(true)));
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
    client_told
}
