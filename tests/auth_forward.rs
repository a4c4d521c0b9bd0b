//! Forward auth against a real auth service on a loopback port (HTTP, and HTTPS trusting
//! the development CA through `ca_file`): what the sub-request carries, how each answer is
//! read, the decision cache and its single flight, connection reuse.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use http::request::Parts;
use http::{HeaderName, HeaderValue, StatusCode};

use common::auth_service::{AuthService, RawService, Reply};
use common::{sample, within};
use wsguard::auth::config::{
    ForwardConfig, ForwardOnError, DEFAULT_CACHE_SIZE, DEFAULT_EXPIRES_HEADER,
};
use wsguard::auth::forward::{Decision, Forward, MAX_BODY};
use wsguard::metrics::Metrics;
use wsguard::upstream::ClientInfo;

/// The section's configuration for `url`, cache off, as the tests' starting point.
fn config(url: &str) -> ForwardConfig {
    ForwardConfig {
        url: url.parse().unwrap(),
        ca_file: None,
        timeout: Duration::from_secs(5),
        copy_headers: vec![
            HeaderName::from_static("x-auth-user"),
            HeaderName::from_static("x-auth-roles"),
        ],
        on_error: ForwardOnError::Closed,
        cache_ttl: None,
        cache_size: DEFAULT_CACHE_SIZE,
        expires_header: HeaderName::from_static(DEFAULT_EXPIRES_HEADER),
    }
}

fn cached(url: &str, ttl: Duration) -> ForwardConfig {
    ForwardConfig {
        cache_ttl: Some(ttl),
        ..config(url)
    }
}

struct Auth {
    forward: Forward,
    metrics: Metrics,
}

impl Auth {
    fn new(cfg: &ForwardConfig) -> Auth {
        let metrics = Metrics::new(|| 0);
        let forward = Forward::new("sso", cfg, &metrics.auth).expect("client builds");
        Auth { forward, metrics }
    }

    async fn check(&self, req: &Parts) -> Decision {
        within("check", self.forward.check(req, &client(true))).await
    }

    /// `n` identical checks at once: all of them look the cache up before any answer is in.
    async fn check_together(&self, n: usize) -> Vec<Decision> {
        let (req, from) = (upgrade("sid=1"), client(true));
        within(
            "checks",
            join_all((0..n).map(|_| self.forward.check(&req, &from))),
        )
        .await
    }

    /// The `wsguard_auth_cache_total` sample for `outcome`.
    fn cache(&self, outcome: &str) -> f64 {
        let series = format!("wsguard_auth_cache_total{{auth=\"sso\",outcome=\"{outcome}\"}}");
        sample(&self.metrics.encode(), &series).unwrap_or(0.0)
    }
}

fn client(tls: bool) -> ClientInfo {
    ClientInfo {
        peer: "203.0.113.7:40000".parse::<SocketAddr>().unwrap(),
        tls,
    }
}

/// A browser's upgrade request with session cookie `cookie`.
fn upgrade(cookie: &str) -> Parts {
    http::Request::get("/chat?room=1")
        .header("host", "chat.example.com")
        .header("cookie", cookie)
        .header("authorization", "Bearer tok")
        .header("origin", "https://chat.example.com")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", "chat")
        .header("user-agent", "test")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-auth-user", "mallory")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn allowed(decision: &Decision) -> bool {
    matches!(decision, Decision::Allow { .. })
}

fn unavailable(decision: &Decision) -> &str {
    match decision {
        Decision::Unavailable(why) => why,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

// === the sub-request ===

#[tokio::test]
async fn the_sub_request_carries_exactly_the_credentials_and_where_the_client_went() {
    let service = AuthService::start(Reply::status(200)).await;
    let auth = Auth::new(&config(&service.url()));
    assert!(allowed(&auth.check(&upgrade("sid=1")).await));
    let plain = within(
        "check",
        auth.forward.check(&upgrade("sid=1"), &client(false)),
    )
    .await;
    assert!(allowed(&plain));

    let seen = service.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].target, "/auth");
    let names: BTreeSet<&str> = seen[0].headers.iter().map(|(n, _)| n.as_str()).collect();
    let expected = [
        "host",
        "cookie",
        "authorization",
        "origin",
        "x-forwarded-method",
        "x-forwarded-uri",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    ];
    assert_eq!(names, BTreeSet::from(expected), "{:?}", seen[0].headers);
    assert_eq!(seen[0].headers.len(), expected.len(), "each header once");
    let value = |i: usize, name: &str| {
        seen[i]
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(value(0, "host"), service.addr.to_string());
    assert_eq!(value(0, "cookie"), "sid=1");
    assert_eq!(value(0, "authorization"), "Bearer tok");
    assert_eq!(value(0, "origin"), "https://chat.example.com");
    assert_eq!(value(0, "x-forwarded-method"), "GET");
    assert_eq!(value(0, "x-forwarded-uri"), "/chat?room=1");
    assert_eq!(value(0, "x-forwarded-for"), "203.0.113.7");
    assert_eq!(value(0, "x-forwarded-proto"), "https");
    assert_eq!(value(0, "x-forwarded-host"), "chat.example.com");
    assert_eq!(value(1, "x-forwarded-proto"), "http");
}

#[tokio::test]
async fn absent_credentials_are_not_invented() {
    let service = AuthService::start(Reply::status(401)).await;
    let auth = Auth::new(&config(&service.url()));
    let bare = http::Request::get("/chat")
        .header("host", "chat.example.com")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    assert!(matches!(auth.check(&bare).await, Decision::Deny { .. }));
    let names: BTreeSet<String> = service.requests()[0]
        .headers
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    assert!(!names.contains("cookie") && !names.contains("authorization"));
    assert!(!names.contains("origin"));
}

// === the answers ===

#[tokio::test]
async fn a_2xx_allows_with_the_configured_headers_and_the_session_end() {
    let service = AuthService::start(
        Reply::status(200)
            .header("x-auth-user", "alice")
            .header("x-auth-roles", "admin")
            .header("x-auth-roles", "ops")
            .header("x-internal", "not for the backend")
            .header("cache-control", "private, max-age=3600")
            .header("x-auth-expires", &(unix_now() + 7200).to_string())
            .body(b"welcome"),
    )
    .await;
    let auth = Auth::new(&config(&service.url()));
    let before = SystemTime::now();
    let Decision::Allow { headers, expires } = auth.check(&upgrade("sid=1")).await else {
        panic!("expected Allow");
    };
    let after = SystemTime::now();
    let value = |v: &str| HeaderValue::from_str(v).unwrap();
    assert_eq!(
        headers,
        vec![
            (HeaderName::from_static("x-auth-user"), value("alice")),
            (HeaderName::from_static("x-auth-roles"), value("admin")),
            (HeaderName::from_static("x-auth-roles"), value("ops")),
        ]
    );
    // max-age (1 h) ends before the header's time (2 h).
    let expires = expires.expect("an expiry");
    let hour = Duration::from_secs(3600);
    assert!(expires >= before + hour && expires <= after + hour);

    // The header's time ends first.
    let end = unix_now() + 60;
    service.set(
        Reply::status(204)
            .header("cache-control", "max-age=3600")
            .header("x-auth-expires", &end.to_string()),
    );
    let Decision::Allow { headers, expires } = auth.check(&upgrade("sid=1")).await else {
        panic!("expected Allow");
    };
    assert!(headers.is_empty());
    assert_eq!(expires, Some(UNIX_EPOCH + Duration::from_secs(end)));

    service.set(Reply::status(200));
    let decision = auth.check(&upgrade("sid=1")).await;
    assert_eq!(
        decision,
        Decision::Allow {
            headers: vec![],
            expires: None
        }
    );
}

#[tokio::test]
async fn a_401_or_403_is_passed_on_with_its_body() {
    let service = AuthService::start(Reply::status(200)).await;
    let auth = Auth::new(&config(&service.url()));
    let deny = |status, body: &[u8], www_authenticate: Option<&'static str>| Decision::Deny {
        status,
        body: body.to_vec().into(),
        www_authenticate: www_authenticate.map(HeaderValue::from_static),
    };
    let full = vec![b'x'; MAX_BODY];
    let cases = [
        (
            Reply::status(401)
                .header("www-authenticate", "Bearer realm=\"chat\"")
                .body(b"log in first"),
            deny(
                StatusCode::UNAUTHORIZED,
                b"log in first",
                Some("Bearer realm=\"chat\""),
            ),
        ),
        (
            Reply::status(403).body(b"not in this room"),
            deny(StatusCode::FORBIDDEN, b"not in this room", None),
        ),
        // Up to the bound, kept whole.
        (
            Reply::status(403).body(&full),
            deny(StatusCode::FORBIDDEN, &full, None),
        ),
        // A longer body is dropped, not cut.
        (
            Reply::status(401)
                .header("www-authenticate", "Basic")
                .body(&[b'x'; MAX_BODY + 1]),
            deny(StatusCode::UNAUTHORIZED, b"", Some("Basic")),
        ),
    ];
    for (reply, expected) in cases {
        service.set(reply);
        assert_eq!(auth.check(&upgrade("sid=1")).await, expected);
    }
}

#[tokio::test]
async fn other_statuses_are_unavailable_and_redirects_are_not_followed() {
    let service = AuthService::start(Reply::status(500)).await;
    let auth = Auth::new(&config(&service.url()));
    assert_eq!(
        unavailable(&auth.check(&upgrade("sid=1")).await),
        "the auth service answered 500 Internal Server Error"
    );
    let login = format!("http://{}/login", service.addr);
    service.set(Reply::status(302).header("location", &login));
    assert_eq!(
        unavailable(&auth.check(&upgrade("sid=1")).await),
        "the auth service redirected 302 Found"
    );
    assert_eq!(service.request_count(), 2, "the redirect was not followed");
    for status in [101, 404, 429, 503] {
        service.set(Reply::status(status));
        unavailable(&auth.check(&upgrade("sid=1")).await);
    }
}

#[tokio::test]
async fn a_service_that_never_answers_is_unavailable_at_the_timeout() {
    let service = AuthService::start(Reply::Hang).await;
    let timeout = Duration::from_millis(300);
    let auth = Auth::new(&ForwardConfig {
        timeout,
        ..config(&service.url())
    });
    let started = Instant::now();
    let decision = auth.check(&upgrade("sid=1")).await;
    let took = started.elapsed();
    assert_eq!(unavailable(&decision), "no answer in time");
    assert!(took >= timeout, "{took:?}");
    assert!(took < timeout + Duration::from_secs(2), "{took:?}");
    assert_eq!(service.request_count(), 1);
}

#[tokio::test]
async fn a_service_that_is_down_is_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let auth = Auth::new(&config(&format!("http://{addr}/auth")));
    let why = auth.check(&upgrade("sid=secret-cookie")).await;
    let why = unavailable(&why);
    assert!(why.contains("onnect"), "{why}");
    assert!(!why.contains("secret") && !why.contains("tok"), "{why}");
}

#[tokio::test]
async fn hostile_answers_are_unavailable_not_a_panic() {
    let huge_header = format!(
        "HTTP/1.1 200 OK\r\nx-auth-user: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let many_headers = format!("HTTP/1.1 200 OK\r\n{}\r\n", "x-a: b\r\n".repeat(10_000));
    let answers: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"garbage\r\n\r\n".to_vec(),
        b"HTTP/1.1 OK\r\n\r\n".to_vec(),
        b"HTTP/1.1 2000 OK\r\n\r\n".to_vec(),
        b"HTTP/1.1 200 OK\r\nx-auth-user: a\0b\r\ncontent-length: 0\r\n\r\n".to_vec(),
        b"HTTP/1.1 200 OK\r\nx-auth-user: a\r\n b\r\ncontent-length: 0\r\n\r\n".to_vec(),
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort".to_vec(),
        b"HTTP/1.1 401 No\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        huge_header.into_bytes(),
        many_headers.into_bytes(),
    ];
    for answer in answers {
        let shown = String::from_utf8_lossy(&answer[..answer.len().min(40)]).into_owned();
        let service = RawService::start(answer).await;
        let auth = Auth::new(&config(&service.url()));
        let decision = auth.check(&upgrade("sid=1")).await;
        assert!(
            matches!(decision, Decision::Unavailable(_)),
            "{shown:?}: {decision:?}"
        );
    }
}

#[tokio::test]
async fn a_long_2xx_body_still_allows() {
    let body = vec![b'x'; 1 << 20];
    let mut answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-auth-user: bob\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    let service = RawService::start(answer).await;
    let auth = Auth::new(&config(&service.url()));
    let Decision::Allow { headers, .. } = auth.check(&upgrade("sid=1")).await else {
        panic!("expected Allow");
    };
    assert_eq!(headers.len(), 1);
}

// TLS tests need the demo feature: it holds the certificate generator.
#[cfg(feature = "demo")]
#[tokio::test]
async fn https_trusts_the_ca_file() {
    let service = AuthService::start_https(Reply::status(200).header("x-auth-user", "carol")).await;
    let auth = Auth::new(&ForwardConfig {
        ca_file: Some(common::certs().join("ca.crt")),
        ..config(&service.url())
    });
    let Decision::Allow { headers, .. } = auth.check(&upgrade("sid=1")).await else {
        panic!("expected Allow");
    };
    assert_eq!(headers[0].1, "carol");
    let seen = service.requests();
    let host = seen[0].headers.iter().find(|(n, _)| n == "host").unwrap();
    assert_eq!(host.1, format!("localhost:{}", service.addr.port()));

    // Another CA, which did not sign the service's certificate: refused.
    let dir = common::TempDir::new("forward-ca");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other = params
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap();
    std::fs::write(dir.0.join("other.crt"), other.pem()).unwrap();
    let auth = Auth::new(&ForwardConfig {
        ca_file: Some(dir.0.join("other.crt")),
        ..config(&service.url())
    });
    let decision = auth.check(&upgrade("sid=1")).await;
    let why = unavailable(&decision);
    assert!(why.contains("certificate"), "{why}");
    assert_eq!(service.request_count(), 1);
}

// === connection reuse ===

#[tokio::test]
async fn sequential_checks_reuse_one_connection() {
    let service = AuthService::start(Reply::status(200).body(b"ok")).await;
    let auth = Auth::new(&config(&service.url()));
    for i in 0..6 {
        if i % 2 == 1 {
            service.set(Reply::status(401).body(b"no"));
        } else {
            service.set(Reply::status(200).body(b"ok"));
        }
        auth.check(&upgrade("sid=1")).await;
    }
    assert_eq!(service.request_count(), 6);
    assert_eq!(service.connections(), 1);
}

// === the cache ===

#[tokio::test]
async fn an_identical_request_is_answered_from_the_cache() {
    let service = AuthService::start(Reply::status(200).header("x-auth-user", "alice")).await;
    let auth = Auth::new(&cached(&service.url(), Duration::from_secs(60)));
    let first = auth.check(&upgrade("sid=1")).await;
    let second = auth.check(&upgrade("sid=1")).await;
    assert!(allowed(&first));
    assert_eq!(first, second);
    assert_eq!(service.request_count(), 1);
    assert_eq!((auth.cache("miss"), auth.cache("hit")), (1.0, 1.0));

    assert!(allowed(&auth.check(&upgrade("sid=2")).await));
    assert_eq!(
        service.request_count(),
        2,
        "another cookie, another question"
    );
    assert_eq!((auth.cache("miss"), auth.cache("hit")), (2.0, 1.0));

    // A denial is kept too.
    service.set(Reply::status(403).body(b"no"));
    let denied = auth.check(&upgrade("sid=3")).await;
    assert!(matches!(denied, Decision::Deny { .. }));
    assert_eq!(auth.check(&upgrade("sid=3")).await, denied);
    assert_eq!(service.request_count(), 3);
}

#[tokio::test]
async fn without_a_ttl_there_is_no_cache() {
    let service = AuthService::start(Reply::status(200)).await;
    let auth = Auth::new(&config(&service.url()));
    auth.check(&upgrade("sid=1")).await;
    auth.check(&upgrade("sid=1")).await;
    assert_eq!(service.request_count(), 2);
    assert!(!auth.metrics.encode().contains("wsguard_auth_cache_total{"));
}

#[tokio::test]
async fn unavailable_is_not_cached() {
    let service = AuthService::start(Reply::status(500)).await;
    let auth = Auth::new(&cached(&service.url(), Duration::from_secs(60)));
    auth.check(&upgrade("sid=1")).await;
    auth.check(&upgrade("sid=1")).await;
    assert_eq!(service.request_count(), 2);
    service.set(Reply::status(200));
    assert!(allowed(&auth.check(&upgrade("sid=1")).await));
}

#[tokio::test]
async fn a_decision_expires_after_the_ttl() {
    let service = AuthService::start(Reply::status(200)).await;
    let ttl = Duration::from_millis(200);
    let auth = Auth::new(&cached(&service.url(), ttl));
    let started = Instant::now();
    auth.check(&upgrade("sid=1")).await;
    auth.check(&upgrade("sid=1")).await;
    assert_eq!(service.request_count(), 1);
    let checks = check_until_asked(&auth, &service, "sid=1", 2).await;
    assert!(started.elapsed() >= ttl);
    assert!(checks > 1, "hits until it expired");
}

/// Checks `cookie` again and again until the service has seen `n` requests (the cached
/// decision expired); returns how many checks that took.
async fn check_until_asked(auth: &Auth, service: &AuthService, cookie: &str, n: usize) -> usize {
    let deadline = Instant::now() + common::STEP;
    let mut checks = 0;
    while service.request_count() < n && Instant::now() < deadline {
        auth.check(&upgrade(cookie)).await;
        checks += 1;
        // Hits take microseconds: pace them.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(service.request_count(), n);
    checks
}

#[tokio::test]
async fn the_oldest_decision_goes_when_the_cache_is_full() {
    let service = AuthService::start(Reply::status(200)).await;
    let auth = Auth::new(&ForwardConfig {
        cache_size: 2,
        ..cached(&service.url(), Duration::from_secs(60))
    });
    for cookie in ["a", "b", "c"] {
        auth.check(&upgrade(cookie)).await;
    }
    assert_eq!(service.request_count(), 3);
    auth.check(&upgrade("c")).await;
    auth.check(&upgrade("b")).await;
    assert_eq!(service.request_count(), 3, "b and c were kept");
    auth.check(&upgrade("a")).await;
    assert_eq!(service.request_count(), 4, "a was evicted");
}

#[tokio::test]
async fn an_allow_is_not_served_past_its_session_end() {
    let service = AuthService::start(Reply::status(200)).await;
    let auth = Auth::new(&cached(&service.url(), Duration::from_secs(60)));
    let ended = Reply::status(200).header("x-auth-expires", &(unix_now() - 1).to_string());
    service.set(ended);
    auth.check(&upgrade("a")).await;
    auth.check(&upgrade("a")).await;
    assert_eq!(service.request_count(), 2);

    service.set(Reply::status(200).header("cache-control", "max-age=0"));
    auth.check(&upgrade("b")).await;
    auth.check(&upgrade("b")).await;
    assert_eq!(service.request_count(), 4);

    // Ends within a second: served until then, asked again after.
    service.set(Reply::status(200).header("cache-control", "max-age=1"));
    let started = Instant::now();
    auth.check(&upgrade("c")).await;
    auth.check(&upgrade("c")).await;
    assert_eq!(service.request_count(), 5);
    check_until_asked(&auth, &service, "c", 6).await;
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn simultaneous_identical_checks_ask_once() {
    let service = AuthService::start(Reply::status(200).header("x-auth-user", "alice")).await;
    let auth = Auth::new(&cached(&service.url(), Duration::from_secs(60)));
    let decisions = auth.check_together(20).await;
    assert_eq!(service.request_count(), 1);
    assert!(decisions.iter().all(|d| *d == decisions[0] && allowed(d)));
    assert_eq!((auth.cache("miss"), auth.cache("hit")), (1.0, 19.0));
}

#[tokio::test]
async fn simultaneous_checks_share_an_unavailable_answer() {
    let service = AuthService::start(Reply::Hang).await;
    let auth = Auth::new(&ForwardConfig {
        timeout: Duration::from_millis(300),
        ..cached(&service.url(), Duration::from_secs(60))
    });
    let decisions = auth.check_together(10).await;
    assert!(decisions
        .iter()
        .all(|d| matches!(d, Decision::Unavailable(_))));
    assert_eq!(service.request_count(), 1);
}

#[tokio::test]
async fn a_waiting_check_asks_itself_when_the_one_in_flight_is_abandoned() {
    let service = AuthService::start(Reply::status(200)).await;
    let auth = Auth::new(&cached(&service.url(), Duration::from_secs(60)));
    let req = upgrade("sid=1");
    let from = client(true);
    let mut leader = Box::pin(auth.forward.check(&req, &from));
    let mut follower = Box::pin(auth.forward.check(&req, &from));
    // One poll each: the first asks, the second waits for it.
    assert!(futures_util::FutureExt::now_or_never(&mut leader).is_none());
    assert!(futures_util::FutureExt::now_or_never(&mut follower).is_none());
    drop(leader);
    let started = Instant::now();
    let decision = within("follower", follower).await;
    assert!(allowed(&decision), "{decision:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not wait for its timeout"
    );
    assert_eq!(auth.cache("miss"), 2.0);
}
