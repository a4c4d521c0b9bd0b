//! The relay's close paths. When a peer is in the middle of a streamed frame
//! (one larger than the proxy's buffer) a close frame can never be written
//! inside another frame, so that peer's connection is closed at once, and
//! nothing waits for a close reply that was never asked for; the close
//! timeout is long in those tests, so any such wait shows as a test timeout.
//! And a close frame is always answered (RFC 6455 §5.5.1): when the other
//! peer does not answer in time, the proxy does.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use wsguard::frame::{FrameHeader, OpCode};

const LONG_CLOSE: &str = "close_timeout = \"30s\"\n";
const BIG_FRAMES: &str = "\n[frames]\nmax_frame_size = \"1 MiB\"\nmax_message_size = \"1 MiB\"\n";

/// Payload bytes of a streamed frame that arrive before anything goes wrong:
/// three times the proxy's largest buffer.
const STREAMED: usize = 200 << 10;

/// A backend that sends `first` after the 101, then reads until EOF and
/// reports everything it read. A close frame from the proxy makes it shut
/// down its sending side: it is mid-frame itself, so it cannot answer with
/// a close frame.
async fn recording_backend(first: Vec<u8>) -> (Backend, mpsc::UnboundedReceiver<Vec<u8>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let backend = start_upgraded_backend(move |mut s: TcpStream, _| {
        let (first, tx) = (first.clone(), tx.clone());
        async move {
            if s.write_all(&first).await.is_err() {
                return;
            }
            let mut got = Vec::new();
            let mut chunk = vec![0u8; 64 << 10];
            let mut answered = false;
            while let Ok(n @ 1..) = s.read(&mut chunk).await {
                got.extend_from_slice(&chunk[..n]);
                if !answered && frames(&got).iter().any(|(h, _)| h.opcode == OpCode::Close) {
                    answered = true;
                    let _ = s.shutdown().await;
                }
            }
            let _ = tx.send(got);
        }
    })
    .await;
    (backend, rx)
}

/// The whole frames at the start of `bytes`, payloads unmasked.
fn frames(mut bytes: &[u8]) -> Vec<(FrameHeader, Vec<u8>)> {
    let mut out = Vec::new();
    while let Ok(Some((h, n))) = FrameHeader::parse(bytes) {
        let Some(payload) = bytes.get(n..n + h.payload_len as usize) else {
            break;
        };
        let mut payload = payload.to_vec();
        if let Some(key) = h.mask {
            wsguard::frame::mask::apply_mask(&mut payload, key, 0);
        }
        bytes = &bytes[n + payload.len()..];
        out.push((h, payload));
    }
    out
}

/// The header of a FIN frame from the backend declaring 1 MiB of payload,
/// then `STREAMED` bytes of it (`fill`, and `last` as the final byte).
fn big_backend_frame(opcode: u8, fill: u8, last: u8) -> Vec<u8> {
    let mut bytes = vec![0x80 | opcode, 127];
    bytes.extend_from_slice(&(1u64 << 20).to_be_bytes());
    bytes.resize(10 + STREAMED, fill);
    bytes.push(last);
    bytes
}

/// Reads until EOF; every bound is the test step.
async fn read_to_eof(io: &mut Box<dyn Io>, got: &mut Vec<u8>) {
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        match within("read until EOF", io.read(&mut chunk)).await {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads at least `n` bytes.
async fn read_at_least(io: &mut Box<dyn Io>, got: &mut Vec<u8>, n: usize) {
    let mut chunk = vec![0u8; 64 << 10];
    while got.len() < n {
        let k = within("read the streamed frame", io.read(&mut chunk))
            .await
            .unwrap();
        assert!(k > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&chunk[..k]);
    }
}

/// Waits until the relay recorded its end with this client code and ender.
async fn relay_ended(guard: &Guard, code: &str, by: &str) {
    let series = format!("wsguard_connections_closed_total{{code=\"{code}\",by=\"{by}\"}}");
    assert!(
        wait_until(|| guard.metric(&series) == 1.0).await,
        "the relay did not end with code {code} by {by}"
    );
}

/// The client received part of the backend's frame and then EOF: the bytes
/// are the frame's own, so no close frame was written inside it.
fn assert_cut_mid_frame(got: &[u8], sent: &[u8]) {
    assert!(got.len() > 10 + (64 << 10), "the frame was streamed");
    assert!(got.len() < 10 + (1 << 20), "the frame never ended");
    assert_prefix(got, sent);
}

/// `got` is a prefix of `sent`; a failure names the first difference
/// rather than printing hundreds of kilobytes.
fn assert_prefix(got: &[u8], sent: &[u8]) {
    if let Some(at) = got.iter().zip(sent).position(|(a, b)| a != b) {
        let end = got.len().min(at + 8);
        panic!("byte {at} was not sent by the peer: {:x?}", &got[at..end]);
    }
    assert!(got.len() <= sent.len(), "more bytes than were sent");
}

#[tokio::test]
async fn client_violation_while_the_client_is_mid_frame_closes_its_connection_at_once() {
    let sent = big_backend_frame(2, 0, 0);
    let (backend, mut backend_got) = recording_backend(sent.clone()).await;
    let guard = start_guard_with(false, LONG_CLOSE, &chat_route(backend.addr)).await;
    let mut io = raw_ws(guard.addr, false, "https://chat.example.com").await;
    let mut got = Vec::new();
    read_at_least(&mut io, &mut got, 10 + (100 << 10)).await;
    // An unmasked frame: a protocol error while the client is mid-frame.
    io.write_all(&frame(true, 2, b"naked", None)).await.unwrap();
    read_to_eof(&mut io, &mut got).await;
    assert_cut_mid_frame(&got, &sent);

    // The backend was told (it was between frames) and closed.
    let seen = within("backend EOF", backend_got.recv()).await.unwrap();
    let seen = frames(&seen);
    assert_eq!(seen.len(), 1, "only the proxy's close");
    assert_eq!(seen[0].0.opcode, OpCode::Close);
    assert_eq!(seen[0].1, 1001u16.to_be_bytes());
    // No wait for a reply from the client, which still holds its socket.
    relay_ended(&guard, "none", "client_violation").await;
    drop(io);
}

#[tokio::test]
async fn backend_violation_while_the_client_is_mid_frame_closes_its_connection_at_once() {
    // Text that turns invalid after `STREAMED` good bytes.
    let sent = big_backend_frame(1, b'a', 0xFF);
    let (backend, mut backend_got) = recording_backend(sent.clone()).await;
    let guard = start_guard_with(false, LONG_CLOSE, &chat_route(backend.addr)).await;
    let mut io = raw_ws(guard.addr, false, "https://chat.example.com").await;
    let mut got = Vec::new();
    read_to_eof(&mut io, &mut got).await;
    assert_cut_mid_frame(&got, &sent[..sent.len() - 1]);

    let seen = within("backend EOF", backend_got.recv()).await.unwrap();
    let seen = frames(&seen);
    assert_eq!(seen.len(), 1, "only the proxy's close");
    assert_eq!(seen[0].0.opcode, OpCode::Close);
    assert_eq!(seen[0].1[..2], 1007u16.to_be_bytes());
    relay_ended(&guard, "none", "backend_violation").await;
    drop(io);
}

#[tokio::test]
async fn client_violation_inside_its_own_streamed_frame_closes_the_backend_at_once() {
    let (backend, mut backend_got) = recording_backend(Vec::new()).await;
    let body = chat_route(backend.addr) + BIG_FRAMES;
    let guard = start_guard_with(false, LONG_CLOSE, &body).await;
    let mut io = raw_ws(guard.addr, false, "https://chat.example.com").await;
    let mut payload = vec![b'a'; 2 * STREAMED];
    payload[STREAMED] = 0xFF;
    let bad = frame(true, 1, &payload, key());
    // Header, key, the good text and the bad byte; the rest is never needed.
    let bad_at = 14 + STREAMED;
    within("write", io.write_all(&bad[..=bad_at]))
        .await
        .unwrap();

    // The client is between frames: it gets its close at once.
    let (code, reason) = read_close(&mut io).await;
    assert_eq!(code, Some(1007), "{reason}");
    let _ = io
        .write_all(&frame(true, 8, &1007u16.to_be_bytes(), key()))
        .await;
    expect_eof(&mut io).await;
    drop(io);

    // The backend got part of the frame, never the bad byte, no close frame
    // inside it, and then EOF.
    let seen = within("backend EOF", backend_got.recv()).await.unwrap();
    assert!(seen.len() > 14 + (64 << 10), "the frame was streamed");
    assert_prefix(&seen, &bad[..bad_at]);
    relay_ended(&guard, "1007", "client_violation").await;
}

/// A backend that reads until EOF, never writes, and reports what it read.
async fn silent_backend() -> (Backend, mpsc::UnboundedReceiver<Vec<u8>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let backend = start_upgraded_backend(move |mut s: TcpStream, _| {
        let tx = tx.clone();
        async move {
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got).await;
            let _ = tx.send(got);
        }
    })
    .await;
    (backend, rx)
}

const SHORT_CLOSE: &str = "close_timeout = \"300ms\"\n";

#[tokio::test]
async fn a_client_close_the_backend_never_answers_is_answered_by_the_proxy() {
    let (backend, mut backend_got) = silent_backend().await;
    let guard = start_guard_with(false, SHORT_CLOSE, &chat_route(backend.addr)).await;
    let mut io = raw_ws(guard.addr, false, "https://chat.example.com").await;
    let mut close = 4000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    io.write_all(&frame(true, 8, &close, key())).await.unwrap();

    // The client's code comes back, then the proxy (the server) closes.
    let (code, reason) = read_close(&mut io).await;
    assert_eq!(code, Some(4000), "{reason}");
    expect_eof(&mut io).await;
    let seen = within("backend EOF", backend_got.recv()).await.unwrap();
    let seen = frames(&seen);
    assert_eq!(seen.len(), 1, "the client's close, relayed");
    assert_eq!(seen[0].1, close);
    relay_ended(&guard, "4xxx", "client").await;
}

/// A close frame without a status code is 1005 in the line and the metric (RFC 6455
/// §7.1.5); `none` is left for a client that got no close frame.
#[tokio::test]
async fn a_close_without_a_code_is_logged_and_counted_as_1005() {
    let logs = Logs::capture();
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let guard = start_guard(false, &chat_route(backend.addr)).await;
    let mut io = raw_ws(guard.addr, false, "https://chat.example.com").await;
    io.write_all(&frame(true, 8, b"", key())).await.unwrap();
    // The backend's echo, relayed: a close frame with no code either.
    assert_eq!(read_close(&mut io).await, (None, String::new()));
    expect_eof(&mut io).await;
    relay_ended(&guard, "1005", "client").await;
    let closed = "wsguard_connections_closed_total{code=\"none\",by=\"client\"}";
    assert_eq!(guard.metric(closed), 0.0, "{}", guard.metrics());
    let lines = logs.lines();
    let line = lines
        .iter()
        .find(|l| l["message"] == "connection closed")
        .expect("the connection's line");
    assert_eq!(line["code"], 1005, "{line}");
    assert_eq!(line["by"], "client", "{line}");
}

#[tokio::test]
async fn a_backend_close_the_client_never_answers_is_answered_by_the_proxy() {
    let close = frame(true, 8, &1000u16.to_be_bytes(), None);
    let (backend, mut backend_got) = recording_backend(close).await;
    let guard = start_guard_with(false, SHORT_CLOSE, &chat_route(backend.addr)).await;
    let mut io = raw_ws(guard.addr, false, "https://chat.example.com").await;
    let (code, _) = read_close(&mut io).await;
    assert_eq!(code, Some(1000), "the backend's close, relayed");

    // The client never answers: the proxy answers the backend, masked, with
    // the backend's code, and closes its side.
    let seen = within("backend EOF", backend_got.recv()).await.unwrap();
    let seen = frames(&seen);
    assert_eq!(seen.len(), 1, "one close frame from the proxy");
    assert_eq!(seen[0].0.opcode, OpCode::Close);
    assert!(seen[0].0.mask.is_some(), "frames to a backend are masked");
    assert_eq!(seen[0].1, 1000u16.to_be_bytes());
    relay_ended(&guard, "1000", "backend").await;
    drop(io);
}

#[tokio::test]
async fn a_ping_that_cannot_go_out_does_not_spin_the_proxy() {
    // The backend streams to a client that neither reads nor sends: the
    // client is "quiet" and due a ping, but its output is never idle.
    let backend = start_upgraded_backend(|mut s: TcpStream, _| async move {
        let chunk = frame(true, 2, &[0u8; 16 << 10], None);
        while s.write_all(&chunk).await.is_ok() {}
    })
    .await;
    let body = format!(
        "ping_interval = \"1s\"\nidle_timeout = \"60s\"\n{}",
        chat_route(backend.addr)
    );
    let guard = start_bin_guard(&body).await;
    let io = raw_ws(guard.addr, false, "https://chat.example.com").await;
    // Past the first ping's due time, with every buffer on the way full.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let before = guard.cpu_seconds();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let used = guard.cpu_seconds() - before;
    assert!(
        used < 0.5,
        "the proxy used {used} s of CPU in 2 s while stalled"
    );
    drop(io);
}
