//! The upgrade request end to end: real TLS client ↔ wsguard ↔ real backend.
//! Each refusal asserts the exact status and that the backend saw nothing.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn allowed_origin_round_trips_over_wss() {
    let backend = tungstenite_echo().await;
    let guard = start_guard(true, &chat_route(backend.addr)).await;
    let (mut ws, resp) = ws_client(
        guard.addr,
        true,
        "/chat",
        Some("https://chat.example.com"),
        None,
    )
    .await
    .expect("upgrade accepted");
    assert_eq!(resp.status(), 101);
    round_trip(&mut ws, "hello through wsguard").await;
    within("send binary", ws.send(Message::binary(vec![1u8, 2, 3])))
        .await
        .unwrap();
    let got = within("binary echo", ws.next()).await.unwrap().unwrap();
    assert_eq!(got, Message::binary(vec![1u8, 2, 3]));
    // A wildcard entry admits a subdomain at any depth.
    let (mut ws2, _) = ws_client(
        guard.addr,
        true,
        "/chat",
        Some("https://a.b.example.org"),
        None,
    )
    .await
    .expect("wildcard origin accepted");
    round_trip(&mut ws2, "from a subdomain").await;
    assert_eq!(backend.seen.connections(), 2);
}

/// Each malformed or refused request: (name, request bytes, status, body part).
fn refusals() -> Vec<(&'static str, Vec<u8>, u16, &'static str)> {
    let ok = "Origin: https://chat.example.com\r\n";
    vec![
        (
            "plain GET to a route",
            b"GET /chat HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            426,
            "only accepts WebSocket",
        ),
        (
            "plain GET elsewhere",
            b"GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            404,
            "no route",
        ),
        (
            "POST upgrade",
            String::from_utf8(upgrade_request("/chat", ok))
                .unwrap()
                .replacen("GET", "POST", 1)
                .into_bytes(),
            400,
            "must use GET",
        ),
        (
            "HTTP/1.0 upgrade",
            String::from_utf8(upgrade_request("/chat", ok))
                .unwrap()
                .replacen("HTTP/1.1", "HTTP/1.0", 1)
                .into_bytes(),
            400,
            "HTTP/1.1",
        ),
        (
            "no upgrade token in Connection",
            String::from_utf8(upgrade_request("/chat", ok))
                .unwrap()
                .replacen("Connection: Upgrade", "Connection: keep-alive", 1)
                .into_bytes(),
            400,
            "upgrade token",
        ),
        (
            "version 12",
            String::from_utf8(upgrade_request("/chat", ok))
                .unwrap()
                .replacen("Version: 13", "Version: 12", 1)
                .into_bytes(),
            426,
            "must be 13",
        ),
        (
            "key missing",
            format!("GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n{ok}\r\n").into_bytes(),
            400,
            "Sec-WebSocket-Key",
        ),
        (
            "key not base64",
            String::from_utf8(upgrade_request("/chat", ok))
                .unwrap()
                .replacen("dGhlIHNhbXBsZSBub25jZQ==", "not base64 at all!!!!!!!", 1)
                .into_bytes(),
            400,
            "Sec-WebSocket-Key",
        ),
        (
            "key of 15 bytes",
            String::from_utf8(upgrade_request("/chat", ok))
                .unwrap()
                .replacen("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25j", 1)
                .into_bytes(),
            400,
            "Sec-WebSocket-Key",
        ),
        (
            "two keys",
            upgrade_request("/chat", &format!("{ok}Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n")),
            400,
            "Sec-WebSocket-Key",
        ),
        (
            "Host missing",
            String::from_utf8(upgrade_request("/chat", ok))
                .unwrap()
                .replacen("Host: localhost\r\n", "", 1)
                .into_bytes(),
            400,
            "",
        ),
        (
            "body on the upgrade",
            upgrade_request("/chat", &format!("{ok}Content-Length: 5\r\n")),
            400,
            "body",
        ),
        (
            "unknown path",
            upgrade_request("/other", ok),
            404,
            "no route",
        ),
        (
            "foreign origin",
            upgrade_request("/chat", "Origin: https://evil.example.net\r\n"),
            403,
            "origin not allowed",
        ),
        (
            "look-alike origin",
            upgrade_request("/chat", "Origin: https://example.org.evil.net\r\n"),
            403,
            "origin not allowed",
        ),
        (
            "origin missing",
            upgrade_request("/chat", ""),
            403,
            "origin",
        ),
        (
            "origin null",
            upgrade_request("/chat", "Origin: null\r\n"),
            403,
            "null",
        ),
        (
            "two origins",
            upgrade_request("/chat", &format!("{ok}{ok}")),
            403,
            "more than one",
        ),
        (
            "head over 16 KiB",
            upgrade_request("/chat", &format!("{ok}X-Pad: {}\r\n", "a".repeat(17 * 1024))),
            431,
            "",
        ),
        (
            "NUL inside a header value",
            upgrade_request("/chat", &format!("{ok}X-Nul: a\0b\r\n")),
            400,
            "",
        ),
        (
            "150 headers",
            upgrade_request("/chat", &format!("{ok}{}", "X-Many: 1\r\n".repeat(150))),
            431,
            "",
        ),
        (
            "header continuation line",
            upgrade_request("/chat", &format!("{ok}X-Folded: a\r\n b\r\n")),
            400,
            "",
        ),
    ]
}

#[tokio::test]
async fn every_refusal_has_its_status_and_never_reaches_the_backend() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let guard = start_guard(true, &chat_route(backend.addr)).await;
    for (name, request, status, body) in refusals() {
        let answer = raw_request(guard.addr, true, &request).await;
        assert_eq!(status_of(&answer), status, "{name}: {answer}");
        assert!(
            answer.contains(body),
            "{name}: body lacks {body:?}: {answer}"
        );
        if status == 426 {
            assert!(
                answer
                    .to_ascii_lowercase()
                    .contains("sec-websocket-version: 13"),
                "{name}: {answer}"
            );
        }
    }
    assert_eq!(backend.seen.connections(), 0, "the backend was contacted");
    // And the proxy still serves a good client afterwards.
    chat_round_trip(guard.addr, true, "after the refusals").await;
}

#[tokio::test]
async fn report_mode_lets_a_foreign_origin_through() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let body = chat_route(backend.addr).replace("[origin]\n", "[origin]\nmode = \"report\"\n");
    let guard = start_guard(false, &body).await;
    let mut io = raw_ws(guard.addr, false, "https://evil.example.net").await;
    io.write_all(&frame(true, 1, b"hi", key())).await.unwrap();
    io.write_all(&frame(true, 8, &1000u16.to_be_bytes(), key()))
        .await
        .unwrap();
    assert_eq!(read_close(&mut io).await.0, Some(1000));
    assert_eq!(backend.seen.connections(), 1);
}

#[tokio::test]
async fn backend_down_is_502() {
    // Bind then drop: nothing listens on this port any more.
    let port = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let logs = Logs::capture();
    let guard = start_guard(false, &chat_route(port)).await;
    let answer = raw_request(
        guard.addr,
        false,
        &upgrade_request("/chat", "Origin: https://chat.example.com\r\n"),
    )
    .await;
    assert_eq!(status_of(&answer), 502, "{answer}");
    // One refusal, one line: the failed attempt is part of it.
    let lines: Vec<_> = logs
        .lines()
        .into_iter()
        .filter(|l| l["message"].as_str().is_some_and(|m| m.contains("backend")))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["rule"], "backend_unavailable", "{lines:#?}");
    assert_eq!(lines[0]["backend"], port.to_string(), "{lines:#?}");
}

#[tokio::test]
async fn second_backend_is_tried_when_the_first_is_down() {
    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let logs = Logs::capture();
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let body = format!(
        "[origin]\nallow = [\"https://chat.example.com\"]\n[[route]]\npath = \"/chat\"\nbackends = [\"{dead}\", \"{}\"]\n",
        backend.addr
    );
    let guard = start_guard(false, &body).await;
    for _ in 0..2 {
        let (mut ws, _) = ws_client(
            guard.addr,
            false,
            "/chat",
            Some("https://chat.example.com"),
            None,
        )
        .await
        .expect("the live backend answers");
        round_trip(&mut ws, "still up").await;
    }
    assert_eq!(backend.seen.connections(), 2);
    // Round robin tried the dead one first once: one warning, naming it.
    let down: Vec<_> = logs
        .lines()
        .into_iter()
        .filter(|l| l["level"] == "WARN")
        .collect();
    assert_eq!(down.len(), 1, "{down:#?}");
    assert_eq!(down[0]["backend"], dead.to_string(), "{down:#?}");
}

#[tokio::test]
async fn broken_backend_answers_are_502_or_passed_on() {
    let cases = [
        (
            "wrong accept key",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
            502,
        ),
        ("200 instead of 101", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 502),
        ("403 passed on", "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 403),
        ("not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", 502),
    ];
    for (name, raw, status) in cases {
        let backend = start_backend(Answer::Raw(raw)).await;
        let guard = start_guard(false, &chat_route(backend.addr)).await;
        let answer = raw_request(
            guard.addr,
            false,
            &upgrade_request("/chat", "Origin: https://chat.example.com\r\n"),
        )
        .await;
        assert_eq!(status_of(&answer), status, "{name}: {answer}");
    }
}

#[tokio::test]
async fn subprotocols_are_filtered_and_checked() {
    let backend = start_backend(Answer::Echo {
        protocol: Some("chat.v2"),
    })
    .await;
    let body = chat_route(backend.addr) + "subprotocols = [\"chat.v2\"]\n";
    let guard = start_guard(true, &body).await;
    let (_ws, resp) = ws_client(
        guard.addr,
        true,
        "/chat",
        Some("https://chat.example.com"),
        Some("chat.v1, chat.v2"),
    )
    .await
    .expect("upgrade accepted");
    assert_eq!(resp.headers()["sec-websocket-protocol"], "chat.v2");
    let request = backend.seen.requests.lock().unwrap()[0].to_ascii_lowercase();
    assert!(
        request.contains("sec-websocket-protocol: chat.v2\r\n"),
        "{request}"
    );

    // A backend choosing a protocol the client never offered is a bad gateway.
    let rogue = start_backend(Answer::Echo {
        protocol: Some("admin"),
    })
    .await;
    let guard = start_guard(false, &chat_route(rogue.addr)).await;
    let answer = raw_request(
        guard.addr,
        false,
        &upgrade_request(
            "/chat",
            "Origin: https://chat.example.com\r\nSec-WebSocket-Protocol: chat.v1\r\n",
        ),
    )
    .await;
    assert_eq!(status_of(&answer), 502, "{answer}");
}

/// An offer the route's list filters to nothing still upgrades, without a subprotocol,
/// and says so in one line naming what was offered.
#[tokio::test]
async fn an_offer_filtered_to_nothing_is_logged_once() {
    let logs = Logs::capture();
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let body = chat_route(backend.addr) + "subprotocols = [\"chat.v2\"]\n";
    let guard = start_guard(false, &body).await;
    let offer = |protocols: &str| {
        upgrade_request(
            "/chat",
            &format!("Origin: https://chat.example.com\r\nSec-WebSocket-Protocol: {protocols}\r\n"),
        )
    };
    let (_declined, head) =
        upgrade_with_head(connect(guard.addr, false).await, &offer("chat.v1, mqtt")).await;
    assert_eq!(header_of(&head, "sec-websocket-protocol"), None, "{head}");
    let request = backend.seen.requests.lock().unwrap()[0].to_ascii_lowercase();
    assert!(!request.contains("sec-websocket-protocol"), "{request}");
    // An offer with a listed protocol in it is no news.
    let _allowed = upgrade_raw(guard.addr, false, &offer("chat.v1, chat.v2")).await;

    let message = "subprotocol offer filtered to nothing";
    let lines: Vec<_> = logs
        .lines()
        .into_iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message))
        })
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["offered"], "chat.v1, mqtt", "{}", lines[0]);
    assert_eq!(lines[0]["route"], "/chat", "{}", lines[0]);
}

#[tokio::test]
async fn forwarded_request_is_clean() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let guard = start_guard(true, &chat_route(backend.addr)).await;
    let _io = upgrade_raw(
        guard.addr,
        true,
        &upgrade_request(
            "/chat?room=1",
            "Origin: https://chat.example.com\r\nX-Forwarded-For: 6.6.6.6\r\nSec-WebSocket-Extensions: x-webkit-deflate-frame, permessage-deflate; bogus\r\nCookie: session=abc\r\n",
        ),
    )
    .await;
    let request = backend.seen.requests.lock().unwrap()[0].to_ascii_lowercase();
    assert!(
        request.starts_with("get /chat?room=1 http/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.contains("x-forwarded-for: 127.0.0.1\r\n"),
        "{request}"
    );
    assert!(!request.contains("6.6.6.6"), "{request}");
    assert!(
        request.contains("x-forwarded-proto: https\r\n"),
        "{request}"
    );
    assert!(
        request.contains("forwarded: for=127.0.0.1;proto=https"),
        "{request}"
    );
    assert!(request.contains("cookie: session=abc\r\n"), "{request}");
    // Other extensions, and a malformed permessage-deflate offer, are declined.
    assert!(!request.contains("sec-websocket-extensions"), "{request}");
}

#[tokio::test]
async fn slow_head_is_cut_at_the_handshake_timeout() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let guard = start_guard(false, &chat_route(backend.addr)).await;
    let mut io = connect(guard.addr, false).await;
    io.write_all(b"GET /chat HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    expect_eof(&mut io).await;
    // handshake_timeout is 2 s in the test config.
    assert!(started.elapsed() >= std::time::Duration::from_millis(1500));
    assert_eq!(backend.seen.connections(), 0);
}

#[tokio::test]
async fn garbage_instead_of_tls_costs_nothing() {
    let backend = tungstenite_echo().await;
    let guard = start_guard(true, &chat_route(backend.addr)).await;
    let answer = raw_request(guard.addr, false, b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(!answer.contains("HTTP/1.1 2"), "{answer}");
    chat_round_trip(guard.addr, true, "after garbage").await;
}

#[cfg(feature = "demo")]
#[tokio::test]
async fn demo_room_broadcasts_between_two_clients() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let room = tokio::spawn(wsguard::demo::run_chat_backend(listener));
    let body = format!(
        "[origin]\nallow = [\"http://localhost:8080\"]\n[[route]]\npath = \"/chat\"\nbackends = [\"{backend}\"]\n"
    );
    let guard = start_guard(true, &body).await;
    let origin = Some("http://localhost:8080");
    let (mut alice, _) = ws_client(guard.addr, true, "/chat", origin, None)
        .await
        .unwrap();
    let (mut bob, _) = ws_client(guard.addr, true, "/chat", origin, None)
        .await
        .unwrap();
    // Both are in the room once a message from each has come back.
    round_trip(&mut alice, r#"{"name":"alice","text":"ping"}"#).await;
    let _ = within("bob sees alice", bob.next()).await;
    let msg = r#"{"name":"bob","text":"hello alice"}"#;
    within("bob sends", bob.send(Message::text(msg)))
        .await
        .unwrap();
    let got = within("alice receives", alice.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::text(msg));
    room.abort();
}
