//! wsguard's own TLS stream (src/tls, on rustls' unbuffered API) end to end:
//! real rustls clients ↔ wsguard ↔ real backends, on loopback sockets with the
//! development certificates. Large and pipelined traffic, both ways of ending
//! (close_notify, and TCP cut inside a record), session resumption, key
//! updates, and bytes that are not TLS at all.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use rustls::HandshakeKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use wsguard::frame::OpCode;

const ORIGIN: &str = "https://chat.example.com";

/// Frames and messages of up to 2 MiB, for the 1 MiB messages.
const BIG_MESSAGES: &str = "\n[frames]\nmax_frame_size = \"2 MiB\"\nmax_message_size = \"2 MiB\"\n";

/// No per-connection message rate, for the pipelined messages.
const NO_RATE: &str = "\n[rate]\nmessages_per_second = \"off\"\nburst = \"off\"\n";

/// `n` bytes that do not repeat with any short period (xorshift), so a
/// dropped, doubled or misplaced record shows.
fn pattern(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// `got` equals `sent`; a failure names the first difference rather than
/// printing a megabyte.
fn assert_same(got: &[u8], sent: &[u8]) {
    if let Some(at) = got.iter().zip(sent).position(|(a, b)| a != b) {
        panic!("byte {at} of {} differs", sent.len());
    }
    assert_eq!(got.len(), sent.len(), "length");
}

/// Waits until no connection is open in wsguard: each one's accounting ran
/// to its end.
async fn all_closed(guard: &Guard) {
    assert!(
        wait_until(|| guard.metric("wsguard_connections_active") == 0.0).await,
        "a connection is still open: {}",
        guard.metrics()
    );
}

#[tokio::test]
async fn one_mebibyte_binary_message_each_way_arrives_intact() {
    let backend = tungstenite_echo().await;
    let body = format!("{}{BIG_MESSAGES}", chat_route(backend.addr));
    let guard = start_guard(true, &body).await;
    let (mut ws, _) = ws_client(guard.addr, true, "/chat", Some(ORIGIN), None)
        .await
        .expect("upgrade accepted");
    for seed in [1, 2] {
        let sent = pattern(1 << 20, seed);
        within("send 1 MiB", ws.send(Message::binary(sent.clone())))
            .await
            .unwrap();
        let got = within("1 MiB echo", ws.next()).await.unwrap().unwrap();
        assert!(got.is_binary(), "{:?}", got.len());
        assert_same(&got.into_data(), &sent);
    }
}

#[tokio::test]
async fn two_thousand_pipelined_messages_are_echoed_in_order() {
    const N: usize = 2000;
    let backend = tungstenite_echo().await;
    let body = format!("{}{NO_RATE}", chat_route(backend.addr));
    let guard = start_guard(true, &body).await;
    let (ws, _) = ws_client(guard.addr, true, "/chat", Some(ORIGIN), None)
        .await
        .expect("upgrade accepted");
    let (mut tx, mut rx) = ws.split();
    // All of them go out before any echo is read.
    let sender = tokio::spawn(async move {
        for i in 0..N {
            tx.feed(Message::text(format!("message {i}")))
                .await
                .unwrap();
        }
        tx.flush().await.unwrap();
    });
    for i in 0..N {
        let got = within("echo", rx.next()).await.unwrap().unwrap();
        assert_eq!(got, Message::text(format!("message {i}")));
    }
    within("sender", sender).await.unwrap();
    assert_eq!(backend.seen.connections(), 1);
}

#[tokio::test]
async fn close_notify_after_a_close_frame_ends_cleanly() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let guard = start_guard(true, &chat_route(backend.addr)).await;
    let mut io = raw_ws(guard.addr, true, ORIGIN).await;
    let code = 1000u16.to_be_bytes();
    within("close frame", io.write_all(&frame(true, 8, &code, key())))
        .await
        .unwrap();
    // close_notify, then the TCP write side's end.
    within("close_notify", io.shutdown()).await.unwrap();
    assert_eq!(read_close(&mut io).await.0, Some(1000));
    // tokio-rustls reads an end without the proxy's close_notify as an error.
    let mut rest = Vec::new();
    let end = within("EOF", io.read_to_end(&mut rest)).await;
    assert!(end.is_ok(), "{end:?}");
    assert!(rest.is_empty(), "{rest:?}");
    let closes = backend
        .seen
        .frames()
        .into_iter()
        .filter(|(h, p)| h.opcode == OpCode::Close && p[..] == code)
        .count();
    assert_eq!(closes, 1, "the backend saw the client's close");
    assert_eq!(
        guard.metric("wsguard_connections_closed_total{code=\"1000\",by=\"client\"}"),
        1.0,
        "{}",
        guard.metrics()
    );
    all_closed(&guard).await;
}

#[tokio::test]
async fn tcp_cut_inside_a_record_ends_only_that_connection() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let guard = start_guard(true, &chat_route(backend.addr)).await;
    let tls = tls_connect(&tls_connector(), guard.addr).await;
    let mut tls = upgrade_over(
        tls,
        &upgrade_request("/chat", &format!("Origin: {ORIGIN}\r\n")),
    )
    .await;
    within(
        "whole frame",
        tls.write_all(&frame(true, 2, b"whole", key())),
    )
    .await
    .unwrap();
    assert!(wait_until(|| backend.seen.payloads() == [b"whole".to_vec()]).await);

    // The next frame's record, encrypted by the client, and half of it sent
    // on the bare socket before the socket is dropped.
    let (tcp, client) = tls.get_mut();
    std::io::Write::write_all(&mut client.writer(), &frame(true, 2, &[7; 1000], key())).unwrap();
    let mut record = Vec::new();
    client.write_tls(&mut record).unwrap();
    assert!(record.len() > 1000, "{} bytes", record.len());
    within("half a record", tcp.write_all(&record[..record.len() / 2]))
        .await
        .unwrap();
    drop(tls);

    all_closed(&guard).await;
    // The backend got no data from the cut record, and a close for the client.
    let seen = backend.seen.frames();
    let data = seen.iter().filter(|(h, _)| h.opcode == OpCode::Binary);
    assert_eq!(data.count(), 1, "no partial data");
    let (last, payload) = seen.last().unwrap();
    assert_eq!(last.opcode, OpCode::Close);
    assert_eq!(payload[..2], 1001u16.to_be_bytes());
    chat_round_trip(guard.addr, true, "after a cut record").await;
}

#[tokio::test]
async fn second_connection_from_one_client_config_resumes() {
    let backend = tungstenite_echo().await;
    let guard = start_guard(true, &chat_route(backend.addr)).await;
    let connector = tls_connector();
    for (kind, text) in [
        (HandshakeKind::Full, "first connection"),
        (HandshakeKind::Resumed, "second connection"),
    ] {
        let tls = tls_connect(&connector, guard.addr).await;
        assert_eq!(tls.get_ref().1.handshake_kind(), Some(kind), "{text}");
        // The round trip also reads the session tickets, sent after the handshake.
        let (mut ws, _) = ws_over(tls, guard.addr, true, "/chat", Some(ORIGIN), None)
            .await
            .expect("upgrade accepted");
        round_trip(&mut ws, text).await;
    }
}

#[tokio::test]
async fn messages_echo_both_ways_after_client_key_updates() {
    let backend = tungstenite_echo().await;
    let body = format!("{}{BIG_MESSAGES}", chat_route(backend.addr));
    let guard = start_guard(true, &body).await;
    let tls = tls_connect(&tls_connector(), guard.addr).await;
    let (mut ws, _) = ws_over(tls, guard.addr, true, "/chat", Some(ORIGIN), None)
        .await
        .expect("upgrade accepted");
    round_trip(&mut ws, "before the key update").await;
    for i in 0..3 {
        // A KeyUpdate asking the proxy to update its keys too; it goes out
        // before the next record.
        ws.get_mut().get_mut().1.refresh_traffic_keys().unwrap();
        round_trip(&mut ws, &format!("after key update {i}")).await;
        // Several records each way under the new keys.
        let sent = pattern(100 << 10, i + 1);
        within("send", ws.send(Message::binary(sent.clone())))
            .await
            .unwrap();
        let got = within("echo", ws.next()).await.unwrap().unwrap();
        assert!(got.is_binary(), "{got:?}");
        assert_same(&got.into_data(), &sent);
    }
}

#[tokio::test]
async fn garbage_instead_of_a_client_hello_is_closed() {
    let backend = tungstenite_echo().await;
    let guard = start_guard(true, &chat_route(backend.addr)).await;
    let mut bogus_hello = vec![0x16, 0x03, 0x01, 0x00, 0x40];
    bogus_hello.extend_from_slice(&pattern(0x40, 7));
    let mut oversized = vec![0x16, 0x03, 0x01, 0xff, 0xff];
    oversized.extend_from_slice(&pattern(100, 8));
    let garbage = [
        ("bytes that are not a TLS record", pattern(200, 9)),
        ("a handshake record of garbage", bogus_hello),
        ("a record longer than TLS allows", oversized),
    ];
    for (what, bytes) in &garbage {
        let mut tcp = within("tcp connect", TcpStream::connect(guard.addr))
            .await
            .unwrap();
        within(what, tcp.write_all(bytes)).await.unwrap();
        // Closed (EOF, or a reset for bytes left unread), after at most an alert.
        let mut answer = Vec::new();
        let _ = within(what, tcp.read_to_end(&mut answer)).await;
        assert!(
            answer.is_empty() || answer[0] == 0x15,
            "{what}: not an alert: {answer:x?}"
        );
    }
    assert_eq!(
        guard.metric("wsguard_tls_handshake_failures_total{reason=\"not_tls\"}"),
        garbage.len() as f64,
        "{}",
        guard.metrics()
    );
    all_closed(&guard).await;
    chat_round_trip(guard.addr, true, "after garbage").await;
}
