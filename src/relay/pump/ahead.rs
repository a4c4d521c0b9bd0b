//! Delay mode's read-ahead: while a throttled frame waits for its quota, the
//! frames behind it are decoded (every rule applied) and held in order, and
//! pings, pongs and application heartbeats among them go ahead, so a peer's
//! own liveness timeout does not fire while the proxy is only slowing it down.

use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::time::Instant;

use super::{source, Held, Pump, Stop};
use crate::frame::{Event, OpCode};
use crate::limits::Charge;
use crate::relay::source::ReadReady;

/// Most frames decoded ahead of a throttled one (`on_limit = "delay"`), looking for a
/// heartbeat: a Socket.IO client's 500-message flush with its pong behind it. The buffer
/// bounds their bytes; this bounds the queue (24 bytes a frame).
const MAX_HELD: usize = 1024;

// === impl Pump ===

impl<R: ReadReady, W: AsyncWrite + Unpin> Pump<R, W> {
    /// Delay mode: waits `wait` for the quota while the first held frame blocks the
    /// rest. Meanwhile it decodes the frames behind it (reading more, bounded by the
    /// buffer and [`MAX_HELD`]) and sends heartbeats, pings and pongs among them ahead,
    /// so neither a framework's ping timeout nor a WebSocket one fires while the proxy
    /// is only slowing a burst down. Past those bounds it reads nothing (TCP
    /// back-pressure).
    pub(super) async fn hold(&mut self, wait: Duration) -> Result<(), Stop> {
        let until = Instant::now() + wait;
        loop {
            self.read_ahead();
            if self.flush().await.is_err() {
                return Err(Stop::DestinationGone);
            }
            if !self.may_read_ahead() || !self.buf.room_to_hold() {
                tokio::time::sleep_until(until).await;
                return Ok(());
            }
            tokio::select! {
                () = tokio::time::sleep_until(until) => return Ok(()),
                read = source::fill(&mut self.src, &mut self.buf) => match read {
                    // Delivered first; the source is read again once they have gone.
                    Ok(0) | Err(_) => self.ahead_stopped = true,
                    Ok(n) => self.buf.filled(n),
                },
            }
        }
    }

    /// Whether frames behind the held ones may be decoded now: only behind data frames
    /// (a held control frame's handling needs it last), and never inside a streamed frame.
    fn may_read_ahead(&self) -> bool {
        !self.ahead_stopped
            && self.ahead_violation.is_none()
            && self.held.len() < MAX_HELD
            && !self.buf.is_mid_frame()
            && matches!(
                self.held.back(),
                Some(Held {
                    event: Event::DataEnd { .. },
                    ..
                })
            )
    }

    /// Decodes what was read behind the held frames and holds each in turn, except
    /// what may go ahead of them when its control cell allows: a ping or pong (legal
    /// between any two frames), or a heartbeat when the held frames start a message
    /// (it must not land inside a fragmented one). A close frame is left for its turn.
    fn read_ahead(&mut self) {
        let mut clock_read = false;
        while self.may_read_ahead() {
            let next = self.buf.unparsed().first();
            if self.dec.at_frame_boundary() && next.is_some_and(|b| b & 0x0f == 0x8) {
                self.ahead_stopped = true;
                return;
            }
            let event = match self.next_frame() {
                Ok(Some(event)) => event,
                Ok(None) => return,
                Err(v) => {
                    self.ahead_violation = Some(v);
                    return;
                }
            };
            self.tick(&mut clock_read);
            let (charge, cost) = self.cost_of(event);
            let len = self.buf.unreleased().len() - self.held_bytes;
            let ahead = match event {
                Event::Ping | Event::Pong => true,
                _ => {
                    charge == Charge::ControlCell
                        && matches!(
                            self.held.front(),
                            Some(Held {
                                event: Event::DataEnd { opcode, .. },
                                ..
                            }) if *opcode != OpCode::Continue
                        )
                }
            };
            if ahead && self.charge(Charge::ControlCell, cost).is_ok() {
                self.frame_bytes = 0;
                if self.passes(event) {
                    self.buf.move_ahead(self.held_bytes, len);
                    self.counts.frames += 1;
                } else {
                    self.buf.cut_last(len);
                }
                continue;
            }
            self.hold_frame(event, charge, cost, len);
        }
    }
}
