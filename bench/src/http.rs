//! The HTTP/1.1 modes of `run`, on hyper's client connections (one keep-alive
//! connection each, one request in flight on it at a time, as a browser):
//!
//! - `longpoll`: N Engine.IO v4 polling sessions. Each makes the handshake GET, then keeps
//!   a GET held on one connection and POSTs one message (`4<send time>`) a second on a
//!   second connection (session i at i/N of each second); the backend answers the held GET
//!   with it. Measured: the POST's round trip and the delivery (POST sent → the held GET's
//!   answer read), proxy CPU per request (POSTs and GET answers), and the proxy's RSS with
//!   every GET held (POSTs stopped) against its RSS before the first session.
//! - `http`: C connections sending small GETs at R requests/s in all (connection i's k-th
//!   request due at (i + kC)/R s; one that falls due while the previous is out goes as soon
//!   as it is answered). Latency is from the request's send to its answer's last byte.
//!
//! Session i's connections come from source address `--source` + (i mod 256)·256 + i/256:
//! a different /24 for neighbours (nginx's `ip_hash` keys on the first three octets).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, ORIGIN};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio::task::JoinSet;

use crate::load::percentiles;
use crate::procstat::{self, Sample, TICKS_PER_SEC};

/// Engine.IO's packet separator in a v4 polling payload.
const SEPARATOR: u8 = 0x1e;
/// Sessions (or connections) opening at once.
const OPEN_CONCURRENCY: usize = 64;
/// With the POSTs stopped, how long every GET is left held before the RSS is read.
const SETTLE: Duration = Duration::from_millis(1500);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Longpoll,
    Http,
}

pub struct Config {
    pub mode: Mode,
    /// Where to connect (an IPv4 address), the Host header and the path (with any query).
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    pub origin: String,
    /// Sessions (longpoll) or connections (http).
    pub conns: u32,
    /// Requests per second in all (http mode).
    pub rate: f64,
    /// First source address; `None`: the kernel's choice (127.0.0.1).
    pub source: Option<Ipv4Addr>,
    pub warmup: Duration,
    pub duration: Duration,
    pub pids: Vec<u32>,
    pub backend_pids: Vec<u32>,
}

/// `http://HOST:PORT/PATH` → (address to connect to, Host header, path and query);
/// `localhost` connects to 127.0.0.1.
pub fn parse_url(url: &str) -> Result<(SocketAddr, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: the HTTP modes take http:// URLs"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("{url}: no port"))?;
    let port: u16 = port.parse().map_err(|_| format!("{url}: bad port"))?;
    let ip: Ipv4Addr = if host == "localhost" {
        Ipv4Addr::LOCALHOST
    } else {
        host.parse()
            .map_err(|_| format!("{url}: the host must be localhost or an IPv4 address"))?
    };
    Ok((
        SocketAddr::V4(SocketAddrV4::new(ip, port)),
        authority.to_owned(),
        path.to_owned(),
    ))
}

struct Shared {
    t0: Instant,
    stop: AtomicBool,
    /// POSTs stop; the GETs stay held.
    quiet: AtomicBool,
    win_start: AtomicU64,
    win_end: AtomicU64,
    /// Requests answered inside the window (GET answers and POSTs).
    requests: AtomicU64,
    posts: AtomicU64,
    delivered: AtomicU64,
    errors: AtomicU64,
    /// 400 "Session ID unknown": a request that reached a backend without its session.
    unknown_sid: AtomicU64,
    reconnects: AtomicU64,
    first_error: Mutex<Option<String>>,
    backends: Mutex<BTreeMap<String, u64>>,
    post_rtt: Mutex<Vec<u64>>,
    delivery: Mutex<Vec<u64>>,
    latency: Mutex<Vec<u64>>,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            t0: Instant::now(),
            stop: AtomicBool::new(false),
            quiet: AtomicBool::new(false),
            win_start: AtomicU64::new(u64::MAX),
            win_end: AtomicU64::new(u64::MAX),
            requests: AtomicU64::new(0),
            posts: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            unknown_sid: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            first_error: Mutex::new(None),
            backends: Mutex::new(BTreeMap::new()),
            post_rtt: Mutex::new(Vec::new()),
            delivery: Mutex::new(Vec::new()),
            latency: Mutex::new(Vec::new()),
        }
    }
    fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }
    fn in_window(&self, ns: u64) -> bool {
        ns >= self.win_start.load(Ordering::Relaxed) && ns < self.win_end.load(Ordering::Relaxed)
    }
    fn error(&self, msg: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap();
        if first.is_none() {
            *first = Some(msg);
        }
    }
}

/// One keep-alive connection from one source address; reopened when the peer closes it.
struct Client {
    cfg: Arc<Config>,
    source: Option<Ipv4Addr>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    fn new(cfg: Arc<Config>, source: Option<Ipv4Addr>) -> Client {
        Client {
            cfg,
            source,
            sender: None,
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
        if let Some(ip) = self.source {
            socket
                .bind(SocketAddr::V4(SocketAddrV4::new(ip, 0)))
                .map_err(|e| format!("bind {ip}: {e}"))?;
        }
        let stream = socket
            .connect(self.cfg.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.cfg.addr))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        Ok(sender)
    }

    /// One request; its status and whole body.
    async fn request(
        &mut self,
        shared: &Shared,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, hyper::HeaderMap, Bytes), String> {
        let mut sender = match self.sender.take() {
            Some(mut s) => match s.ready().await {
                Ok(()) => s,
                Err(_) => {
                    shared.reconnects.fetch_add(1, Ordering::Relaxed);
                    self.connect().await?
                }
            },
            None => self.connect().await?,
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.cfg.host.as_str())
            .header(ORIGIN, self.cfg.origin.as_str());
        if !body.is_empty() {
            req = req.header(CONTENT_TYPE, "text/plain;charset=UTF-8");
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| format!("request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("{path}: body: {e}"))?
            .to_bytes();
        self.sender = Some(sender);
        Ok((parts.status, parts.headers, body))
    }
}

fn source(cfg: &Config, i: u32) -> Option<Ipv4Addr> {
    let first = u32::from(cfg.source?);
    Some(Ipv4Addr::from(first + (i % 256) * 256 + i / 256))
}

fn sample(pids: &[u32], shared: &Shared) -> Option<Sample> {
    if pids.is_empty() {
        return None;
    }
    procstat::sample(pids).map_err(|e| shared.error(e)).ok()
}

fn util(a: Option<Sample>, b: Option<Sample>, secs: f64) -> Value {
    match (a, b) {
        (Some(a), Some(b)) => {
            json!(b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / TICKS_PER_SEC / secs)
        }
        _ => Value::Null,
    }
}

pub async fn run(cfg: Config) -> Value {
    let cfg = Arc::new(cfg);
    let shared = Arc::new(Shared::new());
    let me = [std::process::id()];
    let idle = sample(&cfg.pids, &shared);
    let mut tasks = JoinSet::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(OPEN_CONCURRENCY));
    let opened = Arc::new(AtomicU64::new(0));
    for i in 0..cfg.conns {
        let (cfg, shared, gate, opened) =
            (cfg.clone(), shared.clone(), gate.clone(), opened.clone());
        match cfg.mode {
            Mode::Longpoll => tasks.spawn(session(i, cfg, shared, gate, opened)),
            Mode::Http => tasks.spawn(getter(i, cfg, shared, gate, opened)),
        };
    }
    // Every session open (or failed), then the warm-up.
    let open_deadline = Instant::now() + Duration::from_secs(60);
    while opened.load(Ordering::Relaxed) < u64::from(cfg.conns) && Instant::now() < open_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let opened = opened.load(Ordering::Relaxed);
    tokio::time::sleep(cfg.warmup).await;

    let before = (
        sample(&cfg.pids, &shared),
        sample(&cfg.backend_pids, &shared),
        sample(&me, &shared),
    );
    let r0 = shared.requests.load(Ordering::Relaxed);
    let w0 = Instant::now();
    shared.win_start.store(shared.now_ns(), Ordering::Relaxed);
    tokio::time::sleep(cfg.duration).await;
    shared.win_end.store(shared.now_ns(), Ordering::Relaxed);
    let r1 = shared.requests.load(Ordering::Relaxed);
    let secs = w0.elapsed().as_secs_f64();
    let after = (
        sample(&cfg.pids, &shared),
        sample(&cfg.backend_pids, &shared),
        sample(&me, &shared),
    );
    let requests = r1 - r0;

    let mut v = json!({
        "mode": format!("{:?}", cfg.mode).to_lowercase(),
        "url": format!("http://{}{}", cfg.host, cfg.path),
        "conns": cfg.conns,
        "opened": opened,
        "warmup_s": cfg.warmup.as_secs_f64(),
        "duration_s": secs,
        "requests": requests,
        "requests_per_s": requests as f64 / secs,
        "date": crate::load::now_rfc3339(),
    });
    // Answers to requests sent in the window that came after it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    v["proxy_cpu_util"] = util(before.0, after.0, secs);
    v["backend_cpu_util"] = util(before.1, after.1, secs);
    v["loadgen_cpu_util"] = util(before.2, after.2, secs);
    if let (Some(a), Some(b)) = (before.0, after.0) {
        let us = b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / TICKS_PER_SEC * 1e6;
        v["cpu_us_per_request"] = json!(us / requests.max(1) as f64);
        v["rss_kib"] = json!(b.rss_kib);
    }

    match cfg.mode {
        Mode::Longpoll => {
            v["posts"] = json!(shared.posts.load(Ordering::Relaxed));
            v["delivered"] = json!(shared.delivered.load(Ordering::Relaxed));
            v["post_rtt_us"] = percentiles(&mut shared.post_rtt.lock().unwrap());
            v["delivery_us"] = percentiles(&mut shared.delivery.lock().unwrap());
            v["sessions_per_backend"] = json!(*shared.backends.lock().unwrap());
            // Every GET held, nothing else in flight.
            shared.quiet.store(true, Ordering::Relaxed);
            tokio::time::sleep(SETTLE).await;
            let held = sample(&cfg.pids, &shared);
            if let (Some(i), Some(h)) = (idle, held) {
                v["rss_idle_kib"] = json!(i.rss_kib);
                v["rss_held_kib"] = json!(h.rss_kib);
                v["kib_per_held"] =
                    json!((h.rss_kib as f64 - i.rss_kib as f64) / opened.max(1) as f64);
            }
        }
        Mode::Http => {
            v["rate_target"] = json!(cfg.rate);
            v["latency_us"] = percentiles(&mut shared.latency.lock().unwrap());
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    tasks.abort_all();
    v["errors"] = json!(shared.errors.load(Ordering::Relaxed));
    v["unknown_sid"] = json!(shared.unknown_sid.load(Ordering::Relaxed));
    v["reconnects"] = json!(shared.reconnects.load(Ordering::Relaxed));
    v["first_error"] = json!(*shared.first_error.lock().unwrap());
    v
}

fn polling_path(cfg: &Config, sid: Option<&str>) -> String {
    let sep = if cfg.path.contains('?') { '&' } else { '?' };
    match sid {
        Some(sid) => format!("{}{sep}EIO=4&transport=polling&sid={sid}", cfg.path),
        None => format!("{}{sep}EIO=4&transport=polling", cfg.path),
    }
}

/// One Engine.IO session: handshake, then the held GETs on one connection and a POST a
/// second on another.
async fn session(
    i: u32,
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    gate: Arc<tokio::sync::Semaphore>,
    opened: Arc<AtomicU64>,
) {
    let src = source(&cfg, i);
    let mut get = Client::new(cfg.clone(), src);
    let mut post = Client::new(cfg.clone(), src);
    let sid = {
        let _permit = gate.acquire().await;
        let sid = handshake(&cfg, &shared, &mut get).await;
        // The POST connection opens now too, so none opens in the window.
        if let Err(e) = post.sender_ready().await {
            shared.error(format!("session {i}: {e}"));
        }
        opened.fetch_add(1, Ordering::Relaxed);
        match sid {
            Ok(s) => s,
            Err(e) => {
                shared.error(format!("session {i}: handshake: {e}"));
                return;
            }
        }
    };
    let get_path = polling_path(&cfg, Some(&sid));
    let post_path = get_path.clone();
    let poller = {
        let shared = shared.clone();
        tokio::spawn(async move {
            while !shared.stop.load(Ordering::Relaxed) {
                match get
                    .request(&shared, Method::GET, &get_path, Bytes::new())
                    .await
                {
                    Ok((StatusCode::OK, _, body)) => {
                        let now = shared.now_ns();
                        if shared.in_window(now) {
                            shared.requests.fetch_add(1, Ordering::Relaxed);
                        }
                        for packet in body.split(|b| *b == SEPARATOR) {
                            let Some(stamp) = packet.strip_prefix(b"4") else {
                                continue;
                            };
                            let sent: Option<u64> =
                                std::str::from_utf8(stamp).ok().and_then(|s| s.parse().ok());
                            match sent {
                                Some(sent) if shared.in_window(sent) => {
                                    shared.delivered.fetch_add(1, Ordering::Relaxed);
                                    shared.delivery.lock().unwrap().push(now - sent);
                                }
                                Some(_) => {}
                                None => shared.error(format!("session {i}: bad packet")),
                            }
                        }
                    }
                    Ok((status, _, body)) => {
                        if status == StatusCode::BAD_REQUEST {
                            shared.unknown_sid.fetch_add(1, Ordering::Relaxed);
                        }
                        shared.error(format!(
                            "session {i}: GET: {status} {}",
                            String::from_utf8_lossy(&body)
                        ));
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        shared.error(format!("session {i}: GET: {e}"));
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        })
    };
    // Session i posts at i/N of each second.
    let start = tokio::time::Instant::from_std(shared.t0)
        + Duration::from_secs_f64(f64::from(i) / f64::from(cfg.conns))
        + Duration::from_secs(1);
    let mut k = 0u32;
    loop {
        let due = start + Duration::from_secs(u64::from(k));
        k += 1;
        tokio::time::sleep_until(due).await;
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        if shared.quiet.load(Ordering::Relaxed) {
            continue;
        }
        let sent = shared.now_ns();
        let body = Bytes::from(format!("4{sent}"));
        match post.request(&shared, Method::POST, &post_path, body).await {
            Ok((StatusCode::OK, _, b)) if &b[..] == b"ok" => {
                let now = shared.now_ns();
                if shared.in_window(sent) {
                    shared.posts.fetch_add(1, Ordering::Relaxed);
                    shared.post_rtt.lock().unwrap().push(now - sent);
                }
                if shared.in_window(now) {
                    shared.requests.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok((status, _, body)) => {
                if status == StatusCode::BAD_REQUEST {
                    shared.unknown_sid.fetch_add(1, Ordering::Relaxed);
                }
                shared.error(format!(
                    "session {i}: POST: {status} {}",
                    String::from_utf8_lossy(&body)
                ));
            }
            Err(e) => shared.error(format!("session {i}: POST: {e}")),
        }
    }
    poller.abort();
}

impl Client {
    /// Opens the connection ahead of its first request.
    async fn sender_ready(&mut self) -> Result<(), String> {
        if self.sender.is_none() {
            self.sender = Some(self.connect().await?);
        }
        Ok(())
    }
}

/// The handshake GET: the session id of the open packet; counts the backend that
/// answered (its `X-Backend`).
async fn handshake(cfg: &Config, shared: &Shared, client: &mut Client) -> Result<String, String> {
    let (status, headers, body) = client
        .request(shared, Method::GET, &polling_path(cfg, None), Bytes::new())
        .await?;
    if status != StatusCode::OK {
        return Err(format!("{status} {}", String::from_utf8_lossy(&body)));
    }
    let open = body
        .split(|b| *b == SEPARATOR)
        .next()
        .and_then(|p| p.strip_prefix(b"0"))
        .ok_or("no open packet")?;
    let open: Value = serde_json::from_slice(open).map_err(|e| format!("open packet: {e}"))?;
    let sid = open["sid"].as_str().ok_or("open packet without sid")?;
    let backend = headers
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_owned();
    *shared.backends.lock().unwrap().entry(backend).or_insert(0) += 1;
    Ok(sid.to_owned())
}

/// One keep-alive connection of the http mode, on its share of the schedule.
async fn getter(
    i: u32,
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    gate: Arc<tokio::sync::Semaphore>,
    opened: Arc<AtomicU64>,
) {
    let mut client = Client::new(cfg.clone(), source(&cfg, i));
    {
        let _permit = gate.acquire().await;
        if let Err(e) = client.sender_ready().await {
            shared.error(format!("conn {i}: {e}"));
        }
        opened.fetch_add(1, Ordering::Relaxed);
    }
    let period = Duration::from_secs_f64(f64::from(cfg.conns) / cfg.rate);
    let start = tokio::time::Instant::from_std(shared.t0)
        + Duration::from_secs_f64(f64::from(i) / cfg.rate)
        + Duration::from_secs(1);
    let mut local = Vec::new();
    let mut k = 0u32;
    while !shared.stop.load(Ordering::Relaxed) {
        tokio::time::sleep_until(start + period * k).await;
        k += 1;
        let sent = shared.now_ns();
        match client
            .request(&shared, Method::GET, &cfg.path, Bytes::new())
            .await
        {
            Ok((StatusCode::OK, _, _)) => {
                let now = shared.now_ns();
                if shared.in_window(sent) {
                    local.push(now - sent);
                }
                if shared.in_window(now) {
                    shared.requests.fetch_add(1, Ordering::Relaxed);
                }
                // Hand the samples over before the window's end is read.
                if local.len() >= 256 || !shared.in_window(now) && !local.is_empty() {
                    shared.latency.lock().unwrap().append(&mut local);
                }
            }
            Ok((status, _, body)) => {
                shared.error(format!(
                    "conn {i}: {status} {}",
                    String::from_utf8_lossy(&body)
                ));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                shared.error(format!("conn {i}: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
