//! The checks every request goes through, upgrade or pass-through, each one function named
//! for what it checks, so that both halves call the same code in the same order and a new
//! check is written once. In order: [`head_size`], the request's own shape (the upgrade's
//! RFC 6455 check, or [`http_shape`]), [`origin`] (folded into the upgrade check), the
//! capacity and per-IP quotas (each half its own), [`authenticate`], then
//! [`strip_credentials`] before the request is forwarded.

use std::net::{IpAddr, SocketAddr};

use http::header;
use http::request::Parts;
use http::Method;

use super::conn::Conn;
use crate::auth::config::AuthKind;
use crate::auth::{token, AuthRefusal, Denied, Granted};
use crate::config::{Config, OriginMode, Route};
use crate::metrics::{Metrics, ReasonLabels};
use crate::origin::OriginRefusal;
use crate::refusal::Refusal;
use crate::upstream::ClientInfo;

/// A refused request: the rule, and what its log line and answer need.
pub(super) struct Refused {
    pub refusal: Refusal,
    pub backend: Option<crate::upstream::Failure>,
    pub auth: Option<Denied>,
}

impl From<Refusal> for Refused {
    fn from(refusal: Refusal) -> Refused {
        Refused {
            refusal,
            backend: None,
            auth: None,
        }
    }
}

impl From<crate::upstream::Failure> for Refused {
    fn from(failure: crate::upstream::Failure) -> Refused {
        Refused {
            refusal: failure.refusal,
            backend: Some(failure),
            auth: None,
        }
    }
}

/// The request head within `server.max_request_head`.
pub(super) fn head_size(config: &Config, parts: &Parts) -> Result<(), Refusal> {
    let most = usize::try_from(config.server.max_request_head).unwrap_or(usize::MAX);
    if head_len(parts) > most {
        return Err(Refusal::HeadTooLarge);
    }
    Ok(())
}

/// A pass-through request's shape: no upgrade but to WebSocket (which is not a
/// pass-through request), and no method that opens a tunnel or echoes the request back.
pub(super) fn http_shape(parts: &Parts) -> Result<(), Refusal> {
    if parts.headers.contains_key(header::UPGRADE) {
        return Err(Refusal::OtherUpgrade);
    }
    if parts.method == Method::CONNECT || parts.method == Method::TRACE {
        return Err(Refusal::MethodNotAllowed);
    }
    Ok(())
}

/// The `Origin` of a pass-through request; `Ok(Some(rule))` in report mode when it would
/// have been refused. A request without `Origin` is a browser's same-origin GET or HEAD
/// (browsers send `Origin` on every other method, and on every cross-origin fetch), unless
/// `Sec-Fetch-Site` says the browser sent it from another site; any other request without
/// it is a non-browser client's, and `allow_missing` decides.
pub(super) fn origin(config: &Config, parts: &Parts) -> Result<Option<OriginRefusal>, Refusal> {
    let h = &parts.headers;
    let values: Vec<&[u8]> = h
        .get_all(header::ORIGIN)
        .iter()
        .take(2)
        .map(|v| v.as_bytes())
        .collect();
    let verdict = if !values.is_empty() {
        config.origin.allow.check(&values)
    } else if cross_site_fetch(parts) {
        Err(OriginRefusal::CrossSite)
    } else if parts.method == Method::GET || parts.method == Method::HEAD {
        Ok(())
    } else {
        config.origin.allow.check(&[])
    };
    match verdict {
        Ok(()) => Ok(None),
        Err(rule) if config.origin.mode == OriginMode::Report => Ok(Some(rule)),
        Err(rule) => Err(Refusal::Origin(rule)),
    }
}

/// `Sec-Fetch-Site: cross-site` (Fetch Metadata): a browser sent this from another site.
fn cross_site_fetch(parts: &Parts) -> bool {
    parts
        .headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
}

/// Counts and logs an Origin let through in report mode.
pub(super) fn report_origin(metrics: &Metrics, parts: &Parts, origin: &str, rule: OriginRefusal) {
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

/// Who the request comes from, for authentication and the forwarding headers.
pub(super) fn client_info(conn: &Conn, client_ip: IpAddr) -> ClientInfo {
    ClientInfo {
        peer: SocketAddr::new(client_ip, conn.peer.port()),
        tls: conn.tls,
    }
}

/// The route's authentication, if it has one, after the client IP's failure quota.
pub(super) async fn authenticate(
    conn: &Conn,
    route: &Route,
    parts: &Parts,
    client: &ClientInfo,
) -> Result<Granted, Refused> {
    let Some(index) = route.auth.auth else {
        return Ok(Granted::default());
    };
    let failures = &conn.state.auth_failures;
    let ip = client.peer.ip();
    let too_many =
        |retry_after| Refused::from(Refusal::Auth(AuthRefusal::TooManyFailures { retry_after }));
    failures.check(ip).map_err(too_many)?;
    let auth = &conn.proxy.auth[index];
    match auth.authenticate(parts, client).await {
        Ok(granted) => Ok(granted),
        Err(denied) => {
            if denied.refusal.counts_as_failure() {
                failures.charge(ip).map_err(too_many)?;
            }
            Err(Refused {
                refusal: Refusal::Auth(denied.refusal),
                backend: None,
                auth: Some(denied),
            })
        }
    }
}

/// Takes every configured token source off the request (a second token beside the
/// identity headers would reach the backend unverified), unless the route keeps them.
/// Returns the subprotocol the 101 must name when a token rode in the offer.
pub(super) fn strip_credentials(
    conn: &Conn,
    route: &Route,
    parts: &mut Parts,
    protocols: &mut Vec<String>,
) -> Option<String> {
    let sources = route.auth.auth.and_then(|i| conn.proxy.auth[i].sources());
    match sources {
        Some(sources) if !route.auth.keep_token => token::strip(sources, parts, protocols),
        _ => None,
    }
}

/// The subprotocol prefix a route's tokens ride under, if its auth reads one.
pub(super) fn token_prefix<'c>(config: &'c Config, route: &Route) -> Option<&'c str> {
    route
        .auth
        .auth
        .and_then(|i| config.auth.get(i))
        .and_then(|a| match &a.kind {
            AuthKind::Jwt(j) => j.sources.protocol_prefix.as_deref(),
            AuthKind::Forward(_) => None,
        })
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
pub(super) fn printable(value: Option<&[u8]>) -> String {
    match value {
        None => "-".to_owned(),
        Some(v) => {
            let cut = &v[..v.len().min(200)];
            String::from_utf8_lossy(cut).escape_debug().to_string()
        }
    }
}
