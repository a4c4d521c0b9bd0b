//! JWKS keys (`jwks_url`) against a real HTTPS server: rotation, the unknown-`kid` refresh
//! and its rate limit, failed fetches, and which keys a set may supply. Every key returned is
//! checked by verifying a token signed with the fixture's private key.

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use tokio::time::{sleep, sleep_until, Instant};

use common::jwks::{jwk_set, JwksServer, Reply, TestKey};
use common::{sample, wait_until, within, Logs};
use wsguard::auth::config::JwksConfig;
use wsguard::auth::jwks::{Jwks, JwksMiss};
use wsguard::metrics::Metrics;

const HOUR: Duration = Duration::from_secs(3600);

/// A [`Jwks`] named "idp" with its own metrics.
struct Client {
    jwks: Jwks,
    metrics: Metrics,
}

impl Client {
    fn start(cfg: &JwksConfig) -> Client {
        let metrics = Metrics::new(|| 0);
        let jwks = Jwks::start("idp", cfg, &metrics.auth).expect("client starts");
        Client { jwks, metrics }
    }

    fn fetches(&self, outcome: &str) -> f64 {
        let series =
            format!("wsguard_auth_jwks_fetches_total{{auth=\"idp\",outcome=\"{outcome}\"}}");
        sample(&self.metrics.encode(), &series).unwrap_or(0.0)
    }

    async fn keys(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<Arc<DecodingKey>>, JwksMiss> {
        within("keys", self.jwks.keys(kid, alg)).await
    }

    /// `n` lookups at the same time; how many RS256 keys each found.
    async fn concurrent_lookups(
        &self,
        kid: Option<&str>,
        n: usize,
    ) -> Vec<Result<usize, JwksMiss>> {
        let lookups = (0..n).map(|_| send(self.jwks.keys(kid, Algorithm::RS256)));
        let found = within("concurrent lookups", join_all(lookups)).await;
        found
            .into_iter()
            .map(|r| r.map(|keys| keys.len()))
            .collect()
    }

    /// Looks up the keys for a token signed by `key` with header `kid` (and `alg`, by
    /// default the key's) and asserts that they verify it.
    async fn verify_with(
        &self,
        key: TestKey,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<usize, JwksMiss> {
        let keys = self.keys(kid, alg).await?;
        let token = key.token_with(alg, kid, "alice");
        assert!(
            verifies(&token, alg, &keys),
            "{key:?} {kid:?}: the keys returned do not verify its token"
        );
        Ok(keys.len())
    }

    async fn verify(&self, key: TestKey, kid: &str) -> Result<usize, JwksMiss> {
        self.verify_with(key, key.alg(), Some(kid)).await
    }
}

/// Handshakes run on spawned tasks: a lookup must be `Send`.
fn send<T: Send>(future: T) -> T {
    future
}

fn verifies(token: &str, alg: Algorithm, keys: &[Arc<DecodingKey>]) -> bool {
    keys.iter()
        .any(|k| jsonwebtoken::decode::<Value>(token, k, &Validation::new(alg)).is_ok())
}

fn config(server: &JwksServer, min_refresh: Duration, timeout: Duration) -> JwksConfig {
    JwksConfig {
        url: server.url(),
        ca_file: Some(server.ca_file()),
        refresh: HOUR,
        min_refresh,
        timeout,
    }
}

/// Log lines with this message.
fn lines(logs: &Logs, message: &str) -> Vec<Value> {
    logs.lines()
        .into_iter()
        .filter(|v| v["message"].as_str() == Some(message))
        .collect()
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_per_min_refresh() {
    let server = JwksServer::start(Reply::ok(jwk_set(&[TestKey::Rs256.jwk("a1")]))).await;
    let min_refresh = Duration::from_secs(1);
    let before = Instant::now();
    let c = Client::start(&config(&server, min_refresh, Duration::from_secs(2)));
    let after = Instant::now();

    // The first lookup waits for the first fetch.
    assert_eq!(c.verify(TestKey::Rs256, "a1").await, Ok(1));
    assert_eq!(server.requests(), 1);
    let req = &server.seen()[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("GET", "/jwks.json")
    );
    assert_eq!(req.accept.as_deref(), Some("application/json"));

    // The provider rotates. Within min_refresh of the first fetch a new kid is unknown at
    // once, without a fetch.
    server.set(Reply::ok(jwk_set(&[TestKey::Rs256B.jwk("b1")])));
    assert!(
        before.elapsed() < min_refresh,
        "the first fetch took the whole min_refresh"
    );
    let t = Instant::now();
    assert_eq!(
        c.verify(TestKey::Rs256B, "b1").await,
        Err(JwksMiss::UnknownKey)
    );
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(server.requests(), 1);

    // Once min_refresh has passed, the unknown kid fetches the set again and verifies.
    sleep_until(after + min_refresh).await;
    // An HMAC token never fetches: a JWKS has no HMAC keys to offer.
    let hs = c.keys(Some("b1"), Algorithm::HS256).await;
    assert_eq!(hs.err(), Some(JwksMiss::UnknownKey));
    assert_eq!(server.requests(), 1);
    assert_eq!(c.verify(TestKey::Rs256B, "b1").await, Ok(1));
    assert_eq!(server.requests(), 2);
    // A key of the new set does not verify a token signed by the old one under its kid.
    let forged = TestKey::Rs256.token(Some("b1"), "mallory");
    assert!(!verifies(
        &forged,
        Algorithm::RS256,
        &c.keys(Some("b1"), Algorithm::RS256).await.unwrap()
    ));

    // Another unknown kid right after, and the rotated-out one: no fetch.
    assert_eq!(
        c.verify(TestKey::Rs256, "c1").await,
        Err(JwksMiss::UnknownKey)
    );
    assert_eq!(
        c.verify(TestKey::Rs256, "a1").await,
        Err(JwksMiss::UnknownKey)
    );
    assert_eq!(server.requests(), 2);
    assert_eq!((c.fetches("ok"), c.fetches("error")), (2.0, 0.0));
}

#[tokio::test]
async fn concurrent_misses_share_one_fetch() {
    let server = JwksServer::start(Reply::ok(jwk_set(&[TestKey::Rs256.jwk("a1")]))).await;
    let min_refresh = Duration::from_millis(300);
    let c = Client::start(&config(&server, min_refresh, Duration::from_secs(5)));
    let started = Instant::now();
    assert_eq!(c.verify(TestKey::Rs256, "a1").await, Ok(1));

    // A slow answer keeps the fetch in flight while all the lookups arrive.
    let both = jwk_set(&[TestKey::Rs256.jwk("a1"), TestKey::Rs256B.jwk("b1")]);
    server.set(Reply::slow(Duration::from_millis(200), both));
    sleep_until(started + min_refresh).await;
    let found = c.concurrent_lookups(Some("b1"), 50).await;
    assert_eq!(found, vec![Ok(1); 50]);
    assert_eq!(server.requests(), 2);
    assert_eq!(c.verify(TestKey::Rs256B, "b1").await, Ok(1));

    // The same for a kid that stays unknown.
    sleep_until(Instant::now() + min_refresh).await;
    let missed = c.concurrent_lookups(Some("zz"), 50).await;
    assert_eq!(missed, vec![Err(JwksMiss::UnknownKey); 50]);
    assert_eq!(server.requests(), 3);
    assert_eq!((c.fetches("ok"), c.fetches("error")), (3.0, 0.0));
}

#[tokio::test]
async fn failed_fetches_keep_the_last_good_set() {
    let logs = Logs::capture();
    let a = jwk_set(&[TestKey::Rs256.jwk("a1")]);
    let server = JwksServer::start(Reply::ok(a.clone())).await;
    let timeout = Duration::from_millis(500);
    let c = Client::start(&config(&server, Duration::from_millis(100), timeout));
    assert_eq!(c.verify(TestKey::Rs256, "a1").await, Ok(1));

    let mut oct = json!({ "kty": "oct", "kid": "b1", "k": "c2VjcmV0" });
    let mut enc = TestKey::Rs256B.jwk("b1");
    enc["use"] = json!("enc");
    oct["alg"] = json!("HS256");
    let too_large = format!("{}{a}", " ".repeat(1 << 20));
    let failures = [
        (Reply::status(500, "SECRET-MARKER"), "HTTP status 500"),
        (
            Reply::ok("<html>SECRET-MARKER</html>"),
            "body is not a JWK set (line 1, column 1)",
        ),
        (
            Reply::ok(r#"{"keys": "SECRET-MARKER"}"#),
            "body is not a JWK set (line 1, column 24)",
        ),
        (Reply::ok(too_large), "answer body too large"),
        (
            Reply::ok(jwk_set(&[oct, enc])),
            "no usable signature key in the set (0 could not be parsed)",
        ),
        (Reply::slow(timeout * 3, a.clone()), "no answer in time"),
        // The server is down: connections close without an answer.
        (Reply::HangUp, "client error (Connect)"),
    ];
    for (reply, reason) in failures {
        server.set(reply);
        let seen = |logs: &Logs| {
            lines(logs, "JWKS fetch failed; the last good set stays")
                .iter()
                .filter(|l| l["reason"].as_str().is_some_and(|r| r.starts_with(reason)))
                .count()
        };
        let before = seen(&logs);
        // Lookups of the new kid fetch (at most every min_refresh) until one has failed.
        let deadline = Instant::now() + common::STEP;
        while seen(&logs) == before {
            assert!(
                Instant::now() < deadline,
                "no failure {reason:?}: {:#?}",
                logs.lines()
            );
            let t = Instant::now();
            assert_eq!(
                c.keys(Some("b1"), Algorithm::RS256).await.err(),
                Some(JwksMiss::UnknownKey)
            );
            assert!(
                t.elapsed() < timeout + Duration::from_millis(500),
                "{reason}: {:?}",
                t.elapsed()
            );
            sleep(Duration::from_millis(20)).await;
        }
        // The old set still verifies, at once.
        assert_eq!(c.verify(TestKey::Rs256, "a1").await, Ok(1), "{reason}");
    }

    // Recovery: the next fetch, by a lookup or the backoff, loads the new set.
    server.set(Reply::ok(jwk_set(&[
        TestKey::Rs256.jwk("a1"),
        TestKey::Rs256B.jwk("b1"),
    ])));
    let deadline = Instant::now() + common::STEP;
    while c.keys(Some("b1"), Algorithm::RS256).await.is_err() {
        assert!(Instant::now() < deadline, "no recovery");
        sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(c.verify(TestKey::Rs256B, "b1").await, Ok(1));

    let errors = c.fetches("error");
    assert!(errors >= 7.0, "{errors}");
    assert_eq!(c.fetches("ok"), 2.0);
    assert_eq!(c.fetches("ok") + errors, server.requests() as f64);
    let warned = lines(&logs, "JWKS fetch failed; the last good set stays");
    assert_eq!(warned.len() as f64, errors);
    assert!(warned
        .iter()
        .all(|l| l["auth"] == "idp" && l["level"] == "WARN"));
    assert!(
        !logs
            .lines()
            .iter()
            .any(|l| l.to_string().contains("SECRET-MARKER")),
        "a log line quotes the body"
    );
    let recovered = lines(&logs, "JWKS fetched again after failures");
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(recovered[0]["level"], "INFO");
    assert_eq!(recovered[0]["failures"].as_f64(), Some(errors));
}

#[tokio::test]
async fn a_refused_first_fetch_is_not_loaded_at_once() {
    let logs = Logs::capture();
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let certs = common::certs();
    let cfg = JwksConfig {
        url: format!("https://127.0.0.1:{port}/jwks.json"),
        ca_file: Some(certs.join("ca.crt")),
        refresh: HOUR,
        min_refresh: HOUR,
        timeout: Duration::from_secs(5),
    };
    let c = Client::start(&cfg);
    let t = Instant::now();
    assert_eq!(
        c.keys(Some("a1"), Algorithm::RS256).await.err(),
        Some(JwksMiss::NotLoaded)
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "waited {:?} for a refused connection",
        t.elapsed()
    );
    // Within min_refresh, the next lookup does not wait.
    let t = Instant::now();
    assert_eq!(
        c.keys(None, Algorithm::ES256).await.err(),
        Some(JwksMiss::NotLoaded)
    );
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    assert_eq!((c.fetches("ok"), c.fetches("error")), (0.0, 1.0));
    assert_eq!(
        lines(&logs, "JWKS fetch failed; the last good set stays").len(),
        1
    );
}

#[tokio::test]
async fn a_slow_first_fetch_is_not_loaded_within_the_timeout_then_retried() {
    let logs = Logs::capture();
    let a = jwk_set(&[TestKey::Es256.jwk("a1")]);
    let server = JwksServer::start(Reply::slow(Duration::from_secs(3), a.clone())).await;
    let timeout = Duration::from_millis(300);
    // A lookup may fetch every 200 ms; the backoff retries after 1 s (its floor).
    let c = Client::start(&config(&server, Duration::from_millis(200), timeout));
    let t = Instant::now();
    assert_eq!(
        c.keys(Some("a1"), Algorithm::ES256).await.err(),
        Some(JwksMiss::NotLoaded)
    );
    let waited = t.elapsed();
    assert!(waited >= timeout - Duration::from_millis(50), "{waited:?}");
    assert!(waited < timeout + Duration::from_millis(500), "{waited:?}");

    // No lookup from here: the backoff alone fetches again.
    server.set(Reply::ok(a));
    assert!(wait_until(|| c.fetches("ok") == 1.0).await, "no retry");
    assert_eq!(c.fetches("error"), 1.0);
    assert_eq!(server.requests(), 2);
    assert_eq!(c.verify(TestKey::Es256, "a1").await, Ok(1));
    let recovered = lines(&logs, "JWKS fetched again after failures");
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0]["keys"], 1);
}

#[tokio::test]
async fn only_signature_keys_of_the_right_type_are_returned() {
    let logs = Logs::capture();
    let rsa = TestKey::Rs256.jwk("rsa");
    let mut ec = TestKey::Es256.jwk("ec");
    ec.as_object_mut().unwrap().remove("alg");
    let ed = TestKey::Ed25519.jwk("ed");
    let mut p384 = TestKey::Es384.jwk("p384");
    p384.as_object_mut().unwrap().remove("alg");
    let mut rs384 = TestKey::Rs256B.jwk("rs384");
    rs384["alg"] = json!("RS384");
    let mut verify_op = TestKey::Rs256B.jwk("verify-op");
    verify_op.as_object_mut().unwrap().remove("alg");
    verify_op["key_ops"] = json!(["verify"]);
    let mut sig = TestKey::Rs256B.jwk("sig");
    sig["use"] = json!("sig");
    // Never usable:
    let oct = json!({ "kty": "oct", "kid": "hs", "k": "c2VjcmV0", "alg": "HS256" });
    let oct_no_alg = json!({ "kty": "oct", "kid": "hs-any", "k": "c2VjcmV0" });
    let mut enc = TestKey::Rs256B.jwk("enc");
    enc["use"] = json!("enc");
    let mut encrypt_op = TestKey::Rs256B.jwk("encrypt-op");
    encrypt_op["key_ops"] = json!(["encrypt"]);
    let mut rsa_as_hs = TestKey::Rs256B.jwk("rsa-as-hs");
    rsa_as_hs["alg"] = json!("HS256");
    let mut oaep = TestKey::Rs256B.jwk("oaep");
    oaep["alg"] = json!("RSA-OAEP");
    let mut ec_as_rs = TestKey::Es256.jwk("ec-as-rs");
    ec_as_rs["alg"] = json!("RS256");
    let unknown_type = json!({ "kty": "AKP", "kid": "pq", "alg": "ML-DSA-44", "pub": "AAAA" });
    // Unparsable: counted in one WARN line.
    let bad_n = json!({ "kty": "RSA", "kid": "bad-n", "n": 5, "e": "AQAB" });
    let short_point =
        json!({ "kty": "EC", "kid": "short", "crv": "P-256", "x": "AAAA", "y": "AAAA" });
    let small_rsa = json!({ "kty": "RSA", "kid": "small", "n": "AQAB", "e": "AQAB" });
    let mut bad_use = TestKey::Rs256.jwk("bad-use");
    bad_use["use"] = json!(5);
    let set = [
        rsa,
        ec,
        ed,
        p384,
        rs384,
        verify_op,
        sig,
        oct,
        oct_no_alg,
        enc,
        encrypt_op,
        rsa_as_hs,
        oaep,
        ec_as_rs,
        unknown_type,
        bad_n,
        short_point,
        small_rsa,
        bad_use,
    ];
    let server = JwksServer::start(Reply::ok(jwk_set(&set))).await;
    let c = Client::start(&config(&server, HOUR, Duration::from_secs(5)));

    // RSA, EC and Ed25519 keys of one set, each verifying its own tokens.
    assert_eq!(c.verify(TestKey::Rs256, "rsa").await, Ok(1));
    assert_eq!(c.verify(TestKey::Es256, "ec").await, Ok(1));
    assert_eq!(c.verify(TestKey::Ed25519, "ed").await, Ok(1));
    assert_eq!(c.verify(TestKey::Es384, "p384").await, Ok(1));
    assert_eq!(
        c.verify_with(TestKey::Rs256B, Algorithm::RS384, Some("rs384"))
            .await,
        Ok(1)
    );
    assert_eq!(
        c.verify_with(TestKey::Rs256B, Algorithm::PS256, Some("verify-op"))
            .await,
        Ok(1)
    );
    assert_eq!(c.verify(TestKey::Rs256B, "sig").await, Ok(1));

    // Each miss names a kid whose key must never serve that algorithm.
    let misses = [
        ("hs", Algorithm::HS256),
        ("hs", Algorithm::RS256),
        ("hs-any", Algorithm::HS256),
        ("hs-any", Algorithm::HS512),
        ("rsa", Algorithm::HS256),
        ("enc", Algorithm::RS256),
        ("encrypt-op", Algorithm::RS256),
        ("rsa-as-hs", Algorithm::RS256),
        ("rsa-as-hs", Algorithm::HS256),
        ("oaep", Algorithm::RS256),
        ("ec-as-rs", Algorithm::RS256),
        ("ec-as-rs", Algorithm::ES256),
        ("ec", Algorithm::RS256),
        ("ec", Algorithm::ES384),
        ("p384", Algorithm::ES256),
        ("rs384", Algorithm::RS256),
        ("rsa", Algorithm::ES256),
        ("ed", Algorithm::ES256),
        ("pq", Algorithm::EdDSA),
        ("bad-n", Algorithm::RS256),
        ("short", Algorithm::ES256),
        ("small", Algorithm::RS256),
        ("bad-use", Algorithm::RS256),
    ];
    for (kid, alg) in misses {
        assert_eq!(
            c.keys(Some(kid), alg).await.err(),
            Some(JwksMiss::UnknownKey),
            "{kid} {alg:?}"
        );
    }

    // Without kid: every usable key of the algorithm, and nothing for HMAC.
    assert_eq!(
        c.verify_with(TestKey::Rs256, Algorithm::RS256, None).await,
        Ok(3)
    );
    assert_eq!(
        c.verify_with(TestKey::Rs256B, Algorithm::RS384, None).await,
        Ok(2)
    );
    assert_eq!(
        c.verify_with(TestKey::Es256, Algorithm::ES256, None).await,
        Ok(1)
    );
    assert_eq!(
        c.verify_with(TestKey::Ed25519, Algorithm::EdDSA, None)
            .await,
        Ok(1)
    );
    assert_eq!(
        c.keys(None, Algorithm::HS256).await.err(),
        Some(JwksMiss::UnknownKey)
    );

    assert_eq!(server.requests(), 1);
    let skipped = lines(&logs, "JWKS keys skipped");
    assert_eq!(skipped.len(), 1, "{:#?}", logs.lines());
    assert_eq!(
        (
            skipped[0]["unparsable"].as_u64(),
            skipped[0]["over_limit"].as_u64()
        ),
        (Some(4), Some(0))
    );
    assert_eq!(skipped[0]["kept"], 7);
}

#[tokio::test]
async fn a_set_keeps_its_first_64_keys() {
    let logs = Logs::capture();
    let set: Vec<Value> = (0..70)
        .map(|i| TestKey::Es256.jwk(&format!("k{i}")))
        .collect();
    let server = JwksServer::start(Reply::ok(jwk_set(&set))).await;
    let c = Client::start(&config(&server, HOUR, Duration::from_secs(5)));
    assert_eq!(c.verify(TestKey::Es256, "k63").await, Ok(1));
    assert_eq!(
        c.keys(Some("k64"), Algorithm::ES256).await.err(),
        Some(JwksMiss::UnknownKey)
    );
    assert_eq!(
        c.keys(None, Algorithm::ES256).await.map(|k| k.len()),
        Ok(64)
    );
    let skipped = lines(&logs, "JWKS keys skipped");
    assert_eq!(skipped.len(), 1);
    assert_eq!(
        (
            skipped[0]["unparsable"].as_u64(),
            skipped[0]["over_limit"].as_u64()
        ),
        (Some(0), Some(6))
    );
}

#[tokio::test]
async fn the_set_is_refreshed_on_its_own_until_dropped() {
    let server = JwksServer::start(Reply::ok(jwk_set(&[TestKey::Rs256.jwk("a1")]))).await;
    let mut cfg = config(&server, HOUR, Duration::from_secs(5));
    // The shortest interval the task keeps.
    cfg.refresh = Duration::from_secs(1);
    let c = Client::start(&cfg);
    assert_eq!(c.verify(TestKey::Rs256, "a1").await, Ok(1));
    server.set(Reply::ok(jwk_set(&[TestKey::Rs256B.jwk("b1")])));
    assert!(wait_until(|| c.fetches("ok") == 2.0).await, "no refresh");
    // Loaded by the refresh: min_refresh (an hour) forbids a lookup's fetch.
    assert_eq!(c.verify(TestKey::Rs256B, "b1").await, Ok(1));
    assert_eq!(server.requests(), 2);

    drop(c);
    // Two refresh intervals without a request: only time can show the task is gone.
    sleep(Duration::from_millis(2500)).await;
    assert_eq!(server.requests(), 2);
}
