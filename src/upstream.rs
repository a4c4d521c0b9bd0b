//! The backend side of a handshake: pick a backend round-robin, connect with a
//! timeout (trying the next on failure), forward the upgrade request and
//! verify the answer: 101, `Upgrade`/`Connection`, the exact
//! `Sec-WebSocket-Accept` (RFC 6455 §4.1, client steps 1–6) and a subprotocol
//! the client offered.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName};
use http::request::Parts;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use crate::config::Route;
use crate::deflate::{negotiate, Negotiated};
use crate::handshake::Upgrade;
use crate::metrics::{BackendLabels, Metrics};
use crate::refusal::Refusal;

/// The backend's answer head may be at most this long: a WebSocket 101 is a
/// few hundred bytes; anything bigger is a broken or hostile backend.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
const MAX_RESPONSE_HEADERS: usize = 64;

/// A backend connection whose handshake succeeded.
pub struct Upstream {
    pub stream: TcpStream,
    /// Bytes the backend sent after its 101 head: its first frames.
    pub early: Vec<u8>,
    /// The subprotocol the backend chose, already checked against the offer.
    pub protocol: Option<String>,
    /// The permessage-deflate parameters agreed, if any.
    pub deflate: Option<Negotiated>,
    pub backend: String,
}

/// What the handshake forwarder needs to know about the client connection.
pub struct ClientInfo {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// Who a request comes from: its connection, and what authentication established.
pub struct Sender<'a> {
    pub client: &'a ClientInfo,
    pub identity: Identity<'a>,
}

/// What authentication changes in the request the backend gets.
#[derive(Default)]
pub struct Identity<'a> {
    /// Headers added: who the client is.
    pub headers: &'a [(HeaderName, http::HeaderValue)],
    /// Client headers never forwarded: every identity header any `[auth]` section sets, so
    /// a client cannot send its own.
    pub reserved: &'a [HeaderName],
}

/// Round-robin cursor per route.
#[derive(Default)]
pub struct RoundRobin(AtomicUsize);

impl RoundRobin {
    /// Where the next request starts among `n` backends.
    pub fn start(&self, n: usize) -> usize {
        self.0.fetch_add(1, Ordering::Relaxed) % n.max(1)
    }
}

/// Why a route's backends did not take a connection: the refusal for the client, and for
/// its one log line the backend that failed last, how, and how many were tried.
#[derive(Debug)]
pub struct Failure {
    pub refusal: Refusal,
    pub backend: String,
    /// The connect error; `None` when the refusal's message says it all.
    pub error: Option<String>,
    pub tried: usize,
}

/// Connects to the backends of `route` in `order` (indices) until one takes the
/// connection, and performs the upgrade handshake. Logs only a backend that failed before
/// another one answered: a refusal is logged once, by the caller.
pub async fn connect(
    route: &Route,
    order: &[usize],
    req: &Parts,
    upgrade: &Upgrade,
    sender: &Sender<'_>,
    connect_timeout: Duration,
    metrics: &Metrics,
) -> Result<Upstream, Failure> {
    // (backend, error) of each failed attempt: at most one per backend of the route.
    let mut failed: Vec<(String, String)> = Vec::new();
    for (i, &index) in order.iter().enumerate() {
        let backend = &route.backends[index];
        let name = backend.to_string();
        let started = Instant::now();
        let stream = match timeout(
            connect_timeout,
            TcpStream::connect((backend.host.as_str(), backend.port)),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                count_failure(metrics, &name);
                failed.push((name, e.to_string()));
                continue;
            }
            Err(_) => {
                count_failure(metrics, &name);
                let ms = connect_timeout.as_millis();
                failed.push((name, format!("no answer within {ms} ms")));
                continue;
            }
        };
        metrics
            .backend_connect_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(
            backend = %name,
            elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "backend connected"
        );
        // Frames are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let remaining = connect_timeout.saturating_sub(started.elapsed());
        let answered = timeout(remaining.max(Duration::from_millis(1)), async {
            handshake(stream, req, upgrade, sender).await
        })
        .await
        .unwrap_or(Err(Refusal::BackendBadHandshake(
            "backend handshake timed out",
        )));
        return match answered {
            Ok((stream, early, Agreed { protocol, deflate })) => {
                log_failover(&failed, &name);
                Ok(Upstream {
                    stream,
                    early,
                    protocol,
                    deflate,
                    backend: name,
                })
            }
            Err(refusal) => Err(Failure {
                refusal,
                backend: name,
                error: None,
                tried: i + 1,
            }),
        };
    }
    Err(Failure::unavailable(failed))
}

/// Logs each backend that failed, `(backend, error)`, before `next` took the request.
pub fn log_failover(failed: &[(String, String)], next: &str) {
    for (down, error) in failed {
        tracing::warn!(backend = %down, error = %error, next = %next, "backend connect failed; the next one answered");
    }
}

impl Failure {
    /// No backend took the connection: each of `failed`, `(backend, error)`, was tried.
    pub fn unavailable(mut failed: Vec<(String, String)>) -> Failure {
        let tried = failed.len();
        let (backend, error) = failed.pop().unwrap_or_default();
        Failure {
            refusal: Refusal::BackendUnavailable,
            backend,
            error: Some(error),
            tried,
        }
    }
}

/// Counts a failed connect to `backend`.
pub fn count_failure(metrics: &Metrics, backend: &str) {
    metrics
        .backend_connect_failures
        .get_or_create(&BackendLabels {
            backend: backend.to_owned(),
        })
        .inc();
}

async fn handshake(
    mut stream: TcpStream,
    req: &Parts,
    upgrade: &Upgrade,
    sender: &Sender<'_>,
) -> Result<(TcpStream, Vec<u8>, Agreed), Refusal> {
    let head = request_head(req, upgrade, sender);
    stream
        .write_all(&head)
        .await
        .map_err(|_| Refusal::BackendBadHandshake("backend closed during the handshake"))?;

    let mut buf = vec![0u8; MAX_RESPONSE_HEAD];
    let mut filled = 0;
    loop {
        let n = stream
            .read(&mut buf[filled..])
            .await
            .map_err(|_| Refusal::BackendBadHandshake("backend closed during the handshake"))?;
        if n == 0 {
            return Err(Refusal::BackendBadHandshake(
                "backend closed during the handshake",
            ));
        }
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf[..filled]) {
            Ok(httparse::Status::Complete(len)) => {
                let agreed = verify(&resp, upgrade)?;
                buf.truncate(filled);
                buf.drain(..len);
                return Ok((stream, buf, agreed));
            }
            Ok(httparse::Status::Partial) if filled < buf.len() => {}
            Ok(httparse::Status::Partial) => {
                return Err(Refusal::BackendBadHandshake(
                    "backend answer head too large",
                ))
            }
            Err(_) => return Err(Refusal::BackendBadHandshake("backend answer is not HTTP")),
        }
    }
}

/// What a backend's 101 chose, checked against what was offered.
struct Agreed {
    protocol: Option<String>,
    deflate: Option<Negotiated>,
}

/// Checks a complete backend answer.
fn verify(resp: &httparse::Response<'_, '_>, upgrade: &Upgrade) -> Result<Agreed, Refusal> {
    let status = resp.code.unwrap_or(0);
    if status != 101 {
        return Err(if (400..500).contains(&status) {
            Refusal::BackendRefused(status)
        } else {
            Refusal::BackendBadHandshake("backend did not answer 101")
        });
    }
    let mut map = HeaderMap::new();
    for h in resp.headers.iter() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            http::HeaderValue::from_bytes(h.value),
        ) {
            map.append(name, value);
        }
    }
    if !crate::handshake::has_token(&map, header::UPGRADE, "websocket")
        || !crate::handshake::has_token(&map, header::CONNECTION, "upgrade")
    {
        return Err(Refusal::BackendBadHandshake(
            "backend 101 lacks Upgrade/Connection",
        ));
    }
    let mut accepts = map.get_all(header::SEC_WEBSOCKET_ACCEPT).iter();
    match (accepts.next(), accepts.next()) {
        (Some(v), None) if v.as_bytes() == upgrade.accept.as_bytes() => {}
        _ => {
            return Err(Refusal::BackendBadHandshake(
                "backend sent a wrong Sec-WebSocket-Accept",
            ))
        }
    }
    // Only an offer wsguard sent may be accepted (RFC 6455 §4.1 step 5).
    let extensions = map.get_all(header::SEC_WEBSOCKET_EXTENSIONS).iter();
    let deflate = negotiate::accept(upgrade.deflate.as_ref(), extensions.map(|v| v.as_bytes()))
        .map_err(Refusal::BackendBadHandshake)?;
    let mut protocols = map.get_all(header::SEC_WEBSOCKET_PROTOCOL).iter();
    let protocol = match (protocols.next(), protocols.next()) {
        (None, _) => None,
        (Some(p), None) => {
            let p = p.to_str().unwrap_or("").trim();
            if !upgrade.protocols.iter().any(|o| o == p) {
                return Err(Refusal::BackendBadHandshake(
                    "backend chose a subprotocol the client did not offer",
                ));
            }
            Some(p.to_owned())
        }
        _ => {
            return Err(Refusal::BackendBadHandshake(
                "backend chose several subprotocols",
            ))
        }
    };
    Ok(Agreed { protocol, deflate })
}

/// The request sent to the backend: the client's request line and end-to-end
/// headers, a fresh hop (`Upgrade`, `Connection`), the filtered subprotocol
/// offer, forwarding headers that wsguard sets from what it saw, and the identity
/// authentication established. Public for the fuzz target that checks what a backend
/// receives.
pub fn request_head(req: &Parts, upgrade: &Upgrade, sender: &Sender<'_>) -> Vec<u8> {
    let (client, identity) = (sender.client, &sender.identity);
    let mut out = Vec::with_capacity(1024);
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let named = crate::hop::named_in_connection(&req.headers);
    for (name, value) in &req.headers {
        if crate::hop::forwards(name, value, identity.reserved, &named) {
            push_header(&mut out, name.as_str(), value.as_bytes());
        }
    }
    push_header(&mut out, "upgrade", b"websocket");
    push_header(&mut out, "connection", b"Upgrade");
    if let Some(deflate) = &upgrade.deflate {
        let offers = negotiate::offer_header(&deflate.offers);
        push_header(&mut out, "sec-websocket-extensions", offers.as_bytes());
    }
    if !upgrade.protocols.is_empty() {
        push_header(
            &mut out,
            "sec-websocket-protocol",
            upgrade.protocols.join(", ").as_bytes(),
        );
    }
    for (name, value) in crate::hop::forwarding(client.peer, client.tls, &req.headers) {
        push_header(&mut out, name, value.as_bytes());
    }
    for (name, value) in identity.headers {
        push_header(&mut out, name.as_str(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
