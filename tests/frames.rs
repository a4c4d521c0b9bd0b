//! Frame rules end to end: a raw client sends one good frame and then one
//! offending frame through wsguard; the client must get the exact close code,
//! and the recording backend must have seen the good frame, a close 1001 from
//! the proxy, and nothing of the offending frame.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use wsguard::frame::OpCode;

const LIMITS: &str =
    "[frames]\nmax_frame_size = \"1 KiB\"\nmax_message_size = \"2 KiB\"\nmax_fragments = 4\n";

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// `f` (a frame in its minimal form, 7- or 16-bit length) re-encoded with
/// the next wider length field, which RFC 6455 §5.2 forbids.
fn widen(f: &[u8]) -> Vec<u8> {
    let mask_bit = f[1] & 0x80;
    let (len, rest) = match f[1] & 0x7f {
        126 => (u64::from(u16::from_be_bytes([f[2], f[3]])), &f[4..]),
        n => (u64::from(n), &f[2..]),
    };
    let mut out = vec![f[0]];
    if len < 126 {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.extend_from_slice(rest);
    out
}

/// (rule, frames after the good one, expected close code).
fn cases() -> Vec<(&'static str, Vec<u8>, u16)> {
    let text = |fin, p: &[u8]| frame(fin, 1, p, key());
    let mut big_len = vec![0x82, 0xff];
    big_len.extend_from_slice(&(1u64 << 63).to_be_bytes());
    big_len.extend_from_slice(&[1, 2, 3, 4]);
    let mut rsv1 = text(true, b"compressed?");
    rsv1[0] |= 0x40;
    let mut over_frame = vec![0x82, 0xfe];
    over_frame.extend_from_slice(&2000u16.to_be_bytes());
    over_frame.extend_from_slice(&[9, 8, 7, 6]);
    let same = Some([7, 7, 7, 8]);
    vec![
        ("unmasked frame", frame(true, 1, b"naked", None), 1002),
        (
            "all-zero mask key",
            frame(true, 1, b"zero", Some([0; 4])),
            1008,
        ),
        (
            "same mask key three times",
            [
                frame(true, 2, b"a", same),
                frame(true, 2, b"b", same),
                frame(true, 2, b"c", same),
            ]
            .concat(),
            1008,
        ),
        ("RSV1 without extension", rsv1, 1002),
        ("reserved data opcode", frame(true, 3, b"x", key()), 1002),
        (
            "reserved control opcode",
            frame(true, 11, b"x", key()),
            1002,
        ),
        (
            "ping over 125 bytes",
            frame(true, 9, &[0u8; 126], key()),
            1002,
        ),
        ("fragmented ping", frame(false, 9, b"p", key()), 1002),
        ("continuation first", frame(true, 0, b"orphan", key()), 1002),
        (
            "new message inside a fragmented one",
            [text(false, b"part"), text(true, b"intruder")].concat(),
            1002,
        ),
        ("length with the top bit set", big_len, 1002),
        (
            "16-bit length carrying 5",
            widen(&text(true, b"hello")),
            1002,
        ),
        (
            "64-bit length carrying 200",
            widen(&frame(true, 2, &[7; 200], key())),
            1002,
        ),
        (
            "64-bit length on a close frame",
            widen(&widen(&frame(true, 8, &close_payload(1000, b""), key()))),
            1002,
        ),
        ("frame over max_frame_size", over_frame, 1009),
        (
            "message over max_message_size",
            [
                frame(false, 2, &[0u8; 1000], key()),
                frame(false, 0, &[0u8; 1000], key()),
                frame(true, 0, &[0u8; 1000], key()),
            ]
            .concat(),
            1009,
        ),
        (
            "too many fragments",
            [
                text(false, b"1"),
                frame(false, 0, b"2", key()),
                frame(false, 0, b"3", key()),
                frame(false, 0, b"4", key()),
                frame(true, 0, b"5", key()),
            ]
            .concat(),
            1009,
        ),
        ("invalid UTF-8", text(true, b"ok \xff bad"), 1007),
        (
            "code point cut at the message end",
            [text(false, b"euro \xe2\x82"), frame(true, 0, b"", key())].concat(),
            1007,
        ),
        (
            "close reason not UTF-8",
            frame(true, 8, &close_payload(1000, b"\xc3\x28"), key()),
            1007,
        ),
        ("close with one byte", frame(true, 8, &[3], key()), 1002),
        (
            "close code 1005",
            frame(true, 8, &close_payload(1005, b""), key()),
            1002,
        ),
        (
            "close code 999",
            frame(true, 8, &close_payload(999, b""), key()),
            1002,
        ),
        (
            "close code 2999",
            frame(true, 8, &close_payload(2999, b""), key()),
            1002,
        ),
    ]
}

async fn backend_frames_settle(backend: &Backend) -> Vec<(wsguard::frame::FrameHeader, Vec<u8>)> {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let frames = backend.seen.frames();
        if frames.iter().any(|(h, _)| h.opcode == OpCode::Close)
            || tokio::time::Instant::now() > deadline
        {
            return frames;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn each_client_rule_closes_with_its_code_and_the_backend_never_sees_the_frame() {
    for (rule, bad, code) in cases() {
        let backend = start_backend(Answer::Echo { protocol: None }).await;
        let guard = start_guard(false, &(chat_route(backend.addr) + LIMITS)).await;
        let mut io = raw_ws(guard.addr, false, "https://chat.example.com").await;
        io.write_all(&frame(true, 1, b"before", key()))
            .await
            .unwrap();
        io.write_all(&bad).await.unwrap();
        let (got, reason) = read_close(&mut io).await;
        assert_eq!(got, Some(code), "{rule}: {reason}");
        assert!(!reason.is_empty(), "{rule}: the close frame says why");
        expect_eof(&mut io).await;

        let frames = backend_frames_settle(&backend).await;
        let data: Vec<&[u8]> = frames
            .iter()
            .filter(|(h, _)| h.opcode != OpCode::Close)
            .map(|(_, p)| p.as_slice())
            .collect();
        let expected_data: Vec<&[u8]> = match rule {
            // The first two frames with the repeated key are still allowed.
            "same mask key three times" => vec![b"before", b"a", b"b"],
            // Fragments before the offending one were complete frames.
            "new message inside a fragmented one" => vec![b"before", b"part"],
            "message over max_message_size" => vec![b"before", &[0u8; 1000], &[0u8; 1000]],
            "too many fragments" => vec![b"before", b"1", b"2", b"3", b"4"],
            "code point cut at the message end" => vec![b"before", b"euro \xe2\x82"],
            _ => vec![b"before"],
        };
        assert_eq!(
            data, expected_data,
            "{rule}: the backend saw the offending frame"
        );
        let last = frames.last().expect("backend saw frames");
        assert_eq!(last.0.opcode, OpCode::Close, "{rule}");
        assert_eq!(
            &last.1[..2],
            &1001u16.to_be_bytes(),
            "{rule}: backend gets 1001"
        );
        assert!(
            last.0.mask.is_some(),
            "{rule}: proxy frames to the backend are masked"
        );
    }
}

#[tokio::test]
async fn rules_hold_over_tls_and_one_byte_at_a_time() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let guard = start_guard(true, &(chat_route(backend.addr) + LIMITS)).await;
    let mut io = raw_ws(guard.addr, true, "https://chat.example.com").await;
    // A valid message with a code point split across fragments, dribbled.
    let good = [
        frame(false, 1, b"caf\xc3", key()),
        frame(true, 9, b"ping between fragments", key()),
        frame(true, 0, b"\xa9!", key()),
    ]
    .concat();
    for b in good {
        io.write_all(&[b]).await.unwrap();
        io.flush().await.unwrap();
    }
    io.write_all(&frame(true, 1, b"x", None)).await.unwrap();
    assert_eq!(read_close(&mut io).await.0, Some(1002));
    let payloads: Vec<Vec<u8>> = backend_frames_settle(&backend)
        .await
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(payloads[0], b"caf\xc3");
    assert_eq!(payloads[1], b"ping between fragments");
    assert_eq!(payloads[2], b"\xa9!");
}

#[tokio::test]
async fn normal_close_is_relayed_both_ways() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let guard = start_guard(false, &chat_route(backend.addr)).await;
    let mut io = raw_ws(guard.addr, false, "https://chat.example.com").await;
    io.write_all(&frame(true, 8, &close_payload(1000, b"bye"), key()))
        .await
        .unwrap();
    let (code, reason) = read_close(&mut io).await;
    assert_eq!((code, reason.as_str()), (Some(1000), "bye"));
    // The proxy (the server towards the client) closes the TCP connection.
    expect_eof(&mut io).await;
    let frames = backend.seen.frames();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].1, close_payload(1000, b"bye"));
}

#[tokio::test]
async fn client_vanishing_sends_the_backend_1001() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let guard = start_guard(false, &chat_route(backend.addr)).await;
    let mut io = raw_ws(guard.addr, false, "https://chat.example.com").await;
    io.write_all(&frame(true, 2, b"data", key())).await.unwrap();
    io.shutdown().await.unwrap();
    drop(io);
    let frames = backend_frames_settle(&backend).await;
    let last = frames.last().unwrap();
    assert_eq!(last.0.opcode, OpCode::Close);
    assert_eq!(&last.1[..2], &1001u16.to_be_bytes());
}

#[tokio::test]
async fn backend_faults_reach_the_client_as_1011() {
    // A masked server frame is a backend protocol error.
    let masked = frame(true, 1, b"masked by the server", Some([1, 2, 3, 4]));
    let unknown_opcode = vec![0x83, 0x00];
    let wide_length = vec![0x82, 126, 0, 3, 1, 2, 3];
    for (name, bad) in [
        ("masked", masked),
        ("reserved opcode", unknown_opcode),
        ("16-bit length carrying 3", wide_length),
    ] {
        let backend = start_backend(Answer::Then(bad)).await;
        let guard = start_guard(false, &chat_route(backend.addr)).await;
        let mut io = raw_ws(guard.addr, false, "https://chat.example.com").await;
        let (code, reason) = read_close(&mut io).await;
        assert_eq!(code, Some(1011), "{name}: {reason}");
        // The backend is told it broke the protocol.
        let frames = backend_frames_settle(&backend).await;
        let last = frames.last().expect("backend got a close");
        assert_eq!(&last.1[..2], &1002u16.to_be_bytes(), "{name}");
    }
}

#[tokio::test]
async fn backend_vanishing_is_1011_to_the_client() {
    let backend = start_backend(Answer::Raw(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
    ))
    .await;
    let guard = start_guard(false, &chat_route(backend.addr)).await;
    let mut io = raw_ws(guard.addr, false, "https://chat.example.com").await;
    let (code, _) = read_close(&mut io).await;
    assert_eq!(code, Some(1011));
}

#[tokio::test]
async fn data_after_a_close_frame_is_dropped() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let guard = start_guard(false, &chat_route(backend.addr)).await;
    let mut io = raw_ws(guard.addr, false, "https://chat.example.com").await;
    let burst = [
        frame(true, 8, &close_payload(1000, b""), key()),
        frame(true, 1, b"after close", key()),
    ]
    .concat();
    io.write_all(&burst).await.unwrap();
    assert_eq!(read_close(&mut io).await.0, Some(1000));
    let frames = backend.seen.frames();
    assert_eq!(frames.len(), 1, "only the close reached the backend");
}

#[tokio::test]
async fn unsolicited_pongs_stop_at_the_proxy_and_answers_pass() {
    // The backend pings first; the client's answer must reach it.
    let ping = vec![0x89, 0x02, b'h', b'b'];
    let backend = start_backend(Answer::Then(ping)).await;
    let guard = start_guard(false, &chat_route(backend.addr)).await;
    let mut io = raw_ws(guard.addr, false, "https://chat.example.com").await;
    let mut got = [0u8; 4];
    within(
        "ping",
        tokio::io::AsyncReadExt::read_exact(&mut io, &mut got),
    )
    .await
    .unwrap();
    assert_eq!(got, [0x89, 0x02, b'h', b'b']);
    let burst = [
        frame(true, 10, b"hb", key()),
        frame(true, 10, b"unsolicited", key()),
        frame(true, 1, b"after", key()),
        frame(true, 8, &close_payload(1000, b""), key()),
    ]
    .concat();
    io.write_all(&burst).await.unwrap();
    assert_eq!(read_close(&mut io).await.0, Some(1000));
    let payloads = backend.seen.payloads();
    assert_eq!(
        payloads,
        vec![b"hb".to_vec(), b"after".to_vec(), close_payload(1000, b"")]
    );
}
