//! permessage-deflate (RFC 7692), inspected: the negotiation on both legs,
//! the RSV1 rules, and every rule run on what compressed messages inflate
//! to. Clients compress with flate2 (raw DEFLATE, sync flush, trailer
//! dropped) over raw sockets, or are yawc; backends are raw sockets that
//! answer the offer and record every frame they get.

mod common;

use common::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsguard::frame::{FrameHeader, OpCode};

const ORIGIN: &str = "https://chat.example.com";
const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// RFC 7692 §7.2.1: the end of each message's data, dropped by the sender.
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// What a browser offers.
const BROWSER_OFFER: &str = "permessage-deflate; client_max_window_bits";
/// The 101 wsguard gives a browser with the default `[deflate]`.
const TIGHTENED: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
const RULE_LOG: &str = "connection closed: frame rule broken";

// === compressing and inflating ===

/// One side's compressor; keeps its LZ77 context from message to message.
struct Deflater(Compress);

impl Deflater {
    fn new() -> Deflater {
        Deflater(Compress::new(Compression::default(), false))
    }

    /// `data` compressed and sync-flushed: it inflates to exactly `data`.
    fn flush(&mut self, data: &[u8]) -> Vec<u8> {
        self.run(data, FlushCompress::Sync)
    }

    /// A whole message's data: sync-flushed, trailer dropped (§7.2.1).
    fn message(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = self.flush(data);
        assert!(out.ends_with(&TRAILER));
        out.truncate(out.len() - TRAILER.len());
        out
    }

    fn run(&mut self, data: &[u8], flush: FlushCompress) -> Vec<u8> {
        let start = self.0.total_in();
        let mut out = Vec::new();
        loop {
            out.reserve(64 * KIB);
            let done = (self.0.total_in() - start) as usize;
            let status = self.0.compress_vec(&data[done..], &mut out, flush).unwrap();
            let all_in = (self.0.total_in() - start) as usize == data.len();
            if status == Status::StreamEnd || (all_in && out.len() < out.capacity()) {
                return out;
            }
        }
    }
}

/// A message's data compressed on its own (no context).
fn deflate(data: &[u8]) -> Vec<u8> {
    Deflater::new().message(data)
}

/// Inflates one message's data (the trailer appended again) with `d`.
fn inflate_with(d: &mut Decompress, data: &[u8]) -> Vec<u8> {
    let input = [data, &TRAILER[..]].concat();
    let mut out = Vec::new();
    let start = d.total_in();
    loop {
        out.reserve(64 * KIB);
        let done = (d.total_in() - start) as usize;
        d.decompress_vec(&input[done..], &mut out, FlushDecompress::Sync)
            .unwrap();
        if (d.total_in() - start) as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
    }
}

fn inflate(data: &[u8]) -> Vec<u8> {
    inflate_with(&mut Decompress::new(false), data)
}

/// A frame with RSV1 set: the first frame of a compressed message.
fn compressed(fin: bool, opcode: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
    with_rsv(0x40, frame(fin, opcode, payload, key))
}

/// `frame` with the reserved bits `rsv` (0x40, 0x20, 0x10) set.
fn with_rsv(rsv: u8, mut frame: Vec<u8>) -> Vec<u8> {
    frame[0] |= rsv;
    frame
}

// === backends ===

/// A backend's answer to the offer it got (its request head).
type Answer = fn(&str) -> Option<String>;

/// Accepts the first offer as sent, minus a valueless
/// `client_max_window_bits` (a hint only an offer may carry); accepts
/// nothing when nothing was offered.
fn agreeing(request: &str) -> Option<String> {
    let offers = header_of(request, "sec-websocket-extensions")?;
    let first = offers.split(',').next()?;
    let kept: Vec<&str> = first
        .split(';')
        .map(str::trim)
        .filter(|p| !p.eq_ignore_ascii_case("client_max_window_bits"))
        .collect();
    Some(kept.join("; "))
}

/// A backend answering with `answer` that records every frame (payload
/// unmasked). A compressed text message is inflated (keeping context, in
/// case the client does) and echoed compressed afresh; anything else is
/// echoed as it came; a close ends the connection.
async fn echo_backend(answer: Answer) -> Backend {
    start_upgraded_backend_with(answer, |mut s: TcpStream, seen| async move {
        let mut inflater = Decompress::new(false);
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * KIB];
        loop {
            while let Some((h, payload, used)) = take_frame(&buf) {
                buf.drain(..used);
                seen.frames.lock().unwrap().push((h, payload.clone()));
                let reply = match h.opcode {
                    OpCode::Close => {
                        let _ = s.write_all(&frame(true, 8, &payload, None)).await;
                        return;
                    }
                    OpCode::Text if h.rsv1 => {
                        let echo = deflate(&inflate_with(&mut inflater, &payload));
                        compressed(true, 1, &echo, None)
                    }
                    _ => with_rsv(
                        u8::from(h.rsv1) << 6,
                        frame(h.fin, h.opcode.as_u8(), &payload, None),
                    ),
                };
                if s.write_all(&reply).await.is_err() {
                    return;
                }
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
}

/// A backend answering with `answer` that sends `first` and then records
/// every frame it gets until the proxy closes.
async fn sending_backend(answer: Answer, first: Vec<u8>) -> Backend {
    start_upgraded_backend_with(answer, move |mut s: TcpStream, seen| {
        let first = first.clone();
        async move {
            if s.write_all(&first).await.is_err() {
                return;
            }
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 64 * KIB];
            while let Ok(n @ 1..) = s.read(&mut chunk).await {
                buf.extend_from_slice(&chunk[..n]);
                while let Some((h, payload, used)) = take_frame(&buf) {
                    buf.drain(..used);
                    seen.frames.lock().unwrap().push((h, payload));
                }
            }
        }
    })
    .await
}

/// The first whole frame of `buf`: header, unmasked payload, bytes used.
fn take_frame(buf: &[u8]) -> Option<(FrameHeader, Vec<u8>, usize)> {
    let (h, n) = FrameHeader::parse(buf).ok()??;
    let end = n + h.payload_len as usize;
    let mut payload = buf.get(n..end)?.to_vec();
    if let Some(key) = h.mask {
        wsguard::frame::mask::apply_mask(&mut payload, key, 0);
    }
    Some((h, payload, end))
}

/// The request head the backend got.
fn backend_request(backend: &Backend) -> String {
    backend.seen.requests.lock().unwrap()[0].clone()
}

/// The backend saw no data frame, and at most the proxy's close `code`.
fn backend_saw_no_data(backend: &Backend, code: u16) {
    let frames = backend.seen.frames();
    assert!(
        frames
            .iter()
            .all(|(h, p)| h.opcode == OpCode::Close && p[..2] == code.to_be_bytes()),
        "the backend saw {frames:?}"
    );
}

/// Waits for the backend's first `n` frames.
async fn backend_frames(backend: &Backend, n: usize) -> Vec<(FrameHeader, Vec<u8>)> {
    let seen = backend.seen.clone();
    assert!(
        wait_until(|| seen.frames().len() >= n).await,
        "the backend got {:?}",
        seen.frames()
    );
    backend.seen.frames()
}

// === clients ===

/// wsguard with `body` after the `/chat` route to `backend`. After a
/// client violation the proxy waits out its close timeout before the
/// connection's metric and log line: short here to keep the file fast.
async fn guard_for(backend: &Backend, body: &str) -> Guard {
    let server = "close_timeout = \"200ms\"\n";
    start_guard_with(false, server, &(chat_route(backend.addr) + body)).await
}

/// An upgrade to `path` offering `offer` (no header when `None`).
fn offer_request(path: &str, offer: Option<&str>) -> Vec<u8> {
    let ext = offer.map_or(String::new(), |o| {
        format!("Sec-WebSocket-Extensions: {o}\r\n")
    });
    upgrade_request(path, &format!("Origin: {ORIGIN}\r\n{ext}"))
}

/// Upgrades `/chat` offering `offer`; returns the socket and the 101's
/// `Sec-WebSocket-Extensions`.
async fn upgrade(guard: &Guard, offer: Option<&str>) -> (Box<dyn Io>, Option<String>) {
    upgrade_to(guard, "/chat", offer).await
}

async fn upgrade_to(
    guard: &Guard,
    path: &str,
    offer: Option<&str>,
) -> (Box<dyn Io>, Option<String>) {
    let io = connect(guard.addr, false).await;
    let (io, head) = upgrade_with_head(io, &offer_request(path, offer)).await;
    let ext = header_of(&head, "sec-websocket-extensions").map(str::to_owned);
    (io, ext)
}

/// Reads the next server frame: header and payload.
async fn read_frame(io: &mut Box<dyn Io>) -> (FrameHeader, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if let Some((h, payload, _)) = take_frame(&buf) {
            return (h, payload);
        }
        within("read a frame", io.read_exact(&mut byte))
            .await
            .unwrap();
        buf.push(byte[0]);
    }
}

/// Answers the proxy's close and closes our side, as a client does, so the
/// proxy need not wait out its close timeout; then waits for the end.
async fn answer_close(io: &mut Box<dyn Io>, code: u16) {
    let _ = io
        .write_all(&frame(true, 8, &code.to_be_bytes(), key()))
        .await;
    expect_eof(io).await;
}

/// Sends `bytes` and expects the proxy's close `code` for breaking `rule`:
/// the close frame, one metric sample and one more log line.
async fn refused(
    guard: &Guard,
    logs: &Logs,
    io: &mut Box<dyn Io>,
    bytes: &[u8],
    code: u16,
    rule: &str,
) {
    let before = logs.count(RULE_LOG, rule);
    within("send", io.write_all(bytes)).await.unwrap();
    let (got, reason) = read_close(io).await;
    assert_eq!(got, Some(code), "{rule}: {reason}");
    answer_close(io, code).await;
    let series = format!("wsguard_violations_total{{rule=\"{rule}\",side=\"client\"}}");
    assert!(
        wait_until(|| guard.metric(&series) == 1.0).await,
        "{rule}: {}",
        guard.metrics()
    );
    assert!(
        wait_until(|| logs.count(RULE_LOG, rule) == before + 1).await,
        "{rule}: {:?}",
        logs.lines()
    );
}

/// A fresh backend, wsguard in front of it with `body`, a negotiated
/// connection (default offer) and the backend's record.
async fn negotiated(body: &str) -> (Guard, Backend, Box<dyn Io>) {
    let backend = echo_backend(agreeing).await;
    let guard = guard_for(&backend, body).await;
    let (io, ext) = upgrade(&guard, Some(BROWSER_OFFER)).await;
    assert!(ext.is_some(), "permessage-deflate was negotiated");
    (guard, backend, io)
}

// === 1. negotiation and a compressed round trip ===

#[tokio::test]
async fn a_browser_offer_is_tightened_on_both_legs_and_compressed_text_round_trips() {
    let backend = echo_backend(agreeing).await;
    let guard = guard_for(&backend, "").await;
    let (mut io, ext) = upgrade(&guard, Some(BROWSER_OFFER)).await;
    assert_eq!(ext.as_deref(), Some(TIGHTENED));
    assert_eq!(
        header_of(&backend_request(&backend), "sec-websocket-extensions"),
        Some(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits"
        )
    );

    let text = "hello, compressed world; hello, compressed world";
    let data = deflate(text.as_bytes());
    io.write_all(&compressed(true, 1, &data, key()))
        .await
        .unwrap();
    // The backend got the client's compressed bytes as they were sent.
    let (h, payload) = backend_frames(&backend, 1).await.remove(0);
    assert!(h.rsv1 && h.fin && h.opcode == OpCode::Text);
    assert_eq!(payload, data);
    // The backend's own compressed reply reaches the client intact.
    let (h, payload) = read_frame(&mut io).await;
    assert!(h.rsv1, "the reply is compressed");
    assert_eq!(inflate(&payload), text.as_bytes());
}

/// yawc comes with the `demo` feature, as does the certificate generator.
#[cfg(feature = "demo")]
#[tokio::test]
async fn a_real_deflating_client_round_trips_through_tls() {
    let backend = echo_backend(agreeing).await;
    let guard = start_guard(true, &chat_route(backend.addr)).await;
    let io = connect(guard.addr, true).await;
    let url = format!("wss://localhost:{}/chat", guard.addr.port());
    let options = yawc::Options::default()
        .with_balanced_compression()
        .with_utf8();
    let request = yawc::HttpRequest::builder().header("Origin", ORIGIN);
    let mut ws = within(
        "yawc handshake",
        yawc::WebSocket::handshake_with_request(url.parse().unwrap(), io, options, request),
    )
    .await
    .expect("yawc upgrades through wsguard");
    use futures_util::{SinkExt, StreamExt};
    let text = "a message a browser would compress, ".repeat(40);
    for _ in 0..3 {
        within("send", ws.send(yawc::Frame::text(text.clone())))
            .await
            .unwrap();
        let got = within("echo", ws.next()).await.expect("an answer");
        assert_eq!(got.opcode(), yawc::OpCode::Text);
        assert_eq!(got.as_str(), text);
    }
    let frames = backend_frames(&backend, 3).await;
    assert!(
        frames.iter().all(|(h, p)| h.rsv1 && p.len() < text.len()),
        "yawc compressed every message"
    );
}

// === 2. malformed offers are declined ===

#[tokio::test]
async fn malformed_offers_are_declined_not_refused() {
    let backend = echo_backend(agreeing).await;
    let guard = guard_for(&backend, "").await;
    let offers = [
        "permessage-deflate; mystery",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_no_context_takeover=1",
        "x-webkit-deflate-frame",
    ];
    for (i, offer) in offers.into_iter().enumerate() {
        let (mut io, ext) = upgrade(&guard, Some(offer)).await;
        assert_eq!(ext, None, "{offer}");
        let request = backend.seen.requests.lock().unwrap()[i].clone();
        assert_eq!(
            header_of(&request, "sec-websocket-extensions"),
            None,
            "{offer}"
        );
        // Uncompressed frames still flow.
        io.write_all(&frame(true, 1, b"plain", key()))
            .await
            .unwrap();
        let (h, payload) = read_frame(&mut io).await;
        assert_eq!(
            (h.rsv1, payload.as_slice()),
            (false, &b"plain"[..]),
            "{offer}"
        );
    }
}

// === 3. a backend answering what was not offered: 502 ===

#[tokio::test]
async fn a_backend_answer_that_was_not_offered_is_502() {
    let logs = Logs::capture();
    let cases: [(&str, Option<&str>, Answer); 3] = [
        (
            "a client window bound the client did not offer",
            Some("permessage-deflate"),
            |_| {
                Some(
                    "permessage-deflate; server_no_context_takeover; client_max_window_bits=10"
                        .into(),
                )
            },
        ),
        (
            "server_no_context_takeover asked and not granted",
            Some(BROWSER_OFFER),
            |_| Some("permessage-deflate".into()),
        ),
        ("an extension when none was offered", None, |_| {
            Some("permessage-deflate".into())
        }),
    ];
    for (n, (what, offer, answer)) in cases.into_iter().enumerate() {
        let backend = echo_backend(answer).await;
        let guard = guard_for(&backend, "").await;
        let answer = raw_request(guard.addr, false, &offer_request("/chat", offer)).await;
        assert_eq!(status_of(&answer), 502, "{what}: {answer}");
        let series =
            "wsguard_handshakes_refused_total{reason=\"backend_bad_handshake\",route=\"/chat\"}";
        assert_eq!(guard.metric(series), 1.0, "{what}");
        assert_eq!(
            logs.count("handshake failed at the backend", "backend_bad_handshake"),
            n + 1,
            "{what}: one log line"
        );
        assert_eq!(backend.seen.frames().len(), 0);
    }
}

// === 4. RSV1 rules ===

#[tokio::test]
async fn rsv1_only_on_a_negotiated_message_start_else_1002() {
    let logs = Logs::capture();
    let data = deflate(b"abc");
    // RSV1 on a continuation of a compressed message.
    let (guard, backend, mut io) = negotiated("").await;
    let first = compressed(false, 1, &data[..1], key());
    let cont = compressed(true, 0, &data[1..], key());
    refused(
        &guard,
        &logs,
        &mut io,
        &[first, cont].concat(),
        1002,
        "compressed_continuation",
    )
    .await;
    let seen = backend_frames(&backend, 1).await;
    assert!(
        seen.iter().all(|(h, _)| h.opcode != OpCode::Continue),
        "{seen:?}"
    );

    for (opcode, payload, rule) in [
        (9, &b"ping"[..], "compressed_control_frame"),
        (8, &1000u16.to_be_bytes()[..], "compressed_control_frame"),
    ] {
        let (guard, backend, mut io) = negotiated("").await;
        let bad = compressed(true, opcode, payload, key());
        refused(&guard, &logs, &mut io, &bad, 1002, rule).await;
        backend_saw_no_data(&backend, 1001);
    }
    for rsv in [0x20, 0x10] {
        let (guard, backend, mut io) = negotiated("").await;
        let bad = with_rsv(rsv, frame(true, 1, b"abc", key()));
        refused(&guard, &logs, &mut io, &bad, 1002, "reserved_bits").await;
        backend_saw_no_data(&backend, 1001);
    }
    // Nothing negotiated: no offer at all.
    let backend = echo_backend(agreeing).await;
    let guard = guard_for(&backend, "").await;
    let (mut io, ext) = upgrade(&guard, None).await;
    assert_eq!(ext, None);
    let bad = compressed(true, 1, &data, key());
    refused(&guard, &logs, &mut io, &bad, 1002, "reserved_bits").await;
    backend_saw_no_data(&backend, 1001);
}

// === 5. data that does not inflate, or is not UTF-8 once inflated ===

#[tokio::test]
async fn bad_deflate_data_and_data_after_the_final_block_are_1007() {
    let logs = Logs::capture();
    // BTYPE 11 is reserved: not DEFLATE.
    let (guard, backend, mut io) = negotiated("").await;
    let bad = compressed(true, 2, &[0xff, 0xff, 0xff, 0xff], key());
    refused(&guard, &logs, &mut io, &bad, 1007, "bad_deflate_data").await;
    backend_saw_no_data(&backend, 1001);

    // A final block, then more data.
    let (guard, backend, mut io) = negotiated("").await;
    let mut data = Deflater::new().run(b"the end", FlushCompress::Finish);
    data.extend_from_slice(&deflate(b"and then some"));
    let bad = compressed(true, 2, &data, key());
    refused(&guard, &logs, &mut io, &bad, 1007, "data_after_final_block").await;
    backend_saw_no_data(&backend, 1001);
}

/// `prefix` is split from `suffix` into two frames of one compressed text
/// message, each frame's data inflating to exactly its part.
fn two_fragments(prefix: &[u8], suffix: &[u8]) -> Vec<u8> {
    let mut d = Deflater::new();
    let first = compressed(false, 1, &d.flush(prefix), key());
    [first, frame(true, 0, &d.message(suffix), key())].concat()
}

#[tokio::test]
async fn invalid_utf8_inside_compressed_text_is_1007_wherever_it_is_split() {
    let logs = Logs::capture();
    // "é" split across two fragments: valid.
    let (_guard, backend, mut io) = negotiated("").await;
    io.write_all(&two_fragments(b"caf\xc3", b"\xa9!"))
        .await
        .unwrap();
    let seen = backend_frames(&backend, 2).await;
    assert_eq!(seen[1].0.opcode, OpCode::Continue);
    // Code points across the inflater's 8 KiB output chunks: valid.
    let mut text = b"a".to_vec();
    text.extend_from_slice("é".repeat(12 * KIB).as_bytes());
    let (_guard, backend, mut io) = negotiated("").await;
    io.write_all(&compressed(true, 1, &deflate(&text), key()))
        .await
        .unwrap();
    let (h, _) = backend_frames(&backend, 1).await.remove(0);
    assert!(h.rsv1 && h.fin);

    let mut broken_at_chunk = text.clone();
    broken_at_chunk[8 * KIB] = b'(';
    let cases = [
        ("plain", compressed(true, 1, &deflate(b"ab\xffcd"), key())),
        ("split across fragments", two_fragments(b"caf\xc3", b"(!")),
        (
            "across inflate chunks",
            compressed(true, 1, &deflate(&broken_at_chunk), key()),
        ),
    ];
    for (what, bytes) in cases {
        let (guard, backend, mut io) = negotiated("").await;
        refused(&guard, &logs, &mut io, &bytes, 1007, "invalid_utf8_text").await;
        // A first fragment may pass; the message's end never does.
        let seen = backend.seen.frames();
        assert!(
            seen.iter()
                .all(|(h, _)| !(h.fin && h.opcode != OpCode::Close)),
            "{what}: the backend saw {seen:?}"
        );
    }
}

// === 6. bombs ===

const SMALL_CAPS: &str = "\n[frames]\nmax_frame_size = \"64 KiB\"\nmax_message_size = \"64 KiB\"\n";

/// Total inflated size of the data frames the backend got, without context.
fn inflated_at_backend(backend: &Backend) -> usize {
    let mut d = Decompress::new(false);
    let mut total = 0;
    for (h, payload) in backend.seen.frames() {
        if h.opcode == OpCode::Close {
            continue;
        }
        let mut out = vec![0u8; MIB];
        let before = d.total_out();
        d.decompress(&payload, &mut out, FlushDecompress::Sync)
            .unwrap();
        total += (d.total_out() - before) as usize;
    }
    total
}

#[tokio::test]
async fn a_one_frame_bomb_is_1009_before_the_backend_gets_a_byte() {
    let logs = Logs::capture();
    let (guard, backend, mut io) = negotiated(SMALL_CAPS).await;
    let data = deflate(&vec![0u8; MIB]);
    assert!(
        data.len() < 2 * KIB,
        "1 MiB of zeros compresses to {} bytes",
        data.len()
    );
    let bomb = compressed(true, 2, &data, key());
    refused(&guard, &logs, &mut io, &bomb, 1009, "frame_too_large").await;
    backend_saw_no_data(&backend, 1001);
}

#[tokio::test]
async fn a_bomb_in_small_fragments_is_1009_at_the_message_cap() {
    let logs = Logs::capture();
    let (guard, backend, mut io) = negotiated(SMALL_CAPS).await;
    // 64 fragments of 16 KiB each once inflated, a few bytes each on the wire.
    let mut d = Deflater::new();
    let zeros = vec![0u8; 16 * KIB];
    let mut bytes = compressed(false, 2, &d.flush(&zeros), key());
    for _ in 0..62 {
        bytes.extend_from_slice(&frame(false, 0, &d.flush(&zeros), key()));
    }
    bytes.extend_from_slice(&frame(true, 0, &d.message(&zeros), key()));
    assert!(bytes.len() < 8 * KIB, "{} bytes on the wire", bytes.len());
    refused(&guard, &logs, &mut io, &bytes, 1009, "message_too_large").await;
    // Fragments under the cap may have passed (a message is streamed, as
    // uncompressed ones are); never the one that crossed it, nor the end.
    let _ = backend_frames(&backend, 1).await;
    assert!(inflated_at_backend(&backend) <= 64 * KIB);
    assert!(backend
        .seen
        .frames()
        .iter()
        .all(|(h, _)| !h.fin || h.opcode == OpCode::Close));
}

#[tokio::test]
async fn a_bomb_that_references_the_previous_message_is_1009() {
    let logs = Logs::capture();
    let body = format!("{SMALL_CAPS}\n[deflate]\ncontext_takeover = true\n");
    let (guard, backend, mut io) = negotiated(&body).await;
    let mut d = Deflater::new();
    let first = compressed(true, 2, &d.message(&vec![0u8; 32 * KIB]), key());
    io.write_all(&first).await.unwrap();
    let _ = backend_frames(&backend, 1).await;
    // Back-references into the first message make this tiny on the wire.
    let data = d.message(&vec![0u8; MIB]);
    assert!(data.len() < 2 * KIB);
    refused(
        &guard,
        &logs,
        &mut io,
        &compressed(true, 2, &data, key()),
        1009,
        "frame_too_large",
    )
    .await;
    let seen = backend.seen.frames();
    assert_eq!(
        seen.iter()
            .filter(|(h, _)| h.opcode == OpCode::Binary)
            .count(),
        1,
        "only the first message"
    );
}

/// A compressed stream of `blocks` MiB of zeros, built from two compressed
/// MiB: after the first, the window holds only zeros, so the second's
/// sync-flushed blocks inflate to the same MiB however often they repeat.
fn zeros_bomb(blocks: usize) -> Vec<u8> {
    let mut d = Deflater::new();
    let zeros = vec![0u8; MIB];
    let mut data = d.flush(&zeros);
    let repeat = d.flush(&zeros);
    let mut three = [&data[..], &repeat, &repeat].concat();
    three.truncate(three.len() - TRAILER.len());
    assert_eq!(inflate(&three), vec![0u8; 3 * MIB], "the repeated blocks");
    for _ in 1..blocks {
        data.extend_from_slice(&repeat);
    }
    data.truncate(data.len() - TRAILER.len());
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_gib_bomb_leaves_the_binarys_memory_flat() {
    let backend = echo_backend(agreeing).await;
    // The wire cap must let the ~1 MiB compressed frame in for the
    // inflated caps (2 MiB) to be what refuses it.
    let body = chat_route(backend.addr)
        + "\n[frames]\nmax_frame_size = \"2 MiB\"\nmax_message_size = \"2 MiB\"\n";
    let guard = start_bin_guard(&body).await;
    let bomb = zeros_bomb(1024);
    assert!(
        bomb.len() < 2 * MIB,
        "1 GiB compresses to {} bytes",
        bomb.len()
    );
    let (mut io, head) = upgrade_with_head(
        connect(guard.addr, false).await,
        &offer_request("/chat", Some(BROWSER_OFFER)),
    )
    .await;
    assert_eq!(
        header_of(&head, "sec-websocket-extensions"),
        Some(TIGHTENED)
    );
    let before = guard.rss();
    let send = compressed(true, 2, &bomb, key());
    // The proxy may close before all of it is written.
    let _ = within("send the bomb", io.write_all(&send)).await;
    let (code, reason) = read_close(&mut io).await;
    assert_eq!(code, Some(1009), "{reason}");
    let grew = guard.rss().saturating_sub(before);
    assert!(grew < 4 * MIB as u64, "RSS grew by {grew} bytes");
    let line = guard.process.wait_log(RULE_LOG).await;
    assert_eq!(line["rule"], "frame_too_large", "{line}");
    assert!(
        line["reason"].as_str().unwrap().contains("inflates"),
        "{line}"
    );
    assert_eq!(guard.process.count_logs(RULE_LOG), 1);
    backend_saw_no_data(&backend, 1001);
}

// === 7. a backend breaking the rules ===

/// The client gets 1011 and the backend is told the rule it broke, with
/// one metric sample and one log line; the client never saw the frame.
async fn backend_refused(first: Vec<u8>, body: &str, code: u16, rule: &str) {
    let logs = Logs::capture();
    let backend = sending_backend(agreeing, first).await;
    let guard = guard_for(&backend, body).await;
    let (mut io, ext) = upgrade(&guard, Some(BROWSER_OFFER)).await;
    assert!(ext.is_some());
    let (got, reason) = read_close(&mut io).await;
    assert_eq!(
        (got, reason.as_str()),
        (Some(1011), "backend protocol error"),
        "{rule}"
    );
    answer_close(&mut io, 1011).await;
    let (h, payload) = backend_frames(&backend, 1).await.remove(0);
    assert_eq!(h.opcode, OpCode::Close);
    assert_eq!(payload[..2], code.to_be_bytes(), "{rule}");
    let series = format!("wsguard_violations_total{{rule=\"{rule}\",side=\"backend\"}}");
    assert!(
        wait_until(|| guard.metric(&series) == 1.0).await,
        "{}",
        guard.metrics()
    );
    assert!(
        wait_until(|| logs.count(RULE_LOG, rule) == 1).await,
        "{:?}",
        logs.lines()
    );
}

#[tokio::test]
async fn a_backend_sending_bad_deflate_data_or_a_bomb_is_cut_off() {
    let bad = compressed(true, 1, &[0xff, 0xff, 0xff], None);
    backend_refused(bad, "", 1007, "bad_deflate_data").await;
    let bomb = compressed(true, 2, &deflate(&vec![0u8; MIB]), None);
    let caps = "\n[backend_frames]\nmax_frame_size = \"64 KiB\"\n";
    backend_refused(bomb, caps, 1009, "frame_too_large").await;
}

#[tokio::test]
async fn without_inspect_backend_compressed_backend_data_passes_unread() {
    let bad = compressed(true, 1, &[0xff, 0xff, 0xff], None);
    let backend = sending_backend(agreeing, bad.clone()).await;
    let guard = guard_for(&backend, "\n[deflate]\ninspect_backend = false\n").await;
    let (mut io, ext) = upgrade(&guard, Some(BROWSER_OFFER)).await;
    assert_eq!(ext.as_deref(), Some(TIGHTENED));
    let (h, payload) = read_frame(&mut io).await;
    assert!(h.rsv1);
    assert_eq!(payload, bad[2..], "relayed as the backend sent it");
    // The client's direction is still inspected.
    let logs = Logs::capture();
    let bad_up = compressed(true, 1, &[0xff, 0xff, 0xff], key());
    refused(&guard, &logs, &mut io, &bad_up, 1007, "bad_deflate_data").await;
}

// === 8. context takeover ===

/// Text long and varied enough that its repeat is one back-reference.
fn varied_text() -> Vec<u8> {
    (0..400u32)
        .flat_map(|i| format!("{} ", i * 7919 % 1013).into_bytes())
        .collect()
}

#[tokio::test]
async fn context_takeover_lets_a_message_reference_the_previous_one() {
    let backend = echo_backend(agreeing).await;
    let guard = guard_for(&backend, "\n[deflate]\ncontext_takeover = true\n").await;
    let (mut io, ext) = upgrade(&guard, Some(BROWSER_OFFER)).await;
    assert_eq!(ext.as_deref(), Some("permessage-deflate"));
    assert_eq!(
        header_of(&backend_request(&backend), "sec-websocket-extensions"),
        Some(BROWSER_OFFER),
        "the offer went as it came"
    );
    let text = varied_text();
    let mut d = Deflater::new();
    let first = d.message(&text);
    let second = d.message(&text);
    assert!(
        second.len() < first.len() / 10,
        "the second message is a back-reference"
    );
    io.write_all(&compressed(true, 1, &first, key()))
        .await
        .unwrap();
    io.write_all(&compressed(true, 1, &second, key()))
        .await
        .unwrap();
    let seen = backend_frames(&backend, 2).await;
    let mut inflater = Decompress::new(false);
    for (h, payload) in &seen[..2] {
        assert!(h.rsv1);
        assert_eq!(inflate_with(&mut inflater, payload), text);
    }
}

#[tokio::test]
async fn without_context_takeover_a_back_reference_to_the_previous_message_is_1007() {
    let logs = Logs::capture();
    let backend =
        echo_backend(|_| Some("permessage-deflate; server_no_context_takeover".into())).await;
    let guard = guard_for(&backend, "").await;
    let (mut io, ext) = upgrade(&guard, Some(BROWSER_OFFER)).await;
    assert_eq!(ext.as_deref(), Some(TIGHTENED), "the client was told");
    let text = varied_text();
    let mut d = Deflater::new();
    io.write_all(&compressed(true, 1, &d.message(&text), key()))
        .await
        .unwrap();
    let _ = backend_frames(&backend, 1).await;
    let anyway = compressed(true, 1, &d.message(&text), key());
    refused(&guard, &logs, &mut io, &anyway, 1007, "bad_deflate_data").await;
    let seen = backend.seen.frames();
    assert_eq!(
        seen.iter()
            .filter(|(h, _)| h.opcode == OpCode::Text)
            .count(),
        1
    );
}

// === 9. the byte quota charges inflated bytes ===

#[tokio::test]
async fn the_byte_quota_charges_what_a_frame_inflates_to() {
    let logs = Logs::capture();
    let rate = "\n[rate]\nbytes_per_second = 1024\nburst_bytes = 4096\non_limit = \"close\"\n";
    let data = deflate(&vec![0u8; 32 * KIB]);
    assert!(data.len() < 1024);
    // The same wire size, uncompressed, passes.
    let (_guard, backend, mut io) = negotiated(rate).await;
    io.write_all(&frame(true, 2, &vec![7u8; data.len()], key()))
        .await
        .unwrap();
    let (h, payload) = read_frame(&mut io).await;
    assert_eq!((h.opcode, payload.len()), (OpCode::Binary, data.len()));
    let _ = backend_frames(&backend, 1).await;

    let (guard, backend, mut io) = negotiated(rate).await;
    io.write_all(&compressed(true, 2, &data, key()))
        .await
        .unwrap();
    let (code, reason) = read_close(&mut io).await;
    let reason_named = "rate limit: bytes_per_second 1 KiB, burst 4 KiB";
    assert_eq!((code, reason.as_str()), (Some(1008), reason_named));
    answer_close(&mut io, 1008).await;
    backend_saw_no_data(&backend, 1001);
    let series = "wsguard_rate_limited_total{reason=\"client_close\"}";
    assert!(
        wait_until(|| guard.metric(series) == 1.0).await,
        "{}",
        guard.metrics()
    );
    let closed = |l: &serde_json::Value| {
        l["by"] == "client_rate_limit"
            && l["rule"] == "bytes_per_second"
            && l["reason"] == "bytes_per_second 1 KiB, burst 4 KiB"
    };
    assert!(wait_until(|| logs.lines().iter().filter(|l| closed(l)).count() == 1).await);
}

// === 10. per-route mode ===

#[tokio::test]
async fn a_route_with_deflate_off_negotiates_nothing_while_another_does() {
    let logs = Logs::capture();
    let backend = echo_backend(agreeing).await;
    let plain = format!(
        "\n[[route]]\npath = \"/plain\"\nbackends = [\"{}\"]\ndeflate = \"off\"\n",
        backend.addr
    );
    let guard = guard_for(&backend, &plain).await;
    let (_chat, ext) = upgrade_to(&guard, "/chat", Some(BROWSER_OFFER)).await;
    assert_eq!(ext.as_deref(), Some(TIGHTENED));
    let (mut io, ext) = upgrade_to(&guard, "/plain", Some(BROWSER_OFFER)).await;
    assert_eq!(ext, None);
    let request = backend.seen.requests.lock().unwrap()[1].clone();
    assert!(request.starts_with("GET /plain "));
    assert_eq!(header_of(&request, "sec-websocket-extensions"), None);
    let bad = compressed(true, 1, &deflate(b"abc"), key());
    refused(&guard, &logs, &mut io, &bad, 1002, "reserved_bits").await;
    backend_saw_no_data(&backend, 1001);
}

// === 11. max_window_bits ===

#[tokio::test]
async fn max_window_bits_bounds_the_client_or_declines_its_offer() {
    let backend = echo_backend(agreeing).await;
    let guard = guard_for(&backend, "\n[deflate]\nmax_window_bits = 10\n").await;
    let (_io, ext) = upgrade(&guard, Some(BROWSER_OFFER)).await;
    assert_eq!(
        ext.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=10")
    );
    assert_eq!(
        header_of(&backend_request(&backend), "sec-websocket-extensions"),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits")
    );
    // Without client_max_window_bits no answer could bound the client.
    let (_io, ext) = upgrade(&guard, Some("permessage-deflate")).await;
    assert_eq!(ext, None);
    let request = backend.seen.requests.lock().unwrap()[1].clone();
    assert_eq!(header_of(&request, "sec-websocket-extensions"), None);
}
