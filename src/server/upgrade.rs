//! The upgrade request: the handshake check, the connection and per-IP limits, the backend
//! handshake, the 101, and the relay task hyper hands the socket to. Every refusal gets its
//! answer here and its metric and line from [`super::outcome`].

use std::net::IpAddr;

use bytes::Bytes;
use http::request::Parts;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::conn::{answer, Conn};
use super::outcome::{self, Asked, Relayed};
use super::passing;
use super::phases::{self, Refused};
use crate::fleet::{Lease, Verdict};
use crate::handshake::{self, Upgrade};
use crate::limits::ConnectionPermit;
use crate::refusal::Refusal;
use crate::relay::{self, Ender};
use crate::upstream::{self, Identity, Sender, Upstream};

/// Handles one request: a route's pass-through request when the route has an HTTP half and
/// this is no WebSocket upgrade, else the upgrade (or its refusal).
pub(super) async fn dispatch<S>(conn: Conn, req: Request<Incoming>) -> Response<passing::Body>
where
    S: AsyncRead + AsyncWrite + relay::Split + Unpin + Send + 'static,
{
    let config = &conn.proxy.config;
    let passes = config
        .route_index(req.uri().path())
        .filter(|&i| config.routes[i].http.is_some());
    match passes {
        Some(index) if !handshake::has_token(req.headers(), header::UPGRADE, "websocket") => {
            let client = conn.client_ip(req.headers());
            passing::serve(&conn, index, req, client).await
        }
        _ => passing::fixed(upgrade::<S>(conn, req).await),
    }
}

/// Handles one upgrade request: refuse it, or connect the backend, answer 101 and
/// spawn the relay for when hyper hands over the socket.
async fn upgrade<S>(conn: Conn, mut req: Request<Incoming>) -> Response<Full<Bytes>>
where
    S: AsyncRead + AsyncWrite + relay::Split + Unpin + Send + 'static,
{
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (mut parts, _body) = req.into_parts();
    let origin = phases::printable(parts.headers.get(header::ORIGIN).map(|v| v.as_bytes()));
    let client = conn.client_ip(&parts.headers);
    match prepare(&conn, &mut parts, &origin, client).await {
        Ok(ready) => switch::<S>(conn, ready, on_upgrade, &parts, origin),
        Err(Refused {
            refusal,
            backend,
            auth,
        }) => {
            let config = &conn.proxy.config;
            let asked = Asked {
                client: Some(client),
                path: parts.uri.path(),
                route: config
                    .route_for(parts.uri.path())
                    .map_or("none", |r| r.path.as_str()),
                origin: &origin,
            };
            let detail = outcome::Detail {
                backend: backend.as_ref(),
                auth: auth.as_ref(),
            };
            outcome::refused(&conn.state.metrics, refusal, &asked, &detail);
            answer(refusal, auth.and_then(|a| a.answer), false)
        }
    }
}

/// A request that passed every check, with its backend connected.
struct Ready {
    upgrade: Upgrade,
    upstream: Upstream,
    /// The slot of a client named by X-Forwarded-For (one named at accept holds its own).
    permit: Option<ConnectionPermit>,
    /// The fleet-wide slot (`[limits.shared]`).
    lease: Option<Lease>,
    client: IpAddr,
    /// When the connection must end: its credential's expiry or the route's `max_session`.
    session_end: Option<(Instant, Ender)>,
    /// The subprotocol the 101 names when the backend was offered none: a token's value.
    token_protocol: Option<String>,
}

/// The checks in their documented order, then the backend handshake. `parts` loses its
/// token sources on a route with authentication.
async fn prepare(
    conn: &Conn,
    parts: &mut Parts,
    origin: &str,
    client_ip: IpAddr,
) -> Result<Ready, Refused> {
    let refuse = Refused::from;
    let proxy = &conn.proxy;
    let config = &proxy.config;
    let metrics = &conn.state.metrics;
    phases::head_size(config, parts).map_err(refuse)?;
    let upgrade = handshake::check(parts, config).map_err(refuse)?;
    if conn.state.open_connections() > config.limits.max_connections as usize {
        return Err(refuse(Refusal::Overloaded));
    }
    let permit = match conn.admitted {
        Some((_, quota)) => {
            quota.map_err(|r| refuse(Refusal::ClientIp(r)))?;
            None
        }
        None => {
            let limits = &conn.state.ip_limits;
            let over = |r| refuse(Refusal::ClientIp(r));
            // The slot first, as at accept: a request refused for it costs no handshake.
            let permit = limits.connect(client_ip).map_err(over)?;
            limits.handshake(client_ip).map_err(over)?;
            Some(permit)
        }
    };
    let lease = match &conn.state.shared {
        None => None,
        Some(shared) => match shared.admit(client_ip, &proxy.ip_limits).await {
            Verdict::Allowed(lease) => lease,
            Verdict::Refused(r) => return Err(refuse(Refusal::Shared(r))),
            Verdict::Unavailable => return Err(refuse(Refusal::SharedStoreUnavailable)),
        },
    };
    if let Some(rule) = upgrade.origin_report {
        phases::report_origin(metrics, parts, origin, rule);
    }
    let client = phases::client_info(conn, client_ip);
    let mut upgrade = upgrade;
    let route = &config.routes[upgrade.route];
    let granted = phases::authenticate(conn, route, parts, &client).await?;
    let token_protocol = phases::strip_credentials(conn, route, parts, &mut upgrade.protocols);
    // Once the upgrade is to go on: a backend that needs a subprotocol refuses it next.
    let token_prefix = phases::token_prefix(config, route);
    let declined = handshake::declined_offer(&parts.headers, &route.subprotocols, token_prefix);
    if let Some(offered) = declined {
        tracing::info!(
            client = %client_ip,
            path = parts.uri.path(),
            route = %route.path,
            offered = %offered,
            "subprotocol offer filtered to nothing: none is in the route's subprotocols, the backend is offered none"
        );
    }
    let sender = Sender {
        client: &client,
        identity: Identity {
            headers: &granted.headers,
            reserved: &proxy.identity_headers,
        },
    };
    let placed = proxy.place(upgrade.route, &parts.uri);
    if let Some(query) = &placed.query {
        parts.uri = with_query(&parts.uri, query).map_err(|_| refuse(Refusal::MalformedRequest))?;
    }
    let upstream = upstream::connect(
        route,
        &placed.order,
        parts,
        &upgrade,
        &sender,
        config.server.backend_connect_timeout,
        metrics,
    )
    .await
    .map_err(Refused::from)?;
    let limit = route
        .auth
        .max_session
        .map(|d| (conn.accepted + d, Ender::SessionLimit));
    let expiry = granted.session_end.map(|at| (at, Ender::TokenExpired));
    let session_end = [expiry, limit]
        .into_iter()
        .flatten()
        .min_by_key(|(at, _)| *at);
    Ok(Ready {
        upgrade,
        upstream,
        permit,
        lease,
        client: client_ip,
        session_end,
        token_protocol,
    })
}

/// The 101, and the relay task that takes over once hyper has sent it.
fn switch<S>(
    conn: Conn,
    ready: Ready,
    on_upgrade: OnUpgrade,
    parts: &Parts,
    origin: String,
) -> Response<Full<Bytes>>
where
    S: AsyncRead + AsyncWrite + relay::Split + Unpin + Send + 'static,
{
    let Ready {
        upgrade,
        upstream,
        permit,
        lease,
        client,
        session_end,
        token_protocol,
    } = ready;
    let state = conn.state.clone();
    state
        .metrics
        .handshake_seconds
        .observe(conn.accepted.elapsed().as_secs_f64());
    let mut response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, upgrade.accept.as_str());
    if let Some(p) = upstream.protocol.as_ref().or(token_protocol.as_ref()) {
        response = response.header(header::SEC_WEBSOCKET_PROTOCOL, p.as_str());
    }
    if let Some(d) = &upstream.deflate {
        response = response.header(header::SEC_WEBSOCKET_EXTENSIONS, d.response.to_string());
    }

    let proxy = conn.proxy.clone();
    let path = parts.uri.path().to_owned();
    let route = conn.proxy.config.routes[upgrade.route].path.clone();
    let drain = state.drain_signal();
    let (peer, held) = (conn.peer, conn.held.clone());
    // No span around the relay: entering one on every poll cost ~1% of
    // its time; the closing line carries the peer itself.
    // This task is most of what an idle connection costs: it captures the
    // shared configuration rather than a copy of the relay settings, and
    // builds the relay in a block so that what it was built from is not kept
    // beside it.
    conn.state.tracker().spawn(async move {
        let relaying = {
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
            let settings = relay::Settings {
                deflate: upstream.deflate,
                session_end,
                ..proxy.relay.clone()
            };
            relay::relay(
                parts.io.into_inner(),
                parts.read_buf,
                upstream.stream,
                upstream.early,
                settings,
                drain,
            )
        };
        let started = Instant::now();
        // All live as long as the relay.
        let _held = (held, permit, lease);
        let summary = relaying.await;
        let relayed = Relayed {
            peer,
            client,
            path: &path,
            route: &route,
            origin: &origin,
            backend: &upstream.backend,
            deflate: upstream.deflate.is_some(),
            duration: started.elapsed(),
        };
        outcome::closed(&state.metrics, &summary, &relayed);
    });
    response
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// `uri` with its query replaced: a framework session id with its sticky tag taken off.
fn with_query(uri: &http::Uri, query: &str) -> Result<http::Uri, http::Error> {
    let target = format!("{}?{query}", uri.path());
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(target.parse()?);
    Ok(http::Uri::from_parts(parts)?)
}
