//! `jwks_url` end to end: a real HTTPS server for the JWK set (its CA as `jwks_ca_file`),
//! wsguard in-process and a recording backend. Key rotation, a provider that is down, and
//! a reload that keeps the fetched set.

mod common;

use std::time::Duration;

use common::auth_service::{ask, assert_refused, ORIGIN};
use common::jwks::{jwk_set, JwksServer, Reply, TestKey};
use common::*;

/// A proxy with route `/chat` behind `[auth.users]` verifying RS256 tokens with the keys
/// of `server`, to a recording backend; `body` is the configuration, for reloads.
struct Setup {
    guard: Guard,
    backend: Backend,
    body: String,
}

fn config(backend: &Backend, server: &JwksServer, extra: &str) -> String {
    format!(
        r#"[origin]
allow = ["{ORIGIN}"]

[auth.users]
type = "jwt"
algorithms = ["RS256"]
jwks_url = "{url}"
jwks_ca_file = {ca:?}
jwks_min_refresh = "{MIN_REFRESH}s"
{extra}

[[route]]
path = "/chat"
backends = ["{addr}"]
auth = "users"
"#,
        url = server.url(),
        ca = server.ca_file(),
        addr = backend.addr,
    )
}

/// `jwks_min_refresh`, in seconds: a token with an unknown `kid` fetches at most this often.
const MIN_REFRESH: u64 = 2;

async fn setup(server: &JwksServer) -> Setup {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let body = config(&backend, server, "");
    let guard = start_guard(false, &body).await;
    Setup {
        guard,
        backend,
        body,
    }
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

fn fetches(guard: &Guard, outcome: &str) -> f64 {
    guard.metric(&format!(
        "wsguard_auth_jwks_fetches_total{{auth=\"users\",outcome=\"{outcome}\"}}"
    ))
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_the_old_one_is_refused() {
    let logs = Logs::capture();
    let server = JwksServer::start(Reply::ok(jwk_set(&[TestKey::Rs256.jwk("k1")]))).await;
    let s = setup(&server).await;
    let k1 = TestKey::Rs256.token(Some("k1"), "alice");
    let answer = ask(s.guard.addr, "/chat", &bearer(&k1)).await;
    assert_eq!(status_of(&answer), 101, "{answer}");
    assert_eq!(server.requests(), 1);

    // The provider rotates: k2 in, k1 gone. An unknown kid fetches once jwks_min_refresh
    // has passed since the last fetch began, so wait that long.
    server.set(Reply::ok(jwk_set(&[TestKey::Rs256B.jwk("k2")])));
    tokio::time::sleep(Duration::from_millis(MIN_REFRESH * 1000 + 100)).await;
    let k2 = TestKey::Rs256B.token(Some("k2"), "bob");
    let answer = ask(s.guard.addr, "/chat", &bearer(&k2)).await;
    assert_eq!(status_of(&answer), 101, "{answer}");
    assert_eq!(server.requests(), 2, "one extra fetch for the new kid");
    assert_eq!(fetches(&s.guard, "ok"), 2.0, "{}", s.guard.metrics());

    // k1 is no longer in the set; within jwks_min_refresh it fetches nothing either.
    let answer = ask(s.guard.addr, "/chat", &bearer(&k1)).await;
    assert_refused(&s.guard, &s.backend, 2, &answer, (401, "auth_unknown_key"));
    assert_eq!(
        header_of(&answer, "www-authenticate"),
        Some("Bearer realm=\"wsguard\", error=\"invalid_token\"")
    );
    assert_eq!(server.requests(), 2);
    let refused: Vec<_> = logs
        .lines()
        .into_iter()
        .filter(|l| l["rule"] == "auth_unknown_key")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["kid"], "k1", "{refused:?}");
}

#[tokio::test]
async fn a_provider_down_from_the_start_gets_503_until_it_is_up() {
    let server = JwksServer::start(Reply::HangUp).await;
    let s = setup(&server).await;
    let token = TestKey::Rs256.token(Some("k1"), "alice");
    let answer = ask(s.guard.addr, "/chat", &bearer(&token)).await;
    assert_refused(&s.guard, &s.backend, 0, &answer, (503, "auth_unavailable"));
    assert_eq!(header_of(&answer, "retry-after"), Some("1"), "{answer}");
    assert_eq!(header_of(&answer, "www-authenticate"), None, "{answer}");
    assert!(server.requests() >= 1);
    assert!(fetches(&s.guard, "error") >= 1.0, "{}", s.guard.metrics());

    // Up again: the background retry (after jwks_min_refresh) fetches the set.
    server.set(Reply::ok(jwk_set(&[TestKey::Rs256.jwk("k1")])));
    assert!(
        wait_until(|| fetches(&s.guard, "ok") == 1.0).await,
        "{}",
        s.guard.metrics()
    );
    let answer = ask(s.guard.addr, "/chat", &bearer(&token)).await;
    assert_eq!(status_of(&answer), 101, "{answer}");
    // A provider that is down is no failed authentication of the client's.
    let series = "wsguard_rate_limited_total{reason=\"auth_failures\"}";
    assert_eq!(s.guard.metric(series), 0.0);
}

#[tokio::test]
async fn a_reload_with_the_same_section_keeps_the_fetched_set() {
    let server = JwksServer::start(Reply::ok(jwk_set(&[TestKey::Rs256.jwk("k1")]))).await;
    let s = setup(&server).await;
    let token = TestKey::Rs256.token(Some("k1"), "alice");
    let answer = ask(s.guard.addr, "/chat", &bearer(&token)).await;
    assert_eq!(status_of(&answer), 101, "{answer}");
    assert_eq!(server.requests(), 1);

    // With the provider gone, only a kept set can let the token through.
    server.set(Reply::HangUp);
    s.guard.reload("", &s.body);
    let answer = ask(s.guard.addr, "/chat", &bearer(&token)).await;
    assert_eq!(status_of(&answer), 101, "{answer}");
    assert_eq!(server.requests(), 1, "the reload fetched the set again");

    // A changed section starts afresh: a fetch of its own, which fails now.
    s.guard
        .reload("", &config(&s.backend, &server, "leeway = \"5s\""));
    let answer = ask(s.guard.addr, "/chat", &bearer(&token)).await;
    assert_refused(&s.guard, &s.backend, 2, &answer, (503, "auth_unavailable"));
    assert_eq!(server.requests(), 2);
}
