//! `[auth.NAME] type = "jwt"` end to end: real signed tokens (RS256, ES256, HS256, EdDSA)
//! through the proxy to a recording backend. Every refusal is asserted by its status,
//! challenge, metric and log line, and by the backend never having been contacted.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

use common::auth_service::ask;
use common::*;

/// The fixture keys (PEM) under tests/data/jwt.
fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/jwt")
        .join(name)
}

/// One algorithm of each family the proxy is configured with.
const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::HS256,
    Algorithm::RS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256!";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Standard claims for a token valid for `ttl` seconds.
fn claims(ttl: i64) -> serde_json::Value {
    json!({
        "sub": "alice",
        "email": "alice@example.com",
        "iss": "https://idp.test",
        "aud": "chat",
        "exp": now() as i64 + ttl,
        "iat": now(),
    })
}

fn sign(alg: Algorithm, claims: &serde_json::Value) -> String {
    let key = match alg {
        Algorithm::HS256 => EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        Algorithm::RS256 => {
            EncodingKey::from_rsa_pem(&std::fs::read(fixture("rs256.pem")).unwrap()).unwrap()
        }
        Algorithm::ES256 => {
            EncodingKey::from_ec_pem(&std::fs::read(fixture("es256.pem")).unwrap()).unwrap()
        }
        Algorithm::EdDSA => {
            EncodingKey::from_ed_pem(&std::fs::read(fixture("ed25519.pem")).unwrap()).unwrap()
        }
        other => panic!("no test key for {other:?}"),
    };
    encode(&Header::new(alg), claims, &key).unwrap()
}

/// A proxy with route `/chat` behind `[auth.users]` (`extra` appended to that section)
/// and `/open` without authentication, both to `backend`.
struct Setup {
    guard: Guard,
    backend: Backend,
    _dir: TempDir,
}

async fn setup(extra: &str, route_extra: &str) -> Setup {
    setup_with(extra, route_extra, "").await
}

async fn setup_with(extra: &str, route_extra: &str, limits: &str) -> Setup {
    setup_answering(Answer::Echo { protocol: None }, extra, route_extra, limits).await
}

/// [`setup_with`], the backend giving `answer`.
async fn setup_answering(answer: Answer, extra: &str, route_extra: &str, limits: &str) -> Setup {
    let backend = start_backend(answer).await;
    let dir = TempDir::new("auth-jwt");
    let secret = dir.0.join("hs.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let body = format!(
        r#"[limits]
{limits}

[origin]
allow = ["https://chat.example.com"]

[auth.users]
type = "jwt"
algorithms = ["HS256", "RS256", "ES256", "EdDSA"]
hmac_secret_file = {secret:?}
public_keys = [{rs:?}, {es:?}, {ed:?}]
cookie = "session"
query = "access_token"
protocol_prefix = "token."
issuer = "https://idp.test"
audience = "chat"
leeway = "0s"
claim_headers = {{ sub = "X-Auth-Subject", email = "X-Auth-Email" }}
{extra}

[[route]]
path = "/chat"
backends = ["{addr}"]
auth = "users"
{route_extra}

[[route]]
path = "/open"
backends = ["{addr}"]
"#,
        rs = fixture("rs256.pub.pem"),
        es = fixture("es256.pub.pem"),
        ed = fixture("ed25519.pub.pem"),
        addr = backend.addr,
    );
    let guard = start_guard(false, &body).await;
    Setup {
        guard,
        backend,
        _dir: dir,
    }
}

const ORIGIN: &str = "Origin: https://chat.example.com\r\n";

/// A connection to `/chat` upgraded with `token` as its bearer token (101 asserted).
async fn upgraded(addr: SocketAddr, token: &str) -> Box<dyn Io> {
    let req = upgrade_request("/chat", &format!("{ORIGIN}{}", bearer(token)));
    upgrade_raw(addr, false, &req).await
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// Asserts a refusal: status, rule in the metric, and that the backend saw nothing.
fn assert_refused(s: &Setup, answer: &str, status: u16, rule: &str) {
    assert_eq!(status_of(answer), status, "{answer}");
    let series = format!("wsguard_handshakes_refused_total{{reason=\"{rule}\",route=\"/chat\"}}");
    assert!(
        s.guard.metric(&series) >= 1.0,
        "{series}\n{}",
        s.guard.metrics()
    );
    assert_eq!(s.backend.seen.connections(), 0, "the backend was contacted");
}

#[tokio::test]
async fn good_tokens_of_every_algorithm_pass_and_tampered_ones_do_not() {
    let s = setup("", "").await;
    for alg in ALGORITHMS {
        let token = sign(alg, &claims(60));
        let answer = ask(s.guard.addr, "/chat", &bearer(&token)).await;
        assert_eq!(status_of(&answer), 101, "{alg:?}: {answer}");
    }
    assert_eq!(s.backend.seen.connections(), 4);
    let s = setup("", "").await;
    for alg in ALGORITHMS {
        let token = sign(alg, &claims(60));
        // Another payload under the same signature.
        let (head, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let mut evil = claims(60);
        evil["sub"] = json!("admin");
        let payload = base64url(evil.to_string().as_bytes());
        let tampered = format!("{head}.{payload}.{sig}");
        let answer = ask(s.guard.addr, "/chat", &bearer(&tampered)).await;
        assert_refused(&s, &answer, 401, "auth_bad_signature");
        assert_eq!(
            header_of(&answer, "www-authenticate"),
            Some("Bearer realm=\"wsguard\", error=\"invalid_token\""),
            "{answer}"
        );
    }
    let series = "wsguard_auth_decisions_total{auth=\"users\",outcome=\"auth_bad_signature\"}";
    assert_eq!(s.guard.metric(series), 4.0, "{}", s.guard.metrics());
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn expired_early_and_foreign_tokens_are_refused_with_their_rule() {
    let s = setup("", "").await;
    let cases = [
        (claims(-5), 401, "auth_expired"),
        (
            {
                let mut c = claims(60);
                c["nbf"] = json!(now() + 30);
                c
            },
            401,
            "auth_not_yet_valid",
        ),
        (
            {
                let mut c = claims(60);
                c["iss"] = json!("https://evil.test");
                c
            },
            403,
            "auth_claims",
        ),
        (
            {
                let mut c = claims(60);
                c["aud"] = json!("billing");
                c
            },
            403,
            "auth_claims",
        ),
        (
            {
                let mut c = claims(60);
                c.as_object_mut().unwrap().remove("exp");
                c
            },
            401,
            "auth_malformed",
        ),
    ];
    for (claims, status, rule) in cases {
        let token = sign(Algorithm::ES256, &claims);
        let answer = ask(s.guard.addr, "/chat", &bearer(&token)).await;
        assert_refused(&s, &answer, status, rule);
        assert!(!answer.contains(&token));
    }
}

#[tokio::test]
async fn alg_none_and_hs_rs_confusion_are_refused() {
    let s = setup("", "").await;
    let header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = base64url(claims(60).to_string().as_bytes());
    let none = format!("{header}.{payload}.");
    let answer = ask(s.guard.addr, "/chat", &bearer(&none)).await;
    assert_refused(&s, &answer, 401, "auth_malformed");

    // HS256 "signed" with the RSA public key's PEM as the secret: the HMAC key is the
    // configured secret, never a public key, so the signature does not verify.
    let public = std::fs::read(fixture("rs256.pub.pem")).unwrap();
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims(60),
        &EncodingKey::from_secret(&public).unwrap(),
    )
    .unwrap();
    let answer = ask(s.guard.addr, "/chat", &bearer(&confused)).await;
    assert_refused(&s, &answer, 401, "auth_bad_signature");

    // With only RS256 allowed, an HS256 token is refused before any key is looked at.
    let s = setup_rs256_only().await;
    let answer = ask(s.guard.addr, "/chat", &bearer(&confused)).await;
    assert_refused(&s, &answer, 401, "auth_algorithm");
}

async fn setup_rs256_only() -> Setup {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let keys = format!(
        "algorithms = [\"RS256\"]\npublic_keys = [{:?}]",
        fixture("rs256.pub.pem")
    );
    Setup {
        guard: start_guard(false, &section_body(backend.addr, &keys, "")).await,
        backend,
        _dir: TempDir::new("auth-rs"),
    }
}

#[tokio::test]
async fn a_missing_token_gets_the_bearer_challenge_and_open_routes_stay_open() {
    let s = setup("", "").await;
    let answer = ask(s.guard.addr, "/chat", "").await;
    assert_refused(&s, &answer, 401, "auth_missing");
    assert_eq!(
        header_of(&answer, "www-authenticate"),
        Some("Bearer realm=\"wsguard\"")
    );
    let answer = ask(s.guard.addr, "/open", "").await;
    assert_eq!(status_of(&answer), 101, "{answer}");
}

#[tokio::test]
async fn every_token_source_works_and_the_token_does_not_reach_the_backend() {
    let s = setup("", "").await;
    let token = sign(Algorithm::HS256, &claims(60));
    let cookie = format!("Cookie: theme=dark; session={token}\r\n");
    let protocol = format!("Sec-WebSocket-Protocol: chat, token.{token}\r\n");
    let query_path = format!("/chat?room=7&access_token={token}");
    for (path, headers) in [
        ("/chat", cookie.as_str()),
        (query_path.as_str(), ""),
        ("/chat", protocol.as_str()),
        ("/chat", bearer(&token).as_str()),
    ] {
        let answer = ask(s.guard.addr, path, headers).await;
        assert_eq!(status_of(&answer), 101, "{path} {headers}: {answer}");
    }
    let requests = s.backend.seen.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 4);
    // Whichever source held it, the token is taken out; what is not a token stays.
    assert_eq!(header_of(&requests[0], "cookie"), Some("theme=dark"));
    assert!(
        requests[1].starts_with("GET /chat?room=7 HTTP/1.1\r\n"),
        "{}",
        requests[1]
    );
    assert_eq!(
        header_of(&requests[2], "sec-websocket-protocol"),
        Some("chat")
    );
    assert_eq!(header_of(&requests[3], "authorization"), None);
    for r in &requests {
        assert!(!r.contains(&token), "{r}");
        assert_eq!(header_of(r, "x-auth-subject"), Some("alice"), "{r}");
        assert_eq!(
            header_of(r, "x-auth-email"),
            Some("alice@example.com"),
            "{r}"
        );
    }
}

/// Tokens of four users, each signed: alice's is the session cookie the route reads first.
struct Four {
    alice: String,
    bob: String,
    carol: String,
    erin: String,
}

impl Four {
    fn new() -> Four {
        let of = |sub: &str| {
            let mut c = claims(60);
            c["sub"] = json!(sub);
            sign(Algorithm::HS256, &c)
        };
        Four {
            alice: of("alice"),
            bob: of("bob"),
            carol: of("carol"),
            erin: of("erin"),
        }
    }

    fn all(&self) -> [&str; 4] {
        [&self.alice, &self.bob, &self.carol, &self.erin]
    }

    /// Upgrades `path` at `addr` with bob's token as the query parameter, alice's as the
    /// cookie, carol's as a subprotocol value after `chat` and erin's as the bearer token;
    /// the 101's head.
    async fn upgrade(&self, addr: std::net::SocketAddr, path: &str) -> String {
        let target = format!("{path}?room=7&access_token={}", self.bob);
        let headers = format!(
            "Cookie: theme=dark; session={}\r\nSec-WebSocket-Protocol: chat, token.{}\r\n{}",
            self.alice,
            self.carol,
            bearer(&self.erin)
        );
        let answer = ask(addr, &target, &headers).await;
        assert_eq!(status_of(&answer), 101, "{answer}");
        answer
    }
}

#[tokio::test]
async fn a_cookie_session_sends_no_token_of_any_source_to_the_backend() {
    let s = setup_answering(
        Answer::Echo {
            protocol: Some("chat"),
        },
        "",
        "",
        "",
    )
    .await;
    let t = Four::new();
    let answer = t.upgrade(s.guard.addr, "/chat").await;
    // What the backend chose from the offer it got, which the client made.
    assert_eq!(header_of(&answer, "sec-websocket-protocol"), Some("chat"));
    t.upgrade(s.guard.addr, "/open").await;

    let requests = s.backend.seen.requests.lock().unwrap().clone();
    let (chat, open) = (&requests[0], &requests[1]);
    assert!(chat.starts_with("GET /chat?room=7 HTTP/1.1\r\n"), "{chat}");
    assert_eq!(header_of(chat, "cookie"), Some("theme=dark"), "{chat}");
    assert_eq!(header_of(chat, "sec-websocket-protocol"), Some("chat"));
    assert_eq!(header_of(chat, "authorization"), None, "{chat}");
    assert_eq!(header_of(chat, "x-auth-subject"), Some("alice"), "{chat}");
    for token in t.all() {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!chat.contains(signature), "{chat}");
    }
    // A route without auth forwards the request as it came.
    let sent = format!("GET /open?room=7&access_token={} HTTP/1.1\r\n", t.bob);
    assert!(open.starts_with(&sent), "{open}");
    let cookie = format!("theme=dark; session={}", t.alice);
    assert_eq!(header_of(open, "cookie"), Some(cookie.as_str()));
    let offer = format!("chat, token.{}", t.carol);
    assert_eq!(
        header_of(open, "sec-websocket-protocol"),
        Some(offer.as_str())
    );
    let erin = format!("Bearer {}", t.erin);
    assert_eq!(header_of(open, "authorization"), Some(erin.as_str()));
    assert_eq!(header_of(open, "x-auth-subject"), None, "{open}");
}

#[tokio::test]
async fn keep_token_forwards_every_source_as_it_came() {
    let s = setup_answering(
        Answer::Echo {
            protocol: Some("chat"),
        },
        "",
        "keep_token = true",
        "",
    )
    .await;
    let t = Four::new();
    t.upgrade(s.guard.addr, "/chat").await;
    let requests = s.backend.seen.requests.lock().unwrap().clone();
    let r = &requests[0];
    let sent = format!("GET /chat?room=7&access_token={} HTTP/1.1\r\n", t.bob);
    assert!(r.starts_with(&sent), "{r}");
    let cookie = format!("theme=dark; session={}", t.alice);
    assert_eq!(header_of(r, "cookie"), Some(cookie.as_str()));
    let offer = format!("chat, token.{}", t.carol);
    assert_eq!(header_of(r, "sec-websocket-protocol"), Some(offer.as_str()));
    let erin = format!("Bearer {}", t.erin);
    assert_eq!(header_of(r, "authorization"), Some(erin.as_str()));
    assert_eq!(header_of(r, "x-auth-subject"), Some("alice"), "{r}");
}

#[tokio::test]
async fn a_token_offer_stripped_beside_a_cookie_session_is_named_in_the_101() {
    let s = setup("", "").await;
    let t = Four::new();
    let headers = format!(
        "Cookie: session={}\r\nSec-WebSocket-Protocol: token.{}, token.{}\r\n",
        t.alice, t.carol, t.bob
    );
    let answer = ask(s.guard.addr, "/chat", &headers).await;
    assert_eq!(status_of(&answer), 101, "{answer}");
    let first = format!("token.{}", t.carol);
    assert_eq!(
        header_of(&answer, "sec-websocket-protocol"),
        Some(first.as_str())
    );
    let requests = s.backend.seen.requests.lock().unwrap().clone();
    assert_eq!(header_of(&requests[0], "sec-websocket-protocol"), None);
    assert_eq!(header_of(&requests[0], "cookie"), None);
    for token in t.all() {
        assert!(!requests[0].contains(token), "{}", requests[0]);
    }
}

#[tokio::test]
async fn iss_and_the_other_registered_claims_must_have_their_types() {
    let logs = Logs::capture();
    let s = setup("", "").await;
    let issuer = "https://idp.test";
    let cases = [
        ("iss", json!([issuer])),
        ("iss", json!([issuer, "https://evil.test"])),
        ("iss", json!(1)),
        ("iss", serde_json::Value::Null),
        ("sub", json!(["alice"])),
        ("iat", json!("yesterday")),
        ("aud", json!(["chat", 7])),
    ];
    for (name, value) in &cases {
        let mut c = claims(60);
        c[*name] = value.clone();
        let token = sign(Algorithm::ES256, &c);
        let answer = ask(s.guard.addr, "/chat", &bearer(&token)).await;
        assert_refused(&s, &answer, 401, "auth_malformed");
        assert_eq!(
            header_of(&answer, "www-authenticate"),
            Some("Bearer realm=\"wsguard\", error=\"invalid_token\""),
            "{name}: {value}"
        );
    }
    assert_eq!(
        logs.count("handshake refused", "auth_malformed"),
        cases.len()
    );
    let series = "wsguard_handshakes_refused_total{reason=\"auth_malformed\",route=\"/chat\"}";
    assert_eq!(s.guard.metric(series), cases.len() as f64);
    // The same claims with one accepted string pass.
    let token = sign(Algorithm::ES256, &claims(60));
    let answer = ask(s.guard.addr, "/chat", &bearer(&token)).await;
    assert_eq!(status_of(&answer), 101, "{answer}");
}

#[tokio::test]
async fn client_copies_of_identity_headers_are_dropped_everywhere() {
    let s = setup("", "").await;
    let token = sign(Algorithm::HS256, &claims(60));
    let forged = "X-Auth-Subject: root\r\nx-auth-email: root@example.com\r\n";
    let answer = ask(
        s.guard.addr,
        "/chat",
        &format!("{}{forged}", bearer(&token)),
    )
    .await;
    assert_eq!(status_of(&answer), 101, "{answer}");
    // An open route forwards to the same backends: the forged headers go there neither.
    let answer = ask(s.guard.addr, "/open", forged).await;
    assert_eq!(status_of(&answer), 101, "{answer}");
    let requests = s.backend.seen.requests.lock().unwrap().clone();
    assert_eq!(header_of(&requests[0], "x-auth-subject"), Some("alice"));
    for r in &requests {
        assert!(!r.contains("root"), "{r}");
    }
}

#[tokio::test]
async fn a_socket_is_closed_when_its_token_expires_and_the_backend_hears_1001() {
    let backend = start_upgraded_backend(|mut stream, seen| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1024];
        if let Ok(n) = stream.read(&mut buf).await {
            seen.frames.lock().unwrap().push((
                wsguard::frame::FrameHeader::parse(&buf[..n])
                    .unwrap()
                    .unwrap()
                    .0,
                buf[..n].to_vec(),
            ));
        }
    })
    .await;
    let body = jwt_body(backend.addr, "grace = \"1s\"", "");
    let guard = start_guard(false, &body.0).await;
    // exp is whole seconds: start on a fresh second so the bound is tight.
    let exp = now() + 2;
    let mut c = claims(0);
    c["exp"] = json!(exp);
    let token = sign(Algorithm::HS256, &c);
    let mut io = upgraded(guard.addr, &token).await;
    let (code, reason) = read_close(&mut io).await;
    let closed_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    assert_eq!((code, reason.as_str()), (Some(1008), "token expired"));
    // exp plus the 1 s grace, within a second (exp has whole-second resolution).
    let due = Duration::from_secs(exp + 1);
    assert!(
        closed_at >= due && closed_at < due + Duration::from_secs(1),
        "closed at {closed_at:?}, due {due:?}"
    );
    assert!(
        wait_until(|| !backend.seen.frames().is_empty()).await,
        "the backend heard nothing"
    );
    let (header, bytes) = backend.seen.frames()[0].clone();
    assert_eq!(header.opcode, wsguard::frame::OpCode::Close);
    let payload = &bytes[bytes.len() - header.payload_len as usize..];
    let mut payload = payload.to_vec();
    if let Some(key) = header.mask {
        wsguard::frame::mask::apply_mask(&mut payload, key, 0);
    }
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
    // Counted once the close handshakes are over (the client here never answers).
    let series = "wsguard_connections_closed_total{code=\"1008\",by=\"token_expired\"}";
    assert!(
        wait_until(|| guard.metric(series) == 1.0).await,
        "{}",
        guard.metrics()
    );
    drop(body.1);
}

/// A config body with `/chat` behind an HS256-only `[auth.users]` (default leeway, 30 s;
/// `extra` in it) and `route_extra` on the route; the secret file lives as long as the
/// returned dir.
fn jwt_body(backend: SocketAddr, extra: &str, route_extra: &str) -> (String, TempDir) {
    let dir = TempDir::new("auth-jwt-hs");
    let secret = dir.0.join("hs.secret");
    std::fs::write(&secret, SECRET).unwrap();
    let section = format!("algorithms = [\"HS256\"]\nhmac_secret_file = {secret:?}\n{extra}");
    (section_body(backend, &section, route_extra), dir)
}

/// A config body with `/chat` to `backend` behind `[auth.users] type = "jwt"` with the
/// `section` keys, and `route_extra` on the route.
fn section_body(backend: SocketAddr, section: &str, route_extra: &str) -> String {
    format!(
        r#"[origin]
allow = ["https://chat.example.com"]

[auth.users]
type = "jwt"
{section}

[[route]]
path = "/chat"
backends = ["{backend}"]
auth = "users"
{route_extra}
"#
    )
}

#[tokio::test]
async fn max_session_ends_a_socket_whose_token_lives_longer() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let (body, _dir) = jwt_body(backend.addr, "", "max_session = \"1s\"");
    let guard = start_guard(false, &body).await;
    let token = sign(Algorithm::HS256, &claims(3600));
    let started = std::time::Instant::now();
    let mut io = upgraded(guard.addr, &token).await;
    let (code, reason) = read_close(&mut io).await;
    assert_eq!((code, reason.as_str()), (Some(1008), "session time limit"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn token_guessing_runs_into_429_before_any_token_is_looked_at() {
    let logs = Logs::capture();
    let s = setup_with("", "", "auth_failures_per_ip = 60\nauth_failure_burst = 2").await;
    let good = sign(Algorithm::HS256, &claims(60));
    // One signature character changed, away from the end (whose spare bits base64 ignores).
    let at = good.len() - 10;
    let flipped = if &good[at..=at] == "A" { "B" } else { "A" };
    let bad = format!("{}{flipped}{}", &good[..at], &good[at + 1..]);
    for _ in 0..2 {
        let answer = ask(s.guard.addr, "/chat", &bearer(&bad)).await;
        assert_eq!(status_of(&answer), 401, "{answer}");
    }
    let answer = ask(s.guard.addr, "/chat", &bearer(&bad)).await;
    assert_eq!(status_of(&answer), 429, "{answer}");
    assert_eq!(header_of(&answer, "retry-after"), Some("1"), "{answer}");
    // Blocked: even a good token is not looked at until the quota allows one more.
    let answer = ask(s.guard.addr, "/chat", &bearer(&good)).await;
    assert_eq!(status_of(&answer), 429, "{answer}");
    assert_eq!(logs.count("handshake refused", "auth_bad_signature"), 2);
    assert_eq!(logs.count("handshake refused", "auth_failures"), 2);
    assert_eq!(s.backend.seen.connections(), 0);
    assert_eq!(
        s.guard
            .metric("wsguard_rate_limited_total{reason=\"auth_failures\"}"),
        2.0
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let answer = ask(s.guard.addr, "/chat", &bearer(&good)).await;
    assert_eq!(status_of(&answer), 101, "{answer}");
}

#[tokio::test]
async fn a_refused_origin_is_never_authenticated() {
    let s = setup("", "").await;
    let token = sign(Algorithm::HS256, &claims(60));
    let req = upgrade_request(
        "/chat",
        &format!("Origin: https://evil.example\r\n{}", bearer(&token)),
    );
    let answer = raw_request(s.guard.addr, false, &req).await;
    assert_eq!(status_of(&answer), 403, "{answer}");
    let decided = s.guard.metrics();
    assert!(
        !decided.contains("wsguard_auth_decisions_total{"),
        "{decided}"
    );
}

#[tokio::test]
async fn tokens_never_reach_the_logs() {
    let logs = Logs::capture();
    let s = setup("", "").await;
    let good = sign(Algorithm::ES256, &claims(60));
    let expired = sign(Algorithm::ES256, &claims(-5));
    for (path, headers) in [
        (format!("/chat?access_token={expired}"), String::new()),
        ("/chat".to_owned(), format!("Cookie: session={expired}\r\n")),
        ("/chat".to_owned(), bearer(&good)),
    ] {
        let _ = ask(s.guard.addr, &path, &headers).await;
    }
    let text: String = logs.lines().iter().map(|l| l.to_string()).collect();
    assert!(!text.is_empty());
    for secret in [&good, &expired] {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(!text.contains(signature), "{text}");
    }
    assert!(!s.guard.metrics().contains(&good[..20]));
}

#[tokio::test]
async fn a_token_offered_as_the_only_subprotocol_is_named_in_the_101_not_sent_on() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let (body, _dir) = jwt_body(backend.addr, "protocol_prefix = \"token.\"", "");
    let guard = start_guard(false, &body).await;
    let token = sign(Algorithm::HS256, &claims(60));
    let req = upgrade_request(
        "/chat",
        &format!("{ORIGIN}Sec-WebSocket-Protocol: token.{token}\r\n"),
    );
    let (_io, head) = upgrade_with_head(connect(guard.addr, false).await, &req).await;
    let offered = format!("token.{token}");
    assert_eq!(
        header_of(&head, "sec-websocket-protocol"),
        Some(offered.as_str())
    );
    let requests = backend.seen.requests.lock().unwrap().clone();
    assert_eq!(header_of(&requests[0], "sec-websocket-protocol"), None);
    assert!(!requests[0].contains(&token));
}

#[tokio::test]
async fn the_leeway_does_not_stretch_exp_past_the_grace() {
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let (body, _dir) = jwt_body(backend.addr, "grace = \"2s\"", "");
    let guard = start_guard(false, &body).await;
    // 5 s past exp: inside the default 30 s leeway, outside the 2 s grace.
    let token = sign(Algorithm::HS256, &claims(-5));
    let answer = ask(guard.addr, "/chat", &bearer(&token)).await;
    assert_eq!(status_of(&answer), 401, "{answer}");
    let series = "wsguard_handshakes_refused_total{reason=\"auth_expired\",route=\"/chat\"}";
    assert_eq!(guard.metric(series), 1.0);
    // Up to 1 s past exp (whole seconds), inside the grace: accepted for what is left.
    let token = sign(Algorithm::HS256, &claims(0));
    let answer = ask(guard.addr, "/chat", &bearer(&token)).await;
    assert_eq!(status_of(&answer), 101, "{answer}");
    assert_eq!(backend.seen.connections(), 1);
}
