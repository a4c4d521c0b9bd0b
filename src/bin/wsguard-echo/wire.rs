//! Test helpers: a raw-socket client, so tests see exactly the bytes each mode
//! sends (RSV1, compressed payloads, close codes).

use std::future::Future;
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

/// Serves one connection with `serve` on a fresh port and sends the upgrade
/// request, offering `extensions` if given. Returns the socket and the
/// response head.
pub async fn connect<F, Fut>(serve: F, extensions: Option<&str>) -> (TcpStream, String)
where
    F: FnOnce(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut tcp = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    tokio::spawn(serve(server));
    let mut req = String::from(
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    );
    if let Some(e) = extensions {
        req.push_str(&format!("Sec-WebSocket-Extensions: {e}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let b = timeout(WAIT, tcp.read_u8()).await.unwrap().unwrap();
        head.push(b);
    }
    (tcp, String::from_utf8(head).unwrap())
}

/// The `Sec-WebSocket-Extensions` value of a response head, if any.
pub fn extensions(head: &str) -> Option<&str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("sec-websocket-extensions")
            .then(|| v.trim())
    })
}

/// Sends one masked frame with first byte `b0` (payload under 126 bytes).
pub async fn send(tcp: &mut TcpStream, b0: u8, payload: &[u8]) {
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![b0, 0x80 | u8::try_from(payload.len()).unwrap()];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    tcp.write_all(&frame).await.unwrap();
}

/// Reads one unmasked frame: its first byte and payload (under 64 KiB).
pub async fn recv(tcp: &mut TcpStream) -> (u8, Vec<u8>) {
    timeout(WAIT, async {
        let b0 = tcp.read_u8().await.unwrap();
        let len = match tcp.read_u8().await.unwrap() {
            126 => usize::from(tcp.read_u16().await.unwrap()),
            n => usize::from(n),
        };
        let mut payload = vec![0; len];
        tcp.read_exact(&mut payload).await.unwrap();
        (b0, payload)
    })
    .await
    .unwrap()
}

/// `data` as one permessage-deflate message: raw deflate, the final empty
/// stored block's 00 00 ff ff removed (RFC 7692 §7.2.1).
pub fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::fast(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// The inverse of [`deflate`].
pub fn inflate(data: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(64 << 10);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}
