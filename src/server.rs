//! The listener and the HTTP/1.1 side: accept, TLS within the handshake
//! timeout, one upgrade request per connection (hyper), the handshake check,
//! the backend handshake, the 101, and then the frame relay. One tracing span
//! per connection.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
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
use tokio::time::{timeout_at, Instant};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::config::{Config, FrameLimits, MaskKeyPolicy};
use crate::handshake;
use crate::origin::AllowList;
use crate::policy::{self, FramePolicy};
use crate::refusal::{Refusal, Side};
use crate::relay::{self, Ender};
use crate::upstream::{self, ClientInfo, RoundRobin};

/// hyper refuses a read buffer below 8 KiB; smaller `max_request_head`
/// values are enforced by our own count in [`head_len`].
const HYPER_MIN_BUF: usize = 8192;

/// Everything a connection needs, shared read-only between connections.
pub struct Proxy {
    config: Config,
    origins: AllowList,
    round_robin: Vec<RoundRobin>,
    tls: Option<TlsAcceptor>,
}

/// Why the proxy could not start. Each names what to fix.
#[derive(Debug)]
pub enum StartError {
    Tls(crate::tls::TlsError),
    Origin(Vec<crate::origin::EntryError>),
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
        Ok(Proxy {
            config,
            origins,
            round_robin,
            tls,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// A bound listener, ready to serve.
pub struct Server {
    listener: TcpListener,
    proxy: Arc<Proxy>,
}

// === impl Server ===

impl Server {
    pub async fn bind(proxy: Proxy) -> Result<Server, StartError> {
        let addr = proxy.config.server.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| StartError::Bind(addr, e))?;
        Ok(Server {
            listener,
            proxy: Arc::new(proxy),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.proxy.config.server.listen)
    }

    /// Accepts until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tracing::info!(
            listen = %self.local_addr(),
            tls = self.proxy.tls.is_some(),
            routes = self.proxy.config.routes.len(),
            "wsguard listening"
        );
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let proxy = self.proxy.clone();
                        let span = tracing::debug_span!("conn", %peer);
                        tokio::spawn(connection(proxy, stream, peer).instrument(span));
                    }
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        tracing::info!("stopped accepting");
    }
}

async fn connection(proxy: Arc<Proxy>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + proxy.config.server.handshake_timeout;
    match proxy.tls.clone() {
        Some(acceptor) => match timeout_at(deadline, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => serve_http(proxy, tls, peer, true, deadline).await,
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        },
        None => serve_http(proxy, stream, peer, false, deadline).await,
    }
}

async fn serve_http<S>(proxy: Arc<Proxy>, io: S, peer: SocketAddr, tls: bool, deadline: Instant)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max_head = usize::try_from(proxy.config.server.max_request_head).unwrap_or(usize::MAX);
    let remaining = deadline.saturating_duration_since(Instant::now());
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(upgrade::<S>(proxy, req, peer, tls).await) }
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
async fn upgrade<S>(
    proxy: Arc<Proxy>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
) -> Response<Full<Bytes>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (parts, _body) = req.into_parts();
    let config = &proxy.config;
    if head_len(&parts) > usize::try_from(config.server.max_request_head).unwrap_or(usize::MAX) {
        return refuse(Refusal::HeadTooLarge, &parts);
    }
    let upgrade = match handshake::check(&parts, config, &proxy.origins) {
        Ok(u) => u,
        Err(refusal) => return refuse(refusal, &parts),
    };
    if let Some(rule) = upgrade.origin_report {
        tracing::info!(
            path = parts.uri.path(),
            origin = %printable(parts.headers.get(header::ORIGIN).map(|v| v.as_bytes())),
            rule = rule.label(),
            "origin refused (report mode: let through)"
        );
    }
    let route = &config.routes[upgrade.route];
    let client = ClientInfo { peer, tls };
    let upstream = match upstream::connect(
        route,
        &proxy.round_robin[upgrade.route],
        &parts,
        &upgrade,
        &client,
        config.server.backend_connect_timeout,
    )
    .await
    {
        Ok(u) => u,
        Err(refusal) => return refuse(refusal, &parts),
    };

    let mut response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, upgrade.accept.as_str());
    if let Some(p) = &upstream.protocol {
        response = response.header(header::SEC_WEBSOCKET_PROTOCOL, p.as_str());
    }

    let client_policy = frame_policy(&config.frames, config.mask_key_policy);
    let backend_policy = frame_policy(&config.backend_frames, MaskKeyPolicy::Rfc);
    let close_timeout = config.server.close_timeout;
    let path = parts.uri.path().to_owned();
    let span = tracing::Span::current();
    tokio::spawn(
        async move {
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
            let summary = relay::relay(
                parts.io.into_inner(),
                &parts.read_buf,
                upstream.stream,
                &upstream.early,
                client_policy,
                backend_policy,
                close_timeout,
            )
            .await;
            let fields = (
                summary.frames_up,
                summary.bytes_up,
                summary.frames_down,
                summary.bytes_down,
            );
            match (summary.ended_by, summary.violation) {
                (Ender::ClientViolation | Ender::BackendViolation, Some(v)) => tracing::warn!(
                    path = %path,
                    backend = %upstream.backend,
                    by = ?summary.ended_by,
                    rule = v.label(),
                    code = summary.client_code,
                    reason = %v,
                    "connection closed: frame rule broken"
                ),
                _ => tracing::debug!(
                    path = %path,
                    backend = %upstream.backend,
                    by = ?summary.ended_by,
                    code = summary.client_code,
                    duration = ?started.elapsed(),
                    frames_up = fields.0,
                    bytes_up = fields.1,
                    frames_down = fields.2,
                    bytes_down = fields.3,
                    "connection closed"
                ),
            }
        }
        .instrument(span),
    );
    response
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// The answer to a refused request, plus its one log line.
fn refuse(refusal: Refusal, parts: &Parts) -> Response<Full<Bytes>> {
    let origin = printable(parts.headers.get(header::ORIGIN).map(|v| v.as_bytes()));
    let status = refusal.status();
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
    response
        .body(Full::new(Bytes::from(format!("{}\n", refusal.message()))))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
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

fn frame_policy(limits: &FrameLimits, mask_key_policy: MaskKeyPolicy) -> FramePolicy {
    FramePolicy {
        max_frame_size: limits.max_frame_size,
        max_message_size: limits.max_message_size,
        max_fragments: limits
            .max_fragments
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        mask_key_policy: match mask_key_policy {
            MaskKeyPolicy::Strict => policy::MaskKeyPolicy::Strict,
            MaskKeyPolicy::Rfc => policy::MaskKeyPolicy::Rfc,
        },
    }
}
