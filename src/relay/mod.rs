//! The only async frame code: two directions over real sockets, each a pump
//! that reads into one bounded buffer ([`buffer::FrameBuf`]), runs every
//! byte through the sans-I/O decoder and the direction's rate quota, and
//! forwards the original bytes of whole frames with one write per burst. A
//! slow reader stops its writer (back-pressure). This module runs both pumps
//! and the liveness timers (idle timeout, proxy pings); how a connection ends,
//! and which close code each peer gets, is decided in one place, the private
//! `close` module.

pub mod buffer;
mod close;
mod pump;
mod source;

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{timeout, Instant};

use crate::config::RateConfig;
use crate::deflate::{Inflater, Negotiated};
use crate::frame::{Decoder, FramePolicy, Role, Violation};
use crate::limits::{FrameRate, RateLimit};
use pump::{Dir, Pump, Rate, PING_TOKEN};
pub(crate) use source::try_read_drained;
pub use source::ReadReady;

/// Which peer ended the connection, and how: the connection's log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub ended_by: Ender,
    /// Close code sent to (or relayed to) the client, if any.
    pub client_code: Option<u16>,
    pub violation: Option<Violation>,
    /// The rate limit a rate-limited connection went over.
    pub limit: Option<RateLimit>,
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
    /// The credential the connection was authenticated with ran out (grace included).
    TokenExpired,
    /// The route's `max_session` passed.
    SessionLimit,
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
            Ender::TokenExpired => "token_expired",
            Ender::SessionLimit => "session_limit",
        }
    }
}

/// A stream the relay can read and write from its two directions at once.
/// A TCP stream splits into owned halves (no lock per read and write, which
/// `perf` showed at ~3% of the relay's time); TLS splits the same way, its
/// halves sharing the rustls state ([`crate::tls`]).
pub trait Split {
    type Read: ReadReady;
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
    /// permessage-deflate as negotiated for this connection, if it was.
    pub deflate: Option<Negotiated>,
    /// Inflate the backend's compressed messages too (`[deflate] inspect_backend`).
    pub inspect_backend: bool,
    /// When this connection must end, and as what ([`Ender::TokenExpired`] or
    /// [`Ender::SessionLimit`]); `None` = no bound.
    pub session_end: Option<(Instant, Ender)>,
}

fn rate(settings: &RateConfig) -> Option<Rate> {
    Some(Rate {
        quota: FrameRate::new(&settings.quota)?,
        on_limit: settings.on_limit,
        heartbeats: settings.heartbeats.clone(),
    })
}

/// What the liveness loop reads from [`Settings`] once the pumps are built:
/// all a waiting connection keeps of them.
struct Timers {
    idle_timeout: Duration,
    ping_interval: Option<Duration>,
    pong_timeout: Duration,
    session_end: Option<(Instant, Ender)>,
}

/// Relays frames between `client` and `backend` until the connection ends.
/// `client_early`/`backend_early` are bytes that arrived with the handshakes;
/// they are copied into the pumps and freed, so the buffers they came in
/// (hyper's read buffer, the backend handshake's) are not kept alive.
///
/// The pumps are built here, before the future: it holds only them and the
/// timers, not the arguments they were built from. An idle connection's
/// memory is mostly this future.
pub fn relay<C, B>(
    client: C,
    client_early: bytes::Bytes,
    backend: B,
    backend_early: Vec<u8>,
    settings: Settings,
    mut drain: watch::Receiver<bool>,
) -> impl Future<Output = Summary> + Send
where
    C: Split,
    B: Split,
{
    let backend_ping = Arc::new(AtomicBool::new(false));
    let (client_read, client_write) = client.split();
    let (backend_read, backend_write) = backend.split();
    let (mut client_dec, mut backend_dec) = (
        Decoder::new(Role::Client, settings.client_policy.clone()),
        Decoder::new(Role::Server, settings.backend_policy.clone()),
    );
    if let Some(n) = settings.deflate {
        client_dec = client_dec.with_deflate(Some(Inflater::new(n.client_context_takeover())));
        let inspect = settings
            .inspect_backend
            .then(|| Inflater::new(n.server_context_takeover()));
        backend_dec = backend_dec.with_deflate(inspect);
    }
    let up = Pump::new(
        (client_read, backend_write),
        Dir::Up,
        client_dec,
        &client_early,
        backend_ping.clone(),
        rate(&settings.client_rate),
    );
    let down = Pump::new(
        (backend_read, client_write),
        Dir::Down,
        backend_dec,
        &backend_early,
        backend_ping,
        rate(&settings.backend_rate),
    );
    drop((client_early, backend_early));
    let mut conn = Conn {
        up,
        down,
        wait: settings.close_timeout,
    };
    let timers = Timers {
        idle_timeout: settings.idle_timeout,
        ping_interval: settings.ping_interval,
        pong_timeout: settings.pong_timeout,
        session_end: settings.session_end,
    };
    async move {
        let mut ping_sent: Option<Instant> = None;
        // No ping before this: the last one found the client's output busy.
        let mut ping_not_before = Instant::now();
        // The closing steps run once per connection: boxed, so their state
        // is not part of every waiting connection's future.
        let outcome = loop {
            let deadline = conn.next_timer(&timers, ping_sent, ping_not_before);
            tokio::select! {
                stop = conn.up.run() => break Box::pin(conn.on_stop(Dir::Up, stop)).await,
                stop = conn.down.run() => break Box::pin(conn.on_stop(Dir::Down, stop)).await,
                () = draining(&mut drain) => break Box::pin(conn.end(Ender::Shutdown, None, None)).await,
                () = tokio::time::sleep_until(deadline) => {
                    let now = Instant::now();
                    if let Some((end, ender)) = timers.session_end {
                        if now >= end {
                            break Box::pin(conn.end(ender, None, None)).await;
                        }
                    }
                    if now >= conn.last_frame() + timers.idle_timeout {
                        break Box::pin(conn.end(Ender::Idle, None, None)).await;
                    }
                    match ping_sent {
                        Some(sent) if conn.up.awaiting_pong() => {
                            if now >= sent + timers.pong_timeout {
                                break Box::pin(conn.end(Ender::NoPong, None, None)).await;
                            }
                        }
                        _ => ping_sent = None,
                    }
                    if let Some(interval) = timers.ping_interval {
                        let due = (conn.up.last_frame() + interval).max(ping_not_before);
                        if ping_sent.is_none() && now >= due {
                            let token = ping_token();
                            match timeout(conn.wait, conn.down.send_ping(&token)).await {
                                Ok(Ok(true)) => {
                                    conn.up.expect_pong(token);
                                    ping_sent = Some(now);
                                }
                                // The client is being written to (mid-frame or
                                // output pending): look again an interval later
                                // rather than at once, which would spin.
                                Ok(Ok(false)) => ping_not_before = now + interval,
                                // Not taken within the close timeout, the ping may
                                // be half written: nothing more can go to this
                                // client.
                                Ok(Err(_)) | Err(_) => {
                                    break Box::pin(conn.end(Ender::ClientGone, None, None)).await
                                }
                            }
                        }
                    }
                }
            }
        };
        let (up, down) = (conn.up.counts(), conn.down.counts());
        Summary {
            ended_by: outcome.ender,
            client_code: outcome.client_code,
            violation: outcome.violation,
            limit: outcome.limit,
            frames_up: up.frames,
            bytes_up: up.bytes,
            frames_down: down.frames,
            bytes_down: down.bytes,
            throttled_up: up.throttled,
            throttled_down: down.throttled,
        }
    }
}

/// One relayed connection: its two directions and how long to wait for a
/// peer's answer when closing.
struct Conn<CR, CW, BR, BW> {
    /// Client to backend.
    up: Pump<CR, BW>,
    /// Backend to client.
    down: Pump<BR, CW>,
    wait: Duration,
}

// === impl Conn ===

impl<CR, CW, BR, BW> Conn<CR, CW, BR, BW> {
    /// When either source last completed a frame.
    fn last_frame(&self) -> Instant {
        self.up.last_frame().max(self.down.last_frame())
    }

    /// When the liveness loop must next look: the idle deadline, the next
    /// ping, or the pong deadline, whichever comes first.
    fn next_timer(
        &self,
        s: &Timers,
        ping_sent: Option<Instant>,
        ping_not_before: Instant,
    ) -> Instant {
        let mut at = self.last_frame() + s.idle_timeout;
        if let Some((end, _)) = s.session_end {
            at = at.min(end);
        }
        if let Some(sent) = ping_sent {
            at = at.min(sent + s.pong_timeout);
        } else if let Some(interval) = s.ping_interval {
            at = at.min((self.up.last_frame() + interval).max(ping_not_before));
        }
        at
    }
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
