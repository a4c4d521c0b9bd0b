//! The embedded chat backend: plain ws:// broadcast rooms, speaking
//! permessage-deflate (RFC 7692) with clients that offer it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, SEC_WEBSOCKET_EXTENSIONS, UPGRADE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, Semaphore};
use yawc::close::CloseCode;
use yawc::{Frame, OpCode, Options, Role, WebSocket, WebSocketError};

use super::conn::{accept, HANDSHAKE_TIMEOUT};
use super::negotiate;
use crate::handshake::accept_key;

/// Largest text message the backend accepts, inflated; larger ones get close 1009. The
/// proxy's default `max_frame_size`: what the shipped defaults let through, the room takes.
pub const MAX_MESSAGE_BYTES: usize = crate::config::DEFAULT_MAX_FRAME_SIZE as usize;
/// Per-room broadcast queue; a client this far behind is closed with 1008 "too slow".
pub const ROOM_QUEUE: usize = 256;
/// Concurrent backend clients; more are refused so a flood cannot exhaust memory.
pub const MAX_CLIENTS: usize = 1024;

// A client that stops reading must not pin its task forever on a full TCP buffer.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Rooms keyed by request path; a room is removed when its last client leaves.
/// Messages are kept as the UTF-8 text yawc checked.
type Rooms = Arc<Mutex<HashMap<String, broadcast::Sender<Bytes>>>>;

type Socket = WebSocket<Shared>;

/// The upgraded connection, one handle for yawc and one kept to drain it after
/// yawc is done: closing a socket with unread bytes (the rest of a frame yawc
/// refused) resets it, and the reset can destroy the close frame before the
/// client reads it.
#[derive(Clone)]
struct Shared(Arc<Mutex<TokioIo<Upgraded>>>);

impl Shared {
    fn io(&self) -> std::sync::MutexGuard<'_, TokioIo<Upgraded>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends FIN and reads until the client closes too, for at most [`SEND_TIMEOUT`].
    async fn linger(mut self) {
        let _ = tokio::time::timeout(SEND_TIMEOUT, async {
            let _ = self.shutdown().await;
            let mut sink = [0u8; 4096];
            while matches!(self.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}

impl AsyncRead for Shared {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io()).poll_read(cx, buf)
    }
}

impl AsyncWrite for Shared {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.io()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io()).poll_shutdown(cx)
    }
}

/// Runs the chat backend on `listener` until the task is dropped.
///
/// Every text message is relayed verbatim to every client in the same room
/// (request path), sender included. Binary gets close 1003, invalid UTF-8
/// 1007, oversized 1009, a client more than [`ROOM_QUEUE`] messages behind
/// gets 1008 "too slow". A permessage-deflate offer is accepted as offered
/// (see `negotiate`), and then every message the backend sends is compressed.
pub async fn run_chat_backend(listener: TcpListener) -> io::Result<()> {
    let rooms: Rooms = Arc::default();
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    tracing::info!(addr = %listener.local_addr()?, "demo chat backend listening");
    loop {
        let (stream, peer) = accept(&listener, "demo chat backend").await;
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "demo chat backend full, refusing client");
            continue;
        };
        let rooms = rooms.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_client(stream, rooms).await;
            tracing::debug!(%peer, "chat client left");
        });
    }
}

/// A handshake that was answered with 101: where it goes and what was agreed.
struct Accepted {
    room: String,
    extensions: Option<String>,
    upgrade: OnUpgrade,
}

async fn serve_client(stream: TcpStream, rooms: Rooms) {
    let _ = stream.set_nodelay(true);
    let Some(Accepted {
        room,
        extensions,
        upgrade,
    }) = handshake(stream).await
    else {
        return;
    };
    let upgraded = match tokio::time::timeout(HANDSHAKE_TIMEOUT, upgrade).await {
        Ok(Ok(upgraded)) => upgraded,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "chat upgrade failed");
            return;
        }
        Err(_) => {
            tracing::debug!("chat upgrade timed out");
            return;
        }
    };
    let options = Options::default()
        .with_low_latency_compression()
        .with_utf8()
        // yawc's limits are exclusive: a message of exactly MAX_MESSAGE_BYTES is fine.
        .with_max_payload_read(MAX_MESSAGE_BYTES + 1)
        .with_max_read_buffer(MAX_MESSAGE_BYTES + 1);
    let io = Shared(Arc::new(Mutex::new(TokioIo::new(upgraded))));
    let mut ws = match WebSocket::from_stream_with_extensions(
        io.clone(),
        Role::Server,
        extensions.as_deref(),
        options,
    ) {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(error = %e, "chat socket setup failed");
            return;
        }
    };
    tracing::debug!(
        room = %room,
        compression = extensions.as_deref().unwrap_or("none"),
        "chat client joined"
    );

    let (tx, mut rx) = {
        let mut rooms = rooms.lock().unwrap_or_else(|p| p.into_inner());
        let tx = rooms
            .entry(room.clone())
            .or_insert_with(|| broadcast::channel(ROOM_QUEUE).0)
            .clone();
        let rx = tx.subscribe();
        (tx, rx)
    };

    relay(&mut ws, &tx, &mut rx).await;
    drop(ws);
    io.linger().await;

    drop(rx);
    let mut rooms = rooms.lock().unwrap_or_else(|p| p.into_inner());
    if tx.receiver_count() == 0 {
        rooms.remove(&room);
    }
}

/// Reads one HTTP/1.1 request on `stream` and answers it: 101 for a
/// WebSocket handshake (returned), 400 for anything else (None).
async fn handshake(stream: TcpStream) -> Option<Accepted> {
    let accepted = Arc::new(Mutex::new(None));
    let slot = accepted.clone();
    let service = service_fn(move |mut req: Request<Incoming>| {
        let response = match upgrade_response(&req) {
            Some((response, extensions)) => {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Accepted {
                    room: req.uri().path().to_owned(),
                    extensions,
                    upgrade: hyper::upgrade::on(&mut req),
                });
                response
            }
            None => {
                let mut r = Response::new(Empty::new());
                *r.status_mut() = StatusCode::BAD_REQUEST;
                r.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                r
            }
        };
        async move { Ok::<_, Infallible>(response) }
    });
    // One request per connection: after a 101 it is a WebSocket, a 400 says
    // `Connection: close`. (keep_alive(false) would overwrite the 101's
    // `Connection: upgrade` with `close`.)
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "chat handshake failed"),
        Err(_) => tracing::debug!("chat handshake timed out"),
    }
    let accepted = accepted.lock().unwrap_or_else(|p| p.into_inner()).take();
    accepted
}

/// The 101 response to a WebSocket handshake (RFC 6455 §4.2) with the agreed
/// extension, or None if `req` is not one.
fn upgrade_response(req: &Request<Incoming>) -> Option<(Response<Empty<Bytes>>, Option<String>)> {
    let h = req.headers();
    let upgrade = h.get(UPGRADE)?.to_str().ok()?;
    let is_websocket = upgrade
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case("websocket"));
    if req.method() != Method::GET
        || !is_websocket
        || h.get("sec-websocket-version")?.as_bytes() != b"13"
    {
        return None;
    }
    let key = h.get("sec-websocket-key")?;
    let accept = HeaderValue::from_str(&accept_key(key.as_bytes())).ok()?;
    let extensions = negotiate::agree(h);
    let mut response = Response::new(Empty::new());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let out = response.headers_mut();
    out.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    out.insert(UPGRADE, HeaderValue::from_static("websocket"));
    out.insert("sec-websocket-accept", accept);
    if let Some(agreed) = &extensions {
        out.insert(
            SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_str(agreed).ok()?,
        );
    }
    Some((response, extensions))
}

/// Pumps one client until it leaves or breaks a rule; closes with the reason.
async fn relay(
    ws: &mut Socket,
    tx: &broadcast::Sender<Bytes>,
    rx: &mut broadcast::Receiver<Bytes>,
) {
    let close = loop {
        tokio::select! {
            incoming = ws.next_frame() => match incoming {
                Ok(frame) => match frame.opcode() {
                    OpCode::Text => {
                        // Err only means no receivers, impossible while we hold rx.
                        let _ = tx.send(frame.into_payload());
                    }
                    OpCode::Binary => break Some((CloseCode::Unsupported, "text only")),
                    // yawc queued the reply; it goes out on the way out of relay.
                    OpCode::Close => break None,
                    // yawc answers pings itself and hands over whole messages only.
                    OpCode::Ping | OpCode::Pong | OpCode::Continuation => {}
                },
                // Checked after reassembly, where yawc sends no close of its own.
                Err(WebSocketError::InvalidUTF8) => break Some((CloseCode::Invalid, "invalid UTF-8")),
                Err(WebSocketError::InvalidFragment | WebSocketError::FragmentTimeout) => {
                    break Some((CloseCode::Protocol, "bad fragment"));
                }
                Err(e) => {
                    // Every other read error (1009 too big, 1002 protocol) came with
                    // a close frame yawc queued; send it.
                    tracing::debug!(error = %e, "chat client read failed");
                    break None;
                }
            },
            outgoing = rx.recv() => match outgoing {
                Ok(text) => {
                    let sent = tokio::time::timeout(SEND_TIMEOUT, ws.send(Frame::text(text))).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        return;
                    }
                }
                // Closing rather than skipping: a chat with silent gaps is worse than a visible disconnect.
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(skipped = n, "chat client too slow");
                    break Some((CloseCode::Policy, "too slow"));
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    };
    if let Some((code, reason)) = close {
        let _ = tokio::time::timeout(SEND_TIMEOUT, ws.send(Frame::close(code, reason))).await;
    }
    // yawc sends a close it queued itself (an echo, a 1009) on its way out of a
    // read; after our own close this reads the client's reply.
    let _ = tokio::time::timeout(SEND_TIMEOUT, ws.next_frame()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio_tungstenite::client_async;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::WebSocketStream;

    const WAIT: Duration = Duration::from_secs(5);

    async fn backend() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(run_chat_backend(listener));
        addr
    }

    async fn connect(addr: std::net::SocketAddr, path: &str) -> WebSocketStream<TcpStream> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (ws, _) = client_async(format!("ws://{addr}{path}"), tcp)
            .await
            .unwrap();
        ws
    }

    async fn next_msg(ws: &mut WebSocketStream<TcpStream>) -> Message {
        tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out")
            .expect("stream ended")
            .expect("read error")
    }

    /// Reads until `text` arrives; other clients' joins may come first.
    async fn expect_text(ws: &mut WebSocketStream<TcpStream>, text: &str) {
        loop {
            match next_msg(ws).await {
                Message::Text(t) if t.as_str() == text => return,
                Message::Text(_) => {}
                other => panic!("expected {text:?}, got {other:?}"),
            }
        }
    }

    /// Sends `name` and reads it back: a client whose own message came back
    /// has a server task subscribed to the room.
    async fn join(ws: &mut WebSocketStream<TcpStream>, name: &str) {
        ws.send(Message::text(name)).await.unwrap();
        expect_text(ws, name).await;
    }

    #[tokio::test]
    async fn broadcast_reaches_sender_and_peer() {
        let addr = backend().await;
        let mut a = connect(addr, "/chat").await;
        let mut b = connect(addr, "/chat").await;
        join(&mut a, "a joined").await;
        join(&mut b, "b joined").await;
        let msg = r#"{"name":"alice","text":"hi"}"#;
        a.send(Message::text(msg)).await.unwrap();
        expect_text(&mut a, msg).await;
        assert_eq!(next_msg(&mut b).await, Message::text(msg));
    }

    #[tokio::test]
    async fn rooms_are_per_path() {
        let addr = backend().await;
        let mut a = connect(addr, "/chat").await;
        let mut other = connect(addr, "/other").await;
        // Subscribed first, so a message leaking across rooms would reach it.
        join(&mut other, "other joined").await;
        a.send(Message::text("room chat")).await.unwrap();
        assert_eq!(next_msg(&mut a).await, Message::text("room chat"));
        other.send(Message::text("room other")).await.unwrap();
        assert_eq!(next_msg(&mut other).await, Message::text("room other"));
    }

    async fn expect_close(ws: &mut WebSocketStream<TcpStream>, code: CloseCode) {
        match next_msg(ws).await {
            Message::Close(Some(frame)) => assert_eq!(frame.code, code),
            other => panic!("expected close {code}, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn binary_is_closed_1003() {
        let addr = backend().await;
        let mut a = connect(addr, "/chat").await;
        a.send(Message::binary(vec![1, 2, 3])).await.unwrap();
        expect_close(&mut a, CloseCode::Unsupported).await;
    }

    #[tokio::test]
    async fn oversized_is_closed_1009() {
        let addr = backend().await;
        let mut a = connect(addr, "/chat").await;
        a.send(Message::text("x".repeat(MAX_MESSAGE_BYTES + 1)))
            .await
            .unwrap();
        expect_close(&mut a, CloseCode::Size).await;
    }

    #[tokio::test]
    async fn reader_that_stalls_is_closed_1008() {
        let addr = backend().await;
        let a = connect(addr, "/chat").await;
        let mut b = connect(addr, "/chat").await;
        join(&mut b, "b joined").await;
        // A drains its own echoes; B reads nothing until TCP buffers fill and
        // its server task falls more than ROOM_QUEUE messages behind.
        let (mut a_tx, mut a_rx) = a.split();
        let drain = tokio::spawn(async move { while let Some(Ok(_)) = a_rx.next().await {} });
        let chunk = "y".repeat(16 * 1024);
        for _ in 0..2000 {
            a_tx.send(Message::text(chunk.clone())).await.unwrap();
        }
        let code = tokio::time::timeout(WAIT, async {
            loop {
                match b.next().await {
                    Some(Ok(Message::Close(frame))) => break frame.map(|f| f.code),
                    Some(Ok(_)) => {}
                    other => panic!("expected close, got {other:?}"),
                }
            }
        })
        .await
        .expect("no close");
        assert_eq!(code, Some(CloseCode::Policy));
        drain.abort();
    }

    // --- permessage-deflate, spoken raw so the test sees RSV1 and the wire bytes ---

    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
    use std::io::Cursor;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{
        Control, Data, OpCode as WireOp,
    };
    use tokio_tungstenite::tungstenite::protocol::frame::{Frame as WireFrame, FrameHeader};

    /// Sends `request_head` and reads the response head.
    async fn raw(addr: std::net::SocketAddr, request_head: &str) -> (TcpStream, String) {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(request_head.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let byte = tokio::time::timeout(WAIT, tcp.read_u8()).await;
            head.push(byte.expect("timed out").expect("response head"));
        }
        (tcp, String::from_utf8(head).unwrap().to_ascii_lowercase())
    }

    /// A WebSocket handshake for /chat with `extra` header lines.
    async fn raw_upgrade(addr: std::net::SocketAddr, extra: &str) -> (TcpStream, String) {
        let head = format!(
            "GET /chat HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        );
        let (tcp, head) = raw(addr, &head).await;
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"));
        (tcp, head)
    }

    async fn send_text(tcp: &mut TcpStream, payload: Vec<u8>, compressed: bool) {
        let mut frame = WireFrame::message(payload, WireOp::Data(Data::Text), true);
        frame.header_mut().rsv1 = compressed;
        frame.header_mut().mask = Some([7, 1, 9, 3]);
        let mut out = Vec::new();
        frame.format(&mut out).unwrap();
        tcp.write_all(&out).await.unwrap();
    }

    async fn read_frame(tcp: &mut TcpStream) -> (FrameHeader, Vec<u8>) {
        let mut head = Vec::new();
        let (header, len) = loop {
            if let Some(found) = FrameHeader::parse(&mut Cursor::new(&head)).unwrap() {
                break found;
            }
            let byte = tokio::time::timeout(WAIT, tcp.read_u8()).await;
            head.push(byte.expect("timed out").expect("frame"));
        };
        let mut payload = vec![0; usize::try_from(len).unwrap()];
        tokio::time::timeout(WAIT, tcp.read_exact(&mut payload))
            .await
            .expect("timed out")
            .unwrap();
        (header, payload)
    }

    /// One message deflated on its own (RFC 7692 §7.2.1: sync flush, tail removed).
    fn deflate(text: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() + 64);
        Compress::new(Compression::fast(), false)
            .compress_vec(text, &mut out, FlushCompress::Sync)
            .unwrap();
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }

    /// One message inflated with no context from earlier ones.
    fn inflate(payload: &[u8]) -> Vec<u8> {
        let input = [payload, &[0, 0, 0xff, 0xff]].concat();
        let mut out = Vec::with_capacity(MAX_MESSAGE_BYTES);
        Decompress::new(false)
            .decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        out
    }

    fn close_code(frame: &(FrameHeader, Vec<u8>)) -> Option<u16> {
        assert_eq!(frame.0.opcode, WireOp::Control(Control::Close));
        Some(u16::from_be_bytes(frame.1.get(..2)?.try_into().ok()?))
    }

    #[tokio::test]
    async fn deflate_is_negotiated_and_used_both_ways() {
        let addr = backend().await;
        // What wsguard sends on for Chromium's offer, tightened.
        let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; \
                     server_no_context_takeover; client_no_context_takeover\r\n";
        let (mut tcp, head) = raw_upgrade(addr, offer).await;
        assert!(
            head.contains(
                "\r\nsec-websocket-extensions: permessage-deflate; server_no_context_takeover; \
                 client_no_context_takeover\r\n"
            ),
            "{head}"
        );
        let text = r#"{"name":"alice","text":"compressed, compressed, compressed"}"#;
        // The same text twice: with context takeover the second copy would be a
        // back-reference into the first and not inflate on its own.
        send_text(&mut tcp, deflate(text.as_bytes()), true).await;
        send_text(&mut tcp, deflate(text.as_bytes()), true).await;
        // RFC 7692 §6: a message may also go uncompressed.
        send_text(&mut tcp, text.as_bytes().to_vec(), false).await;
        for _ in 0..3 {
            let (header, payload) = read_frame(&mut tcp).await;
            assert!(header.rsv1, "the backend compresses what it sends");
            assert!(payload.len() < text.len());
            assert_eq!(inflate(&payload), text.as_bytes());
        }
    }

    #[tokio::test]
    async fn inflated_size_over_the_cap_is_closed_1009() {
        let addr = backend().await;
        let offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
        let (mut tcp, _) = raw_upgrade(addr, offer).await;
        let bomb = deflate(&vec![b'a'; MAX_MESSAGE_BYTES + 1]);
        // On the wire under a 64th of the cap: only its inflated size is over it.
        assert!(bomb.len() * 64 < MAX_MESSAGE_BYTES, "{}", bomb.len());
        send_text(&mut tcp, bomb, true).await;
        assert_eq!(close_code(&read_frame(&mut tcp).await), Some(1009));
    }

    #[tokio::test]
    async fn without_an_offer_nothing_is_negotiated_and_rsv1_is_1002() {
        let addr = backend().await;
        let (mut tcp, head) = raw_upgrade(addr, "").await;
        assert!(!head.contains("sec-websocket-extensions"), "{head}");
        send_text(&mut tcp, deflate(b"hi"), true).await;
        assert_eq!(close_code(&read_frame(&mut tcp).await), Some(1002));
    }

    #[tokio::test]
    async fn invalid_utf8_is_closed_1007() {
        let addr = backend().await;
        let (mut tcp, _) = raw_upgrade(addr, "").await;
        send_text(&mut tcp, vec![b'a', 0xff], false).await;
        assert_eq!(close_code(&read_frame(&mut tcp).await), Some(1007));
    }

    #[tokio::test]
    async fn plain_http_is_400() {
        let addr = backend().await;
        let (_, head) = raw(addr, &format!("GET /chat HTTP/1.1\r\nHost: {addr}\r\n\r\n")).await;
        assert!(head.starts_with("http/1.1 400"), "{head}");
    }
}
