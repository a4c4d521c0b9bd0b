//! Test harness: wsguard in-process on an ephemeral port, real backends on
//! ephemeral ports, real clients (tokio-tungstenite over rustls trusting the
//! dev CA, and a raw socket client for hostile bytes). Every wait is bounded.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod auth_service;
pub mod jwks;
pub mod redis;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use wsguard::config::Config;
use wsguard::frame::FrameHeader;
use wsguard::server::{Proxy, ProxyHandle, Server};
use wsguard::state::State;

/// Upper bound for any single step of a test.
pub const STEP: Duration = Duration::from_secs(10);

pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A directory with throwaway development certificates (ca.crt, ca.key,
/// localhost.crt, localhost.key), made once per test process by wsguard's
/// own generator under target/tmp; those of processes that have ended are
/// removed first.
#[cfg(feature = "demo")]
pub fn certs() -> std::path::PathBuf {
    use std::path::{Path, PathBuf};
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let parent = Path::new(env!("CARGO_TARGET_TMPDIR"));
        for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let pid = name.to_str().and_then(|n| n.strip_prefix("certs-"));
            if pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = parent.join(format!("certs-{}", std::process::id()));
        wsguard::dev_certs::DevCerts::in_dir(&dir)
            .regenerate()
            .expect("development certificates");
        dir
    })
    .clone()
}

/// The certificate generator is part of the `demo` feature.
#[cfg(not(feature = "demo"))]
pub fn certs() -> std::path::PathBuf {
    panic!("TLS tests need the default `demo` feature: it holds the certificate generator")
}

/// A running wsguard.
pub struct Guard {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    handle: ProxyHandle,
    tls: bool,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Guard {
    /// Starts the drain, as SIGTERM would.
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for the server task to finish its drain.
    pub async fn stopped(&mut self) {
        within("drain", &mut self.task).await.unwrap();
    }

    /// Applies a new configuration (same TLS setting, `server` and `body` as
    /// for [`start_guard_with`]) the way SIGHUP does.
    pub fn reload(&self, server: &str, body: &str) {
        let config = test_config(self.tls, server, body);
        self.handle.reload(config).expect("reloaded proxy starts");
    }

    /// The Prometheus exposition, as `/metrics` serves it.
    pub fn metrics(&self) -> String {
        self.state.metrics.encode()
    }

    /// The value of one series (`name{labels}`), 0 when it has no sample yet.
    pub fn metric(&self, series: &str) -> f64 {
        sample(&self.metrics(), series).unwrap_or(0.0)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The value of one sample line, e.g. `wsguard_frames_total{direction="up"}`.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Starts wsguard with `extra` TOML appended to a base config that listens
/// on an ephemeral port (TLS with the dev certificate when `tls`).
pub async fn start_guard(tls: bool, body: &str) -> Guard {
    start_guard_with(tls, "", body).await
}

/// As [`start_guard`], with extra `[server]` keys; a key given there
/// replaces the test default of the same name.
pub async fn start_guard_with(tls: bool, server: &str, body: &str) -> Guard {
    let config = test_config(tls, server, body);
    let state = Arc::new(State::new(&config.limits).expect("shared limits start"));
    let proxy = Proxy::new(config, &state).expect("proxy starts");
    let server = Server::bind(proxy, state.clone()).await.expect("binds");
    let addr = server.local_addr();
    let handle = server.handle();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    Guard {
        addr,
        state,
        handle,
        tls,
        shutdown: Some(tx),
        task,
    }
}

/// The test configuration: an ephemeral port, short timeouts, `server`
/// keys and then `body`.
fn test_config(tls: bool, server: &str, body: &str) -> Config {
    let tls_keys = if tls {
        let certs = certs();
        format!(
            "tls_cert = {:?}\ntls_key = {:?}\n",
            certs.join("localhost.crt"),
            certs.join("localhost.key")
        )
    } else {
        String::new()
    };
    let defaults: String = [
        ("handshake_timeout", "2s"),
        ("close_timeout", "1s"),
        ("backend_connect_timeout", "1s"),
    ]
    .iter()
    .filter(|(key, _)| !server.contains(key))
    .map(|(key, value)| format!("{key} = \"{value}\"\n"))
    .collect();
    let src = format!("[server]\nlisten = \"127.0.0.1:0\"\n{tls_keys}{defaults}{server}{body}");
    Config::from_str(&src, "test.toml").unwrap_or_else(|e| panic!("{e}\n{src}"))
}

/// A config body with one route `/chat` to `backend` and the usual origins.
pub fn chat_route(backend: SocketAddr) -> String {
    format!(
        "[origin]\nallow = [\"https://chat.example.com\", \"https://*.example.org\"]\n\n[[route]]\npath = \"/chat\"\nbackends = [\"{backend}\"]\n"
    )
}

// === backends ===

/// What a backend saw: connections and every frame (header, unmasked payload).
#[derive(Default)]
pub struct Seen {
    pub connections: AtomicUsize,
    pub requests: Mutex<Vec<String>>,
    pub frames: Mutex<Vec<(FrameHeader, Vec<u8>)>>,
}

impl Seen {
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
    pub fn frames(&self) -> Vec<(FrameHeader, Vec<u8>)> {
        self.frames.lock().unwrap().clone()
    }
    pub fn payloads(&self) -> Vec<Vec<u8>> {
        self.frames().into_iter().map(|(_, p)| p).collect()
    }

    /// The payloads once there are `n`, or what there is after the step bound.
    pub async fn settle(&self, n: usize) -> Vec<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let got = self.payloads();
            if got.len() >= n || tokio::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

pub struct Backend {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a test backend answers the upgrade.
#[derive(Clone)]
pub enum Answer {
    /// A correct 101, optionally choosing a subprotocol, then a recording echo.
    Echo { protocol: Option<&'static str> },
    /// Raw bytes instead of a correct answer (wrong accept key, 200, …).
    Raw(&'static str),
    /// A correct 101 followed by these raw frame bytes.
    Then(Vec<u8>),
}

/// A raw-socket backend that records what it receives and echoes frames
/// (unmasked) back: lenient, so the proxy is what enforces the rules.
pub async fn start_backend(answer: Answer) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let seen2 = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            seen2.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(backend_conn(stream, answer.clone(), seen2.clone()));
        }
    });
    Backend { addr, seen, task }
}

async fn backend_conn(mut stream: TcpStream, answer: Answer, seen: Arc<Seen>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    seen.requests.lock().unwrap().push(head.clone());
    let ok = switching_protocols(&head);
    match &answer {
        Answer::Raw(raw) => {
            let _ = stream.write_all(raw.as_bytes()).await;
            let _ = stream.shutdown().await;
            return;
        }
        Answer::Echo { protocol } => {
            let mut resp = ok;
            if let Some(p) = protocol {
                resp.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
            }
            resp.push_str("\r\n");
            if stream.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
        }
        Answer::Then(frames) => {
            let mut resp = ok.into_bytes();
            resp.extend_from_slice(b"\r\n");
            resp.extend_from_slice(frames);
            if stream.write_all(&resp).await.is_err() {
                return;
            }
        }
    }
    buf.drain(..head_end);
    echo_frames(stream, buf, seen).await;
}

/// The head of a correct 101 for `request` (its `Sec-WebSocket-Key`), with
/// no blank line yet so callers can add headers.
fn switching_protocols(request: &str) -> String {
    let key = request
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("sec-websocket-key:")
                .then(|| l[18..].trim().to_owned())
        })
        .unwrap_or_default();
    let accept = wsguard::handshake::accept_key(key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    )
}

/// Parses frames, records them, echoes each one back unmasked.
async fn echo_frames(mut stream: TcpStream, mut buf: Vec<u8>, seen: Arc<Seen>) {
    let mut chunk = vec![0u8; 65536];
    loop {
        while let Ok(Some((header, len))) = FrameHeader::parse(&buf) {
            let total = len + header.payload_len as usize;
            if buf.len() < total {
                break;
            }
            let mut payload = buf[len..total].to_vec();
            if let Some(key) = header.mask {
                wsguard::frame::mask::apply_mask(&mut payload, key, 0);
            }
            buf.drain(..total);
            let mut out_header = header;
            out_header.mask = None;
            let mut out = Vec::new();
            out_header.encode(&mut out);
            out.extend_from_slice(&payload);
            let is_close = header.opcode == wsguard::frame::OpCode::Close;
            seen.frames.lock().unwrap().push((header, payload));
            if stream.write_all(&out).await.is_err() {
                return;
            }
            if is_close {
                let _ = stream.shutdown().await;
                // Drain until the proxy closes.
                while let Ok(n) = stream.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                }
                return;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

// === clients ===

pub fn tls_connector() -> TlsConnector {
    tls_connector_trusting(&certs().join("ca.crt"))
}

/// A TLS client that trusts only the CA certificates in the PEM file `ca`.
pub fn tls_connector_trusting(ca: &std::path::Path) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A TCP (or TLS, trusting the dev CA) connection to wsguard.
pub async fn connect(addr: SocketAddr, tls: bool) -> Box<dyn Io> {
    let tcp = within("tcp connect", TcpStream::connect(addr))
        .await
        .unwrap();
    over(tcp, tls).await
}

/// As [`connect`], from the loopback address `source` (Linux routes all of
/// 127/8 to lo, so each is a distinct client IP).
pub async fn connect_from(source: IpAddr, addr: SocketAddr, tls: bool) -> Box<dyn Io> {
    over(tcp_from(source, addr).await, tls).await
}

/// A plain TCP connection to `addr` from `source`.
pub async fn tcp_from(source: IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    within("tcp connect", socket.connect(addr)).await.unwrap()
}

async fn over(tcp: TcpStream, tls: bool) -> Box<dyn Io> {
    if tls {
        Box::new(tls_over(&tls_connector(), tcp).await)
    } else {
        Box::new(tcp)
    }
}

/// A TLS connection to wsguard made with `connector`: connections made with one
/// connector share its session store, and the rustls client stays reachable.
pub async fn tls_connect(connector: &TlsConnector, addr: SocketAddr) -> TlsStream<TcpStream> {
    let tcp = within("tcp connect", TcpStream::connect(addr))
        .await
        .unwrap();
    tls_over(connector, tcp).await
}

async fn tls_over(connector: &TlsConnector, tcp: TcpStream) -> TlsStream<TcpStream> {
    let name = ServerName::try_from("localhost").unwrap();
    within("tls connect", connector.connect(name, tcp))
        .await
        .unwrap()
}

pub type Ws = WebSocketStream<Box<dyn Io>>;

/// A tokio-tungstenite client through wsguard with the given Origin.
pub async fn ws_client(
    addr: SocketAddr,
    tls: bool,
    path: &str,
    origin: Option<&str>,
    protocols: Option<&str>,
) -> Result<(Ws, http::Response<Option<Vec<u8>>>), tokio_tungstenite::tungstenite::Error> {
    let io = connect(addr, tls).await;
    ws_over(io, addr, tls, path, origin, protocols).await
}

/// As [`ws_client`], over a connection to wsguard made by the caller.
pub async fn ws_over<S: Io>(
    io: S,
    addr: SocketAddr,
    tls: bool,
    path: &str,
    origin: Option<&str>,
    protocols: Option<&str>,
) -> Result<
    (WebSocketStream<S>, http::Response<Option<Vec<u8>>>),
    tokio_tungstenite::tungstenite::Error,
> {
    let scheme = if tls { "wss" } else { "ws" };
    let mut req = Request::builder()
        .uri(format!("{scheme}://localhost:{}{path}", addr.port()))
        .header("Host", format!("localhost:{}", addr.port()))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tokio_tungstenite::tungstenite::handshake::client::generate_key(),
        );
    if let Some(o) = origin {
        req = req.header("Origin", o);
    }
    if let Some(p) = protocols {
        req = req.header("Sec-WebSocket-Protocol", p);
    }
    let config = WebSocketConfig::default();
    within(
        "websocket handshake",
        tokio_tungstenite::client_async_with_config(req.body(()).unwrap(), io, Some(config)),
    )
    .await
}

/// A normal client (the allowed Origin, `/chat`) still upgrades and gets `text` echoed.
pub async fn chat_round_trip(addr: SocketAddr, tls: bool, text: &str) {
    let origin = Some("https://chat.example.com");
    let (mut ws, _) = ws_client(addr, tls, "/chat", origin, None)
        .await
        .expect("a normal client still upgrades");
    round_trip(&mut ws, text).await;
}

/// Sends a text message and waits for its echo.
pub async fn round_trip<S: Io>(ws: &mut WebSocketStream<S>, text: &str) {
    within("send", ws.send(Message::text(text))).await.unwrap();
    let got = within("echo", ws.next()).await.unwrap().unwrap();
    assert_eq!(got, Message::text(text));
}

/// Sends raw request bytes, returns the whole answer as text (until close).
pub async fn raw_request(addr: SocketAddr, tls: bool, request: &[u8]) -> String {
    let mut io = connect(addr, tls).await;
    within("write request", io.write_all(request))
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = within("read answer", io.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

/// The status code in an HTTP answer.
pub fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

/// A valid upgrade request for `path` with extra header lines.
pub fn upgrade_request(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
    .into_bytes()
}

// === raw frames ===

/// One client frame: FIN flag, opcode, payload, masked with `key`.
pub fn frame(fin: bool, opcode: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let mask_bit = if key.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n < 65536 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mut body = payload.to_vec();
    if let Some(k) = key {
        out.extend_from_slice(&k);
        wsguard::frame::mask::apply_mask(&mut body, k, 0);
    }
    out.extend_from_slice(&body);
    out
}

/// A fresh, non-zero, non-repeating mask key per call.
pub fn key() -> Option<[u8; 4]> {
    static NEXT: AtomicUsize = AtomicUsize::new(0x1234_5678);
    let n = NEXT.fetch_add(0x0101_0101, Ordering::Relaxed) as u32;
    Some(n.to_be_bytes())
}

/// An upgraded raw connection to wsguard (101 read and checked).
pub async fn raw_ws(addr: SocketAddr, tls: bool, origin: &str) -> Box<dyn Io> {
    upgrade_raw(
        addr,
        tls,
        &upgrade_request("/chat", &format!("Origin: {origin}\r\n")),
    )
    .await
}

/// Sends `req`, reads the answer head byte by byte and asserts 101.
pub async fn upgrade_raw(addr: SocketAddr, tls: bool, req: &[u8]) -> Box<dyn Io> {
    upgrade_over(connect(addr, tls).await, req).await
}

/// As [`upgrade_raw`], over a connection made by the caller.
pub async fn upgrade_over<S: Io>(io: S, req: &[u8]) -> S {
    upgrade_with_head(io, req).await.0
}

/// As [`upgrade_over`], also returning the 101's head for header checks.
pub async fn upgrade_with_head<S: Io>(mut io: S, req: &[u8]) -> (S, String) {
    within("write upgrade", io.write_all(req)).await.unwrap();
    let head = read_head(&mut io, "read 101").await;
    assert_eq!(status_of(&head), 101, "{head}");
    (io, head)
}

/// Reads an HTTP answer's head, to its blank line and not a byte further
/// (frames may follow), within the step bound.
pub async fn read_head(io: &mut (impl AsyncRead + Unpin), what: &str) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        within(what, io.read_exact(&mut byte)).await.unwrap();
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).to_string()
}

/// The value of header `name` in an HTTP head (first match, trimmed).
pub fn header_of<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads server frames until a close frame; returns its code (and reason).
pub async fn read_close(io: &mut Box<dyn Io>) -> (Option<u16>, String) {
    let (_, code, reason) = read_to_close(io).await;
    (code, reason)
}

/// Reads server frames until a close frame: the data frames' payloads before
/// it, and its code and reason.
pub async fn read_to_close(io: &mut Box<dyn Io>) -> (Vec<Vec<u8>>, Option<u16>, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut data = Vec::new();
    loop {
        while let Ok(Some((header, len))) = FrameHeader::parse(&buf) {
            let total = len + header.payload_len as usize;
            if buf.len() < total {
                break;
            }
            assert!(header.mask.is_none(), "server frames are never masked");
            let payload = buf[len..total].to_vec();
            buf.drain(..total);
            if header.opcode == wsguard::frame::OpCode::Close {
                let code =
                    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or(&[])).to_string();
                return (data, code, reason);
            }
            if !header.opcode.is_control() {
                data.push(payload);
            }
        }
        let n = within("read close", io.read(&mut chunk)).await.unwrap_or(0);
        if n == 0 {
            return (data, None, "connection closed without a close frame".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Asserts the connection ends (EOF or reset) within the step bound.
pub async fn expect_eof(io: &mut Box<dyn Io>) {
    let mut chunk = [0u8; 4096];
    loop {
        match within("wait for close", io.read(&mut chunk)).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Echo server built on tungstenite, for round trips through TLS.
pub async fn tungstenite_echo() -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let seen2 = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            seen2.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Backend { addr, seen, task }
}

// === the built binary ===

/// wsguard as a child process with a config file in a temp dir; stderr
/// (JSON log lines) is collected for assertions.
pub struct Process {
    pub child: std::process::Child,
    pub config: std::path::PathBuf,
    pub logs: Arc<Mutex<Vec<serde_json::Value>>>,
    _dir: TempDir,
}

/// A directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wsguard-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    pub fn start(config_body: &str) -> Process {
        Process::start_with(&[], config_body)
    }

    /// As [`Process::start`], with `args` (e.g. a subcommand) first.
    pub fn start_with(args: &[&str], config_body: &str) -> Process {
        let dir = TempDir::new("proc");
        let config = dir.0.join("wsguard.toml");
        std::fs::write(&config, config_body).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wsguard"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .arg("--log-format")
            .arg("json")
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("wsguard starts");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "message": line }));
                sink.lock().unwrap().push(value);
            }
        });
        Process {
            child,
            config,
            logs,
            _dir: dir,
        }
    }

    /// Waits for a log line whose message starts with `message`.
    pub async fn wait_log(&self, message: &str) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            if let Some(v) = self.logs.lock().unwrap().iter().find(|v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
            }) {
                return v.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no log line {message:?}; got {:#?}",
                self.logs.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// How many log lines have a message starting with `message`.
    pub fn count_logs(&self, message: &str) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
            })
            .count()
    }

    /// The address from the "wsguard listening" line.
    pub async fn addr(&self) -> SocketAddr {
        let line = self.wait_log("wsguard listening").await;
        line["listen"].as_str().unwrap().parse().unwrap()
    }

    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

// === added for tests/attacks.rs ===

/// Polls `cond` until it holds or the step bound passes; returns whether it held.
pub async fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + STEP;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}

/// A backend that answers a correct 101 and then hands the raw socket to
/// `after` (which decides whether to read, write, or stall).
pub async fn start_upgraded_backend<F, Fut>(after: F) -> Backend
where
    F: Fn(TcpStream, Arc<Seen>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    start_upgraded_backend_with(|_| None, after).await
}

/// As [`start_upgraded_backend`], with the 101 carrying
/// `Sec-WebSocket-Extensions: <value>` when `extensions` returns one for the
/// request head it got.
pub async fn start_upgraded_backend_with<F, Fut>(
    extensions: fn(&str) -> Option<String>,
    after: F,
) -> Backend
where
    F: Fn(TcpStream, Arc<Seen>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let seen2 = seen.clone();
    let after = Arc::new(after);
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            seen2.connections.fetch_add(1, Ordering::SeqCst);
            let (seen, after) = (seen2.clone(), after.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let mut ok = switching_protocols(&head);
                if let Some(ext) = extensions(&head) {
                    ok.push_str(&format!("Sec-WebSocket-Extensions: {ext}\r\n"));
                }
                ok.push_str("\r\n");
                seen.requests.lock().unwrap().push(head);
                if stream.write_all(ok.as_bytes()).await.is_ok() {
                    after(stream, seen).await;
                }
            });
        }
    });
    Backend { addr, seen, task }
}

/// The built binary for tests that measure the process (RSS).
pub struct BinGuard {
    pub addr: SocketAddr,
    pub process: Process,
}

impl BinGuard {
    /// Resident set size of the wsguard process, in bytes (/proc/PID/status VmRSS).
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.child.id()))
            .expect("wsguard is running");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS line")
            * 1024
    }
}

impl BinGuard {
    /// User plus system CPU time of the wsguard process so far, in seconds
    /// (/proc/PID/stat fields 14 and 15, in clock ticks of 1/100 s).
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.process.child.id()))
            .expect("wsguard is running");
        // The command name (field 2) may hold spaces; count from after it.
        let after_name = &stat[stat.rfind(')').expect("stat has a name") + 2..];
        let fields: Vec<&str> = after_name.split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0
    }
}

/// Asserts that exactly `n` connections were dropped under `rule` before any
/// HTTP answer: the metric says `n`, and so many `connection dropped` lines.
pub fn assert_dropped(guard: &Guard, logs: &Logs, rule: &str, n: usize) {
    let series = format!("wsguard_connections_dropped_total{{reason=\"{rule}\"}}");
    assert_eq!(guard.metric(&series), n as f64, "{}", guard.metrics());
    assert_eq!(
        logs.count("connection dropped", rule),
        n,
        "log lines for {rule}"
    );
}

/// Starts `wsguard --config <temp file>` with `body` after a test `[server]`
/// section and waits for its listen address.
pub async fn start_bin_guard(body: &str) -> BinGuard {
    let process = Process::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nhandshake_timeout = \"5s\"\nclose_timeout = \"1s\"\nbackend_connect_timeout = \"2s\"\n{body}"
    ));
    let addr = process.addr().await;
    BinGuard { addr, process }
}

// === logs ===

/// This test's log lines (JSON objects, INFO and above). `#[tokio::test]`
/// runs the proxy's tasks on the test's own thread, so a thread-local
/// subscriber sees exactly this test's lines; keep the value alive for the
/// whole test.
pub struct Logs {
    buf: Arc<Mutex<Vec<u8>>>,
    _default: tracing::subscriber::DefaultGuard,
}

#[derive(Clone)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    pub fn capture() -> Logs {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = LogBuf(buf.clone());
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        Logs {
            buf,
            _default: tracing::subscriber::set_default(subscriber),
        }
    }

    pub fn lines(&self) -> Vec<serde_json::Value> {
        let buf = self.buf.lock().unwrap();
        String::from_utf8_lossy(&buf)
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|_| serde_json::json!({ "message": l }))
            })
            .collect()
    }

    /// Lines whose message starts with `message` and whose `rule` is `rule`.
    pub fn count(&self, message: &str, rule: &str) -> usize {
        self.lines()
            .iter()
            .filter(|v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
                    && v["rule"].as_str() == Some(rule)
            })
            .count()
    }
}
