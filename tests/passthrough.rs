//! HTTP pass-through (`[[route]] http = true`): what passes, streamed and kept alive, and
//! every refusal on the HTTP half, each with its exact answer and what the backend saw. The
//! backend is a raw TCP server here, so that the bytes it was sent are what is asserted.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, timeout, Instant};

const ORIGIN: &str = "https://chat.example.com";

/// How the raw backend answers one request (its head and body as received).
#[derive(Clone, Copy)]
enum Reply {
    /// 200 with the request's path as the body.
    Path,
    /// Never answers.
    Silent,
    /// Answers after this long.
    After(Duration),
    /// A chunked answer: "first", a pause, "second".
    Stream(Duration),
    /// A header with a bare CR in its value: a response-splitting shape.
    Split,
}

/// Every request a backend read whole: its head and its body.
type Requests = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A raw HTTP/1.1 backend on keep-alive connections; records every request it read whole
/// (head and body) and every connection.
struct RawBackend {
    addr: SocketAddr,
    seen: Requests,
    connections: Arc<Mutex<usize>>,
}

impl RawBackend {
    async fn start(reply: Reply) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (s, c) = (seen.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                *c.lock().unwrap() += 1;
                tokio::spawn(serve(tcp, reply, s.clone()));
            }
        });
        RawBackend {
            addr,
            seen,
            connections,
        }
    }

    fn requests(&self) -> Vec<(String, Vec<u8>)> {
        self.seen.lock().unwrap().clone()
    }

    fn heads(&self) -> Vec<String> {
        self.requests().into_iter().map(|(h, _)| h).collect()
    }
}

async fn serve(mut tcp: TcpStream, reply: Reply, seen: Requests) {
    let mut buf = Vec::new();
    loop {
        let Some(head) = read_until_blank(&mut tcp, &mut buf).await else {
            return;
        };
        let Some(body) = read_body(&mut tcp, &mut buf, &head).await else {
            return;
        };
        let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
        seen.lock().unwrap().push((head, body));
        let answer = match reply {
            Reply::Path => ok(&path),
            Reply::Silent => return sleep(Duration::from_secs(3600)).await,
            Reply::After(d) => {
                sleep(d).await;
                ok(&path)
            }
            Reply::Split => {
                "HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: evil=1\r\nContent-Length: 0\r\n\r\n"
                    .to_owned()
            }
            Reply::Stream(pause) => {
                let first = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n";
                if tcp.write_all(first.as_bytes()).await.is_err() {
                    return;
                }
                sleep(pause).await;
                "6\r\nsecond\r\n0\r\n\r\n".to_owned()
            }
        };
        if tcp.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn ok(body: &str) -> String {
    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Backend: raw\r\nKeep-Alive: timeout=5\r\n\r\n{body}", body.len())
}

/// Reads up to and including a blank line; `None` at EOF.
async fn read_until_blank(io: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
        let mut chunk = [0u8; 8192];
        match io.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn fill(io: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>, want: usize) -> Option<()> {
    while buf.len() < want {
        let mut chunk = [0u8; 8192];
        match io.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(())
}

/// The body a head announces (Content-Length or chunked), read whole; `None` when cut.
async fn read_body(
    io: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
    head: &str,
) -> Option<Vec<u8>> {
    let lower = head.to_ascii_lowercase();
    if lower.contains("transfer-encoding: chunked") {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                    break p;
                }
                let have = buf.len();
                fill(io, buf, have + 1).await?;
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).ok()?.trim(), 16)
                    .ok()?;
            buf.drain(..line_end + 2);
            fill(io, buf, size + 2).await?;
            body.extend(buf.drain(..size));
            buf.drain(..2);
            if size == 0 {
                return Some(body);
            }
        }
    }
    let len = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    fill(io, buf, len).await?;
    Some(buf.drain(..len).collect())
}

/// wsguard with one pass-through route `/app` (prefix) to `backend`, and `http` keys.
async fn guard(backend: &RawBackend, http: &str) -> Guard {
    start_guard(
        false,
        &format!(
            "[origin]\nallow = [\"{ORIGIN}\"]\n\n[http]\n{http}\n[[route]]\npath = \"/app\"\nmatch = \"prefix\"\nhttp = true\nbackends = [\"{}\"]\n",
            backend.addr
        ),
    )
    .await
}

/// One answer read off a kept-alive connection: its head and its body (by Content-Length,
/// or chunked).
async fn answer(io: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> (String, Vec<u8>) {
    let head = within("answer head", read_until_blank(io, buf))
        .await
        .expect("an answer head");
    let body = within("answer body", read_body(io, buf, &head))
        .await
        .expect("a whole body");
    (head, body)
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: chat.example.com\r\n{extra}\r\n")
}

#[tokio::test]
async fn requests_pass_on_one_kept_alive_connection_with_hop_headers_replaced() {
    let backend = RawBackend::start(Reply::Path).await;
    let guard = guard(&backend, "").await;
    let mut io = TcpStream::connect(guard.addr).await.unwrap();
    let mut buf = Vec::new();
    let first = get(
        "/app/one?x=1",
        "Connection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: 5\r\nX-Forwarded-For: 6.6.6.6\r\nX-Kept: yes\r\n",
    );
    io.write_all(first.as_bytes()).await.unwrap();
    let (head, body) = answer(&mut io, &mut buf).await;
    assert_eq!(status_of(&head), 200, "{head}");
    assert_eq!(body, b"/app/one?x=1");
    assert_eq!(header_of(&head, "x-backend"), Some("raw"));
    assert_eq!(
        header_of(&head, "keep-alive"),
        None,
        "the backend's hop header: {head}"
    );
    io.write_all(get("/app/two", "").as_bytes()).await.unwrap();
    let (head, body) = answer(&mut io, &mut buf).await;
    assert_eq!(status_of(&head), 200);
    assert_eq!(body, b"/app/two");
    let heads = backend.heads();
    assert_eq!(heads.len(), 2);
    let h = heads[0].to_ascii_lowercase();
    assert!(h.contains("x-kept: yes"), "{h}");
    assert!(h.contains("x-forwarded-for: 127.0.0.1"), "{h}");
    assert!(
        !h.contains("6.6.6.6"),
        "the client's own X-Forwarded-For: {h}"
    );
    assert!(!h.contains("x-hop"), "a header named in Connection: {h}");
    assert!(h.contains("host: chat.example.com"), "{h}");
    assert_eq!(
        guard.metric("wsguard_http_requests_total{route=\"/app\",status=\"200\"}"),
        2.0
    );
}

#[tokio::test]
async fn the_origin_rules_of_the_http_half() {
    let backend = RawBackend::start(Reply::Path).await;
    let guard = guard(&backend, "").await;
    let post = |origin: &str| {
        format!("POST /app/send HTTP/1.1\r\nHost: chat.example.com\r\n{origin}Content-Length: 2\r\n\r\nhi")
    };
    let cases = [
        (
            post("Origin: https://evil.example\r\n"),
            403,
            "a cross-site POST",
        ),
        (
            post(""),
            403,
            "a POST without Origin (allow_missing = false)",
        ),
        (
            get("/app/poll", "Origin: https://evil.example\r\n"),
            403,
            "a cross-site GET",
        ),
        (
            get("/app/poll", "Sec-Fetch-Site: cross-site\r\n"),
            403,
            "a browser's cross-site GET without Origin",
        ),
        (
            get(
                "/app/poll",
                "Origin: https://a.example\r\nOrigin: https://chat.example.com\r\n",
            ),
            403,
            "two Origins",
        ),
        (
            get("/app/poll", "Sec-Fetch-Site: same-origin\r\n"),
            200,
            "a same-origin GET",
        ),
        (
            get("/app/poll", &format!("Origin: {ORIGIN}\r\n")),
            200,
            "an allowed Origin",
        ),
        (
            post(&format!("Origin: {ORIGIN}\r\n")),
            200,
            "an allowed POST",
        ),
    ];
    for (request, want, what) in cases {
        let got = raw_request(
            guard.addr,
            false,
            request
                .replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(status_of(&got), want, "{what}: {got}");
    }
    let heads = backend.heads();
    assert_eq!(
        heads.len(),
        3,
        "only the allowed requests reached the backend: {heads:?}"
    );
    assert!(heads.iter().all(|h| !h.contains("evil")), "{heads:?}");
    assert_eq!(
        guard.metric("wsguard_http_requests_total{route=\"/app\",status=\"403\"}"),
        5.0
    );
}

#[tokio::test]
async fn an_upload_over_the_cap_is_413_and_never_whole_at_the_backend() {
    let backend = RawBackend::start(Reply::Path).await;
    let guard = guard(&backend, "max_request_body = 1000\n").await;
    let declared = format!(
        "POST /app/send HTTP/1.1\r\nHost: h\r\nOrigin: {ORIGIN}\r\nContent-Length: 1001\r\n\r\n{}",
        "x".repeat(1001)
    );
    let got = raw_request(guard.addr, false, declared.as_bytes()).await;
    assert_eq!(status_of(&got), 413, "{got}");
    let chunked = format!(
        "POST /app/send HTTP/1.1\r\nHost: h\r\nOrigin: {ORIGIN}\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{}\r\n258\r\n{}\r\n0\r\n\r\n",
        "y".repeat(600),
        "z".repeat(600)
    );
    let got = raw_request(guard.addr, false, chunked.as_bytes()).await;
    assert_eq!(status_of(&got), 413, "{got}");
    assert!(
        backend.requests().is_empty(),
        "no upload reached the backend whole"
    );
    let fits = format!(
        "POST /app/send HTTP/1.1\r\nHost: h\r\nOrigin: {ORIGIN}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n{}\r\n0\r\n\r\n",
        "w".repeat(1000)
    );
    let got = raw_request(guard.addr, false, fits.as_bytes()).await;
    assert_eq!(status_of(&got), 200, "{got}");
    assert_eq!(backend.requests()[0].1.len(), 1000);
}

#[tokio::test]
async fn a_stalled_upload_is_408_and_a_silent_backend_504() {
    let backend = RawBackend::start(Reply::Path).await;
    let guard = guard(
        &backend,
        "body_idle_timeout = \"300ms\"\nresponse_head_timeout = \"1s\"\n",
    )
    .await;
    let mut io = TcpStream::connect(guard.addr).await.unwrap();
    let head = format!(
        "POST /app/send HTTP/1.1\r\nHost: h\r\nOrigin: {ORIGIN}\r\nContent-Length: 10\r\n\r\nabc"
    );
    io.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let (head, _) = answer(&mut io, &mut buf).await;
    assert_eq!(status_of(&head), 408, "{head}");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert!(backend.requests().is_empty());

    let silent = RawBackend::start(Reply::Silent).await;
    let guard = self::guard(&silent, "response_head_timeout = \"500ms\"\n").await;
    let got = raw_request(
        guard.addr,
        false,
        get("/app/poll", "Connection: close\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&got), 504, "{got}");
    assert_eq!(silent.heads().len(), 1);
}

#[tokio::test]
async fn a_held_long_poll_passes_and_a_stream_arrives_chunk_by_chunk() {
    let slow = RawBackend::start(Reply::After(Duration::from_millis(1500))).await;
    let guard = guard(&slow, "response_head_timeout = \"3s\"\n").await;
    let got = raw_request(
        guard.addr,
        false,
        get("/app/poll", "Connection: close\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&got), 200, "{got}");

    let streaming = RawBackend::start(Reply::Stream(Duration::from_millis(800))).await;
    let guard = self::guard(&streaming, "").await;
    let mut io = TcpStream::connect(guard.addr).await.unwrap();
    io.write_all(get("/app/stream", "").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let head = within("head", read_until_blank(&mut io, &mut buf))
        .await
        .unwrap();
    assert_eq!(status_of(&head), 200);
    let started = Instant::now();
    fill(&mut io, &mut buf, 10).await.unwrap();
    assert!(String::from_utf8_lossy(&buf).contains("first"));
    assert!(
        !String::from_utf8_lossy(&buf).contains("second"),
        "the first chunk came alone, before the backend sent the second"
    );
    let body = within("rest", read_body(&mut io, &mut buf, &head))
        .await
        .unwrap();
    assert_eq!(body, b"firstsecond");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn smuggling_shapes_and_other_upgrades_never_reach_the_backend_as_sent() {
    let backend = RawBackend::start(Reply::Path).await;
    let guard = guard(&backend, "").await;
    let o = format!("Origin: {ORIGIN}\r\n");
    let cases = [
        (format!("POST /app/a HTTP/1.1\r\nHost: h\r\n{o}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"), 400, "two Content-Lengths"),
        (format!("GET /app/a HTTP/1.1\r\nHost: h\r\n{o}X-Folded: a\r\n b\r\n\r\n"), 400, "an obs-fold"),
        (format!("GET /app/a HTTP/1.1\r\nHost: h\r\n{o}Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"), 400, "an h2c upgrade"),
        (format!("CONNECT /app/a HTTP/1.1\r\nHost: h\r\n{o}Connection: close\r\n\r\n"), 405, "CONNECT"),
        (format!("TRACE /app/a HTTP/1.1\r\nHost: h\r\n{o}Connection: close\r\n\r\n"), 405, "TRACE"),
        (format!("POST /app/a HTTP/1.1\r\nHost: h\r\n{o}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n"), 400, "a chunk size overflow"),
    ];
    for (request, want, what) in cases {
        let got = raw_request(guard.addr, false, request.as_bytes()).await;
        assert_eq!(status_of(&got), want, "{what}: {got}");
    }
    assert!(backend.requests().is_empty(), "{:?}", backend.heads());

    // CL beside TE: the chunked body is what counts (RFC 9112 §6.1); the backend gets one
    // request with the length wsguard framed, and the smuggled request behind it never.
    let smuggle = format!(
        "POST /app/a HTTP/1.1\r\nHost: h\r\n{o}Content-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nGET /app/smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
    );
    let got = raw_request(guard.addr, false, smuggle.as_bytes()).await;
    assert_eq!(status_of(&got), 200, "{got}");
    let seen = backend.requests();
    assert_eq!(seen[0].1, b"hi");
    assert!(
        !seen[0]
            .0
            .to_ascii_lowercase()
            .contains("content-length: 50"),
        "{}",
        seen[0].0
    );
    assert!(
        got.to_ascii_lowercase().contains("connection: close"),
        "closed after a CL+TE request: {got}"
    );
    assert!(
        seen.iter().all(|(h, _)| !h.contains("smuggled")),
        "{seen:?}"
    );

    // A bare LF ends lines as CRLF does (RFC 9112 §2.2); the backend gets CRLF.
    let bare = format!("GET /app/lf HTTP/1.1\nHost: h\nOrigin: {ORIGIN}\nConnection: close\n\n");
    let got = raw_request(guard.addr, false, bare.as_bytes()).await;
    assert_eq!(status_of(&got), 200, "{got}");
    let lf = backend
        .heads()
        .into_iter()
        .find(|h| h.contains("/app/lf"))
        .unwrap();
    assert!(!lf.replace("\r\n", "").contains('\n'), "{lf:?}");
}

#[tokio::test]
async fn a_response_splitting_backend_is_502() {
    let backend = RawBackend::start(Reply::Split).await;
    let guard = guard(&backend, "").await;
    let got = raw_request(
        guard.addr,
        false,
        get("/app/a", "Connection: close\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&got), 502, "{got}");
    assert!(!got.contains("evil"), "{got}");
}

#[tokio::test]
async fn a_pipeline_of_1000_requests_is_answered_in_order() {
    let backend = RawBackend::start(Reply::Path).await;
    let guard = guard(&backend, "").await;
    let mut io = TcpStream::connect(guard.addr).await.unwrap();
    let all: String = (0..1000).map(|i| get(&format!("/app/{i}"), "")).collect();
    let (mut read, mut write) = io.split();
    let writing = async { write.write_all(all.as_bytes()).await.unwrap() };
    let reading = async {
        let mut buf = Vec::new();
        for i in 0..1000 {
            let (head, body) = answer(&mut read, &mut buf).await;
            assert_eq!(status_of(&head), 200);
            assert_eq!(body, format!("/app/{i}").as_bytes());
        }
    };
    timeout(Duration::from_secs(60), async {
        tokio::join!(writing, reading)
    })
    .await
    .expect("1000 answers in time");
    assert_eq!(backend.heads().len(), 1000);
    assert!(
        *backend.connections.lock().unwrap() <= 2,
        "pooled: {}",
        backend.connections.lock().unwrap()
    );
}

#[tokio::test]
async fn the_request_quotas_answer_429() {
    let backend = RawBackend::start(Reply::After(Duration::from_millis(700))).await;
    let guard = guard(
        &backend,
        "requests_per_ip = 6\nrequest_burst = 3\nheld_requests_per_ip = 1\n",
    )
    .await;
    let hold = tokio::spawn(raw_request(
        guard.addr,
        false,
        get("/app/held", "Connection: close\r\n")
            .into_bytes()
            .leak(),
    ));
    sleep(Duration::from_millis(200)).await;
    let got = raw_request(
        guard.addr,
        false,
        get("/app/second", "Connection: close\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&got), 429, "one held request per IP: {got}");
    assert_eq!(status_of(&hold.await.unwrap()), 200);
    let got = raw_request(
        guard.addr,
        false,
        get("/app/third", "Connection: close\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&got), 200, "{got}");
    let got = raw_request(
        guard.addr,
        false,
        get("/app/fourth", "Connection: close\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&got), 429, "the burst of 3 is spent: {got}");
    assert!(header_of(&got, "retry-after").is_some(), "{got}");
    assert_eq!(
        guard.metric("wsguard_rate_limited_total{reason=\"ip_request_rate\"}"),
        1.0
    );
    assert_eq!(
        guard.metric("wsguard_rate_limited_total{reason=\"ip_held_requests\"}"),
        1.0
    );
    let heads = backend.heads();
    assert!(
        heads
            .iter()
            .all(|h| !h.contains("second") && !h.contains("fourth")),
        "{heads:?}"
    );
}

#[tokio::test]
async fn a_route_without_http_still_answers_426() {
    let backend = RawBackend::start(Reply::Path).await;
    let guard = start_guard(false, &chat_route(backend.addr)).await;
    let got = raw_request(
        guard.addr,
        false,
        get("/chat", &format!("Origin: {ORIGIN}\r\n")).as_bytes(),
    )
    .await;
    assert_eq!(status_of(&got), 426, "{got}");
    assert!(backend.requests().is_empty());
}

#[tokio::test]
async fn every_request_is_authenticated_and_a_held_poll_ends_with_its_token() {
    use jsonwebtoken::{encode, EncodingKey, Header};
    const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256!";
    let backend = RawBackend::start(Reply::After(Duration::from_secs(4))).await;
    let dir = TempDir::new("passthrough-auth");
    let secret = dir.0.join("hs.secret");
    std::fs::write(&secret, SECRET).unwrap();
    let guard = start_guard(
        false,
        &format!(
            "[origin]\nallow = [\"{ORIGIN}\"]\n\n[auth.users]\ntype = \"jwt\"\nalgorithms = [\"HS256\"]\nhmac_secret_file = {secret:?}\nquery = \"access_token\"\nleeway = \"0s\"\nclaim_headers = {{ sub = \"X-Auth-Subject\" }}\n\n[[route]]\npath = \"/app\"\nmatch = \"prefix\"\nhttp = true\nauth = \"users\"\nbackends = [\"{}\"]\n",
            backend.addr
        ),
    )
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({ "sub": "alice", "exp": now + 2 });
    let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    let token = encode(&Header::default(), &claims, &key).unwrap();
    let get_with = |t: &str| {
        get(
            &format!("/app/poll?EIO=4&access_token={t}"),
            "Connection: close\r\n",
        )
    };

    let got = raw_request(
        guard.addr,
        false,
        get("/app/poll", "Connection: close\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&got), 401, "no token: {got}");
    let started = Instant::now();
    let got = raw_request(guard.addr, false, get_with(&token).as_bytes()).await;
    assert_eq!(
        status_of(&got),
        401,
        "the token ran out while the poll was held: {got}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(3500),
        "ended at exp: {:?}",
        started.elapsed()
    );
    let heads = backend.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].contains("GET /app/poll?EIO=4 "),
        "the token is stripped: {}",
        heads[0]
    );
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains("x-auth-subject: alice"),
        "{}",
        heads[0]
    );
    let got = raw_request(guard.addr, false, get_with(&token).as_bytes()).await;
    assert_eq!(status_of(&got), 401, "the next request after exp: {got}");
    assert_eq!(backend.heads().len(), 1);
}

#[tokio::test]
async fn a_drain_ends_a_held_long_poll_with_503_at_once() {
    let backend = RawBackend::start(Reply::Silent).await;
    let mut guard = guard(&backend, "").await;
    let held = tokio::spawn(raw_request(
        guard.addr,
        false,
        get("/app/held", "Connection: close\r\n")
            .into_bytes()
            .leak(),
    ));
    assert!(
        wait_until(|| backend.heads().len() == 1).await,
        "the poll is held"
    );
    let started = Instant::now();
    guard.shutdown();
    let got = within("the held poll's answer", held).await.unwrap();
    assert_eq!(status_of(&got), 503, "{got}");
    assert!(header_of(&got, "retry-after").is_some(), "{got}");
    guard.stopped().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
