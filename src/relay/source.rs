//! What a pump reads from: a [`ReadReady`] source is given storage only once
//! bytes are there, so a direction that waits holds none.

use std::io;
use std::task::{Context, Poll};

use tokio::net::tcp::OwnedReadHalf;

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
        OwnedReadHalf::try_read(self, buf)
    }
}
