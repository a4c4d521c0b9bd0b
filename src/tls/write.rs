//! The write half: the caller's bytes encrypted into the thread's scratch
//! and sent from there; what the socket does not take waits, and goes first.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use rustls::server::ServerConnectionData;
use rustls::unbuffered::{ConnectionState, EncryptError, InsufficientSizeError, UnbufferedStatus};
use tokio::io::AsyncWrite;

use super::stream::{
    append, encode_room, encrypt_room, lock, send, tls_error, unexpected, TlsWriteHalf, MAX_WRITE,
    SCRATCH, WRITE_ROOM,
};

// === impl TlsWriteHalf ===

impl TlsWriteHalf {
    /// Sends the ciphertext waiting to be sent, all of it.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            {
                let mut tls = lock(&self.tls)?;
                send(self.tcp.as_ref(), &mut tls.unsent)?;
                if tls.unsent.is_empty() {
                    return Poll::Ready(Ok(()));
                }
            }
            ready!(self.tcp.as_ref().poll_write_ready(cx))?;
        }
    }

    /// Encrypts up to [`MAX_WRITE`] bytes of `data` and sends what the
    /// socket takes; `None` if ciphertext is to be sent first.
    fn encrypt(&mut self, data: &[u8]) -> io::Result<Option<usize>> {
        let mut guard = lock(&self.tls)?;
        let tls = &mut *guard;
        let take = data.len().min(MAX_WRITE);
        loop {
            if !tls.unsent.is_empty() {
                return Ok(None);
            }
            let UnbufferedStatus { discard, state } = tls.conn.process_tls_records(&mut tls.held);
            let wrote = match state {
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    SCRATCH.with_borrow_mut(|scratch| {
                        if scratch.len() < WRITE_ROOM {
                            scratch.resize(WRITE_ROOM, 0);
                        }
                        let len = match traffic.encrypt(&data[..take], scratch) {
                            Err(EncryptError::InsufficientSize(InsufficientSizeError {
                                required_size,
                            })) => {
                                scratch.resize(required_size, 0);
                                traffic.encrypt(&data[..take], scratch)
                            }
                            done => done,
                        }
                        .map_err(|e| io::Error::other(e.to_string()))?;
                        let sent = match self.tcp.try_write(&scratch[..len]) {
                            Ok(n) => n,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                            Err(e) => return Err(e),
                        };
                        tls.unsent.extend_from_slice(&scratch[sent..len]);
                        Ok(true)
                    })
                }
                Ok(ConnectionState::Closed) => Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the TLS connection is closed",
                )),
                other => not_traffic(&mut tls.unsent, other),
            };
            tls.held.drain(..discard);
            if wrote? {
                return Ok(Some(take));
            }
        }
    }

    /// Queues `close_notify` after what was written.
    fn close(&mut self) -> io::Result<()> {
        let mut guard = lock(&self.tls)?;
        let tls = &mut *guard;
        loop {
            let UnbufferedStatus { discard, state } = tls.conn.process_tls_records(&mut tls.held);
            let step = match state {
                Ok(ConnectionState::WriteTraffic(mut traffic)) => append(&mut tls.unsent, |b| {
                    traffic.queue_close_notify(b).map_err(encrypt_room)
                })
                .map(|()| true),
                Ok(ConnectionState::Closed) => Ok(true),
                other => not_traffic(&mut tls.unsent, other),
            };
            tls.held.drain(..discard);
            if step? {
                return Ok(());
            }
        }
    }
}

/// A state of a write pass other than `WriteTraffic` and `Closed`, which
/// each pass answers itself: records of rustls' own go first, through
/// `unsent`. `Ok(false)`: process the records again.
fn not_traffic(
    unsent: &mut Vec<u8>,
    state: Result<ConnectionState<'_, '_, ServerConnectionData>, rustls::Error>,
) -> io::Result<bool> {
    match state {
        Ok(ConnectionState::EncodeTlsData(mut data)) => {
            append(unsent, |b| data.encode(b).map_err(encode_room)).map(|()| false)
        }
        Ok(ConnectionState::TransmitTlsData(data)) => {
            data.done();
            Ok(false)
        }
        // The read half learns of it from the same records.
        Ok(ConnectionState::PeerClosed) => Ok(false),
        Ok(other) => Err(unexpected(&other)),
        Err(e) => Err(tls_error(e)),
    }
}

impl AsyncWrite for TlsWriteHalf {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.poll_send(cx))?;
            if buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            if let Some(n) = self.encrypt(buf)? {
                return Poll::Ready(Ok(n));
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_send(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.closing {
            self.close()?;
            self.closing = true;
        }
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
