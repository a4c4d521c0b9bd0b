//! `[auth.NAME] type = "forward"` end to end: a real auth service, wsguard in-process and a
//! recording backend. Every refusal is asserted by its status, what the client gets, its
//! metric and by the backend never having been contacted; and the service is asked only
//! after the Origin and the per-IP limits.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::auth_service::{ask, assert_refused, AuthService, Reply, ORIGIN};
use common::*;

/// A proxy with route `/chat` behind `[auth.sso]` asking `url` (`extra` appended to that
/// section, `limits` to `[limits]`), to a recording backend.
struct Setup {
    guard: Guard,
    backend: Backend,
}

async fn setup(url: &str, extra: &str, limits: &str) -> Setup {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let body = format!(
        r#"[limits]
{limits}

[origin]
allow = ["{ORIGIN}"]

[auth.sso]
type = "forward"
url = "{url}"
copy_headers = ["X-Auth-User"]
{extra}

[[route]]
path = "/chat"
backends = ["{addr}"]
auth = "sso"
"#,
        addr = backend.addr,
    );
    let guard = start_guard(false, &body).await;
    Setup { guard, backend }
}

const COOKIE: &str = "Cookie: sid=1\r\n";

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn a_2xx_upgrades_with_the_service_identity_not_the_clients() {
    let service = AuthService::start(Reply::status(200).header("X-Auth-User", "alice")).await;
    let s = setup(&service.url(), "", "").await;
    let answer = ask(
        s.guard.addr,
        "/chat",
        &format!("{COOKIE}X-Auth-User: mallory\r\n"),
    )
    .await;
    assert_eq!(status_of(&answer), 101, "{answer}");
    let requests = s.backend.seen.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert_eq!(header_of(&requests[0], "x-auth-user"), Some("alice"));
    assert!(!requests[0].contains("mallory"), "{}", requests[0]);
    // The service saw the client's credential, not its forged identity.
    let asked = service.requests();
    assert_eq!(asked.len(), 1);
    let has = |name: &str| asked[0].headers.iter().any(|(n, _)| n == name);
    assert!(has("cookie") && !has("x-auth-user"), "{asked:?}");
    let series = "wsguard_auth_decisions_total{auth=\"sso\",outcome=\"allowed\"}";
    assert_eq!(s.guard.metric(series), 1.0, "{}", s.guard.metrics());
}

#[tokio::test]
async fn a_401_and_a_403_reach_the_client_as_the_service_answered() {
    let logs = Logs::capture();
    let service = AuthService::start(
        Reply::status(401)
            .header("WWW-Authenticate", "Basic realm=\"x\"")
            .body(b"who are you?"),
    )
    .await;
    let s = setup(&service.url(), "cache_ttl = \"off\"", "").await;
    let answer = ask(s.guard.addr, "/chat", COOKIE).await;
    assert_refused(&s.guard, &s.backend, 0, &answer, (401, "auth_unauthorized"));
    assert!(answer.ends_with("\r\n\r\nwho are you?"), "{answer}");
    // The service's challenge alone: wsguard adds no Bearer one of its own.
    let challenges: Vec<&str> = answer
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("www-authenticate:"))
        .collect();
    assert_eq!(challenges.len(), 1, "{answer}");
    assert_eq!(
        header_of(&answer, "www-authenticate"),
        Some("Basic realm=\"x\"")
    );
    assert_eq!(logs.count("handshake refused", "auth_unauthorized"), 1);

    service.set(Reply::status(403).body(b"not you"));
    let answer = ask(s.guard.addr, "/chat", COOKIE).await;
    assert_refused(&s.guard, &s.backend, 0, &answer, (403, "auth_forbidden"));
    assert!(answer.ends_with("\r\n\r\nnot you"), "{answer}");
    assert_eq!(header_of(&answer, "www-authenticate"), None, "{answer}");
    assert_eq!(logs.count("handshake refused", "auth_forbidden"), 1);
    assert_eq!(service.request_count(), 2);
}

/// An auth service that fails in each way: a 500, one that never answers, one that is down.
async fn failing_services() -> Vec<(&'static str, String, Option<AuthService>)> {
    let error = AuthService::start(Reply::status(500)).await;
    let hang = AuthService::start(Reply::Hang).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}/auth", listener.local_addr().unwrap());
    drop(listener);
    vec![
        ("500", error.url(), Some(error)),
        ("no answer", hang.url(), Some(hang)),
        ("down", down, None),
    ]
}

const TIMEOUT: Duration = Duration::from_millis(500);

#[tokio::test]
async fn a_failing_service_gets_503_within_the_timeout() {
    for (what, url, _service) in failing_services().await {
        let s = setup(&url, "timeout = \"500ms\"", "").await;
        let started = Instant::now();
        let answer = ask(s.guard.addr, "/chat", COOKIE).await;
        let took = started.elapsed();
        assert_refused(&s.guard, &s.backend, 0, &answer, (503, "auth_unavailable"));
        assert_eq!(header_of(&answer, "retry-after"), Some("1"), "{what}");
        assert!(
            took < TIMEOUT + Duration::from_millis(500),
            "{what}: {took:?}"
        );
        if what == "no answer" {
            assert!(took >= TIMEOUT, "{what}: {took:?}");
        }
    }
}

#[tokio::test]
async fn on_error_open_lets_a_failing_service_through_and_counts_it() {
    for (what, url, _service) in failing_services().await {
        let s = setup(&url, "timeout = \"500ms\"\non_error = \"open\"", "").await;
        let answer = ask(
            s.guard.addr,
            "/chat",
            &format!("{COOKIE}X-Auth-User: mallory\r\n"),
        )
        .await;
        assert_eq!(status_of(&answer), 101, "{what}: {answer}");
        let series = "wsguard_auth_decisions_total{auth=\"sso\",outcome=\"error_open\"}";
        assert_eq!(s.guard.metric(series), 1.0, "{what}: {}", s.guard.metrics());
        // Unauthenticated: no identity reaches the backend, forged or not.
        let requests = s.backend.seen.requests.lock().unwrap().clone();
        assert_eq!(header_of(&requests[0], "x-auth-user"), None, "{what}");
    }
}

#[tokio::test]
async fn a_refused_origin_never_reaches_the_service() {
    let service = AuthService::start(Reply::status(200)).await;
    let s = setup(&service.url(), "", "").await;
    let req = upgrade_request(
        "/chat",
        &format!("Origin: https://evil.example\r\n{COOKIE}"),
    );
    let answer = raw_request(s.guard.addr, false, &req).await;
    assert_refused(
        &s.guard,
        &s.backend,
        0,
        &answer,
        (403, "origin_not_allowed"),
    );
    assert_eq!(service.connections(), 0);
    assert_eq!(service.request_count(), 0);
}

#[tokio::test]
async fn the_per_ip_handshake_limit_comes_before_the_service() {
    let service = AuthService::start(Reply::status(200)).await;
    let limits = "handshakes_per_ip = 60\nhandshake_burst = 1";
    let s = setup(&service.url(), "cache_ttl = \"off\"", limits).await;
    let answer = ask(s.guard.addr, "/chat", COOKIE).await;
    assert_eq!(status_of(&answer), 101, "{answer}");
    let answer = ask(s.guard.addr, "/chat", COOKIE).await;
    assert_refused(&s.guard, &s.backend, 1, &answer, (429, "ip_handshake_rate"));
    assert_eq!(
        service.request_count(),
        1,
        "the refused handshake was asked about"
    );
}

#[tokio::test]
async fn an_identical_upgrade_is_decided_from_the_cache() {
    let service = AuthService::start(Reply::status(200).header("X-Auth-User", "alice")).await;
    let s = setup(&service.url(), "cache_ttl = \"10s\"", "").await;
    for _ in 0..2 {
        let answer = ask(s.guard.addr, "/chat", COOKIE).await;
        assert_eq!(status_of(&answer), 101, "{answer}");
    }
    assert_eq!(service.request_count(), 1);
    let cache = |outcome: &str| {
        s.guard.metric(&format!(
            "wsguard_auth_cache_total{{auth=\"sso\",outcome=\"{outcome}\"}}"
        ))
    };
    assert_eq!(
        (cache("miss"), cache("hit")),
        (1.0, 1.0),
        "{}",
        s.guard.metrics()
    );
    // The cached decision carries the identity too.
    for r in s.backend.seen.requests.lock().unwrap().iter() {
        assert_eq!(header_of(r, "x-auth-user"), Some("alice"), "{r}");
    }
}

#[tokio::test]
async fn the_session_ends_when_the_service_says() {
    let service = AuthService::start(Reply::status(200)).await;
    let s = setup(&service.url(), "", "").await;

    // X-Auth-Expires is whole seconds: the close is due then, within a second.
    let exp = unix_now() + 2;
    service.set(Reply::status(200).header("X-Auth-Expires", &exp.to_string()));
    let req = upgrade_request("/chat", &format!("Origin: {ORIGIN}\r\n{COOKIE}"));
    let mut io = upgrade_raw(s.guard.addr, false, &req).await;
    let (code, reason) = read_close(&mut io).await;
    let closed_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    assert_eq!((code, reason.as_str()), (Some(1008), "token expired"));
    let due = Duration::from_secs(exp);
    assert!(
        closed_at >= due && closed_at < due + Duration::from_secs(1),
        "closed at {closed_at:?}, due {due:?}"
    );

    // Another credential (a decision of its own), ending with max-age.
    service.set(Reply::status(200).header("Cache-Control", "private, max-age=1"));
    let req = upgrade_request("/chat", &format!("Origin: {ORIGIN}\r\nCookie: sid=2\r\n"));
    let started = Instant::now();
    let mut io = upgrade_raw(s.guard.addr, false, &req).await;
    let (code, reason) = read_close(&mut io).await;
    let took = started.elapsed();
    assert_eq!((code, reason.as_str()), (Some(1008), "token expired"));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let series = "wsguard_connections_closed_total{code=\"1008\",by=\"token_expired\"}";
    assert!(
        wait_until(|| s.guard.metric(series) == 2.0).await,
        "{}",
        s.guard.metrics()
    );
}

#[tokio::test]
async fn refused_credentials_run_into_429_before_the_service_is_asked() {
    let logs = Logs::capture();
    let service = AuthService::start(Reply::status(401)).await;
    let limits = "auth_failures_per_ip = 60\nauth_failure_burst = 2";
    let s = setup(&service.url(), "cache_ttl = \"off\"", limits).await;
    for _ in 0..2 {
        let answer = ask(s.guard.addr, "/chat", COOKIE).await;
        assert_refused(&s.guard, &s.backend, 0, &answer, (401, "auth_unauthorized"));
        // The service sent no challenge; a 401 still carries one.
        let challenge = header_of(&answer, "www-authenticate");
        assert_eq!(challenge, Some("Bearer realm=\"wsguard\""), "{answer}");
    }
    // The third failure is one too many; after it the service is not asked at all.
    for _ in 0..2 {
        let answer = ask(s.guard.addr, "/chat", COOKIE).await;
        assert_refused(&s.guard, &s.backend, 0, &answer, (429, "auth_failures"));
        assert_eq!(header_of(&answer, "retry-after"), Some("1"), "{answer}");
    }
    assert_eq!(service.request_count(), 3);
    assert_eq!(logs.count("handshake refused", "auth_unauthorized"), 2);
    assert_eq!(logs.count("handshake refused", "auth_failures"), 2);
    let series = "wsguard_rate_limited_total{reason=\"auth_failures\"}";
    assert_eq!(s.guard.metric(series), 2.0, "{}", s.guard.metrics());
}
