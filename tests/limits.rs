//! Limits end to end: per-connection frame quotas (close and delay), per-IP
//! and global connection limits, the client IP from PROXY headers and
//! X-Forwarded-For (trusted peers only), slowloris, idle timeout and the
//! proxy's ping/pong liveness check.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn with(backend: std::net::SocketAddr, extra: &str) -> String {
    chat_route(backend) + extra
}

/// Two upgraded clients, to hold open.
async fn two_clients(addr: std::net::SocketAddr) -> [Ws; 2] {
    let origin = Some("https://chat.example.com");
    let mut held = Vec::new();
    for _ in 0..2 {
        let (ws, _) = ws_client(addr, false, "/chat", origin, None).await.unwrap();
        held.push(ws);
    }
    held.try_into().ok().expect("two clients")
}

/// Two upgraded clients, held, and the raw answer to a third upgrade from the same IP.
async fn third_after_two(addr: std::net::SocketAddr) -> ([Ws; 2], String) {
    let held = two_clients(addr).await;
    let third = upgrade_request("/chat", "Origin: https://chat.example.com\r\n");
    (held, raw_request(addr, false, &third).await)
}

#[tokio::test]
async fn a_burst_over_the_quota_is_closed_with_1008_and_only_the_quota_passes() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let cfg = "[rate]\nmessages_per_second = 5\nburst = 5\non_limit = \"close\"\n";
    let guard = start_guard(false, &with(backend.addr, cfg)).await;
    let mut io = raw_ws(guard.addr, false, "https://chat.example.com").await;
    let burst: Vec<u8> = (0..10u8)
        .flat_map(|i| frame(true, 2, &[i], key()))
        .collect();
    io.write_all(&burst).await.unwrap();
    let (echoes, code, reason) = read_to_close(&mut io).await;
    let named = "rate limit: messages_per_second 5, burst 5";
    assert_eq!((code, reason.as_str()), (Some(1008), named));
    // The backend's answers to the five that passed come before the close.
    assert_eq!(echoes, (0..5u8).map(|i| vec![i]).collect::<Vec<_>>());
    let got = backend.seen.settle(6).await;
    let data: Vec<Vec<u8>> = got.iter().take(5).cloned().collect();
    assert_eq!(data, (0..5u8).map(|i| vec![i]).collect::<Vec<_>>());
    assert_eq!(got.len(), 6, "five frames and the proxy's 1001: {got:?}");
    assert_eq!(got[5], 1001u16.to_be_bytes());
}

#[tokio::test]
async fn delay_mode_slows_the_client_and_loses_nothing() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let cfg = "[rate]\nmessages_per_second = 10\nburst = 10\non_limit = \"delay\"\n";
    let guard = start_guard(false, &with(backend.addr, cfg)).await;
    let mut io = raw_ws(guard.addr, false, "https://chat.example.com").await;
    let started = Instant::now();
    let burst: Vec<u8> = (0..25u8)
        .flat_map(|i| frame(true, 2, &[i], key()))
        .collect();
    io.write_all(&burst).await.unwrap();
    let got = backend.seen.settle(25).await;
    // 10 pass at once, 15 more at 10/s: at least about 1.5 s.
    assert!(
        started.elapsed() >= Duration::from_millis(1300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(got, (0..25u8).map(|i| vec![i]).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_ping_flood_hits_the_control_quota() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let cfg = "[rate]\ncontrol_per_second = 2\ncontrol_burst = 2\n";
    let guard = start_guard(false, &with(backend.addr, cfg)).await;
    let mut io = raw_ws(guard.addr, false, "https://chat.example.com").await;
    let pings: Vec<u8> = (0..50).flat_map(|_| frame(true, 9, b"p", key())).collect();
    io.write_all(&pings).await.unwrap();
    assert_eq!(read_close(&mut io).await.0, Some(1008));
}

#[tokio::test]
async fn the_handshake_quota_and_the_global_cap_answer_429_and_503() {
    let backend = tungstenite_echo().await;
    // (limits, status of the third upgrade, header it must carry)
    let cases = [
        (
            "handshakes_per_ip = 60\nhandshake_burst = 2",
            429,
            Some("retry-after: 1\r\n"),
        ),
        ("max_connections = 2", 503, None),
    ];
    for (limits, status, header) in cases {
        let guard = start_guard(false, &with(backend.addr, &format!("[limits]\n{limits}\n"))).await;
        let (_held, answer) = third_after_two(guard.addr).await;
        assert_eq!(status_of(&answer), status, "{limits}: {answer}");
        if let Some(header) = header {
            assert!(
                answer.to_ascii_lowercase().contains(header),
                "{limits}: {answer}"
            );
        }
    }
    // Two backend connections per guard: the refused ones never got there.
    assert_eq!(backend.seen.connections(), 4);
}

#[tokio::test]
async fn over_connections_per_ip_a_connection_is_closed_at_accept_without_an_answer() {
    let logs = Logs::capture();
    let backend = tungstenite_echo().await;
    let guard = start_guard(
        false,
        &with(backend.addr, "[limits]\nconnections_per_ip = 2\n"),
    )
    .await;
    let (_held, answer) = third_after_two(guard.addr).await;
    assert_eq!(answer, "", "closed before any HTTP answer");
    assert_eq!(backend.seen.connections(), 2);
    assert_dropped(&guard, &logs, "ip_connections", 1);
}

/// One IP holding TLS handshakes it never finishes is cut at
/// `connections_per_ip` before TLS, while another IP is still served.
#[tokio::test]
async fn unfinished_tls_handshakes_from_one_ip_are_cut_at_its_limit() {
    let logs = Logs::capture();
    let backend = tungstenite_echo().await;
    let guard = start_guard_with(
        true,
        "handshake_timeout = \"30s\"\n",
        &with(backend.addr, "[limits]\nconnections_per_ip = 3\n"),
    )
    .await;
    let mut reads = futures_util::stream::FuturesUnordered::new();
    for _ in 0..10 {
        let mut s = tokio::net::TcpStream::connect(guard.addr).await.unwrap();
        // One byte of a TLS ClientHello, then nothing more.
        s.write_all(&[0x16]).await.unwrap();
        reads.push(async move {
            let mut buf = [0u8; 16];
            let n = s.read(&mut buf).await;
            (s, n)
        });
    }
    // Seven are closed at once; three stay until the 30 s handshake timeout.
    for _ in 0..7 {
        let (_, n) = within("cut at accept", reads.next()).await.unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
    assert!(
        wait_until(|| guard.metric("wsguard_connections_accepted_total") == 10.0).await,
        "{}",
        guard.metrics()
    );
    assert_dropped(&guard, &logs, "ip_connections", 7);
    assert_eq!(guard.metric("wsguard_connections_active"), 3.0);

    let other = "127.0.0.2".parse().unwrap();
    let io = connect_from(other, guard.addr, true).await;
    let request = upgrade_request("/chat", "Origin: https://chat.example.com\r\n");
    let _served = upgrade_over(io, &request).await;
    assert_eq!(reads.len(), 3, "the held three are still open");
}

#[tokio::test]
async fn tls_handshakes_that_never_upgrade_use_up_the_handshake_quota() {
    let backend = tungstenite_echo().await;
    let limits = "[limits]\nhandshakes_per_ip = 60\nhandshake_burst = 2\n";
    let guard = start_guard(true, &with(backend.addr, limits)).await;
    for _ in 0..2 {
        // A finished TLS handshake, then the client leaves without a request.
        let io = connect(guard.addr, true).await;
        drop(io);
    }
    let answer = raw_request(
        guard.addr,
        true,
        &upgrade_request("/chat", "Origin: https://chat.example.com\r\n"),
    )
    .await;
    assert_eq!(status_of(&answer), 429, "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1\r\n"),
        "{answer}"
    );
    assert_eq!(backend.seen.connections(), 0);
}

/// A reload keeps what each client IP holds: its connections and its
/// handshake bucket; the new quotas apply to them.
#[tokio::test]
async fn a_reload_keeps_per_ip_counts_and_applies_the_new_quotas() {
    let backend = tungstenite_echo().await;
    let third = upgrade_request("/chat", "Origin: https://chat.example.com\r\n");
    let connections = with(backend.addr, "[limits]\nconnections_per_ip = 2\n");
    let guard = start_guard(false, &connections).await;
    let _held = two_clients(guard.addr).await;
    guard.reload("", &connections);
    assert_eq!(raw_request(guard.addr, false, &third).await, "");
    let dropped = "wsguard_connections_dropped_total{reason=\"ip_connections\"}";
    assert_eq!(guard.metric(dropped), 1.0);

    let handshakes = |burst: u32| {
        with(
            backend.addr,
            &format!("[limits]\nhandshakes_per_ip = 60\nhandshake_burst = {burst}\n"),
        )
    };
    let guard = start_guard(false, &handshakes(2)).await;
    for _ in 0..2 {
        chat_round_trip(guard.addr, false, "uses a handshake").await;
    }
    guard.reload("", &handshakes(2));
    let answer = raw_request(guard.addr, false, &third).await;
    assert_eq!(status_of(&answer), 429, "{answer}");
    assert!(answer.contains("too many handshakes"), "{answer}");
    // A larger burst applies to the bucket as it is: exactly one more fits.
    guard.reload("", &handshakes(3));
    chat_round_trip(guard.addr, false, "after the reload").await;
    let answer = raw_request(guard.addr, false, &third).await;
    assert_eq!(status_of(&answer), 429, "{answer}");
}

#[tokio::test]
async fn proxy_protocol_is_believed_from_trusted_peers_only() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let cfg = "[limits]\ntrusted_proxies = [\"127.0.0.1\"]\nproxy_protocol = true\n";
    let guard = start_guard(false, &with(backend.addr, cfg)).await;
    let mut req = b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 443\r\n".to_vec();
    req.extend(upgrade_request(
        "/chat",
        "Origin: https://chat.example.com\r\n",
    ));
    let _io = upgrade_raw(guard.addr, false, &req).await;
    let request = backend.seen.requests.lock().unwrap()[0].to_ascii_lowercase();
    assert!(
        request.contains("x-forwarded-for: 203.0.113.7\r\n"),
        "{request}"
    );
    // Log lines name the client the header named, not the proxy.
    let logs = Logs::capture();
    let mut evil = b"PROXY TCP4 203.0.113.8 10.0.0.1 5555 443\r\n".to_vec();
    evil.extend(upgrade_request("/chat", "Origin: https://evil.example\r\n"));
    let answer = raw_request(guard.addr, false, &evil).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let lines = logs.lines();
    let refused = lines
        .iter()
        .find(|l| l["rule"] == "origin_not_allowed")
        .expect("the refusal is logged");
    assert_eq!(refused["client"], "203.0.113.8", "{refused}");
    assert_eq!(refused["span"]["client"], "203.0.113.8", "{refused}");
    assert_eq!(
        refused["span"]["peer"]
            .as_str()
            .map(|p| p.starts_with("127.0.0.1:")),
        Some(true),
        "{refused}"
    );
    drop(logs);

    // From an untrusted peer the same header is refused before TLS or HTTP:
    // closed without an answer, no backend.
    let logs = Logs::capture();
    let cfg = "[limits]\ntrusted_proxies = [\"10.9.9.9\"]\nproxy_protocol = true\n";
    let untrusted = start_backend(Answer::Echo { protocol: None }).await;
    let guard = start_guard(false, &with(untrusted.addr, cfg)).await;
    let answer = raw_request(guard.addr, false, &req).await;
    assert_eq!(answer, "");
    assert_eq!(untrusted.seen.connections(), 0);
    assert_dropped(&guard, &logs, "proxy_header_untrusted", 1);
    // A client that sends no PROXY header is served as usual.
    let _io = upgrade_raw(
        guard.addr,
        false,
        &upgrade_request("/chat", "Origin: https://chat.example.com\r\n"),
    )
    .await;
}

#[tokio::test]
async fn bad_and_late_proxy_headers_are_dropped_counted_and_logged_once() {
    let logs = Logs::capture();
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let cfg = "[limits]\ntrusted_proxies = [\"127.0.0.1\"]\nproxy_protocol = true\n";
    let guard = start_guard(false, &with(backend.addr, cfg)).await;
    let invalid: [&[u8]; 3] = [
        b"PROXY TCP9 203.0.113.7 10.0.0.1 5555 443\r\n",
        b"GET /chat HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff",
    ];
    for bytes in invalid {
        assert_eq!(raw_request(guard.addr, false, bytes).await, "");
    }
    // Half a header, then silence: cut at the handshake timeout (2 s).
    let mut io = connect(guard.addr, false).await;
    io.write_all(b"PROXY TCP4 203.0.113.7").await.unwrap();
    expect_eof(&mut io).await;
    assert_dropped(&guard, &logs, "proxy_header_invalid", 3);
    assert_dropped(&guard, &logs, "proxy_header_timeout", 1);
    assert_eq!(backend.seen.connections(), 0);
}

#[tokio::test]
async fn forwarded_for_counts_only_from_a_trusted_peer() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let cfg = "[limits]\ntrusted_proxies = [\"127.0.0.1\"]\nconnections_per_ip = 1\n";
    let guard = start_guard(false, &with(backend.addr, cfg)).await;
    let via = |ip: &str| {
        upgrade_request(
            "/chat",
            &format!("Origin: https://chat.example.com\r\nX-Forwarded-For: 6.6.6.6, {ip}\r\n"),
        )
    };
    // Two clients behind the same trusted proxy are two IPs.
    let _a = upgrade_raw(guard.addr, false, &via("198.51.100.1")).await;
    let _b = upgrade_raw(guard.addr, false, &via("198.51.100.2")).await;
    let answer = raw_request(guard.addr, false, &via("198.51.100.1")).await;
    assert_eq!(status_of(&answer), 429, "{answer}");
    let request = backend.seen.requests.lock().unwrap()[0].to_ascii_lowercase();
    assert!(
        request.contains("x-forwarded-for: 198.51.100.1\r\n"),
        "{request}"
    );
    assert!(!request.contains("6.6.6.6"), "{request}");

    // Without trust the header is ignored: the peer is the client.
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let guard = start_guard(false, &chat_route(backend.addr)).await;
    let _c = upgrade_raw(guard.addr, false, &via("198.51.100.1")).await;
    let request = backend.seen.requests.lock().unwrap()[0].to_ascii_lowercase();
    assert!(
        request.contains("x-forwarded-for: 127.0.0.1\r\n"),
        "{request}"
    );
}

/// A client named by X-Forwarded-For takes its connection slot before its handshake is
/// charged, as one named at accept does: a request refused for the slot costs no handshake.
#[tokio::test]
async fn a_forwarded_client_refused_for_its_slot_is_not_charged_a_handshake() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let cfg = "[limits]\ntrusted_proxies = [\"127.0.0.1\"]\nconnections_per_ip = 1\n\
               handshakes_per_ip = 1\nhandshake_burst = 2\n";
    let guard = start_guard(false, &with(backend.addr, cfg)).await;
    let request = upgrade_request(
        "/chat",
        "Origin: https://chat.example.com\r\nX-Forwarded-For: 198.51.100.1\r\n",
    );
    let refused =
        |r: &str| format!("wsguard_handshakes_refused_total{{reason=\"{r}\",route=\"/chat\"}}");

    let held = upgrade_raw(guard.addr, false, &request).await;
    for _ in 0..3 {
        let answer = raw_request(guard.addr, false, &request).await;
        assert_eq!(status_of(&answer), 429, "{answer}");
    }
    assert_eq!(
        guard.metric(&refused("ip_connections")),
        3.0,
        "{}",
        guard.metrics()
    );
    drop(held);
    assert!(
        wait_until(|| guard.metric("wsguard_connections_active") == 0.0).await,
        "{}",
        guard.metrics()
    );
    // The second handshake of the burst is still there.
    let _second = upgrade_raw(guard.addr, false, &request).await;
    assert_eq!(guard.metric(&refused("ip_handshake_rate")), 0.0);
    assert_eq!(backend.seen.connections(), 2);
}

#[tokio::test]
async fn a_thousand_slowloris_connections_do_not_stop_a_chat() {
    let backend = tungstenite_echo().await;
    // Per-IP limits off: this is about a thousand held handshakes.
    let off = "[limits]\nconnections_per_ip = \"off\"\nhandshakes_per_ip = \"off\"\n";
    let guard = start_guard(true, &with(backend.addr, off)).await;
    let mut slow = Vec::new();
    for _ in 0..1000 {
        let mut s = tokio::net::TcpStream::connect(guard.addr).await.unwrap();
        // One byte of a TLS ClientHello, then nothing more.
        s.write_all(&[0x16]).await.unwrap();
        slow.push(s);
    }
    let started = Instant::now();
    let (mut ws, _) = ws_client(
        guard.addr,
        true,
        "/chat",
        Some("https://chat.example.com"),
        None,
    )
    .await
    .expect("a normal client gets through");
    round_trip(&mut ws, "hello under siege").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The handshake timeout (2 s in the test config) closes every one.
    let mut buf = [0u8; 16];
    for s in &mut slow {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("closed at the handshake timeout");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
    assert!(started.elapsed() >= Duration::from_millis(1500));
    let timeouts = "wsguard_tls_handshake_failures_total{reason=\"timeout\"}";
    assert_eq!(guard.metric(timeouts), 1000.0, "{}", guard.metrics());
}

#[tokio::test]
async fn idle_connections_are_closed_with_1001_both_ways() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let body = chat_route(backend.addr);
    let guard = start_guard_with(false, "idle_timeout = \"1s\"\n", &body).await;
    let mut io = raw_ws(guard.addr, false, "https://chat.example.com").await;
    let started = Instant::now();
    let (code, reason) = read_close(&mut io).await;
    assert_eq!((code, reason.as_str()), (Some(1001), "idle timeout"));
    assert!(started.elapsed() >= Duration::from_millis(900));
    let got = backend.seen.settle(1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0][..2], 1001u16.to_be_bytes());
}

#[tokio::test]
async fn proxy_pings_are_answered_by_live_clients_and_close_dead_ones() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let server = "idle_timeout = \"30s\"\nping_interval = \"1s\"\npong_timeout = \"1s\"\n";
    let guard = start_guard_with(false, server, &chat_route(backend.addr)).await;
    let mut io = raw_ws(guard.addr, false, "https://chat.example.com").await;
    // First ping: answer it with its payload, as a browser does.
    let mut head = [0u8; 2];
    within("ping", io.read_exact(&mut head)).await.unwrap();
    assert_eq!(head[0], 0x89);
    let mut token = vec![0u8; usize::from(head[1])];
    io.read_exact(&mut token).await.unwrap();
    io.write_all(&frame(true, 10, &token, key())).await.unwrap();
    // Second ping: stay silent.
    within("second ping", io.read_exact(&mut head))
        .await
        .unwrap();
    assert_eq!(head[0], 0x89);
    let mut token = vec![0u8; usize::from(head[1])];
    io.read_exact(&mut token).await.unwrap();
    let (code, reason) = read_close(&mut io).await;
    assert_eq!((code, reason.as_str()), (Some(1001), "no pong"));
    // The proxy's pong never reached the backend; only its close did.
    let got = backend.seen.settle(1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0][..2], 1001u16.to_be_bytes());
}
