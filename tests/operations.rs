//! Operating wsguard: /metrics after a scripted session, /healthz, draining
//! on shutdown (in-process and with the built binary and SIGTERM), and
//! reloading on SIGHUP.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

async fn start_admin(state: Arc<wsguard::state::State>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(wsguard::admin::serve(
        listener,
        state.metrics.clone(),
        state.drain_signal(),
    ));
    addr
}

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    raw_request(
        addr,
        false,
        format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

#[tokio::test]
async fn metrics_count_a_scripted_session_exactly() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let guard = start_guard(false, &chat_route(backend.addr)).await;
    let admin = start_admin(guard.state.clone()).await;

    // 1: a good session: two messages, a normal close.
    let mut io = raw_ws(guard.addr, false, "https://chat.example.com").await;
    io.write_all(&frame(true, 1, b"one", key())).await.unwrap();
    io.write_all(&frame(true, 2, b"two", key())).await.unwrap();
    io.write_all(&frame(true, 8, &1000u16.to_be_bytes(), key()))
        .await
        .unwrap();
    assert_eq!(read_close(&mut io).await.0, Some(1000));
    // 2: a foreign origin.
    let answer = raw_request(
        guard.addr,
        false,
        &upgrade_request("/chat", "Origin: https://evil.example.net\r\n"),
    )
    .await;
    assert_eq!(status_of(&answer), 403);
    // 3: an unmasked frame.
    let mut io = raw_ws(guard.addr, false, "https://chat.example.com").await;
    io.write_all(&frame(true, 1, b"naked", None)).await.unwrap();
    assert_eq!(read_close(&mut io).await.0, Some(1002));

    let deadline = tokio::time::Instant::now() + STEP;
    let text = loop {
        let text = get(admin, "/metrics").await;
        if sample(
            &text,
            "wsguard_connections_closed_total{code=\"1002\",by=\"client_violation\"}",
        ) == Some(1.0)
            && sample(&text, "wsguard_connections_active") == Some(0.0)
        {
            break text;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let expect = [
        ("wsguard_connections_accepted_total", 3.0),
        ("wsguard_connections_active", 0.0),
        (
            "wsguard_connections_closed_total{code=\"1000\",by=\"client\"}",
            1.0,
        ),
        (
            "wsguard_connections_closed_total{code=\"1002\",by=\"client_violation\"}",
            1.0,
        ),
        (
            "wsguard_handshakes_refused_total{reason=\"origin_not_allowed\",route=\"/chat\"}",
            1.0,
        ),
        (
            "wsguard_violations_total{rule=\"unmasked_frame\",side=\"client\"}",
            1.0,
        ),
        // Two data frames and the close went up; their echoes came down.
        ("wsguard_frames_total{direction=\"up\"}", 3.0),
        ("wsguard_frames_total{direction=\"down\"}", 3.0),
        // 3+3 payload bytes + 2 close bytes, each with a 6-byte header.
        ("wsguard_bytes_total{direction=\"up\"}", 26.0),
        ("wsguard_handshake_duration_seconds_count", 2.0),
        ("wsguard_handshakes_untracked_total", 0.0),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&text, series), Some(value), "{series}\n{text}");
    }
}

#[tokio::test]
async fn drain_sends_1001_both_ways_and_healthz_turns_503() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let mut guard = start_guard(false, &chat_route(backend.addr)).await;
    let admin = start_admin(guard.state.clone()).await;
    assert!(get(admin, "/healthz").await.starts_with("HTTP/1.1 200"));
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(raw_ws(guard.addr, false, "https://chat.example.com").await);
    }
    guard.shutdown();
    for io in &mut clients {
        assert_eq!(read_close(io).await.0, Some(1001));
    }
    // The backend got 1001 on each connection too.
    let deadline = tokio::time::Instant::now() + STEP;
    while backend.seen.frames().len() < 3 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (header, payload) in backend.seen.frames() {
        assert_eq!(header.opcode, wsguard::frame::OpCode::Close);
        assert_eq!(&payload[..2], &1001u16.to_be_bytes());
    }
    assert!(get(admin, "/healthz").await.starts_with("HTTP/1.1 503"));
    drop(clients);
    guard.stopped().await;
}

/// Each TLS failure is counted under its reason, and each refusal among
/// them logged once; a client that leaves is counted, not logged at info.
#[tokio::test]
async fn tls_failures_are_counted_by_reason() {
    let logs = Logs::capture();
    let backend = tungstenite_echo().await;
    let guard = start_guard(true, &chat_route(backend.addr)).await;
    let reason = |r: &str| format!("wsguard_tls_handshake_failures_total{{reason=\"{r}\"}}");

    // Not TLS at all: plain HTTP, answered 400.
    let answer = raw_request(guard.addr, false, b"GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(status_of(&answer), 400, "{answer}");
    // A client that offers only h2: no ALPN protocol in common, and it is told so.
    let mut h2_only = tls_connector().config().as_ref().clone();
    h2_only.alpn_protocols = vec![b"h2".to_vec()];
    let refused = tls_with(guard.addr, h2_only).await.expect_err("refused");
    assert_eq!(
        rustls_error(&refused),
        Some(&rustls::Error::AlertReceived(
            rustls::AlertDescription::NoApplicationProtocol
        )),
        "{refused}"
    );
    // A ClientHello with only a cipher suite rustls does not implement.
    let mut tcp = tokio::net::TcpStream::connect(guard.addr).await.unwrap();
    tcp.write_all(&client_hello_with_suite([0x00, 0x2f]))
        .await
        .unwrap();
    let mut tcp: Box<dyn Io> = Box::new(tcp);
    expect_eof(&mut tcp).await;
    // A client that does not trust our certificate says so with an alert.
    let no_roots = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    assert!(tls_with(guard.addr, no_roots).await.is_err());
    // One byte of a ClientHello, then silence until the handshake timeout.
    let mut slow = tokio::net::TcpStream::connect(guard.addr).await.unwrap();
    slow.write_all(&[0x16]).await.unwrap();
    let mut slow: Box<dyn Io> = Box::new(slow);
    expect_eof(&mut slow).await;
    // Connects and leaves.
    drop(tokio::net::TcpStream::connect(guard.addr).await.unwrap());

    assert!(
        wait_until(|| guard.metric(&reason("peer_closed")) == 1.0).await,
        "{}",
        guard.metrics()
    );
    for rule in [
        "not_tls",
        "no_alpn",
        "incompatible",
        "certificate_rejected",
        "timeout",
    ] {
        assert_eq!(
            guard.metric(&reason(rule)),
            1.0,
            "{rule}\n{}",
            guard.metrics()
        );
        assert_eq!(logs.count("TLS handshake failed", rule), 1, "{rule}");
    }
    assert_eq!(logs.count("TLS handshake failed", "peer_closed"), 0);
    chat_round_trip(guard.addr, true, "after the failures").await;
}

/// rustls' error inside a TLS client's I/O error.
fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// A TLS 1.2 ClientHello offering the one cipher suite `suite`, without extensions.
fn client_hello_with_suite(suite: [u8; 2]) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[7; 32]);
    body.push(0); // no session id
    body.extend_from_slice(&[0, 2]);
    body.extend_from_slice(&suite);
    body.extend_from_slice(&[1, 0]); // null compression only
    let mut handshake = vec![1, 0, 0, body.len() as u8];
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01, 0, handshake.len() as u8];
    record.extend(handshake);
    record
}

/// Plain HTTP to the TLS port gets nginx's 400 and a close, not TLS records read as
/// HTTP/0.9; counted and logged once as `not_tls`, behind a trusted PROXY header too.
#[tokio::test]
async fn plain_http_on_the_tls_port_is_answered_400() {
    let logs = Logs::capture();
    let backend = tungstenite_echo().await;
    let cfg = "[limits]\ntrusted_proxies = [\"127.0.0.2\"]\nproxy_protocol = true\n";
    let guard = start_guard(true, &(chat_route(backend.addr) + cfg)).await;
    let body = "The plain HTTP request was sent to HTTPS port\n";
    let expected = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = raw_request(guard.addr, false, request).await;
    assert_eq!(answer, expected);

    let mut proxied = b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 443\r\n".to_vec();
    proxied.extend_from_slice(b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    let mut tcp = tcp_from("127.0.0.2".parse().unwrap(), guard.addr).await;
    within("write", tcp.write_all(&proxied)).await.unwrap();
    let mut got = Vec::new();
    within(
        "read",
        tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut got),
    )
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&got), expected);

    let not_tls = "wsguard_tls_handshake_failures_total{reason=\"not_tls\"}";
    assert_eq!(guard.metric(not_tls), 2.0, "{}", guard.metrics());
    assert_eq!(logs.count("TLS handshake failed", "not_tls"), 2);
    assert_eq!(backend.seen.connections(), 0);
    chat_round_trip(guard.addr, true, "TLS as usual").await;
}

/// A TLS handshake to wsguard with the client settings `config`.
async fn tls_with(
    addr: std::net::SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    within("tls handshake", connector.connect(name, tcp)).await
}

#[tokio::test]
async fn the_hard_cap_drop_is_counted_and_logged_once() {
    let logs = Logs::capture();
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let guard = start_guard(
        false,
        &(chat_route(backend.addr) + "[limits]\nmax_connections = 1\n"),
    )
    .await;
    // Twice max_connections held open (idle: no request yet).
    let _held = [
        connect(guard.addr, false).await,
        connect(guard.addr, false).await,
    ];
    assert!(wait_until(|| guard.metric("wsguard_connections_active") == 2.0).await);
    let answer = raw_request(guard.addr, false, &upgrade_request("/chat", "")).await;
    assert_eq!(answer, "");
    assert_dropped(&guard, &logs, "hard_cap", 1);
}

/// hyper answers some requests itself (a head over its buffer, a malformed
/// request) and cuts a slow head: each is wsguard's refusal all the same.
#[tokio::test]
async fn refusals_hyper_answers_are_counted_and_logged_once() {
    let logs = Logs::capture();
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let guard = start_guard(false, &chat_route(backend.addr)).await;
    let oversized = upgrade_request("/chat", &format!("X-Big: {}\r\n", "a".repeat(20 * 1024)));
    for _ in 0..60 {
        let answer = raw_request(guard.addr, false, &oversized).await;
        assert_eq!(status_of(&answer), 431, "{answer}");
    }
    let folded = upgrade_request("/chat", "X-Folded: a\r\n b\r\n");
    assert_eq!(
        status_of(&raw_request(guard.addr, false, &folded).await),
        400
    );
    let mut slow = connect(guard.addr, false).await;
    slow.write_all(b"GET /chat HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    expect_eof(&mut slow).await;

    let refused =
        |r: &str| format!("wsguard_handshakes_refused_total{{reason=\"{r}\",route=\"none\"}}");
    assert_eq!(
        guard.metric(&refused("head_too_large")),
        60.0,
        "{}",
        guard.metrics()
    );
    assert_eq!(guard.metric(&refused("malformed_request")), 1.0);
    let timeout = "wsguard_connections_dropped_total{reason=\"header_timeout\"}";
    assert!(
        wait_until(|| guard.metric(timeout) == 1.0).await,
        "{}",
        guard.metrics()
    );
    assert_eq!(logs.count("handshake refused", "head_too_large"), 60);
    assert_eq!(logs.count("handshake refused", "malformed_request"), 1);
    assert_dropped(&guard, &logs, "header_timeout", 1);
    assert_eq!(backend.seen.connections(), 0);
}

fn process_config(backend: std::net::SocketAddr, origin: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_timeout = \"5s\"\nclose_timeout = \"1s\"\n\n[origin]\nallow = [\"{origin}\"]\n\n[[route]]\npath = \"/chat\"\nbackends = [\"{backend}\"]\n"
    )
}

#[tokio::test]
async fn sigterm_closes_live_connections_with_1001_and_exits_0() {
    let backend = tungstenite_echo().await;
    let mut proc = Process::start(&process_config(backend.addr, "https://chat.example.com"));
    let addr = proc.addr().await;
    let mut a = raw_ws(addr, false, "https://chat.example.com").await;
    let mut b = raw_ws(addr, false, "https://chat.example.com").await;
    proc.signal("TERM");
    assert_eq!(read_close(&mut a).await.0, Some(1001));
    assert_eq!(read_close(&mut b).await.0, Some(1001));
    drop((a, b));
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = proc.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(6), "did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
    proc.wait_log("drained").await;
}

#[tokio::test]
async fn sighup_applies_a_valid_config_to_new_connections_only() {
    let backend = tungstenite_echo().await;
    let proc = Process::start(&process_config(backend.addr, "https://old.example.com"));
    let addr = proc.addr().await;
    let (mut old_ws, _) = ws_client(addr, false, "/chat", Some("https://old.example.com"), None)
        .await
        .expect("old origin allowed");

    std::fs::write(
        &proc.config,
        process_config(backend.addr, "https://new.example.com"),
    )
    .unwrap();
    proc.signal("HUP");
    proc.wait_log("configuration reloaded").await;

    let refused = raw_request(
        addr,
        false,
        &upgrade_request("/chat", "Origin: https://old.example.com\r\n"),
    )
    .await;
    assert_eq!(status_of(&refused), 403, "{refused}");
    let (mut new_ws, _) = ws_client(addr, false, "/chat", Some("https://new.example.com"), None)
        .await
        .expect("new origin allowed");
    round_trip(&mut new_ws, "new config").await;
    // The connection from before the reload goes on untouched.
    round_trip(&mut old_ws, "still here").await;

    // An invalid config is refused and the running one stays.
    std::fs::write(&proc.config, "[frames]\nmax_frame_sise = 1\n").unwrap();
    proc.signal("HUP");
    let line = proc.wait_log("reload refused").await;
    assert!(
        line["problems"]
            .as_str()
            .unwrap()
            .contains("max_frame_sise"),
        "{line}"
    );
    let (mut again, _) = ws_client(addr, false, "/chat", Some("https://new.example.com"), None)
        .await
        .expect("still the new config");
    round_trip(&mut again, "after a bad reload").await;
}
