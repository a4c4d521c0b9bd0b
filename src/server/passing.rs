//! A pass-through request (a route with `http` or a `framework`): the shared phases, the
//! request quotas of `[http]`, then the backend over the pooled client with the answer
//! streamed back. Every answer is counted in `wsguard_http_requests{route,status}`; a
//! refusal gets one log line with its rule, a request that passes one only with
//! `[http] access_log`.

use std::convert::Infallible;
use std::net::IpAddr;

use bytes::Bytes;
use http::request::Parts;
use http::{header, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body as _, Incoming};
use tokio::time::{timeout, Instant};

use super::conn::{self, Conn};
use super::phases::{self, Refused};
use crate::auth::{AuthRefusal, Granted};
use crate::config::{HttpConfig, Route};
use crate::limits::ConnectionPermit;
use crate::metrics::{HttpLabels, Metrics, ReasonLabels};
use crate::passthrough::{self, Cut, CutError, Ending, RequestBody, ResponseBody, Source};
use crate::refusal::Refusal;
use crate::state::HeldRequest;
use crate::upstream::{Identity, Sender};

/// Every answer's body: a refusal's text, or a backend's stream.
pub(super) type Body = BoxBody<Bytes, CutError>;

/// A refusal's or a 101's fixed body as a [`Body`].
pub(super) fn fixed(response: Response<Full<Bytes>>) -> Response<Body> {
    response.map(|b| b.map_err(|never: Infallible| match never {}).boxed())
}

/// What a request in flight holds until its answer ends, and what its access line says.
struct Held {
    _slot: Option<ConnectionPermit>,
    _count: HeldRequest,
    metrics: std::sync::Arc<Metrics>,
    started: Instant,
    ending: Ending,
    /// The access line, when `[http] access_log` is on.
    line: Option<AccessLine>,
}

struct AccessLine {
    client: IpAddr,
    method: String,
    path: String,
    route: String,
    backend: String,
    status: u16,
}

impl Drop for Held {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        self.metrics
            .http_request_seconds
            .observe(elapsed.as_secs_f64());
        if let Some(l) = &self.line {
            tracing::info!(
                client = %l.client,
                method = %l.method,
                path = %l.path,
                route = %l.route,
                backend = %l.backend,
                status = l.status,
                duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                cut = self.ending.cut().map(Cut::label),
                "request passed"
            );
        }
    }
}

/// Answers one pass-through request on route `index`.
pub(super) async fn serve(
    conn: &Conn,
    index: usize,
    req: Request<Incoming>,
    client: IpAddr,
) -> Response<Body> {
    let started = Instant::now();
    let (mut parts, body) = req.into_parts();
    let config = &conn.proxy.config;
    let route = &config.routes[index];
    let origin = phases::printable(parts.headers.get(header::ORIGIN).map(|v| v.as_bytes()));
    let metrics = &conn.state.metrics;
    let answered = pass(conn, index, &mut parts, body, client, &origin, started).await;
    let response = match answered {
        Ok(response) => response,
        Err(Refused {
            refusal,
            auth,
            backend,
        }) => {
            refused(
                metrics,
                refusal,
                &parts,
                route,
                client,
                &origin,
                backend.as_ref(),
            );
            metrics
                .http_request_seconds
                .observe(started.elapsed().as_secs_f64());
            fixed(conn::answer(refusal, auth.and_then(|a| a.answer), true))
        }
    };
    metrics
        .http_requests
        .get_or_create(&HttpLabels {
            route: route.path.clone(),
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// The phases in order, then the backend.
async fn pass(
    conn: &Conn,
    index: usize,
    parts: &mut Parts,
    body: Incoming,
    client_ip: IpAddr,
    origin: &str,
    started: Instant,
) -> Result<Response<Body>, Refused> {
    let refuse = Refused::from;
    let proxy = &conn.proxy;
    let config = &proxy.config;
    let http = &config.http;
    let state = &conn.state;
    let route = &config.routes[index];
    phases::head_size(config, parts).map_err(refuse)?;
    phases::http_shape(parts).map_err(refuse)?;
    if let Some(rule) = phases::origin(config, parts).map_err(refuse)? {
        phases::report_origin(&state.metrics, parts, origin, rule);
    }
    let count = state
        .hold_request(http.max_held_requests)
        .ok_or(Refusal::TooManyHeld)?;
    let requests = &state.http_limits;
    requests.handshake(client_ip).map_err(Refusal::Requests)?;
    let slot = requests.connect(client_ip).map_err(Refusal::Requests)?;
    let client = phases::client_info(conn, client_ip);
    let granted = phases::authenticate(conn, route, parts, &client).await?;
    phases::strip_credentials(conn, route, parts, &mut Vec::new());
    let body = upload(body, http)?;
    let sender = Sender {
        client: &client,
        identity: Identity {
            headers: &granted.headers,
            reserved: &proxy.identity_headers,
        },
    };
    let uploaded = Ending::default();
    let body = RequestBody::new(
        body,
        http.max_request_body,
        http.body_idle_timeout,
        uploaded.clone(),
    );
    let head_timeout = route
        .http
        .map_or(http.response_head_timeout, |h| h.head_timeout(http));
    // A credential that runs out while a long-poll is held ends it there: the client's next
    // request is refused 401.
    let expires = granted
        .session_end
        .map(|end| end.saturating_duration_since(Instant::now()));
    let wait = expires.map_or(head_timeout, |left| left.min(head_timeout));
    let mut drain = state.drain_signal();
    let draining = async move {
        let _ = drain.wait_for(|d| *d).await;
    };
    let forwarded = tokio::select! {
        forwarded = timeout(wait, forward(conn, index, parts, body, &sender, &uploaded)) => forwarded,
        () = draining => return Err(refuse(Refusal::Draining)),
    };
    let (response, backend) = match forwarded {
        Ok(Ok(answer)) => answer,
        Ok(Err(refused)) => return Err(refused),
        // Time ran out with the upload still coming: the client's delay, not the backend's.
        Err(_) if expires.is_some_and(|left| left <= head_timeout) => {
            return Err(refuse(Refusal::Auth(AuthRefusal::Expired)))
        }
        Err(_) if !uploaded.finished() => return Err(refuse(Refusal::BodyTimeout)),
        Err(_) => return Err(refuse(Refusal::BackendTimeout)),
    };
    let (mut head, incoming) = response.into_parts();
    passthrough::client_head(&mut head);
    let source = tagged(
        route,
        &proxy.tags[index][backend],
        parts,
        &mut head,
        incoming,
    )
    .await?;
    let backend = route.backends[backend].to_string();
    let ending = Ending::default();
    let held = Held {
        _slot: Some(slot),
        _count: count,
        metrics: state.metrics.clone(),
        started,
        ending: ending.clone(),
        line: http.access_log.then(|| AccessLine {
            client: client_ip,
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            route: route.path.clone(),
            backend,
            status: head.status.as_u16(),
        }),
    };
    let end = deadline(started, http.max_duration, &granted);
    let stop = passthrough::stop_at(end, state.drain_signal());
    let body = ResponseBody::new(source, http.body_idle_timeout, stop, ending, held);
    Ok(Response::from_parts(head, body.boxed()))
}

/// The largest session handshake answer read whole to tag its id: an Engine.IO open packet
/// or a SignalR negotiate answer is a few hundred bytes.
const MAX_TAGGED_ANSWER: usize = 64 << 10;

/// The answer's body: a new framework session's handshake answer read whole with its id
/// tagged for the backend that made it, anything else streamed as it comes.
async fn tagged(
    route: &Route,
    tag: &crate::sticky::Tag,
    parts: &Parts,
    head: &mut http::response::Parts,
    incoming: Incoming,
) -> Result<Source, Refused> {
    let kind = passthrough::sticky_of(route);
    let below = passthrough::below_route(route, parts.uri.path());
    if !head.status.is_success()
        || !crate::sticky::tags_answer(kind, &parts.method, below, parts.uri.query())
    {
        return Ok(Source::Backend(incoming));
    }
    let whole = passthrough::read_whole(incoming, MAX_TAGGED_ANSWER)
        .await
        .ok_or(Refusal::BackendBadResponse)?;
    match crate::sticky::tag_answer(kind, &whole, tag) {
        Some(rewritten) => {
            head.headers.insert(
                header::CONTENT_LENGTH,
                http::HeaderValue::from(rewritten.len()),
            );
            Ok(Source::Whole(Bytes::from(rewritten)))
        }
        None => {
            tracing::warn!(route = %route.path, path = parts.uri.path(), "a session handshake answer not of the framework's shape: passed on untagged, its session is not sticky");
            Ok(Source::Whole(whole))
        }
    }
}

/// When the answer must end: `max_duration` after the request, or when its credential
/// runs out (a held long-poll of an expired session ends, and its next request gets 401).
fn deadline(started: Instant, max: std::time::Duration, granted: &Granted) -> Instant {
    let cap = started + max;
    granted.session_end.map_or(cap, |end| end.min(cap))
}

/// The upload, refused at once when its declared length is over the cap.
fn upload(body: Incoming, http: &HttpConfig) -> Result<Option<Incoming>, Refusal> {
    if body.is_end_stream() {
        return Ok(None);
    }
    if body.size_hint().lower() > http.max_request_body {
        return Err(Refusal::BodyTooLarge);
    }
    Ok(Some(body))
}

/// Sends the request to the route's backends in turn until one takes the connection: a
/// request whose body has begun to go is tried on one only. Returns the answer head with
/// its streaming body, and the backend's name.
async fn forward(
    conn: &Conn,
    index: usize,
    parts: &Parts,
    body: RequestBody,
    sender: &Sender<'_>,
    uploaded: &Ending,
) -> Result<(Response<Incoming>, usize), Refused> {
    let proxy = &conn.proxy;
    let route = &proxy.config.routes[index];
    let placed = proxy.place(index, &parts.uri);
    let retriable = body.is_end_stream();
    let mut body = Some(body);
    let mut failed: Vec<(String, String)> = Vec::new();
    for &i in &placed.order {
        let backend = &route.backends[i];
        let name = backend.to_string();
        let Some(this) = body.take() else { break };
        let query = placed.query.as_deref();
        let request = passthrough::backend_request(parts, query, backend, sender, this)
            .map_err(|_| Refused::from(Refusal::MalformedRequest))?;
        match proxy.http_client.request(request).await {
            Ok(response) => {
                crate::upstream::log_failover(&failed, &name);
                return Ok((response, i));
            }
            Err(e) if e.is_connect() => {
                crate::upstream::count_failure(&conn.state.metrics, &name);
                failed.push((name, e.to_string()));
                if retriable {
                    body = Some(RequestBody::new(
                        None,
                        0,
                        proxy.config.http.body_idle_timeout,
                        uploaded.clone(),
                    ));
                }
            }
            Err(e) => {
                let refusal = match uploaded.cut() {
                    Some(Cut::TooLarge) => Refusal::BodyTooLarge,
                    Some(Cut::Idle) => Refusal::BodyTimeout,
                    Some(_) => Refusal::MalformedRequest,
                    None => Refusal::BackendBadResponse,
                };
                if refusal != Refusal::BackendBadResponse {
                    return Err(refusal.into());
                }
                return Err(crate::upstream::Failure {
                    refusal,
                    backend: name,
                    error: Some(error_chain(&e)),
                    tried: failed.len() + 1,
                }
                .into());
            }
        }
    }
    Err(crate::upstream::Failure::unavailable(failed).into())
}

/// An error with its causes, for the log line: hyper-util's own says only "client error".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Counts and logs a refused pass-through request.
fn refused(
    metrics: &Metrics,
    refusal: Refusal,
    parts: &Parts,
    route: &Route,
    client: IpAddr,
    origin: &str,
    backend: Option<&crate::upstream::Failure>,
) {
    if let Refusal::Requests(_) | Refusal::TooManyHeld = refusal {
        metrics
            .rate_limited
            .get_or_create(&ReasonLabels {
                reason: refusal.label(),
            })
            .inc();
    }
    let error = backend.and_then(|f| f.error.as_deref());
    let backend = backend.map(|f| f.backend.as_str());
    let status = refusal.status().as_u16();
    let (rule, message) = (refusal.label(), refusal.message());
    let (method, path) = (parts.method.as_str(), parts.uri.path());
    let route = route.path.as_str();
    match refusal.side() {
        crate::refusal::Side::Client => {
            tracing::info!(%client, method, path, route, status, rule, origin, "request refused: {message}")
        }
        crate::refusal::Side::Backend => {
            tracing::warn!(%client, method, path, route, status, rule, backend, error, "request failed at the backend: {message}")
        }
    }
}
