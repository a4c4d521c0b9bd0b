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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;
    use tokio::time::timeout;

    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    /// Whether tokio still holds `tcp` readable: `try_io` runs its closure
    /// only then, so this looks without reading.
    fn still_readable(tcp: &TcpStream) -> bool {
        let mut ran = false;
        let _ = tcp.try_io(Interest::READABLE, || {
            ran = true;
            Ok(())
        });
        ran
    }

    #[tokio::test]
    async fn a_short_read_clears_readiness_and_later_bytes_still_wake() {
        let (mut client, server) = pair().await;
        client.write_all(b"hello").await.unwrap();
        server.readable().await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(try_read_drained(&server, &mut buf).unwrap(), 5);
        assert!(!still_readable(&server), "a short read leaves no readiness");

        client.write_all(b"again").await.unwrap();
        timeout(Duration::from_secs(5), server.readable())
            .await
            .expect("bytes after a short read wake the reader")
            .unwrap();
        assert_eq!(try_read_drained(&server, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"again");
    }

    #[tokio::test]
    async fn a_full_read_keeps_readiness() {
        let (mut client, server) = pair().await;
        client.write_all(b"0123456789").await.unwrap();
        server.readable().await.unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(try_read_drained(&server, &mut buf).unwrap(), 4);
        assert!(
            still_readable(&server),
            "more may be there after a full read"
        );
        assert_eq!(try_read_drained(&server, &mut buf).unwrap(), 4);
        assert_eq!(try_read_drained(&server, &mut [0u8; 8]).unwrap(), 2);
        assert_eq!(
            try_read_drained(&server, &mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }
}
