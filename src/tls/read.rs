//! The read half: readiness first, then ciphertext into the thread's
//! scratch, decrypted there, and the plaintext into the caller's buffer.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use rustls::unbuffered::{ConnectionState, UnbufferedStatus};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;

use crate::relay::{try_read_drained, ReadReady};

use super::stream::{
    alert, append, encode_room, lock, send, tls_error, too_much, unexpected, Tls, TlsReadHalf,
    MAX_HELD, MAX_UNSENT, MIN_READ, SCRATCH,
};

// === impl TlsReadHalf ===

/// The relay's source: it is given the thread's pooled storage only once this
/// says bytes are there.
impl ReadReady for TlsReadHalf {
    /// Ready when plaintext is waiting, the end was reached, or the socket is
    /// readable.
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.ended || self.plain_at < self.plain.len() {
            return Poll::Ready(Ok(()));
        }
        self.tcp.as_ref().poll_read_ready(cx)
    }

    /// Plaintext into `dst`: what was left over, else what the socket has,
    /// decrypted; `Ok(0)` at the end, `WouldBlock` when no whole record came.
    fn try_read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        if self.plain_at < self.plain.len() {
            let n = dst.len().min(self.plain.len() - self.plain_at);
            dst[..n].copy_from_slice(&self.plain[self.plain_at..self.plain_at + n]);
            self.plain_at += n;
            if self.plain_at == self.plain.len() {
                self.plain = Vec::new();
                self.plain_at = 0;
            }
            return Ok(n);
        }
        if self.ended || dst.is_empty() {
            return Ok(0);
        }
        let TlsReadHalf {
            tcp,
            tls,
            plain,
            ended,
            ..
        } = self;
        let mut guard = lock(tls)?;
        let tls = &mut *guard;
        SCRATCH.with_borrow_mut(|scratch| {
            // Room for the most held, and a read after it.
            let room = MAX_HELD + dst.len().max(MIN_READ);
            if scratch.len() < room {
                scratch.resize(room, 0);
            }
            let mut filled = tls.held.len();
            scratch[..filled].copy_from_slice(&tls.held);
            let result = read_records(tcp, tls, plain, ended, scratch, &mut filled, dst);
            if filled == 0 || *ended {
                tls.held = Vec::new();
            } else {
                tls.held.clear();
                tls.held.extend_from_slice(&scratch[..filled]);
            }
            result
        })
    }
}

/// Reads the socket into `scratch` after its first `filled` bytes and
/// decrypts every whole record, until some plaintext came, the data ended,
/// or the socket has no more; leaves the unprocessed rest in
/// `scratch[..filled]`.
fn read_records(
    tcp: &OwnedReadHalf,
    tls: &mut Tls,
    plain: &mut Vec<u8>,
    ended: &mut bool,
    scratch: &mut [u8],
    filled: &mut usize,
    dst: &mut [u8],
) -> io::Result<usize> {
    let want = dst.len().max(MIN_READ);
    loop {
        if *filled > MAX_HELD {
            return Err(too_much("a TLS record"));
        }
        let end = match try_read_drained(tcp.as_ref(), &mut scratch[*filled..*filled + want]) {
            Ok(0) => true,
            Ok(n) => {
                *filled += n;
                false
            }
            Err(e) => return Err(e),
        };
        let mut out = Plaintext { dst, n: 0, plain };
        let (used, closed) = process(tls, tcp.as_ref(), &mut scratch[..*filled], &mut out);
        let n = out.n;
        let used = used?;
        scratch.copy_within(used..*filled, 0);
        *filled -= used;
        if closed {
            *ended = true;
            *filled = 0;
            return Ok(n);
        }
        if end {
            *ended = true;
            if n == 0 && *filled > 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the TCP connection inside a TLS record",
                ));
            }
            return Ok(n);
        }
        if n > 0 || !plain.is_empty() {
            return Ok(n);
        }
    }
}

impl AsyncRead for TlsReadHalf {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_read_ready(cx))?;
            match self.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// Where decrypted records go: the caller's buffer, then, once it is full,
/// the read half's leftover (so the order is kept).
struct Plaintext<'a> {
    dst: &'a mut [u8],
    n: usize,
    plain: &'a mut Vec<u8>,
}

impl Plaintext<'_> {
    fn put(&mut self, payload: &[u8]) {
        let fits = if self.plain.is_empty() {
            payload.len().min(self.dst.len() - self.n)
        } else {
            0
        };
        self.dst[self.n..self.n + fits].copy_from_slice(&payload[..fits]);
        self.n += fits;
        self.plain.extend_from_slice(&payload[fits..]);
    }
}

/// Processes the whole records of `buf`: application data to `out`, records
/// rustls sends of its own accord (alerts, a key update's answer) queued and
/// sent. Returns how many bytes of `buf` were used, and whether the peer's
/// `close_notify` came.
fn process(
    tls: &mut Tls,
    tcp: &TcpStream,
    buf: &mut [u8],
    out: &mut Plaintext<'_>,
) -> (io::Result<usize>, bool) {
    let mut used = 0;
    loop {
        let UnbufferedStatus { mut discard, state } =
            tls.conn.process_tls_records(&mut buf[used..]);
        let step = match state {
            Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                let mut result = Ok(());
                while let Some(record) = traffic.next_record() {
                    match record {
                        Ok(record) => {
                            discard += record.discard;
                            out.put(record.payload);
                        }
                        Err(e) => {
                            result = Err(tls_error(e));
                            break;
                        }
                    }
                }
                result
            }
            Ok(ConnectionState::EncodeTlsData(mut data)) => {
                if tls.unsent.len() > MAX_UNSENT {
                    Err(too_much("unsent TLS data"))
                } else {
                    append(&mut tls.unsent, |b| data.encode(b).map_err(encode_room))
                }
            }
            Ok(ConnectionState::TransmitTlsData(data)) => {
                data.done();
                send(tcp, &mut tls.unsent)
            }
            Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                return (Ok(used + discard), true)
            }
            // No whole record is left.
            Ok(ConnectionState::WriteTraffic(_) | ConnectionState::BlockedHandshake) => {
                return (Ok(used + discard), false)
            }
            Ok(other) => Err(unexpected(&other)),
            Err(e) => {
                let alert = alert(&mut tls.conn, &mut buf[used..]);
                let _ = tcp.try_write(&alert);
                Err(tls_error(e))
            }
        };
        if let Err(e) = step {
            return (Err(e), false);
        }
        used += discard;
    }
}
