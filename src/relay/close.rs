//! How a relayed connection ends: a pump's [`Stop`] (or a timer, or the
//! shutdown) becomes an [`Ender`], the table [`closes`] says which close frame
//! of the proxy's own each peer gets, and the paths below send them in the
//! right order and wait, bounded, for the answers that were asked for. A peer
//! in the middle of a streamed frame cannot be sent a close frame: its
//! connection is closed at once and nothing waits for its reply.
//!
//! Every close the proxy starts while the backend is sound goes backend first
//! ([`Conn::backend_first`]), so the client gets the answers to everything that
//! was forwarded before it gets its own code.

use std::borrow::Cow;

use tokio::io::AsyncWrite;
use tokio::time::{timeout, timeout_at, Duration, Instant};

use super::pump::{Dir, Pump, Stop};
use super::source::ReadReady;
use super::{Conn, Ender};
use crate::frame::coding::close_code::{GOING_AWAY, INTERNAL_ERROR, POLICY_VIOLATION};
use crate::frame::Violation;
use crate::limits::RateLimit;

/// Before the backend is told to close, its answers are relayed until it has
/// sent nothing for this long (at most `close_timeout`): common backends
/// (python `websockets`, Node `ws`) drop the replies they have not sent yet
/// once they read a close frame, so the close waits for the backend to catch up.
pub const CLOSE_LINGER: Duration = Duration::from_millis(250);

/// A close frame of the proxy's own: code and reason.
type Close = (u16, Cow<'static, str>);

/// How the connection ended, the broken rule or the rate limit it went over,
/// and the close code the client got (sent or relayed), if any.
pub(super) struct Outcome {
    pub ender: Ender,
    pub violation: Option<Violation>,
    pub limit: Option<RateLimit>,
    pub client_code: Option<u16>,
}

/// The close frames the proxy sends when `ender` ends the connection: (to the
/// client, to the backend). The peer at fault hears why; the other peer hears
/// 1001 (a backend) or 1011 (a client: its backend failed it).
fn closes(
    ender: Ender,
    violation: Option<Violation>,
    limit: Option<RateLimit>,
) -> (Option<Close>, Option<Close>) {
    let own = |code, reason: &'static str| Some((code, Cow::Borrowed(reason)));
    let rule = violation.map(|v| (v.close_code(), Cow::Borrowed(v.reason())));
    let over = || match limit {
        Some(limit) => Some((POLICY_VIOLATION, Cow::Owned(format!("rate limit: {limit}")))),
        None => own(POLICY_VIOLATION, "rate limit"),
    };
    let both = |reason| (own(GOING_AWAY, reason), own(GOING_AWAY, reason));
    match ender {
        // Close frames of the peers themselves are relayed: none of ours.
        Ender::Client | Ender::Backend => (None, None),
        Ender::ClientViolation => (rule, own(GOING_AWAY, "")),
        Ender::BackendViolation => (own(INTERNAL_ERROR, "backend protocol error"), rule),
        Ender::ClientRateLimited => (over(), own(GOING_AWAY, "")),
        Ender::BackendRateLimited => (own(INTERNAL_ERROR, "backend rate limit"), over()),
        Ender::ClientGone => (None, own(GOING_AWAY, "client went away")),
        Ender::BackendGone => (own(INTERNAL_ERROR, "backend went away"), None),
        Ender::Idle => both("idle timeout"),
        Ender::NoPong => both("no pong"),
        Ender::Shutdown => both("going away"),
        Ender::TokenExpired => (own(POLICY_VIOLATION, "token expired"), own(GOING_AWAY, "")),
        Ender::SessionLimit => (
            own(POLICY_VIOLATION, "session time limit"),
            own(GOING_AWAY, ""),
        ),
    }
}

/// Whether the backend is sound when `ender` ends the connection, so it is
/// closed first and its answers reach the client before the client's close.
fn backend_first(ender: Ender) -> bool {
    match ender {
        Ender::ClientViolation
        | Ender::ClientRateLimited
        | Ender::Idle
        | Ender::NoPong
        | Ender::Shutdown
        | Ender::TokenExpired
        | Ender::SessionLimit => true,
        Ender::Client
        | Ender::Backend
        | Ender::BackendViolation
        | Ender::BackendRateLimited
        | Ender::ClientGone
        | Ender::BackendGone => false,
    }
}

/// What became of a close frame of the proxy's own.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Told {
    /// Written, and our sending side closed: the peer's answer is awaited.
    Yes,
    /// Writing failed or took too long: the peer is gone or stalled.
    Failed,
    /// Not written: the peer was mid-frame. Its connection was closed at once.
    Cut,
}

/// Delivers what was accepted to the peer `pump` writes to, then `close`,
/// and closes our sending side towards it.
async fn tell<R, W>(pump: &mut Pump<R, W>, (code, reason): &Close, wait: Duration) -> Told
where
    R: ReadReady,
    W: AsyncWrite + Unpin,
{
    let sent = async {
        let sent = pump.send_close(*code, reason).await?;
        pump.shutdown().await?;
        Ok::<_, std::io::Error>(sent)
    };
    match timeout(wait, sent).await {
        Ok(Ok(true)) => Told::Yes,
        Ok(Ok(false)) => Told::Cut,
        _ => Told::Failed,
    }
}

// === impl Conn ===

impl<CR, CW, BR, BW> Conn<CR, CW, BR, BW>
where
    CR: ReadReady,
    CW: AsyncWrite + Unpin,
    BR: ReadReady,
    BW: AsyncWrite + Unpin,
{
    /// Ends the connection after the pump of direction `dir` stopped.
    pub(super) async fn on_stop(&mut self, dir: Dir, stop: Stop) -> Outcome {
        let (ender, violation, limit) = match (dir, stop) {
            (_, Stop::Closed(code)) => return self.closing_handshake(dir, code).await,
            (Dir::Up, Stop::Violation(v)) => (Ender::ClientViolation, Some(v), None),
            (Dir::Down, Stop::Violation(v)) => (Ender::BackendViolation, Some(v), None),
            (Dir::Up, Stop::RateLimited(l)) => (Ender::ClientRateLimited, None, Some(l)),
            (Dir::Down, Stop::RateLimited(l)) => (Ender::BackendRateLimited, None, Some(l)),
            (Dir::Up, Stop::SourceGone) | (Dir::Down, Stop::DestinationGone) => {
                (Ender::ClientGone, None, None)
            }
            (Dir::Down, Stop::SourceGone) | (Dir::Up, Stop::DestinationGone) => {
                (Ender::BackendGone, None, None)
            }
        };
        self.end(ender, violation, limit).await
    }

    /// Ends the connection with the proxy's own close frames (see [`closes`]).
    pub(super) async fn end(
        &mut self,
        ender: Ender,
        violation: Option<Violation>,
        limit: Option<RateLimit>,
    ) -> Outcome {
        let (to_client, to_backend) = closes(ender, violation, limit);
        let code = to_client.as_ref().map(|(code, _)| *code);
        let client = match to_backend {
            Some(to_backend) if backend_first(ender) => {
                self.backend_first(to_client, to_backend).await
            }
            _ => self.fail(to_client, to_backend).await,
        };
        let client_code = match client {
            Some(Told::Yes | Told::Failed) => code,
            Some(Told::Cut) | None => None,
        };
        Outcome {
            ender,
            violation,
            limit,
            client_code,
        }
    }

    /// A peer's close frame went through: relay the other peer's answer (and
    /// anything before it), then close the client's TCP connection first,
    /// since the proxy is the server there (RFC 6455 §7.1.1), then the
    /// backend's. A close frame must be answered (§5.5.1): if the other peer
    /// does not answer within the close timeout, or goes away, the proxy
    /// answers in its place, echoing the code.
    async fn closing_handshake(&mut self, dir: Dir, code: Option<u16>) -> Outcome {
        let reply = match dir {
            Dir::Up => timeout(self.wait, self.down.run()).await,
            Dir::Down => timeout(self.wait, self.up.run()).await,
        };
        if !matches!(reply, Ok(Stop::Closed(_))) {
            let _ = match dir {
                Dir::Up => timeout(self.wait, self.down.send_close_reply(code)).await,
                Dir::Down => timeout(self.wait, self.up.send_close_reply(code)).await,
            };
        }
        let _ = timeout(self.wait, self.down.shutdown()).await;
        let _ = timeout(self.wait, self.up.shutdown()).await;
        let _ = timeout(self.wait, self.down.drain()).await;
        let (ender, client_code) = match (dir, reply) {
            // The backend's answer went to the client.
            (Dir::Up, Ok(Stop::Closed(reply))) => (Ender::Client, reply),
            (Dir::Up, _) => (Ender::Client, code),
            (Dir::Down, _) => (Ender::Backend, code),
        };
        Outcome {
            ender,
            violation: None,
            limit: None,
            client_code,
        }
    }

    /// The proxy ends a connection whose backend is sound: nothing more is read
    /// from the client; the backend's answers to what was forwarded are relayed
    /// until it goes quiet ([`CLOSE_LINGER`]); then the backend is closed and
    /// what it sends before its close reply (not relayed) still goes to the
    /// client; then the client gets its code. So the client loses nothing it
    /// was owed.
    async fn backend_first(&mut self, to_client: Option<Close>, to_backend: Close) -> Option<Told> {
        self.down.swallow_close();
        let told = match self.linger().await {
            None => {
                let (code, reason) = &to_backend;
                let told = matches!(
                    timeout(self.wait, self.up.send_close(*code, reason)).await,
                    Ok(Ok(true))
                );
                if told {
                    let _ = timeout(self.wait, self.down.run()).await;
                }
                told
            }
            // The backend closed meanwhile: answer it, as its peer.
            Some(Stop::Closed(code)) => matches!(
                timeout(self.wait, self.up.send_close_reply(code)).await,
                Ok(Ok(true))
            ),
            Some(_) => false,
        };
        if told {
            let _ = timeout(self.wait, self.up.shutdown()).await;
        }
        let client = self.fail(to_client, (!told).then_some(to_backend)).await;
        if told {
            let _ = timeout(self.wait, self.down.drain()).await;
        }
        client
    }

    /// Relays the backend's frames to the client until the backend has sent
    /// none for [`CLOSE_LINGER`], bounded by the close timeout. `Some`: the
    /// down pump stopped first (its close is swallowed).
    async fn linger(&mut self) -> Option<Stop> {
        let start = Instant::now();
        let deadline = start + self.wait;
        let quiet = CLOSE_LINGER.min(self.wait);
        loop {
            let until = (self.down.last_frame().max(start) + quiet).min(deadline);
            if let Ok(stop) = timeout_at(until, self.down.run()).await {
                return Some(stop);
            }
            let now = Instant::now();
            if now >= deadline || now >= self.down.last_frame().max(start) + quiet {
                return None;
            }
        }
    }

    /// Fails the connection (RFC 6455 §7.1.7): tells each peer that gets a
    /// close frame, client first, then waits a bounded time for the peers that
    /// were told to close their side. Returns what became of the client's.
    async fn fail(&mut self, to_client: Option<Close>, to_backend: Option<Close>) -> Option<Told> {
        let client = match &to_client {
            Some(close) => Some(tell(&mut self.down, close, self.wait).await),
            None => None,
        };
        let backend = match &to_backend {
            Some(close) => Some(tell(&mut self.up, close, self.wait).await),
            None => None,
        };
        let (up, down) = (&mut self.up, &mut self.down);
        let _ = timeout(self.wait, async {
            tokio::join!(
                async {
                    if client == Some(Told::Yes) {
                        up.drain().await;
                    }
                },
                async {
                    if backend == Some(Told::Yes) {
                        down.drain().await;
                    }
                }
            )
        })
        .await;
        client
    }
}
