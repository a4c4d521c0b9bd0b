//! What a pump reads from: a [`ReadReady`] source is given storage only once
//! bytes are there, so a direction that waits holds none.

use std::io;
use std::task::{Context, Poll};

use tokio::io::Interest;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;

use super::buffer::FrameBuf;

/// Where a pump reads from: a source that tells when it has data before it
/// is given a buffer, so a direction that waits holds no storage
/// ([`FrameBuf::idle`]).
pub trait ReadReady: Unpin + Send {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// `WouldBlock` when the readiness was spurious.
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

/// Reads what `src` has into [`FrameBuf::spare`], waiting for it first;
/// `Ok(0)` at its end. Cancel-safe.
pub(super) async fn fill<R: ReadReady>(src: &mut R, buf: &mut FrameBuf) -> io::Result<usize> {
    loop {
        buf.idle();
        std::future::poll_fn(|cx| src.poll_read_ready(cx)).await?;
        match src.try_read(buf.spare()) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Ok(n) if n > 0 => return Ok(n),
            // The end: nothing more comes to hold storage for.
            end => {
                buf.idle();
                return end;
            }
        }
    }
}

impl ReadReady for OwnedReadHalf {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.as_ref().poll_read_ready(cx)
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        try_read_drained(self.as_ref(), buf)
    }
}

/// `tcp.try_read`, but a read that did not fill `buf` also clears the socket's
/// readiness: the kernel had no more, so the next wait goes straight to the
/// poller instead of making one more read that fails with `EAGAIN`. That read
/// was a third of the proxy's syscalls with small messages. The readiness is
/// cleared as of before the read (what `try_io` saw), so data that arrives
/// meanwhile still wakes the task: what tokio's own `poll_read` does.
pub(crate) fn try_read_drained(tcp: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let want = buf.len();
    let mut short = None;
    let result = tcp.try_io(Interest::READABLE, || {
        let n = tcp.try_read(buf)?;
        if n > 0 && n < want {
            short = Some(n);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match short {
        Some(n) => Ok(n),
        None => result,
    }
}
