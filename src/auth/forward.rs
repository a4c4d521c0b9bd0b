//! `type = "forward"`: an auth service decides each upgrade, as nginx's `auth_request`,
//! Traefik's ForwardAuth and Caddy's `forward_auth` do. The service gets a `GET` with the
//! client's credentials and where it was going; 2xx lets the upgrade go on, 401 or 403 is
//! passed to the client, anything else is the service failing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, COOKIE, HOST, ORIGIN, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Incoming};
use tokio::time::{timeout_at, Instant};

use super::cache::{self, Cache, Lookup};
use super::config::ForwardConfig;
use super::http::{ClientError, FetchError, HttpClient};
use crate::metrics::{AuthLabels, AuthMetrics};
use crate::upstream::ClientInfo;

/// The most of an answer's body read: a 401/403 body longer than this is replaced by an
/// empty one, and a longer 2xx body is left unread (its connection is then not reused).
pub const MAX_BODY: usize = 4096;

const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// What the auth service (or the cache) said about one upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// 2xx: `headers` are the answer's values of the configured `copy_headers` (every value,
    /// in order; the HTTP parser has refused any with CR, LF or NUL). `expires` is the
    /// session's end: the `expires_header` value (Unix seconds) or now + `Cache-Control:
    /// max-age`, the earlier of the two; a value that does not parse is ignored.
    Allow {
        headers: Vec<(HeaderName, HeaderValue)>,
        expires: Option<SystemTime>,
    },
    /// 401 or 403, for the client: the status, the body (empty when it was longer than
    /// [`MAX_BODY`]: a cut page would be worse than none) and the `WWW-Authenticate` value.
    Deny {
        status: StatusCode,
        body: Bytes,
        www_authenticate: Option<HeaderValue>,
    },
    /// Another status (a redirect included: never followed), a timeout or a transport
    /// error, with the reason for the log line; it holds no credentials. The caller applies
    /// `on_error`.
    Unavailable(String),
}

/// One `[auth.NAME] type = "forward"` section: its pooled client and decision cache.
pub struct Forward {
    name: String,
    url: Uri,
    client: HttpClient,
    timeout: Duration,
    copy_headers: Vec<HeaderName>,
    expires_header: HeaderName,
    /// The decisions and `cache_ttl`; `None` when the cache is off.
    cache: Option<(Cache<Decision>, Duration)>,
    metrics: AuthMetrics,
}

impl Forward {
    pub fn new(
        name: &str,
        cfg: &ForwardConfig,
        metrics: &AuthMetrics,
    ) -> Result<Forward, ClientError> {
        Ok(Forward {
            name: name.to_owned(),
            url: cfg.url.clone(),
            client: HttpClient::new(cfg.ca_file.as_deref())?,
            timeout: cfg.timeout,
            copy_headers: cfg.copy_headers.clone(),
            expires_header: cfg.expires_header.clone(),
            cache: cfg.cache_ttl.map(|ttl| (Cache::new(cfg.cache_size), ttl)),
            metrics: metrics.clone(),
        })
    }

    /// Asks the service (or the cache) about the upgrade request `req` from `client`, within
    /// the configured timeout. With the cache on, a check identical to one in flight waits
    /// for that one's answer instead of asking again: a reconnect storm asks once. Each check
    /// counts once in the `cache` metric: `hit` when answered without a request of its own
    /// (a kept decision, or the answer of the identical request in flight), else `miss`.
    pub async fn check(&self, req: &Parts, client: &ClientInfo) -> Decision {
        let deadline = Instant::now() + self.timeout;
        let uri = forwarded_uri(req);
        let Some((cache, ttl)) = &self.cache else {
            return self.ask(req, client, uri, deadline).await;
        };
        let key = cache::key(&req.headers, uri);
        loop {
            match cache.lookup(key, Instant::now()) {
                Lookup::Hit(decision) => {
                    self.count("hit");
                    return decision;
                }
                Lookup::Wait(mut answer) => {
                    match timeout_at(deadline, answer.wait_for(Option::is_some)).await {
                        Ok(Ok(decision)) => {
                            self.count("hit");
                            return decision.clone().unwrap_or_else(no_answer);
                        }
                        // The request in flight was abandoned: ask (or wait) anew.
                        Ok(Err(_)) => continue,
                        Err(_) => return no_answer(),
                    }
                }
                Lookup::Lead(flight) => {
                    self.count("miss");
                    let decision = self.ask(req, client, uri, deadline).await;
                    let now = Instant::now();
                    let keep_until = keep_for(&decision, *ttl).map(|d| now + d);
                    flight.finish(decision.clone(), now, keep_until);
                    return decision;
                }
            }
        }
    }

    fn count(&self, outcome: &'static str) {
        let labels = AuthLabels {
            auth: self.name.clone(),
            outcome,
        };
        self.metrics.cache.get_or_create(&labels).inc();
    }

    async fn ask(
        &self,
        req: &Parts,
        client: &ClientInfo,
        uri: &str,
        deadline: Instant,
    ) -> Decision {
        let sub = match self.sub_request(req, client, uri) {
            Ok(sub) => sub,
            Err(e) => return Decision::Unavailable(format!("cannot build the request: {e}")),
        };
        match timeout_at(deadline, self.exchange(sub)).await {
            Ok(Ok(decision)) => decision,
            Ok(Err(e)) => Decision::Unavailable(e.to_string()),
            Err(_) => no_answer(),
        }
    }

    /// `GET url` with the client's Cookie, Authorization and Origin and the X-Forwarded-*
    /// that say where it was going; nothing else of the client's. Host is the URL's (the
    /// client sets it).
    fn sub_request(
        &self,
        req: &Parts,
        client: &ClientInfo,
        uri: &str,
    ) -> http::Result<Request<Empty<Bytes>>> {
        let mut sub = Request::get(self.url.clone());
        for name in [COOKIE, AUTHORIZATION, ORIGIN] {
            for value in req.headers.get_all(&name) {
                sub = sub.header(&name, value);
            }
        }
        sub = sub
            .header(X_FORWARDED_METHOD, "GET")
            .header(X_FORWARDED_URI, uri)
            .header(X_FORWARDED_FOR, client.peer.ip().to_string())
            .header(X_FORWARDED_PROTO, if client.tls { "https" } else { "http" });
        if let Some(host) = req.headers.get(HOST) {
            sub = sub.header(X_FORWARDED_HOST, host);
        }
        sub.body(Empty::new())
    }

    async fn exchange(&self, sub: Request<Empty<Bytes>>) -> Result<Decision, FetchError> {
        let (head, body) = self.client.send(sub).await?.into_parts();
        let status = head.status;
        if status.is_success() {
            // Read to the end only so that the connection goes back to the pool.
            read_body(body, false).await?;
            return Ok(Decision::Allow {
                headers: self.copied(&head.headers),
                expires: expires(&head.headers, &self.expires_header, SystemTime::now()),
            });
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Ok(Decision::Deny {
                status,
                body: read_body(body, true).await?.unwrap_or_default(),
                www_authenticate: head.headers.get(WWW_AUTHENTICATE).cloned(),
            });
        }
        let what = if status.is_redirection() {
            "redirected"
        } else {
            "answered"
        };
        Ok(Decision::Unavailable(format!(
            "the auth service {what} {status}"
        )))
    }

    fn copied(&self, headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
        self.copy_headers
            .iter()
            .flat_map(|name| {
                headers
                    .get_all(name)
                    .iter()
                    .map(move |v| (name.clone(), v.clone()))
            })
            .collect()
    }
}

/// The session's end an answer gives: `expires_header` (Unix seconds) or now + `max-age`,
/// the earlier.
fn expires(
    headers: &HeaderMap,
    expires_header: &HeaderName,
    now: SystemTime,
) -> Option<SystemTime> {
    let at = headers
        .get(expires_header)
        .and_then(|v| v.to_str().ok()?.trim().parse().ok())
        .and_then(|secs| UNIX_EPOCH.checked_add(Duration::from_secs(secs)));
    let max_age = max_age(headers).and_then(|secs| now.checked_add(Duration::from_secs(secs)));
    at.into_iter().chain(max_age).min()
}

/// The path and query as the client requested them.
fn forwarded_uri(req: &Parts) -> &str {
    req.uri.path_and_query().map_or("/", |pq| pq.as_str())
}

fn no_answer() -> Decision {
    Decision::Unavailable(FetchError::Timeout.to_string())
}

/// How long a decision is kept: `ttl`, an Allow never past its session's end; Unavailable
/// not at all.
fn keep_for(decision: &Decision, ttl: Duration) -> Option<Duration> {
    match decision {
        Decision::Allow {
            expires: Some(end), ..
        } => Some(ttl.min(end.duration_since(SystemTime::now()).unwrap_or_default())),
        Decision::Allow { .. } | Decision::Deny { .. } => Some(ttl),
        Decision::Unavailable(_) => None,
    }
}

/// The smallest `max-age` of the Cache-Control values.
fn max_age(headers: &HeaderMap) -> Option<u64> {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|directive| {
            let (name, value) = directive.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("max-age") {
                return None;
            }
            value.trim().trim_matches('"').parse().ok()
        })
        .min()
}

/// Reads `body` to its end, keeping it if `keep`. `None` when it is longer than
/// [`MAX_BODY`]: the rest is left unread.
async fn read_body(mut body: Incoming, keep: bool) -> Result<Option<Bytes>, FetchError> {
    if body.size_hint().lower() > MAX_BODY as u64 {
        return Ok(None);
    }
    let mut kept = Vec::new();
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| FetchError::Transport(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            len += data.len();
            if len > MAX_BODY {
                return Ok(None);
            }
            if keep {
                kept.extend_from_slice(&data);
            }
        }
    }
    Ok(Some(kept.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| {
                let name = HeaderName::from_bytes(n.as_bytes()).unwrap();
                (name, HeaderValue::from_str(v).unwrap())
            })
            .collect()
    }

    #[test]
    fn max_age_is_the_smallest_of_every_cache_control_value() {
        let headers = answer(&[
            ("cache-control", "private, Max-Age=60"),
            ("cache-control", "max-age=\"30\", must-revalidate"),
            ("cache-control", "s-maxage=5, max-age=-1, max-age=x"),
        ]);
        assert_eq!(max_age(&headers), Some(30));
        assert_eq!(max_age(&answer(&[("cache-control", "no-store")])), None);
    }

    #[test]
    fn expires_is_the_earlier_of_the_header_and_max_age() {
        let name = HeaderName::from_static("x-auth-expires");
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let at = |secs| Some(UNIX_EPOCH + Duration::from_secs(secs));
        let both = |exp: &str, cc: &str| {
            expires(
                &answer(&[("x-auth-expires", exp), ("cache-control", cc)]),
                &name,
                now,
            )
        };
        assert_eq!(both("1500", "max-age=100"), at(1_100));
        assert_eq!(both(" 1050 ", "max-age=100"), at(1_050));
        assert_eq!(both("soon", "max-age=100"), at(1_100));
        assert_eq!(both("99999999999999999999", "no-cache"), None);
        // Far beyond what SystemTime holds: ignored, not a panic.
        assert_eq!(
            both(&u64::MAX.to_string(), &format!("max-age={}", u64::MAX)),
            None
        );
        assert_eq!(expires(&HeaderMap::new(), &name, now), None);
    }
}
