//! The listener and the HTTP/1.1 side: accept, TLS within the handshake
//! timeout, one upgrade request per connection (hyper), the handshake check,
//! the backend handshake, the 101, and then the frame relay. One tracing span
//! per connection.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::client_ip::TrustedProxies;
use crate::config::{Config, FrameLimits, MaskKeyPolicy};
use crate::frame::FramePolicy;
use crate::handshake;
use crate::limits::{IpLimits, IpLimitsConfig};
use crate::metrics::{
    code_label, ClosedLabels, DirectionLabels, Metrics, ReasonLabels, RefusedLabels,
    ViolationLabels,
};
use crate::origin::AllowList;
use crate::proxy_protocol::{self, Parsed};
use crate::refusal::{Refusal, Side};
use crate::relay::{self, Ender};
use crate::upstream::{self, ClientInfo, RoundRobin};

/// hyper refuses a read buffer below 8 KiB; smaller `max_request_head`
/// values are enforced by our own count in [`head_len`].
const HYPER_MIN_BUF: usize = 8192;

/// How often idle per-IP state is dropped.
const HOUSEKEEPING: Duration = Duration::from_secs(10);

/// Everything a connection needs, shared read-only between connections.
pub struct Proxy {
    config: Config,
    origins: AllowList,
    round_robin: Vec<RoundRobin>,
    tls: Option<TlsAcceptor>,
    trusted: TrustedProxies,
    /// Per-IP state; a reload starts a fresh table (connections opened
    /// before it release their slots in the old one).
    ip_limits: IpLimits,
    /// What every relay starts from, built once per configuration.
    relay: relay::Settings,
}

/// Why the proxy could not start. Each names what to fix.
#[derive(Debug)]
pub enum StartError {
    Tls(crate::tls::TlsError),
    Origin(Vec<crate::origin::EntryError>),
    /// `limits.trusted_proxies` entries that do not parse: (index, fix).
    TrustedProxies(Vec<(usize, String)>),
    Bind(SocketAddr, std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Tls(e) => write!(f, "TLS: {e}"),
            StartError::Origin(errors) => {
                for (i, e) in errors.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "origin.allow[{}] {:?}: {}", e.index, e.entry, e.message)?;
                }
                Ok(())
            }
            StartError::TrustedProxies(errors) => {
                for (i, (index, message)) in errors.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "limits.trusted_proxies[{index}]: {message}")?;
                }
                Ok(())
            }
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

// === impl Proxy ===

impl Proxy {
    /// Loads what the configuration points at (certificates) and compiles
    /// the allow-list. Binds nothing.
    pub fn new(config: Config) -> Result<Proxy, StartError> {
        let origins = AllowList::new(&config.origin.allow, config.origin.allow_missing)
            .map_err(StartError::Origin)?;
        let tls = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => Some(TlsAcceptor::from(
                crate::tls::server_config(cert, key).map_err(StartError::Tls)?,
            )),
            _ => None,
        };
        let round_robin = config
            .routes
            .iter()
            .map(|_| RoundRobin::default())
            .collect();
        let trusted = TrustedProxies::parse(&config.limits.trusted_proxies)
            .map_err(StartError::TrustedProxies)?;
        let limits = &config.limits;
        let ip_limits = IpLimits::new(IpLimitsConfig {
            connections_per_ip: limits.connections_per_ip,
            handshakes_per_ip_per_minute: limits.handshakes_per_ip,
            handshake_burst: limits.handshake_burst,
            max_tracked_ips: limits.max_tracked_ips as usize,
        });
        let relay = relay::Settings {
            client_policy: frame_policy(&config.frames, config.mask_key_policy),
            backend_policy: frame_policy(&config.backend_frames, MaskKeyPolicy::Rfc),
            client_rate: config.rate,
            backend_rate: config.backend_rate,
            close_timeout: config.server.close_timeout,
            idle_timeout: config.server.idle_timeout,
            ping_interval: config.server.ping_interval,
            pong_timeout: config.server.pong_timeout,
        };
        Ok(Proxy {
            config,
            origins,
            round_robin,
            tls,
            trusted,
            ip_limits,
            relay,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// Process-wide state that outlives configuration reloads: metrics, the
/// drain signal, and the set of live connection tasks.
pub struct State {
    pub metrics: Metrics,
    drain: watch::Sender<bool>,
    tracker: TaskTracker,
    /// Connections open now, for `max_connections`.
    open: AtomicUsize,
}

// === impl State ===

impl Default for State {
    fn default() -> Self {
        State {
            metrics: Metrics::new(),
            drain: watch::Sender::new(false),
            tracker: TaskTracker::new(),
            open: AtomicUsize::new(0),
        }
    }
}

impl State {
    /// True once shutdown began: `/healthz` answers 503.
    pub fn draining(&self) -> bool {
        *self.drain.borrow()
    }
}

/// The configuration in force. A reload swaps it; connections keep the
/// `Arc<Proxy>` they started with, so they go on untouched.
#[derive(Clone)]
pub struct ProxyHandle(Arc<RwLock<Arc<Proxy>>>);

// === impl ProxyHandle ===

impl ProxyHandle {
    pub fn current(&self) -> Arc<Proxy> {
        match self.0.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Applies `proxy` to connections accepted from now on.
    pub fn replace(&self, proxy: Proxy) {
        let proxy = Arc::new(proxy);
        match self.0.write() {
            Ok(mut p) => *p = proxy,
            Err(poisoned) => *poisoned.into_inner() = proxy,
        }
    }
}

/// A bound listener, ready to serve.
pub struct Server {
    listener: TcpListener,
    proxy: ProxyHandle,
    state: Arc<State>,
}

// === impl Server ===

impl Server {
    pub async fn bind(proxy: Proxy, state: Arc<State>) -> Result<Server, StartError> {
        let addr = proxy.config.server.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| StartError::Bind(addr, e))?;
        Ok(Server {
            listener,
            proxy: ProxyHandle(Arc::new(RwLock::new(Arc::new(proxy)))),
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.proxy.current().config.server.listen)
    }

    /// A handle to swap the configuration (SIGHUP).
    pub fn handle(&self) -> ProxyHandle {
        self.proxy.clone()
    }

    /// Accepts until `shutdown` resolves, then drains: every live connection
    /// gets close 1001 both ways, and this returns once they are done or
    /// `shutdown_timeout` has passed.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let first = self.proxy.current();
        tracing::info!(
            listen = %self.local_addr(),
            tls = first.tls.is_some(),
            routes = first.config.routes.len(),
            "wsguard listening"
        );
        drop(first);
        tokio::pin!(shutdown);
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = housekeeping.tick() => self.proxy.current().ip_limits.housekeeping(),
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => self.accept(stream, peer),
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(self.listener);
        let grace = self.proxy.current().config.server.shutdown_timeout;
        tracing::info!(
            connections = self.state.tracker.len(),
            grace = ?grace,
            "draining: stopped accepting, closing connections with 1001"
        );
        self.state.drain.send_replace(true);
        self.state.tracker.close();
        if timeout(grace, self.state.tracker.wait()).await.is_err() {
            tracing::warn!(
                connections = self.state.tracker.len(),
                "shutdown_timeout passed with connections still open"
            );
        } else {
            tracing::info!("drained");
        }
    }

    fn accept(&self, stream: TcpStream, peer: SocketAddr) {
        let proxy = self.proxy.current();
        let state = self.state.clone();
        state.metrics.connections_accepted.inc();
        // Over the cap, a connection still gets its 503 once its request is
        // read; far over it, it is dropped at once to keep file descriptors.
        let hard_cap = (proxy.config.limits.max_connections as usize).saturating_mul(2);
        if state.open.load(Ordering::Relaxed) >= hard_cap {
            tracing::warn!(%peer, "connection dropped: twice max_connections open");
            return;
        }
        let span = tracing::info_span!("conn", %peer);
        self.state
            .tracker
            .spawn(connection(proxy, state, stream, peer).instrument(span));
    }
}

/// Keeps `connections_active` and the open count right however a
/// connection task ends.
struct ActiveGuard(Arc<State>);

impl ActiveGuard {
    fn new(state: &Arc<State>) -> ActiveGuard {
        state.metrics.connections_active.inc();
        state.open.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(state.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.metrics.connections_active.dec();
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn connection(proxy: Arc<Proxy>, state: Arc<State>, mut stream: TcpStream, peer: SocketAddr) {
    let active = Arc::new(ActiveGuard::new(&state));
    let accepted = Instant::now();
    let _ = stream.set_nodelay(true);
    let deadline = accepted + proxy.config.server.handshake_timeout;
    // A PROXY header is read only from trusted proxies; anyone else's would
    // fail as a malformed TLS or HTTP start.
    let mut source = peer.ip();
    if proxy.config.limits.proxy_protocol && proxy.trusted.contains(peer.ip()) {
        match timeout_at(deadline, read_proxy_header(&mut stream)).await {
            Ok(Ok(Some(addr))) => source = addr.ip(),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::info!(error = %e, "PROXY header refused; connection closed");
                return;
            }
            Err(_) => {
                tracing::debug!("PROXY header timed out");
                return;
            }
        }
    }
    let conn = Conn {
        proxy: proxy.clone(),
        state: state.clone(),
        peer,
        source,
        tls: proxy.tls.is_some(),
        accepted,
        active,
    };
    match proxy.tls.clone() {
        Some(acceptor) => match timeout_at(deadline, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => serve_http(conn, tls, deadline).await,
            Ok(Err(e)) => {
                state.metrics.tls_handshake_failures.inc();
                tracing::debug!(error = %e, "TLS handshake failed");
            }
            Err(_) => {
                state.metrics.tls_handshake_failures.inc();
                tracing::debug!("TLS handshake timed out");
            }
        },
        None => serve_http(conn, stream, deadline).await,
    }
}

/// What a request handler knows about its connection.
#[derive(Clone)]
struct Conn {
    proxy: Arc<Proxy>,
    state: Arc<State>,
    peer: SocketAddr,
    /// The client address from a trusted PROXY header, else the peer's.
    source: IpAddr,
    tls: bool,
    accepted: Instant,
    /// Held by the relay task too, so the connection counts until it ends.
    active: Arc<ActiveGuard>,
}

async fn serve_http<S>(conn: Conn, io: S, deadline: Instant)
where
    S: AsyncRead + AsyncWrite + relay::Split + Unpin + Send + 'static,
{
    let max_head = usize::try_from(conn.proxy.config.server.max_request_head).unwrap_or(usize::MAX);
    let remaining = deadline.saturating_duration_since(Instant::now());
    let service = service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(upgrade::<S>(conn, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(remaining)
        .max_buf_size(max_head.max(HYPER_MIN_BUF))
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

/// Handles one request: refuse it, or connect the backend, answer 101 and
/// spawn the relay for when hyper hands over the socket.
async fn upgrade<S>(conn: Conn, mut req: Request<Incoming>) -> Response<Full<Bytes>>
where
    S: AsyncRead + AsyncWrite + relay::Split + Unpin + Send + 'static,
{
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (parts, _body) = req.into_parts();
    let Conn {
        proxy,
        state,
        peer,
        source,
        tls,
        accepted,
        active,
    } = conn;
    let config = &proxy.config;
    let metrics = &state.metrics;
    let origin = printable(parts.headers.get(header::ORIGIN).map(|v| v.as_bytes()));
    if head_len(&parts) > usize::try_from(config.server.max_request_head).unwrap_or(usize::MAX) {
        return refuse(Refusal::HeadTooLarge, &parts, config, metrics);
    }
    let upgrade = match handshake::check(&parts, config, &proxy.origins) {
        Ok(u) => u,
        Err(refusal) => return refuse(refusal, &parts, config, metrics),
    };
    // The client IP: X-Forwarded-For only counts when the TCP peer is a
    // trusted proxy that did not already say it with a PROXY header.
    let client_ip = if source == peer.ip() && proxy.trusted.contains(peer.ip()) {
        let xff: Vec<&[u8]> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        proxy.trusted.client_ip(peer.ip(), &xff)
    } else {
        source
    };
    if state.open.load(Ordering::Relaxed) > config.limits.max_connections as usize {
        return refuse(Refusal::Overloaded, &parts, config, metrics);
    }
    if let Err(r) = proxy.ip_limits.handshake(client_ip) {
        return refuse(Refusal::ClientIp(r), &parts, config, metrics);
    }
    let permit = match proxy.ip_limits.connect(client_ip) {
        Ok(p) => p,
        Err(r) => return refuse(Refusal::ClientIp(r), &parts, config, metrics),
    };
    if let Some(rule) = upgrade.origin_report {
        metrics
            .origins_reported
            .get_or_create(&ReasonLabels {
                reason: rule.label(),
            })
            .inc();
        tracing::info!(
            path = parts.uri.path(),
            origin = %origin,
            rule = rule.label(),
            "origin refused (report mode: let through)"
        );
    }
    let route = &config.routes[upgrade.route];
    let client = ClientInfo {
        peer: SocketAddr::new(client_ip, peer.port()),
        tls,
    };
    let upstream = match upstream::connect(
        route,
        &proxy.round_robin[upgrade.route],
        &parts,
        &upgrade,
        &client,
        config.server.backend_connect_timeout,
        metrics,
    )
    .await
    {
        Ok(u) => u,
        Err(refusal) => return refuse(refusal, &parts, config, metrics),
    };
    metrics
        .handshake_seconds
        .observe(accepted.elapsed().as_secs_f64());

    let mut response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, upgrade.accept.as_str());
    if let Some(p) = &upstream.protocol {
        response = response.header(header::SEC_WEBSOCKET_PROTOCOL, p.as_str());
    }

    let settings = proxy.relay.clone();
    let path = parts.uri.path().to_owned();
    let route_path = route.path.clone();
    let drain = state.drain.subscribe();
    // No span around the relay: entering one on every poll cost ~1% of
    // its time; the closing lines carry the peer themselves.
    let tracker = state.tracker.clone();
    tracker.spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "client left before the upgrade");
                return;
            }
        };
        let Ok(parts) = upgraded.downcast::<TokioIo<S>>() else {
            tracing::error!("upgraded connection of an unexpected type");
            return;
        };
        let started = Instant::now();
        // Both live as long as the relay.
        let (_permit, _active) = (permit, active);
        let summary = relay::relay(
            parts.io.into_inner(),
            parts.read_buf,
            upstream.stream,
            upstream.early,
            settings,
            drain,
        )
        .await;
        record(&state.metrics, &summary);
        let by = summary.ended_by.label();
        let code = summary.client_code;
        let duration = started.elapsed();
        match summary.violation {
            Some(v) => tracing::warn!(
                %peer,
                path = %path,
                route = %route_path,
                origin = %origin,
                backend = %upstream.backend,
                by,
                rule = v.label(),
                code,
                reason = %v,
                ?duration,
                frames_up = summary.frames_up,
                bytes_up = summary.bytes_up,
                frames_down = summary.frames_down,
                bytes_down = summary.bytes_down,
                "connection closed: frame rule broken"
            ),
            None => tracing::info!(
                %peer,
                path = %path,
                route = %route_path,
                origin = %origin,
                backend = %upstream.backend,
                by,
                code,
                ?duration,
                frames_up = summary.frames_up,
                bytes_up = summary.bytes_up,
                frames_down = summary.frames_down,
                bytes_down = summary.bytes_down,
                "connection closed"
            ),
        }
    });
    response
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// The answer to a refused request, plus its one log line.
fn refuse(
    refusal: Refusal,
    parts: &Parts,
    config: &Config,
    metrics: &Metrics,
) -> Response<Full<Bytes>> {
    let origin = printable(parts.headers.get(header::ORIGIN).map(|v| v.as_bytes()));
    let status = refusal.status();
    let route = config
        .route_for(parts.uri.path())
        .map_or("none", |r| r.path.as_str());
    if let Refusal::ClientIp(r) = refusal {
        metrics
            .rate_limited
            .get_or_create(&ReasonLabels { reason: r.label() })
            .inc();
    }
    metrics
        .handshakes_refused
        .get_or_create(&RefusedLabels {
            reason: refusal.label(),
            route: route.to_owned(),
        })
        .inc();
    match refusal.side() {
        Side::Client => tracing::info!(
            path = parts.uri.path(),
            status = status.as_u16(),
            rule = refusal.label(),
            origin = %origin,
            "handshake refused: {}",
            refusal.message()
        ),
        Side::Backend => tracing::warn!(
            path = parts.uri.path(),
            status = status.as_u16(),
            rule = refusal.label(),
            "handshake failed at the backend: {}",
            refusal.message()
        ),
    }
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        // One request per connection: a refused client gets no second try
        // on the same socket. (Not `keep_alive(false)`: hyper would then
        // overwrite the 101's `Connection: Upgrade`.)
        .header(header::CONNECTION, "close");
    for (name, value) in refusal.headers() {
        response = response.header(*name, *value);
    }
    if let Some(seconds) = refusal.retry_after() {
        response = response.header(header::RETRY_AFTER, seconds);
    }
    response
        .body(Full::new(Bytes::from(format!("{}\n", refusal.message()))))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// Adds a finished connection to the metrics.
fn record(metrics: &Metrics, summary: &relay::Summary) {
    let up = DirectionLabels { direction: "up" };
    let down = DirectionLabels { direction: "down" };
    metrics.frames.get_or_create(&up).inc_by(summary.frames_up);
    metrics.bytes.get_or_create(&up).inc_by(summary.bytes_up);
    metrics
        .frames
        .get_or_create(&down)
        .inc_by(summary.frames_down);
    metrics
        .bytes
        .get_or_create(&down)
        .inc_by(summary.bytes_down);
    metrics
        .connections_closed
        .get_or_create(&ClosedLabels {
            code: code_label(summary.client_code),
            by: summary.ended_by.label(),
        })
        .inc();
    let hits = [
        ("client_delay", summary.throttled_up),
        ("backend_delay", summary.throttled_down),
        (
            "client_close",
            u64::from(summary.ended_by == Ender::ClientRateLimited),
        ),
        (
            "backend_close",
            u64::from(summary.ended_by == Ender::BackendRateLimited),
        ),
    ];
    for (reason, n) in hits {
        if n > 0 {
            metrics
                .rate_limited
                .get_or_create(&ReasonLabels { reason })
                .inc_by(n);
        }
    }
    if let Some(v) = summary.violation {
        let side = match summary.ended_by {
            Ender::BackendViolation => "backend",
            _ => "client",
        };
        metrics
            .violations
            .get_or_create(&ViolationLabels {
                rule: v.label(),
                side,
            })
            .inc();
    }
}

/// Size of the request head as sent, near enough for the limit: request
/// line plus each `name: value\r\n`.
fn head_len(parts: &Parts) -> usize {
    let line = parts.method.as_str().len() + parts.uri.to_string().len() + 12;
    parts
        .headers
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

/// A header value for a log line: escaped, and cut to a sane length.
fn printable(value: Option<&[u8]>) -> String {
    match value {
        None => "-".to_owned(),
        Some(v) => {
            let cut = &v[..v.len().min(200)];
            String::from_utf8_lossy(cut).escape_debug().to_string()
        }
    }
}

/// Reads a PROXY protocol v1/v2 header (bounded by the spec's sizes) and
/// returns the client address it names (`None` for LOCAL/UNKNOWN).
async fn read_proxy_header(stream: &mut TcpStream) -> std::io::Result<Option<SocketAddr>> {
    use tokio::io::AsyncReadExt;
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    // 15 bytes: the shortest v1 line ("PROXY UNKNOWN\r\n"), or most of v2's
    // fixed part. Reading no further than the header keeps the client's
    // first TLS or HTTP bytes in the socket.
    let mut buf = vec![0u8; 15];
    stream.read_exact(&mut buf).await?;
    loop {
        match proxy_protocol::parse(&buf).map_err(|e| invalid(e.to_string()))? {
            Parsed::Done { consumed, source } if consumed == buf.len() => return Ok(source),
            Parsed::Done { .. } => return Err(invalid("data before the PROXY header end".into())),
            Parsed::Incomplete => {
                // v2 says its length at bytes 14..16; v1 ends at CRLF.
                let want = if !buf.starts_with(&proxy_protocol::V2_SIGNATURE) {
                    buf.len() + 1
                } else if buf.len() < 16 {
                    16
                } else {
                    16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]))
                };

                let have = buf.len();
                buf.resize(want.max(have + 1), 0);
                stream.read_exact(&mut buf[have..]).await?;
            }
        }
    }
}

fn frame_policy(limits: &FrameLimits, mask_key_policy: MaskKeyPolicy) -> FramePolicy {
    FramePolicy {
        max_frame_size: limits.max_frame_size,
        max_message_size: limits.max_message_size,
        max_fragments: limits
            .max_fragments
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        mask_key_policy,
    }
}
