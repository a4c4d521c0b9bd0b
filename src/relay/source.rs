//! What a pump reads from: a [`Source`] fills a [`FrameBuf`]. Sources that
//! report readiness ([`ReadReady`]) are given storage only once bytes are
//! there, so a direction that waits holds none.

use std::future::Future;
use std::io;
use std::task::{Context, Poll};

use tokio::net::tcp::OwnedReadHalf;

use super::buffer::FrameBuf;

/// Where a pump reads from.
pub trait Source: Unpin + Send {
    /// Reads what the source has into [`FrameBuf::spare`], waiting for it
    /// first; `Ok(0)` at its end. Cancel-safe.
    fn fill(&mut self, buf: &mut FrameBuf) -> impl Future<Output = io::Result<usize>> + Send;
}

/// A source that tells when it has data before it is given a buffer, so a
/// direction that waits holds no storage ([`FrameBuf::idle`]).
pub trait ReadReady: Unpin + Send {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// `WouldBlock` when the readiness was spurious.
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

impl<T: ReadReady> Source for T {
    async fn fill(&mut self, buf: &mut FrameBuf) -> io::Result<usize> {
        loop {
            buf.idle();
            std::future::poll_fn(|cx| self.poll_read_ready(cx)).await?;
            match self.try_read(buf.spare()) {
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
}

impl ReadReady for OwnedReadHalf {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.as_ref().poll_read_ready(cx)
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        OwnedReadHalf::try_read(self, buf)
    }
}
