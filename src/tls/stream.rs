//! wsguard's TLS stream: rustls' unbuffered server connection over a tokio
//! `TcpStream`, with every buffer in wsguard's hands.
//!
//! rustls' buffered connection keeps plaintext and ciphertext buffers of its
//! own for the life of a connection, and a generic split of it takes a lock
//! per poll. Here the storage follows the traffic instead:
//!
//! - **Reading** waits for socket readiness first, then reads the ciphertext
//!   into a per-thread scratch buffer, where rustls decrypts it record by
//!   record (it hands each record's plaintext over in a chunk of its own),
//!   and the plaintext goes into the caller's buffer. A connection keeps only what
//!   it must between reads: the start of a record (and the fragments of a
//!   handshake message rustls is joining), and plaintext that did not fit the
//!   caller's buffer. An idle connection holds no buffer at all.
//! - **Writing** encrypts from the caller's bytes into the per-thread scratch
//!   and sends from there; only what the socket does not take is kept, and
//!   sent before anything else.
//! - **Splitting** gives the relay a read half and a write half, each with its
//!   own half of the TCP stream; they share the rustls state behind a mutex
//!   that is held for one synchronous pass (read, decrypt, copy; or encrypt,
//!   send), never across an await.
//!
//! The end of the peer's data is its `close_notify`, or a TCP end between
//! records (`Ok(0)` either way); a TCP end inside a record is an
//! `UnexpectedEof` error, never data. A TLS error ends the connection with an
//! `InvalidData` error carrying rustls' error, after a best-effort alert.
//!
//! This module holds what the halves share; `accept` drives the handshake,
//! `read` and `write` are the two halves.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::relay::Split;

/// The largest TLS record rustls accepts on the wire: header, 16 KiB of
/// plaintext and the most expansion allowed.
pub(super) const MAX_RECORD: usize = 5 + 16 * 1024 + 2048;

/// The most unprocessed ciphertext a connection may hold: a partial record
/// after the fragments of the largest handshake message rustls joins.
pub(super) const MAX_HELD: usize = 0xffff + 4 + MAX_RECORD;

/// Ciphertext read from the socket in one pass at most (more if the caller's
/// buffer is larger); it bounds the plaintext a pass can leave over.
pub(super) const MIN_READ: usize = 16 * 1024;

/// Plaintext encrypted per write at most: four full records.
pub(super) const MAX_WRITE: usize = 64 * 1024;

/// Ciphertext room for [`MAX_WRITE`] bytes: the records' headers, tags and
/// a pending key update fit in the margin; rustls says if they do not.
pub(super) const WRITE_ROOM: usize = MAX_WRITE + 1024;

/// Ciphertext waiting to be sent at most, past which a peer that does not
/// read is dropped rather than buffered for.
pub(super) const MAX_UNSENT: usize = 2 * WRITE_ROOM;

thread_local! {
    /// Where the connections on this thread read ciphertext into and
    /// encrypt into, one synchronous pass at a time.
    pub(super) static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A TLS server connection over TCP, after its handshake.
pub struct TlsStream {
    pub(super) read: TlsReadHalf,
    pub(super) write: TlsWriteHalf,
}

/// The reading half of a [`TlsStream`].
pub struct TlsReadHalf {
    pub(super) tcp: OwnedReadHalf,
    pub(super) tls: Arc<Mutex<Tls>>,
    /// Plaintext decrypted that did not fit the caller's buffer, from
    /// `plain_at` on.
    pub(super) plain: Vec<u8>,
    pub(super) plain_at: usize,
    /// The peer's data has ended; later reads return `Ok(0)`.
    pub(super) ended: bool,
}

/// The writing half of a [`TlsStream`].
pub struct TlsWriteHalf {
    pub(super) tcp: OwnedWriteHalf,
    pub(super) tls: Arc<Mutex<Tls>>,
    /// `close_notify` has been queued.
    pub(super) closing: bool,
}

/// The rustls state both halves share.
pub(super) struct Tls {
    pub(super) conn: UnbufferedServerConnection,
    /// Ciphertext received and not yet processed: always the front of the
    /// next buffer rustls is given, as its discard rule requires.
    pub(super) held: Vec<u8>,
    /// Ciphertext encrypted and not yet sent, in order: it goes before
    /// anything encrypted later.
    pub(super) unsent: Vec<u8>,
}

// === impl TlsStream ===

impl TlsStream {
    /// The two halves, for the relay's two directions.
    pub fn split(self) -> (TlsReadHalf, TlsWriteHalf) {
        (self.read, self.write)
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.write).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.write).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.write).poll_shutdown(cx)
    }
}

impl Split for TlsStream {
    type Read = TlsReadHalf;
    type Write = TlsWriteHalf;
    fn split(self) -> (TlsReadHalf, TlsWriteHalf) {
        TlsStream::split(self)
    }
}

/// The shared state for one pass; a pass that panicked left it unusable, and
/// the connection ends.
pub(super) fn lock(tls: &Mutex<Tls>) -> io::Result<MutexGuard<'_, Tls>> {
    tls.lock()
        .map_err(|_| io::Error::other("TLS state lost to a panic"))
}

/// Sends what the socket takes of `unsent` now; frees it once all is sent.
pub(super) fn send(tcp: &TcpStream, unsent: &mut Vec<u8>) -> io::Result<()> {
    while !unsent.is_empty() {
        match tcp.try_write(unsent) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                unsent.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    *unsent = Vec::new();
    Ok(())
}

/// Appends what `encode` writes to `out`, with the room it says it needs.
pub(super) fn append(
    out: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, Result<usize, io::Error>>,
) -> io::Result<()> {
    let at = out.len();
    out.resize(at + 64, 0);
    let n = match encode(&mut out[at..]) {
        Err(Ok(required)) => {
            out.resize(at + required, 0);
            encode(&mut out[at..])
        }
        done => done,
    };
    match n {
        Ok(n) => {
            out.truncate(at + n);
            Ok(())
        }
        Err(e) => {
            out.truncate(at);
            Err(match e {
                Ok(n) => io::Error::other(format!("no room for a TLS record of {n} bytes")),
                Err(e) => e,
            })
        }
    }
}

/// The room an encoding lacked (`Ok`), or why it failed.
pub(super) fn encode_room(e: EncodeError) -> Result<usize, io::Error> {
    match e {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => Ok(required_size),
        e => Err(io::Error::other(e.to_string())),
    }
}

pub(super) fn encrypt_room(e: EncryptError) -> Result<usize, io::Error> {
    match e {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Ok(required_size)
        }
        e => Err(io::Error::other(e.to_string())),
    }
}

/// What rustls queued up to and including the alert of an error, encoded, to send on a
/// best-effort basis; `buf` is the buffer the error came from, as rustls expects. All of it:
/// in TLS 1.3 the `no_application_protocol` alert is queued after the ServerHello, and
/// encrypted with the keys that ServerHello set up. Only while records are queued: with
/// none, rustls would read `buf` again and fail on it a second time.
pub(super) fn alert(conn: &mut UnbufferedServerConnection, buf: &mut [u8]) -> Vec<u8> {
    let mut alert = Vec::new();
    while conn.wants_write() {
        let Ok(ConnectionState::EncodeTlsData(mut data)) = conn.process_tls_records(buf).state
        else {
            break;
        };
        if append(&mut alert, |b| data.encode(b).map_err(encode_room)).is_err() {
            break;
        }
    }
    alert
}

/// rustls' error inside an I/O error, where the server's accounting finds it.
pub(super) fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

pub(super) fn too_much(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{what} larger than wsguard holds"),
    )
}

/// A state this server never asks for (early data is off).
pub(super) fn unexpected(state: &ConnectionState<'_, '_, ServerConnectionData>) -> io::Error {
    io::Error::other(format!("unexpected TLS state {state:?}"))
}
