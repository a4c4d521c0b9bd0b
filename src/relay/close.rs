//! How a relayed connection ends: a pump's [`Stop`] (or a timer, or the
//! shutdown) becomes an [`Ender`], the table [`closes`] says which close frame
//! of the proxy's own each peer gets, and the paths below send them in the
//! right order and wait, bounded, for the answers that were asked for. A peer
//! in the middle of a streamed frame cannot be sent a close frame: its
//! connection is closed at once and nothing waits for its reply.

use tokio::io::AsyncWrite;
use tokio::time::{timeout, Duration};

use super::pump::{Dir, Pump, Stop};
use super::source::ReadReady;
use super::{Conn, Ender};
use crate::frame::coding::close_code::{GOING_AWAY, INTERNAL_ERROR, POLICY_VIOLATION};
use crate::frame::Violation;

/// A close frame of the proxy's own: code and reason.
type Close = (u16, &'static str);

/// How the connection ended, the broken rule, and the close code the client
/// got (sent or relayed), if any.
pub(super) type Outcome = (Ender, Option<Violation>, Option<u16>);

/// The close frames the proxy sends when `ender` ends the connection: (to the
/// client, to the backend). The peer at fault hears why; the other peer hears
/// 1001 (a backend) or 1011 (a client: its backend failed it).
fn closes(ender: Ender, violation: Option<Violation>) -> (Option<Close>, Option<Close>) {
    let rule = violation.map(|v| (v.close_code(), v.reason()));
    let both = |reason| (Some((GOING_AWAY, reason)), Some((GOING_AWAY, reason)));
    match ender {
        // Close frames of the peers themselves are relayed: none of ours.
        Ender::Client | Ender::Backend => (None, None),
        Ender::ClientViolation => (rule, Some((GOING_AWAY, ""))),
        Ender::BackendViolation => (Some((INTERNAL_ERROR, "backend protocol error")), rule),
        Ender::ClientRateLimited => (
            Some((POLICY_VIOLATION, "rate limit")),
            Some((GOING_AWAY, "")),
        ),
        Ender::BackendRateLimited => (
            Some((INTERNAL_ERROR, "backend rate limit")),
            Some((POLICY_VIOLATION, "rate limit")),
        ),
        Ender::ClientGone => (None, Some((GOING_AWAY, "client went away"))),
        Ender::BackendGone => (Some((INTERNAL_ERROR, "backend went away")), None),
        Ender::Idle => both("idle timeout"),
        Ender::NoPong => both("no pong"),
        Ender::Shutdown => both("going away"),
        Ender::TokenExpired => (
            Some((POLICY_VIOLATION, "token expired")),
            Some((GOING_AWAY, "")),
        ),
        Ender::SessionLimit => (
            Some((POLICY_VIOLATION, "session time limit")),
            Some((GOING_AWAY, "")),
        ),
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
async fn tell<R, W>(pump: &mut Pump<R, W>, (code, reason): Close, wait: Duration) -> Told
where
    R: ReadReady,
    W: AsyncWrite + Unpin,
{
    let sent = async {
        let sent = pump.send_close(code, reason).await?;
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
        let (ender, violation) = match (dir, stop) {
            (_, Stop::Closed(code)) => return self.closing_handshake(dir, code).await,
            (Dir::Up, Stop::Violation(v)) => (Ender::ClientViolation, Some(v)),
            (Dir::Down, Stop::Violation(v)) => (Ender::BackendViolation, Some(v)),
            (Dir::Up, Stop::RateLimited) => (Ender::ClientRateLimited, None),
            (Dir::Down, Stop::RateLimited) => (Ender::BackendRateLimited, None),
            (Dir::Up, Stop::SourceGone) | (Dir::Down, Stop::DestinationGone) => {
                (Ender::ClientGone, None)
            }
            (Dir::Down, Stop::SourceGone) | (Dir::Up, Stop::DestinationGone) => {
                (Ender::BackendGone, None)
            }
        };
        self.end(ender, violation).await
    }

    /// Ends the connection with the proxy's own close frames (see [`closes`]).
    pub(super) async fn end(&mut self, ender: Ender, violation: Option<Violation>) -> Outcome {
        let (to_client, to_backend) = closes(ender, violation);
        let client = match (ender, to_backend) {
            (Ender::ClientViolation, Some(to_backend)) => {
                self.backend_first(to_client, to_backend).await
            }
            _ => self.fail(to_client, to_backend).await,
        };
        let client_code = match client {
            Some(Told::Yes | Told::Failed) => to_client.map(|(code, _)| code),
            Some(Told::Cut) | None => None,
        };
        (ender, violation, client_code)
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
        match (dir, reply) {
            // The backend's answer went to the client.
            (Dir::Up, Ok(Stop::Closed(reply))) => (Ender::Client, None, reply),
            (Dir::Up, _) => (Ender::Client, None, code),
            (Dir::Down, _) => (Ender::Backend, None, code),
        }
    }

    /// A client broke a rule: close the backend first and relay its answers
    /// to the frames already accepted (its close reply is not relayed), so the
    /// client loses nothing it was owed; then close the client.
    async fn backend_first(&mut self, to_client: Option<Close>, to_backend: Close) -> Option<Told> {
        let (code, reason) = to_backend;
        let told = matches!(
            timeout(self.wait, self.up.send_close(code, reason)).await,
            Ok(Ok(true))
        );
        if told {
            self.down.swallow_close();
            let _ = timeout(self.wait, self.down.run()).await;
            let _ = timeout(self.wait, self.up.shutdown()).await;
        }
        let client = self.fail(to_client, (!told).then_some(to_backend)).await;
        if told {
            let _ = timeout(self.wait, self.down.drain()).await;
        }
        client
    }

    /// Fails the connection (RFC 6455 §7.1.7): tells each peer that gets a
    /// close frame, client first, then waits a bounded time for the peers that
    /// were told to close their side. Returns what became of the client's.
    async fn fail(&mut self, to_client: Option<Close>, to_backend: Option<Close>) -> Option<Told> {
        let client = match to_client {
            Some(close) => Some(tell(&mut self.down, close, self.wait).await),
            None => None,
        };
        let backend = match to_backend {
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
