//! Signing keys fetched over HTTPS (`jwks_url`). A background task fetches the JWK set at
//! once and then every `jwks_refresh`; a failed fetch keeps the last good set and is retried
//! sooner, with a backoff. A token naming a key the set lacks starts a fetch at most once per
//! `jwks_min_refresh`, and every handshake that misses meanwhile waits for that same fetch.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::ACCEPT;
use http::{Request, StatusCode};
use http_body_util::Empty;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::config::JwksConfig;
use super::http::{ClientError, FetchError, HttpClient};
use crate::metrics::{AuthLabels, AuthMetrics};

/// Largest JWKS body read: real sets are a few KiB.
const MAX_BODY: usize = 1 << 20;
/// Keys kept from one set: a token without `kid` is tried against each usable key, so this
/// bounds the work one token can cause.
const MAX_KEYS: usize = 64;
/// Shortest pause of the background task between two fetches, whatever the configuration
/// says: a zero interval must not turn into a loop against the identity provider.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Longest pause, so that no configured interval overflows the clock's arithmetic.
const MAX_INTERVAL: Duration = Duration::from_secs(365 * 24 * 3600);
/// RSA moduli accepted, in bits: shorter ones are within reach of factoring, and the
/// verifier refuses longer ones anyway.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// Why [`Jwks::keys`] found no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwksMiss {
    /// No set has been fetched yet: the provider is unreachable, not the token wrong.
    NotLoaded,
    /// The set holds no usable key for the token's `kid` and `alg`.
    UnknownKey,
}

impl std::fmt::Display for JwksMiss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JwksMiss::NotLoaded => "no JWK set loaded yet",
            JwksMiss::UnknownKey => "no key in the JWK set for the token's kid and alg",
        })
    }
}

/// The keys of one `jwks_url`, kept fresh by a background task that ends when this is dropped.
pub struct Jwks {
    inner: Arc<Inner>,
    task: AbortHandle,
}

impl Drop for Jwks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Jwks {
    /// Starts fetching on the current tokio runtime: the first fetch at once, then every
    /// `cfg.refresh`. `name` is the `[auth.NAME]`, for metrics and log lines.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start(name: &str, cfg: &JwksConfig, metrics: &AuthMetrics) -> Result<Jwks, ClientError> {
        let client = HttpClient::new(cfg.ca_file.as_deref())?;
        let counter = |outcome| {
            metrics
                .jwks_fetches
                .get_or_create(&AuthLabels {
                    auth: name.to_owned(),
                    outcome,
                })
                .clone()
        };
        // The first fetch is in flight from the start, so a handshake arriving before the
        // task first runs waits for it instead of starting another.
        let (state, _) = watch::channel(State {
            set: None,
            fetches: 0,
            in_flight: true,
            last_start: Instant::now(),
        });
        let inner = Arc::new(Inner {
            name: name.to_owned(),
            cfg: cfg.clone(),
            client,
            ok: counter("ok"),
            error: counter("error"),
            state,
        });
        let task = tokio::spawn(inner.clone().run()).abort_handle();
        Ok(Jwks { inner, task })
    }

    /// The keys that may verify a token with header `kid` and `alg`. A miss may wait for a
    /// fetch, never longer than `cfg.timeout`.
    pub async fn keys(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<Arc<DecodingKey>>, JwksMiss> {
        // A JWKS never supplies HMAC secrets (no key kind fits HS*: a public key must not
        // pass for a shared secret), so such a token cannot make a fetch either.
        if alg.family() == AlgorithmFamily::Hmac {
            return Err(JwksMiss::UnknownKey);
        }
        let mut rx = self.inner.state.subscribe();
        if let Ok(found) = rx.borrow().keys(kid, alg) {
            return Ok(found);
        }
        if let Some(fetches) = self.inner.join_fetch() {
            // Err is the timeout; either way the answer is whatever the set is now.
            let _ = tokio::time::timeout(
                self.inner.cfg.timeout,
                rx.wait_for(|s| s.fetches >= fetches),
            )
            .await;
        }
        let found = rx.borrow().keys(kid, alg);
        found
    }
}

/// What handshakes and the background task share.
struct State {
    /// The last good set; `None` until a fetch succeeds.
    set: Option<Arc<KeySet>>,
    /// Fetches finished, good or not: a waiter waits for this to pass a mark.
    fetches: u64,
    in_flight: bool,
    last_start: Instant,
}

impl State {
    fn keys(&self, kid: Option<&str>, alg: Algorithm) -> Result<Vec<Arc<DecodingKey>>, JwksMiss> {
        let found = self.set.as_ref().ok_or(JwksMiss::NotLoaded)?.find(kid, alg);
        if found.is_empty() {
            return Err(JwksMiss::UnknownKey);
        }
        Ok(found)
    }

    fn begin(&mut self) {
        self.in_flight = true;
        self.last_start = Instant::now();
    }
}

struct Inner {
    name: String,
    cfg: JwksConfig,
    client: HttpClient,
    ok: Counter,
    error: Counter,
    state: watch::Sender<State>,
}

impl Inner {
    /// After a miss: the fetch to wait for (the `fetches` count once it ends), joining the
    /// one in flight or starting one unless the last started within `min_refresh`.
    fn join_fetch(&self) -> Option<u64> {
        let mut wait = None;
        self.state.send_if_modified(|s| {
            let start = !s.in_flight && s.last_start.elapsed() >= self.cfg.min_refresh;
            if start {
                s.begin();
            }
            if s.in_flight {
                wait = Some(s.fetches + 1);
            }
            // A change wakes the background task, which makes the fetch.
            start
        });
        wait
    }

    /// Whether the task fetches now: a handshake asked for it, or `due` has come.
    fn take_turn(&self, due: Instant) -> bool {
        let mut go = false;
        self.state.send_if_modified(|s| {
            go = s.in_flight || Instant::now() >= due;
            let start = go && !s.in_flight;
            if start {
                s.begin();
            }
            start
        });
        go
    }

    /// The background task: every fetch is made here, so a handshake that gives up waiting
    /// does not cancel the fetch other handshakes wait for.
    async fn run(self: Arc<Self>) {
        let mut rx = self.state.subscribe();
        let mut due = Instant::now();
        let mut failures = 0u32;
        loop {
            // Marked seen before looking, so a request made after the look wakes the select.
            rx.borrow_and_update();
            if !self.take_turn(due) {
                tokio::select! {
                    () = tokio::time::sleep_until(due) => {}
                    // Never Err: the sender lives in `self`.
                    _ = rx.changed() => {}
                }
                continue;
            }
            let outcome = self.fetch().await;
            let delay = self.finish(outcome, &mut failures);
            due = Instant::now() + delay;
        }
    }

    /// Counts and logs one fetch, publishes its set and ends it; returns the pause until the
    /// next one.
    fn finish(&self, outcome: Result<Parsed, Failure>, failures: &mut u32) -> Duration {
        let (set, delay) = match outcome {
            Ok(parsed) => {
                self.ok.inc();
                if parsed.unparsable + parsed.over_limit > 0 {
                    tracing::warn!(
                        auth = %self.name,
                        unparsable = parsed.unparsable,
                        over_limit = parsed.over_limit,
                        kept = parsed.set.keys.len(),
                        "JWKS keys skipped"
                    );
                }
                if *failures > 0 {
                    tracing::info!(
                        auth = %self.name,
                        keys = parsed.set.keys.len(),
                        failures = *failures,
                        "JWKS fetched again after failures"
                    );
                } else {
                    tracing::debug!(auth = %self.name, keys = parsed.set.keys.len(), "JWKS fetched");
                }
                *failures = 0;
                (Some(Arc::new(parsed.set)), pause(&self.cfg, 0))
            }
            Err(why) => {
                self.error.inc();
                *failures += 1;
                let delay = pause(&self.cfg, *failures);
                tracing::warn!(
                    auth = %self.name,
                    reason = %why,
                    failures = *failures,
                    retry_ms = delay.as_millis() as u64,
                    "JWKS fetch failed; the last good set stays"
                );
                (None, delay)
            }
        };
        self.state.send_modify(|s| {
            s.in_flight = false;
            s.fetches += 1;
            s.set = set.or(s.set.take());
        });
        delay
    }

    async fn fetch(&self) -> Result<Parsed, Failure> {
        let req = Request::get(self.cfg.url.as_str())
            .header(ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| Failure::Request(e.to_string()))?;
        let answer = self
            .client
            .fetch(req, self.cfg.timeout, MAX_BODY)
            .await
            .map_err(Failure::Fetch)?;
        if answer.status() != StatusCode::OK {
            return Err(Failure::Status(answer.status()));
        }
        let raw: RawSet = serde_json::from_slice(answer.body())
            .map_err(|e| Failure::NotASet(e.line(), e.column()))?;
        let parsed = Parsed::from(raw);
        if parsed.set.keys.is_empty() {
            return Err(Failure::NoUsableKey(parsed.unparsable));
        }
        Ok(parsed)
    }
}

/// The pause after a fetch: `refresh` after a success; after the `failures`-th failure in a
/// row, `min_refresh` doubled each time, at most `refresh`.
fn pause(cfg: &JwksConfig, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    let pause = match failures {
        0 => cfg.refresh,
        _ => cfg
            .min_refresh
            .saturating_mul(1 << doublings)
            .min(cfg.refresh),
    };
    pause.clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// Why a fetch gave no set.
enum Failure {
    Request(String),
    Fetch(FetchError),
    Status(StatusCode),
    /// Line and column where the JSON went wrong, and no more: serde's messages quote
    /// the body.
    NotASet(usize, usize),
    /// No usable key; how many could not be parsed.
    NoUsableKey(usize),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Request(why) => write!(f, "cannot build the request: {why}"),
            Failure::Fetch(e) => write!(f, "{e}"),
            Failure::Status(status) => write!(f, "HTTP status {}", status.as_u16()),
            Failure::NotASet(line, column) => {
                write!(f, "body is not a JWK set (line {line}, column {column})")
            }
            Failure::NoUsableKey(unparsable) => write!(
                f,
                "no usable signature key in the set ({unparsable} could not be parsed)"
            ),
        }
    }
}

/// The outer shape of a JWK set. Each key is parsed on its own, so one a provider got wrong
/// (or a key type newer than this code) does not cost the others.
#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// A set as fetched, with what was left out of it.
#[derive(Default)]
struct Parsed {
    set: KeySet,
    unparsable: usize,
    over_limit: usize,
}

impl From<RawSet> for Parsed {
    fn from(raw: RawSet) -> Parsed {
        let mut parsed = Parsed::default();
        for value in raw.keys {
            if parsed.set.keys.len() == MAX_KEYS {
                parsed.over_limit += 1;
                continue;
            }
            match parse_key(value) {
                KeyParse::Usable(key) => parsed.set.keys.push(key),
                KeyParse::NotForSignatures => {}
                KeyParse::Malformed => parsed.unparsable += 1,
            }
        }
        parsed
    }
}

/// The usable keys of one set, in the set's order.
#[derive(Default)]
struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Vec<Arc<DecodingKey>> {
        self.keys
            .iter()
            .filter(|k| kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)) && k.fits(alg))
            .map(|k| k.key.clone())
            .collect()
    }
}

struct Key {
    kid: Option<String>,
    /// The key's own `alg`, when it names one.
    alg: Option<Algorithm>,
    kind: Kind,
    key: Arc<DecodingKey>,
}

impl Key {
    fn fits(&self, alg: Algorithm) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|own| own == alg)
    }
}

/// The asymmetric key types a JWKS may supply.
#[derive(Clone, Copy)]
enum Kind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Kind {
    fn fits(self, alg: Algorithm) -> bool {
        match self {
            Kind::Rsa => alg.family() == AlgorithmFamily::Rsa,
            Kind::P256 => alg == Algorithm::ES256,
            Kind::P384 => alg == Algorithm::ES384,
            Kind::Ed25519 => alg == Algorithm::EdDSA,
        }
    }

    /// Whether the key material has the size of its type: `DecodingKey::from_jwk` only
    /// decodes base64, so a wrong length would otherwise surface as failed verifications.
    fn plausible(self, key: &DecodingKey) -> bool {
        match (self, key.kind()) {
            (Kind::Rsa, DecodingKeyKind::RsaModulusExponent { n, e }) => {
                let n = &n[n.iter().take_while(|b| **b == 0).count()..];
                let bits = n.len() * 8 - n.first().map_or(0, |top| top.leading_zeros() as usize);
                RSA_BITS.contains(&bits) && !e.is_empty()
            }
            // Uncompressed SEC1 points (0x04, x, y) and a raw Ed25519 key.
            (Kind::P256, DecodingKeyKind::SecretOrDer(point)) => point.len() == 65,
            (Kind::P384, DecodingKeyKind::SecretOrDer(point)) => point.len() == 97,
            (Kind::Ed25519, DecodingKeyKind::SecretOrDer(raw)) => raw.len() == 32,
            _ => false,
        }
    }
}

enum KeyParse {
    Usable(Key),
    /// Valid but not a signature key here (`oct`, `use` "enc", an unsupported curve or type).
    NotForSignatures,
    Malformed,
}

fn parse_key(value: serde_json::Value) -> KeyParse {
    let known_type = matches!(
        value.get("kty").and_then(|t| t.as_str()),
        Some("RSA" | "EC" | "OKP" | "oct")
    );
    let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
        return KeyParse::Malformed;
    };
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Kind::Rsa,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Kind::P256,
            EllipticCurve::P384 => Kind::P384,
            _ => return KeyParse::NotForSignatures,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Kind::Ed25519
        }
        // A known type that fits none of the shapes above lacks a member or has a wrong one.
        AlgorithmParameters::Other(_) if known_type => return KeyParse::Malformed,
        _ => return KeyParse::NotForSignatures,
    };
    let common = &jwk.common;
    let for_signatures = common
        .public_key_use
        .as_ref()
        .is_none_or(|u| *u == PublicKeyUse::Signature)
        && common
            .key_operations
            .as_ref()
            .is_none_or(|ops| ops.contains(&KeyOperations::Verify));
    let alg = match common.key_algorithm.map(Algorithm::try_from) {
        None => None,
        Some(Ok(alg)) if kind.fits(alg) => Some(alg),
        // An encryption algorithm, an unknown one, or one of another key type.
        Some(_) => return KeyParse::NotForSignatures,
    };
    if !for_signatures {
        return KeyParse::NotForSignatures;
    }
    match DecodingKey::from_jwk(&jwk) {
        Ok(key) if kind.plausible(&key) => KeyParse::Usable(Key {
            kid: jwk.common.key_id,
            alg,
            kind,
            key: Arc::new(key),
        }),
        _ => KeyParse::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(refresh: u64, min_refresh: u64) -> JwksConfig {
        JwksConfig {
            url: "https://idp.example/jwks".into(),
            ca_file: None,
            refresh: Duration::from_secs(refresh),
            min_refresh: Duration::from_secs(min_refresh),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn failures_back_off_from_min_refresh_to_refresh() {
        let cfg = cfg(300, 30);
        let pauses: Vec<u64> = (0..6).map(|f| pause(&cfg, f).as_secs()).collect();
        assert_eq!(pauses, [300, 30, 60, 120, 240, 300]);
        assert_eq!(pause(&cfg, u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn pauses_stay_within_the_bounds() {
        assert_eq!(pause(&cfg(0, 0), 0), MIN_INTERVAL);
        assert_eq!(pause(&cfg(0, 0), 3), MIN_INTERVAL);
        assert_eq!(pause(&cfg(u64::MAX, u64::MAX), 0), MAX_INTERVAL);
        assert_eq!(pause(&cfg(u64::MAX, u64::MAX), 40), MAX_INTERVAL);
    }

    #[test]
    fn rsa_moduli_outside_2048_to_8192_bits_are_malformed() {
        let rsa = |bytes: usize, top: u8| {
            let mut n = vec![0u8, 0]; // leading zeros do not count
            n.push(top);
            n.resize(bytes + 2, 0xff);
            let b64 = |b: &[u8]| {
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
            };
            let jwk = serde_json::json!({ "kty": "RSA", "n": b64(&n), "e": b64(&[1, 0, 1]) });
            matches!(parse_key(jwk), KeyParse::Usable(_))
        };
        assert!(rsa(256, 0x80), "2048 bits");
        assert!(!rsa(256, 0x7f), "2047 bits");
        assert!(rsa(1024, 0xff), "8192 bits");
        assert!(!rsa(1025, 0x01), "8193 bits");
    }
}
