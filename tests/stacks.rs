//! What real chat stacks send, through the shipped defaults: a 1 MB message, a
//! reconnecting client's 500-message flush, 100 tabs behind one address. Each
//! default still refuses what it exists to refuse. A rate-limit close relays
//! the answer to every frame the backend got (counted at both ends, with a
//! python `websockets` backend too) and names its bucket; in delay mode a
//! heartbeat goes ahead of a throttled burst, never into a fragmented message.

mod common;

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use wsguard::frame::{FrameHeader, OpCode};

const ORIGIN: &str = "https://chat.example.com";

/// Reads `n` data frames from the proxy; their payloads.
async fn read_data(io: &mut Box<dyn Io>, n: usize) -> Vec<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut data = Vec::new();
    while data.len() < n {
        while let Ok(Some((header, len))) = FrameHeader::parse(&buf) {
            let total = len + header.payload_len as usize;
            if buf.len() < total {
                break;
            }
            assert_ne!(header.opcode, OpCode::Close, "closed after {}", data.len());
            data.push(buf[len..total].to_vec());
            buf.drain(..total);
        }
        if data.len() >= n {
            break;
        }
        let got = within("read data", io.read(&mut chunk)).await.unwrap();
        assert!(got > 0, "EOF after {} of {n} frames", data.len());
        buf.extend_from_slice(&chunk[..got]);
    }
    data
}

fn numbered(i: u32) -> Vec<u8> {
    format!("42[\"msg\",{i}]").into_bytes()
}

fn flush_of(n: u32) -> Vec<u8> {
    (0..n)
        .flat_map(|i| frame(true, 1, &numbered(i), key()))
        .collect()
}

// === the defaults let the stacks through ===

#[tokio::test]
async fn a_1_mb_message_passes_the_defaults() {
    let backend = tungstenite_echo().await;
    let guard = start_guard(false, &chat_route(backend.addr)).await;
    let (mut ws, _) = ws_client(guard.addr, false, "/chat", Some(ORIGIN), None)
        .await
        .unwrap();
    // Socket.IO's own cap (maxHttpBufferSize 1e6), in one frame as every client sends it.
    let text = "x".repeat(1_000_000);
    ws.send(Message::text(text.clone())).await.unwrap();
    let echo = within("echo", ws.next()).await.unwrap().unwrap();
    assert_eq!(echo.into_text().unwrap().as_str(), text);
}

#[tokio::test]
async fn a_frame_over_the_1_mib_default_is_refused_with_1009_before_the_backend_sees_it() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let guard = start_guard(false, &chat_route(backend.addr)).await;
    let mut io = raw_ws(guard.addr, false, ORIGIN).await;
    // The header alone says 1 MiB + 1: refused before any of it is read.
    let mut head = frame(true, 2, &[], key());
    head[1] = 0x80 | 127;
    head.splice(2..2, ((1u64 << 20) + 1).to_be_bytes());
    io.write_all(&head).await.unwrap();
    let (code, _) = read_close(&mut io).await;
    assert_eq!(code, Some(1009));
    let seen = backend.seen.frames();
    assert!(
        seen.iter().all(|(h, _)| h.opcode == OpCode::Close),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_500_message_flush_passes_the_defaults_and_a_flood_is_closed() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let guard = start_guard(false, &chat_route(backend.addr)).await;
    let mut io = raw_ws(guard.addr, false, ORIGIN).await;
    io.write_all(&flush_of(500)).await.unwrap();
    let echoes = read_data(&mut io, 500).await;
    assert_eq!(echoes, (0..500).map(numbered).collect::<Vec<_>>());

    // A flood on a fresh connection: the burst (1000) runs dry.
    let mut io = raw_ws(guard.addr, false, ORIGIN).await;
    io.write_all(&flush_of(3000)).await.unwrap();
    let (echoes, code, reason) = read_to_close(&mut io).await;
    let named = "rate limit: messages_per_second 100, burst 1000";
    assert_eq!((code, reason.as_str()), (Some(1008), named));
    assert!(
        echoes.len() >= 1000 && echoes.len() < 3000,
        "{}",
        echoes.len()
    );
    assert_eq!(
        echoes,
        (0..echoes.len() as u32).map(numbered).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_hundred_tabs_behind_one_address_open_at_once_and_a_storm_is_refused() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let guard = start_guard(false, &chat_route(backend.addr)).await;
    let addr = guard.addr;
    let tabs: Vec<_> = (0..100)
        .map(|_| tokio::spawn(async move { raw_ws(addr, false, ORIGIN).await }))
        .collect();
    let mut open = Vec::new();
    for tab in tabs {
        open.push(tab.await.expect("every tab upgrades"));
    }
    // 150 more at once: past the burst of 200, handshakes_per_ip (600 a minute) refuses.
    let request = upgrade_request("/chat", &format!("Origin: {ORIGIN}\r\n"));
    let storm: Vec<_> = (0..150)
        .map(|_| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut io = connect(addr, false).await;
                io.write_all(&request).await.unwrap();
                (status_of(&read_head(&mut io, "read status").await), io)
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for answer in storm {
        let (status, io) = answer.await.unwrap();
        statuses.push(status);
        open.push(io);
    }
    // 250 in all against a burst of 200, refilled at 10 a second while this runs.
    let refused = statuses.iter().filter(|&&s| s == 429).count();
    assert!(
        refused >= 25 && statuses.iter().all(|&s| s == 101 || s == 429),
        "{statuses:?}"
    );
    drop(open);
}

// === a rate-limit close loses nothing and names its bucket ===

#[tokio::test]
async fn each_bucket_is_named_in_the_close_reason_and_the_log_line() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let cases: [(&str, Vec<u8>, &str, &str); 3] = [
        (
            "messages_per_second = 2\nburst = 2",
            flush_of(5),
            "messages_per_second",
            "messages_per_second 2, burst 2",
        ),
        (
            "bytes_per_second = \"1 KiB\"\nburst_bytes = \"2 KiB\"",
            [1, 2]
                .iter()
                .flat_map(|_| frame(true, 2, &[0; 1500], key()))
                .collect(),
            "bytes_per_second",
            "bytes_per_second 1 KiB, burst 2 KiB",
        ),
        (
            "control_per_second = 1\ncontrol_burst = 1",
            [1, 2, 3]
                .iter()
                .flat_map(|_| frame(true, 9, b"hi", key()))
                .collect(),
            "control_per_second",
            "control_per_second 1, burst 1",
        ),
    ];
    for (rate, burst, rule, reason) in cases {
        // The built binary, so the line is read as an operator reads it (stderr, JSON).
        let cfg = format!("{}[rate]\n{rate}\n", chat_route(backend.addr));
        let proxy = start_bin_guard(&cfg).await;
        let mut io = raw_ws(proxy.addr, false, ORIGIN).await;
        io.write_all(&burst).await.unwrap();
        let (_, code, said) = read_to_close(&mut io).await;
        assert_eq!((code, said), (Some(1008), format!("rate limit: {reason}")));
        // Gone rather than answering: the connection's line is logged at once.
        drop(io);
        let line = proxy
            .process
            .wait_log("connection closed: rate limit")
            .await;
        assert_eq!(
            (&line["rule"], &line["reason"]),
            (&rule.into(), &reason.into())
        );
        assert_eq!(line["by"], "client_rate_limit");
    }
}

/// A python `websockets` echo backend as a child process: the venv that
/// `scripts/test.sh` makes, or `WSGUARD_PYTHON`.
struct PythonBackend {
    child: Child,
    _stdin: ChildStdin,
    lines: mpsc::Receiver<serde_json::Value>,
    addr: SocketAddr,
}

impl PythonBackend {
    fn start() -> PythonBackend {
        let root = env!("CARGO_MANIFEST_DIR");
        let python = std::env::var("WSGUARD_PYTHON")
            .unwrap_or_else(|_| format!("{root}/target/test-venv/bin/python"));
        let mut child = Command::new(&python)
            .arg(format!("{root}/tests/stacks/echo_backend.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{python}: {e}; scripts/test.sh makes the venv with python websockets")
            });
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel::<serde_json::Value>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(serde_json::from_str(&line).expect("a JSON line"));
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("the python backend starts");
        let port = first["port"].as_u64().expect("its port") as u16;
        PythonBackend {
            child,
            _stdin: stdin,
            lines,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// How many messages the connection that ended next had received.
    fn received(&self) -> u64 {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("the backend reports the connection");
        line["received"].as_u64().expect("a count")
    }
}

impl Drop for PythonBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_rate_limit_close_relays_the_answer_to_every_frame_the_backend_got() {
    // The raw recording echo counts frames; python websockets drops the replies it has
    // not sent once it reads a close frame, so the proxy must wait for them first.
    let raw = start_backend(Answer::Echo { protocol: None }).await;
    let python = PythonBackend::start();
    let rate = "[rate]\nmessages_per_second = 50\nburst = 200\n";
    for (name, addr) in [("raw", raw.addr), ("python", python.addr)] {
        let guard = start_guard(false, &(chat_route(addr) + rate)).await;
        for flush in [300, 500] {
            let mut io = raw_ws(guard.addr, false, ORIGIN).await;
            io.write_all(&flush_of(flush)).await.unwrap();
            let (echoes, code, _) = read_to_close(&mut io).await;
            assert_eq!(code, Some(1008), "{name}");
            let got = match name {
                "raw" => {
                    let data = |f: &&(FrameHeader, Vec<u8>)| f.0.opcode == OpCode::Text;
                    let seen = raw.seen.frames();
                    let n = seen.iter().filter(data).count() as u64;
                    raw.seen.frames.lock().unwrap().clear();
                    n
                }
                _ => python.received(),
            };
            eprintln!(
                "{name}: a {flush}-message flush: the backend got {got}, the client {} echoes",
                echoes.len()
            );
            assert!(got >= 200, "{name}: the burst passed: {got}");
            assert_eq!(echoes.len() as u64, got, "{name}: an echo for every frame");
            assert_eq!(echoes, (0..got as u32).map(numbered).collect::<Vec<_>>());
        }
    }
}

// === heartbeats are never starved ===

#[tokio::test]
async fn in_delay_mode_a_heartbeat_goes_ahead_of_a_throttled_burst() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let rate = "[rate]\nmessages_per_second = 10\nburst = 10\non_limit = \"delay\"\n";
    let guard = start_guard(false, &(chat_route(backend.addr) + rate)).await;
    let mut io = raw_ws(guard.addr, false, ORIGIN).await;
    let started = Instant::now();
    let mut burst = flush_of(40);
    // Engine.IO's pong, behind 40 messages that take 3 s at 10/s.
    burst.extend(frame(true, 1, b"3", key()));
    io.write_all(&burst).await.unwrap();
    let position = loop {
        let seen = backend.seen.payloads();
        if let Some(i) = seen.iter().position(|p| p == b"3") {
            break i;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{seen:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(
        position <= 15 && started.elapsed() < Duration::from_secs(1),
        "the heartbeat waited: frame {position} after {:?}",
        started.elapsed()
    );
    // The burst itself still arrives whole, in order, at the rate.
    let all = backend.seen.settle(41).await;
    let rest: Vec<_> = all.into_iter().filter(|p| p != b"3").collect();
    assert_eq!(rest, (0..40).map(numbered).collect::<Vec<_>>());
    assert!(started.elapsed() >= Duration::from_millis(2500));
}

#[tokio::test]
async fn in_delay_mode_a_header_cut_short_behind_a_held_frame_waits_for_its_rest() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let rate = "[rate]\nmessages_per_second = 1\nburst = 1\non_limit = \"delay\"\n";
    let proxy = start_bin_guard(&(chat_route(backend.addr) + rate)).await;
    let mut io = raw_ws(proxy.addr, false, ORIGIN).await;
    let started = proxy.cpu_seconds();
    let mut frames = flush_of(2);
    let third = frame(true, 1, &numbered(2), key());
    // The second frame is held; one byte of the third's header is all there is behind it.
    frames.push(third[0]);
    io.write_all(&frames).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    io.write_all(&third[1..]).await.unwrap();
    assert_eq!(
        backend.seen.settle(3).await,
        (0..3).map(numbered).collect::<Vec<_>>()
    );
    // Waiting for the rest is waiting, not decoding the same byte again and again.
    let spent = proxy.cpu_seconds() - started;
    assert!(spent < 0.5, "{spent} s of CPU");
}

#[tokio::test]
async fn a_heartbeat_never_goes_into_a_fragmented_message() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let rate = "[rate]\nmessages_per_second = 1\nburst = 2\non_limit = \"delay\"\n";
    let guard = start_guard(false, &(chat_route(backend.addr) + rate)).await;
    let mut io = raw_ws(guard.addr, false, ORIGIN).await;
    let mut frames = frame(false, 1, b"a", key());
    frames.extend(frame(false, 0, b"b", key()));
    // Held for the quota: the heartbeat behind it must wait for it.
    frames.extend(frame(true, 0, b"c", key()));
    frames.extend(frame(true, 1, b"3", key()));
    io.write_all(&frames).await.unwrap();
    backend.seen.settle(4).await;
    let seen: Vec<_> = backend
        .seen
        .frames()
        .into_iter()
        .map(|(h, p)| (h.opcode, h.fin, p))
        .collect();
    assert_eq!(
        seen,
        vec![
            (OpCode::Text, false, b"a".to_vec()),
            (OpCode::Continue, false, b"b".to_vec()),
            (OpCode::Continue, true, b"c".to_vec()),
            (OpCode::Text, true, b"3".to_vec()),
        ]
    );
}

// === wsguard check ===

#[test]
fn check_warns_of_caps_below_what_the_stacks_send_and_still_exits_0() {
    let dir = TempDir::new("check-warnings");
    let route = "[[route]]\npath = \"/chat\"\nbackends = [\"127.0.0.1:9\"]\n";
    let low = format!(
        "[frames]\nmax_frame_size = \"64 KiB\"\n[rate]\nburst = 200\n[limits]\nhandshake_burst = 60\n{route}"
    );
    for (body, warned) in [
        (route.to_owned(), vec![]),
        (
            low,
            vec![
                "frames.max_frame_size",
                "rate.burst",
                "limits.handshake_burst",
            ],
        ),
    ] {
        let config = dir.0.join("wsguard.toml");
        std::fs::write(&config, body).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_wsguard"))
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let keys: Vec<&str> = stderr
            .lines()
            .filter_map(|l| l.split_once(": warning: "))
            .map(|(_, w)| w.split(" = ").next().unwrap())
            .collect();
        assert_eq!(keys, warned, "{stderr}");
    }
}
