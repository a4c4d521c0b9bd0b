//! The attack catalogue: hostile clients and hostile backends against a
//! running wsguard. Each test asserts the exact answer, that the backend saw
//! nothing it should not have, and that the proxy still serves a normal client
//! afterwards. Memory is measured on the built binary (its own process):
//! /proc/PID/status VmRSS.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use wsguard::frame::{FrameHeader, OpCode};

const ORIGIN: &str = "https://chat.example.com";
const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// A valid upgrade request to `/chat` with the allowed Origin, plus `extra` header lines.
fn request(extra: &str) -> Vec<u8> {
    upgrade_request("/chat", &format!("Origin: {ORIGIN}\r\n{extra}"))
}

/// wsguard (plain ws://) in front of a recording echo backend, default frame caps.
async fn guarded() -> (Guard, Backend) {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let guard = start_guard(false, &chat_route(backend.addr)).await;
    (guard, backend)
}

/// A normal client still gets a full round trip through `/chat`.
async fn still_serves(addr: std::net::SocketAddr) {
    chat_round_trip(addr, false, "still here").await;
}

/// Reads `count` whole server frames (header, payload), or fewer at EOF.
async fn read_frames<R: AsyncRead + Unpin + ?Sized>(
    io: &mut R,
    count: usize,
) -> Vec<(FrameHeader, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    while out.len() < count {
        while let Ok(Some((h, n))) = FrameHeader::parse(&buf) {
            let total = n + h.payload_len as usize;
            if buf.len() < total || out.len() == count {
                break;
            }
            out.push((h, buf[n..total].to_vec()));
            buf.drain(..total);
        }
        if out.len() == count {
            break;
        }
        match within("read frames", io.read(&mut chunk)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    out
}

/// Waits for the backend to see a close frame; returns every frame it saw.
async fn backend_frames_until_close(backend: &Backend) -> Vec<(FrameHeader, Vec<u8>)> {
    let seen = backend.seen.clone();
    wait_until(|| seen.frames().iter().any(|(h, _)| h.opcode == OpCode::Close)).await;
    backend.seen.frames()
}

fn close_code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

/// The backend saw no data frame and at most the proxy's own close 1001.
fn backend_saw_only_the_proxys_1001(frames: &[(FrameHeader, Vec<u8>)], what: &str) {
    assert!(
        frames
            .iter()
            .all(|(h, p)| h.opcode == OpCode::Close && close_code(p) == Some(1001)),
        "{what}: backend saw {frames:?}"
    );
}

// === request smuggling shapes ===

#[tokio::test]
async fn smuggling_shaped_heads_are_refused_before_the_backend() {
    let (guard, backend) = guarded().await;
    let many = |n: usize| (0..n).map(|i| format!("X-H{i}: v\r\n")).collect::<String>();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "Content-Length with a body",
            [request("Content-Length: 5\r\n"), b"hello".to_vec()].concat(),
            400,
        ),
        (
            "Transfer-Encoding: chunked",
            [
                request("Transfer-Encoding: chunked\r\n"),
                b"0\r\n\r\n".to_vec(),
            ]
            .concat(),
            400,
        ),
        (
            "Content-Length and Transfer-Encoding",
            [
                request("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n"),
                b"0\r\n\r\n".to_vec(),
            ]
            .concat(),
            400,
        ),
        (
            "header continuation line",
            request("X-Folded: a\r\n  continued\r\n"),
            400,
        ),
        (
            "duplicate Sec-WebSocket-Key",
            request("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"),
            400,
        ),
        ("duplicate Host", request("Host: evil.example\r\n"), 400),
        (
            "whitespace before the colon",
            request("Transfer-Encoding : chunked\r\n"),
            400,
        ),
        (
            "Content-Length: 0, 5",
            request("Content-Length: 0, 5\r\n"),
            400,
        ),
        ("CR inside a value", request("X-Evil: a\rb\r\n"), 400),
        ("NUL inside a value", request("X-Evil: a\0b\r\n"), 400),
        ("101 headers", request(&many(95)), 431),
        ("5,000 headers", request(&many(4994)), 431),
        (
            "one 20 KiB header",
            request(&format!("X-Big: {}\r\n", "a".repeat(20 * 1024))),
            431,
        ),
    ];
    for (what, bytes, status) in cases {
        let answer = raw_request(guard.addr, false, &bytes).await;
        assert_eq!(status_of(&answer), status, "{what}: {answer}");
    }
    assert_eq!(backend.seen.connections(), 0, "the backend was contacted");
    // Exactly 100 headers is still a request.
    upgrade_raw(guard.addr, false, &request(&many(94))).await;
    still_serves(guard.addr).await;
}

#[tokio::test]
async fn a_request_hidden_after_the_head_is_read_as_frames_and_refused() {
    let (guard, backend) = guarded().await;
    // No Content-Length: what follows the head is WebSocket data, and
    // "GET ..." is a frame with RSV1 set.
    let smuggled = b"GET /admin HTTP/1.1\r\nHost: backend\r\n\r\n";
    let mut io = upgrade_raw(
        guard.addr,
        false,
        &[request(""), smuggled.to_vec()].concat(),
    )
    .await;
    assert_eq!(read_close(&mut io).await.0, Some(1002));
    let frames = backend_frames_until_close(&backend).await;
    backend_saw_only_the_proxys_1001(&frames, "smuggled request");
    let requests = backend.seen.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert!(!requests[0].contains("/admin"), "{requests:?}");
    still_serves(guard.addr).await;
}

#[tokio::test]
async fn frames_pipelined_before_the_101_are_relayed_after_it_through_the_rules() {
    let (guard, backend) = guarded().await;
    let early = [
        frame(true, 1, b"early", key()),
        frame(true, 2, b"second", key()),
    ]
    .concat();
    let mut io = upgrade_raw(guard.addr, false, &[request(""), early].concat()).await;
    let echoed = read_frames(&mut io, 2).await;
    let payloads: Vec<&[u8]> = echoed.iter().map(|(_, p)| p.as_slice()).collect();
    assert_eq!(payloads, [b"early".as_slice(), b"second"]);
    assert_eq!(
        backend.seen.payloads(),
        [b"early".to_vec(), b"second".to_vec()]
    );

    // A pipelined frame that breaks a rule is refused like any other.
    let (guard, backend) = guarded().await;
    let bad = frame(true, 1, b"naked", None);
    let mut io = upgrade_raw(guard.addr, false, &[request(""), bad].concat()).await;
    assert_eq!(read_close(&mut io).await.0, Some(1002));
    backend_saw_only_the_proxys_1001(&backend_frames_until_close(&backend).await, "pipelined");

    // Pipelined frames behind a refused request go nowhere.
    let refused = [
        upgrade_request("/chat", "Origin: https://evil.example\r\n"),
        frame(true, 1, b"early", key()),
    ]
    .concat();
    assert_eq!(
        status_of(&raw_request(guard.addr, false, &refused).await),
        403
    );
    assert_eq!(backend.seen.connections(), 1);
    still_serves(guard.addr).await;
}

#[tokio::test]
async fn an_absolute_form_target_reaches_the_backend_as_a_path_only() {
    let (guard, backend) = guarded().await;
    let req = String::from_utf8(request("")).unwrap().replacen(
        "GET /chat ",
        "GET http://internal.admin/chat?x=1 ",
        1,
    );
    let mut io = upgrade_raw(guard.addr, false, req.as_bytes()).await;
    within("write", io.write_all(&frame(true, 1, b"hi", key())))
        .await
        .unwrap();
    assert_eq!(read_frames(&mut io, 1).await[0].1, b"hi");
    let requests = backend.seen.requests.lock().unwrap().clone();
    assert!(
        requests[0].starts_with("GET /chat?x=1 HTTP/1.1\r\n"),
        "{requests:?}"
    );
    assert!(!requests[0].contains("internal.admin"), "{requests:?}");
}

// === frames ===

#[tokio::test]
async fn length_of_2_pow_63_is_a_protocol_error() {
    let (guard, backend) = guarded().await;
    let mut io = raw_ws(guard.addr, false, ORIGIN).await;
    let mut f = vec![0x82, 0xff];
    f.extend_from_slice(&(1u64 << 63).to_be_bytes());
    f.extend_from_slice(&[1, 2, 3, 4]);
    within("write", io.write_all(&f)).await.unwrap();
    assert_eq!(read_close(&mut io).await.0, Some(1002));
    backend_saw_only_the_proxys_1001(&backend_frames_until_close(&backend).await, "2^63");
    still_serves(guard.addr).await;
}

#[tokio::test]
async fn a_2_pow_62_byte_frame_is_refused_on_its_header_without_waiting() {
    let (guard, backend) = guarded().await;
    let mut io = raw_ws(guard.addr, false, ORIGIN).await;
    let mut f = vec![0x82, 0xff];
    f.extend_from_slice(&(1u64 << 62).to_be_bytes());
    f.extend_from_slice(&[1, 2, 3, 4]);
    f.extend_from_slice(b"and then nothing more");
    within("write", io.write_all(&f)).await.unwrap();
    // The connection stays open on our side: the answer must not wait for payload.
    let (code, _) = timeout(Duration::from_secs(2), read_close(&mut io))
        .await
        .expect("1009 came at once, not after a payload");
    assert_eq!(code, Some(1009));
    backend_saw_only_the_proxys_1001(&backend_frames_until_close(&backend).await, "2^62");
    still_serves(guard.addr).await;
}

#[tokio::test]
async fn endless_empty_continuations_are_cut_at_max_fragments() {
    let (guard, backend) = guarded().await;
    let mut io = raw_ws(guard.addr, false, ORIGIN).await;
    let mut flood = frame(false, 1, b"", key());
    for _ in 1..100_000 {
        flood.extend_from_slice(&frame(false, 0, b"", key()));
    }
    // The proxy may stop reading at frame 129; the write may then fail.
    let _ = within("write flood", io.write_all(&flood)).await;
    assert_eq!(read_close(&mut io).await.0, Some(1009));
    let frames = backend_frames_until_close(&backend).await;
    let data = frames
        .iter()
        .filter(|(h, _)| !h.opcode.is_control())
        .count();
    assert_eq!(data, 128, "the 128 allowed fragments, not the 129th");
    let (h, p) = frames.last().unwrap();
    assert_eq!((h.opcode, close_code(p)), (OpCode::Close, Some(1001)));
    still_serves(guard.addr).await;
}

#[tokio::test]
async fn a_control_frame_in_every_fragment_is_relayed_in_order() {
    let (guard, backend) = guarded().await;
    let mut io = raw_ws(guard.addr, false, ORIGIN).await;
    let parts = 20;
    let mut bytes = Vec::new();
    for i in 0..parts {
        let opcode = if i == 0 { 1 } else { 0 };
        bytes.extend_from_slice(&frame(
            i == parts - 1,
            opcode,
            format!("p{i};").as_bytes(),
            key(),
        ));
        bytes.extend_from_slice(&frame(true, 9, format!("ping{i}").as_bytes(), key()));
    }
    within("write", io.write_all(&bytes)).await.unwrap();
    let back = read_frames(&mut io, 2 * parts).await;
    assert_eq!(back.len(), 2 * parts);
    let text: Vec<u8> = back
        .iter()
        .filter(|(h, _)| !h.opcode.is_control())
        .flat_map(|(_, p)| p.clone())
        .collect();
    let want: String = (0..parts).map(|i| format!("p{i};")).collect();
    assert_eq!(String::from_utf8(text).unwrap(), want);
    let seen = backend.seen.frames();
    assert_eq!(seen.len(), 2 * parts);
    for (i, (h, _)) in seen.iter().enumerate() {
        let want = match (i % 2, i) {
            (1, _) => OpCode::Ping,
            (_, 0) => OpCode::Text,
            _ => OpCode::Continue,
        };
        assert_eq!(h.opcode, want, "frame {i}");
    }
    still_serves(guard.addr).await;
}

#[tokio::test]
async fn data_after_a_close_frame_never_reaches_the_backend() {
    let (guard, backend) = guarded().await;
    let mut io = raw_ws(guard.addr, false, ORIGIN).await;
    let bytes = [
        frame(true, 8, &[0x03, 0xe8, b'b', b'y', b'e'], key()),
        frame(true, 1, b"smuggled after close", key()),
    ]
    .concat();
    within("write", io.write_all(&bytes)).await.unwrap();
    assert_eq!(read_close(&mut io).await.0, Some(1000));
    expect_eof(&mut io).await;
    let frames = backend_frames_until_close(&backend).await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(close_code(&frames[0].1), Some(1000));
    still_serves(guard.addr).await;
}

#[tokio::test]
async fn a_frame_dribbled_one_byte_per_100ms_is_accepted() {
    let (guard, backend) = guarded().await;
    let mut io = raw_ws(guard.addr, false, ORIGIN).await;
    let f = frame(true, 1, b"slow", key());
    for b in &f {
        within("write a byte", io.write_all(std::slice::from_ref(b)))
            .await
            .unwrap();
        // Pacing the attack, not synchronising with the proxy.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back = read_frames(&mut io, 1).await;
    assert_eq!(back[0].1, b"slow");
    assert_eq!(backend.seen.payloads(), [b"slow".to_vec()]);
    still_serves(guard.addr).await;
}

// === memory and floods, measured on the binary ===

/// Config body: `/chat` to a recording echo backend, `/evil` to `evil`.
fn two_routes(echo: std::net::SocketAddr, evil: std::net::SocketAddr, extra: &str) -> String {
    format!(
        "[origin]\nallow = [\"{ORIGIN}\"]\n{extra}\n[[route]]\npath = \"/chat\"\nbackends = [\"{echo}\"]\n\n[[route]]\npath = \"/evil\"\nbackends = [\"{evil}\"]\n"
    )
}

/// Upgrades a raw plain connection to `path`.
async fn upgrade_path(addr: std::net::SocketAddr, path: &str) -> Box<dyn Io> {
    upgrade_raw(
        addr,
        false,
        &upgrade_request(path, &format!("Origin: {ORIGIN}\r\n")),
    )
    .await
}

/// A backend that reads and discards everything, counting the bytes.
async fn sink_backend(total: Arc<AtomicU64>) -> Backend {
    start_upgraded_backend(move |mut s: TcpStream, _| {
        let total = total.clone();
        async move {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                total.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_is_relayed_and_memory_stays_flat() {
    let echo = start_backend(Answer::Echo { protocol: None }).await;
    // The control quota would close this flood with 1008 (tests/limits.rs);
    // here it is off, to see that relaying it costs no memory.
    let no_quota = "[rate]\ncontrol_per_second = \"off\"\n";
    let guard = start_bin_guard(&two_routes(echo.addr, echo.addr, no_quota)).await;
    let mut io = upgrade_path(guard.addr, "/chat").await;
    let before = guard.rss();
    let n = 10_000;
    let mut flood = Vec::new();
    for i in 0..n {
        flood.extend_from_slice(&frame(true, 9, &(i as u32).to_be_bytes(), key()));
    }
    let (mut rd, mut wr) = tokio::io::split(io);
    let writer = tokio::spawn(async move {
        within("write pings", wr.write_all(&flood)).await.unwrap();
        wr
    });
    // The echo backend answers each ping with a ping of the same payload.
    let back = read_frames(&mut rd, n).await;
    assert_eq!(back.len(), n);
    assert!(back
        .iter()
        .all(|(h, p)| h.opcode == OpCode::Ping && p.len() == 4));
    io = Box::new(rd.unsplit(writer.await.unwrap()));
    assert!(
        wait_until(|| echo.seen.frames().len() == n).await,
        "backend saw {} pings",
        echo.seen.frames().len()
    );
    // Same connection still relays data, and other clients are served.
    within("write", io.write_all(&frame(true, 1, b"after", key())))
        .await
        .unwrap();
    assert_eq!(read_frames(&mut io, 1).await[0].1, b"after");
    still_serves(guard.addr).await;
    let grew = guard.rss().saturating_sub(before);
    assert!(grew < 4 * MIB, "RSS grew by {grew} bytes over 10k pings");
}

/// 2,000 connections each holding a half-sent 1 MiB message: seven whole
/// 64 KiB fragments forwarded plus an eighth 64 KiB fragment short of its
/// last KiB, so every connection's client→backend buffer holds a partial
/// frame. The proxy must hold its bounded buffers per connection, not the
/// message: bound = baseline + N × (64 KiB client→backend buffer holding the
/// partial frame, the most `max_frame_size` allows + 1 KiB idle
/// backend→client buffer + 24 KiB for the task, sockets and allocator
/// slack) = N × 89 KiB, about 174 MiB over the baseline for N = 2,000 (the
/// messages themselves would be ~1 GiB). Measured: ~70 KiB per connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_half_sent_messages_hold_only_fixed_buffers() {
    const N: u64 = 2_000;
    const PER_CONN: u64 = 64 * KIB + KIB + 24 * KIB;
    let received = Arc::new(AtomicU64::new(0));
    let sink = sink_backend(received.clone()).await;
    let echo = start_backend(Answer::Echo { protocol: None }).await;
    // All from one IP: the per-IP limits would answer 429 long before 2,000.
    let one_ip = "[limits]\nconnections_per_ip = \"off\"\nhandshakes_per_ip = \"off\"\n";
    let guard = start_bin_guard(&two_routes(echo.addr, sink.addr, one_ip)).await;
    let baseline = guard.rss();

    // One message prefix, shared by every connection (keys differ per frame).
    let payload = vec![0u8; 64 * 1024];
    let mut half = Vec::new();
    for i in 0..8u8 {
        let k = Some([i + 1, 0x5a, 0xa5, i + 7]);
        half.extend_from_slice(&frame(false, if i == 0 { 2 } else { 0 }, &payload, k));
    }
    half.truncate(half.len() - 1024);
    let forwarded_per_conn = 7 * (14 + 64 * KIB);
    let half = Arc::new(half);

    let conns: Vec<Box<dyn Io>> = futures_util::stream::iter(0..N)
        .map(|_| {
            let (addr, half) = (guard.addr, half.clone());
            async move {
                let mut io = upgrade_path(addr, "/evil").await;
                within("write half a message", io.write_all(&half))
                    .await
                    .unwrap();
                io
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert_eq!(conns.len() as u64, N);
    let want = N * forwarded_per_conn;
    let got = || received.load(Ordering::Relaxed);
    assert!(
        wait_until(|| got() == want).await,
        "backend got {} of {want} bytes",
        got()
    );
    let rss = guard.rss();
    let bound = baseline + N * PER_CONN;
    eprintln!(
        "RSS with {N} half-sent messages: {} MiB (baseline {} MiB, bound {} MiB)",
        rss / MIB,
        baseline / MIB,
        bound / MIB
    );
    assert!(rss < bound, "RSS {rss} over the bound {bound}");
    still_serves(guard.addr).await;
    drop(conns);
}

/// A backend that answers 101 and then sends one unmasked binary frame
/// declaring `len` bytes, followed by `len` zero bytes (1 MiB per write).
async fn huge_frame_backend(len: u64) -> Backend {
    start_upgraded_backend(move |mut s: TcpStream, _| async move {
        let mut head = vec![0x82, 127];
        head.extend_from_slice(&len.to_be_bytes());
        if s.write_all(&head).await.is_err() {
            return;
        }
        let chunk = vec![0u8; MIB as usize];
        let mut left = len;
        while left > 0 {
            let n = left.min(MIB) as usize;
            if s.write_all(&chunk[..n]).await.is_err() {
                return;
            }
            left -= n as u64;
        }
        // Stay until the proxy closes.
        let mut buf = [0u8; 1024];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_80_mib_backend_frame_over_the_backend_cap_is_1011() {
    let evil = huge_frame_backend(80 * MIB).await;
    let echo = start_backend(Answer::Echo { protocol: None }).await;
    let caps = "\n[backend_frames]\nmax_frame_size = \"1 MiB\"\n";
    let guard = start_bin_guard(&two_routes(echo.addr, evil.addr, caps)).await;
    let before = guard.rss();
    let mut io = upgrade_path(guard.addr, "/evil").await;
    let (code, reason) = read_close(&mut io).await;
    assert_eq!(
        (code, reason.as_str()),
        (Some(1011), "backend protocol error")
    );
    let grew = guard.rss().saturating_sub(before);
    assert!(grew < 4 * MIB, "RSS grew by {grew} bytes");
    still_serves(guard.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_80_mib_backend_frame_without_a_cap_streams_through_fixed_buffers() {
    let len = 80 * MIB;
    let evil = huge_frame_backend(len).await;
    let echo = start_backend(Answer::Echo { protocol: None }).await;
    let guard = start_bin_guard(&two_routes(echo.addr, evil.addr, "")).await;
    let before = guard.rss();
    let mut io = upgrade_path(guard.addr, "/evil").await;
    let mut got = 0u64;
    let mut peak = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    while got < len + 10 {
        let n = within("read the big frame", io.read(&mut buf))
            .await
            .unwrap();
        assert!(n > 0, "closed after {got} bytes");
        if got == 0 {
            assert_eq!(&buf[..2], [0x82, 127], "header relayed as sent");
        }
        got += n as u64;
        if got % (8 * MIB) < n as u64 {
            peak = peak.max(guard.rss());
        }
    }
    assert_eq!(got, len + 10);
    let grew = peak.max(guard.rss()).saturating_sub(before);
    assert!(grew < 8 * MIB, "RSS grew by {grew} bytes relaying 80 MiB");
    still_serves(guard.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_stops_reading_blocks_the_client_not_memory() {
    let stalled = start_upgraded_backend(|s: TcpStream, _| async move {
        // Hold the socket open and never read it.
        let _keep = s;
        std::future::pending::<()>().await;
    })
    .await;
    let echo = start_backend(Answer::Echo { protocol: None }).await;
    let guard = start_bin_guard(&two_routes(echo.addr, stalled.addr, "")).await;
    let mut io = upgrade_path(guard.addr, "/evil").await;
    let before = guard.rss();
    let payload = vec![0u8; 64 * 1024];
    let frames = [
        frame(true, 2, &payload, Some([1, 2, 3, 4])),
        frame(true, 2, &payload, Some([5, 6, 7, 8])),
    ];
    let total = 50 * MIB;
    let written = Arc::new(AtomicU64::new(0));
    let w = written.clone();
    let send = async move {
        let mut i = 0;
        while w.load(Ordering::Relaxed) < total {
            io.write_all(&frames[i % 2]).await?;
            w.fetch_add(frames[i % 2].len() as u64, Ordering::Relaxed);
            i += 1;
        }
        Ok::<_, std::io::Error>(io)
    };
    // Blocked by TCP back-pressure: 50 MiB cannot be written in 3 s.
    let blocked = timeout(Duration::from_secs(3), send).await.is_err();
    let sent = written.load(Ordering::Relaxed);
    assert!(blocked, "all 50 MiB were accepted although nobody reads");
    assert!(sent < total);
    let grew = guard.rss().saturating_sub(before);
    eprintln!(
        "blocked after {} MiB; proxy RSS grew by {} KiB",
        sent / MIB,
        grew / KIB
    );
    assert!(grew < 4 * MIB, "RSS grew by {grew} bytes");
    still_serves(guard.addr).await;
}

// === backend handshake and frames ===

#[tokio::test]
async fn broken_backends_get_502_or_1011_to_the_client() {
    let echo = start_backend(Answer::Echo { protocol: None }).await;
    let wrong_accept = start_backend(Answer::Raw(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
    ))
    .await;
    let ok_200 = start_backend(Answer::Raw(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ))
    .await;
    let masked = start_backend(Answer::Then(frame(
        true,
        1,
        b"masked by a server",
        Some([1, 2, 3, 4]),
    )))
    .await;
    for (what, evil, status) in [
        ("wrong accept key", &wrong_accept, 502),
        ("200", &ok_200, 502),
    ] {
        let guard = start_guard(false, &two_routes(echo.addr, evil.addr, "")).await;
        let req = upgrade_request("/evil", &format!("Origin: {ORIGIN}\r\n"));
        let answer = raw_request(guard.addr, false, &req).await;
        assert_eq!(status_of(&answer), status, "{what}: {answer}");
        assert!(
            !answer.ends_with("\r\n\r\nok"),
            "{what}: backend body leaked: {answer}"
        );
        still_serves(guard.addr).await;
    }
    let guard = start_guard(false, &two_routes(echo.addr, masked.addr, "")).await;
    let mut io = upgrade_path(guard.addr, "/evil").await;
    let (code, reason) = read_close(&mut io).await;
    assert_eq!(
        (code, reason.as_str()),
        (Some(1011), "backend protocol error")
    );
    still_serves(guard.addr).await;
}
