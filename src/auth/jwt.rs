//! `type = "jwt"`: a token verified in-process. The key is chosen by the token's algorithm
//! family before anything is verified: an HMAC secret only ever verifies HS*, public keys
//! (files or JWKS) only their own family, so `alg: none` (not an algorithm jsonwebtoken
//! knows) and HS/RS key confusion are impossible by construction. Then the signature, then
//! the claims ([`super::claims`]).

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderName, HeaderValue};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::config::{AuthError, JwtConfig, TokenSources};
use super::jwks::{Jwks, JwksMiss};
use super::refusal::AuthRefusal;
use crate::metrics::AuthMetrics;

/// A token longer than this is refused unread: real ones are well under 4 KiB.
const MAX_TOKEN: usize = 8 * 1024;

/// A verified token: the identity headers for the backend, and when it stops being valid.
pub struct Verified {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `exp`: the caller refuses the token, or ends its session, at `exp` plus the grace.
    pub expires: Option<SystemTime>,
}

/// Why a token was refused, and its `kid` for the log line.
pub struct Rejected {
    pub refusal: AuthRefusal,
    pub kid: Option<String>,
}

/// The verifier of one `[auth.NAME] type = "jwt"` section.
pub struct JwtAuth {
    cfg: JwtConfig,
    /// The claim checks of each allowed algorithm, built once: the allow-list itself.
    validations: Vec<(Algorithm, Validation)>,
    hmac: Option<Arc<DecodingKey>>,
    /// Public keys from files, each with its family.
    keys: Vec<Arc<DecodingKey>>,
    jwks: Option<Jwks>,
}

impl JwtAuth {
    /// Reads the key files and starts the JWKS fetches, if any.
    pub fn new(name: &str, cfg: &JwtConfig, metrics: &AuthMetrics) -> Result<JwtAuth, AuthError> {
        super::verify::install();
        let hmac = match &cfg.hmac_secret_file {
            Some(path) => Some(Arc::new(hmac_key(path, &cfg.algorithms)?)),
            None => None,
        };
        let keys = cfg
            .public_keys
            .iter()
            .map(|p| public_key(p).map(Arc::new))
            .collect::<Result<_, _>>()?;
        let jwks = match &cfg.jwks {
            Some(j) => Some(Jwks::start(name, j, metrics).map_err(AuthError::Client)?),
            None => None,
        };
        let validations = cfg
            .algorithms
            .iter()
            .map(|&alg| (alg, validation(alg)))
            .collect();
        Ok(JwtAuth {
            cfg: cfg.clone(),
            validations,
            hmac,
            keys,
            jwks,
        })
    }

    /// Where tokens are looked for.
    pub fn sources(&self) -> &TokenSources {
        &self.cfg.sources
    }

    /// Verifies `token`.
    pub async fn verify(&self, token: &str) -> Result<Verified, Rejected> {
        let reject = |refusal, kid: &Option<String>| Rejected {
            refusal,
            kid: kid.clone(),
        };
        if token.len() > MAX_TOKEN {
            return Err(reject(AuthRefusal::Malformed, &None));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| reject(AuthRefusal::Malformed, &None))?;
        let kid = header.kid.filter(|k| k.len() <= 128);
        let alg = header.alg;
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == alg) else {
            return Err(reject(AuthRefusal::Algorithm, &kid));
        };
        let keys = self
            .keys_for(kid.as_deref(), alg)
            .await
            .map_err(|r| reject(r, &kid))?;
        let mut last = AuthRefusal::BadSignature;
        for key in &keys {
            match jsonwebtoken::decode::<Map<String, Value>>(token, key, validation) {
                Ok(data) => return self.verified(&data.claims).map_err(|r| reject(r, &kid)),
                Err(e) => {
                    last = refusal_of(e.kind());
                    if last != AuthRefusal::BadSignature {
                        break;
                    }
                }
            }
        }
        Err(reject(last, &kid))
    }

    /// The keys that may verify a token of `alg`: the secret for HS*, else the public keys
    /// of that family from the files and the JWKS.
    async fn keys_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<Arc<DecodingKey>>, AuthRefusal> {
        let family = alg.family();
        if family == AlgorithmFamily::Hmac {
            return match &self.hmac {
                Some(key) => Ok(vec![Arc::clone(key)]),
                None => Err(AuthRefusal::UnknownKey),
            };
        }
        let mut keys: Vec<_> = self
            .keys
            .iter()
            .filter(|k| k.family() == family)
            .cloned()
            .collect();
        if let Some(jwks) = &self.jwks {
            match jwks.keys(kid, alg).await {
                Ok(found) => keys.extend(found),
                Err(JwksMiss::NotLoaded) if keys.is_empty() => {
                    return Err(AuthRefusal::Unavailable)
                }
                Err(_) => {}
            }
        }
        if keys.is_empty() {
            return Err(AuthRefusal::UnknownKey);
        }
        Ok(keys)
    }

    /// The grant of a token whose signature verified, if its claims pass.
    fn verified(&self, claims: &Map<String, Value>) -> Result<Verified, AuthRefusal> {
        let expires = super::claims::check(claims, &self.cfg, SystemTime::now())?;
        let headers = self
            .cfg
            .claim_headers
            .iter()
            .filter_map(|(claim, name)| {
                let value = header_value(claims.get(claim)?)?;
                Some((name.clone(), value))
            })
            .collect();
        Ok(Verified { headers, expires })
    }
}

/// What jsonwebtoken checks of a token of `alg`: its signature, with the key the caller
/// chose. The claims are [`super::claims`]'s, types first, so that a claim of the wrong
/// type gets one rule whatever its value.
fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v
}

/// A claim as a header value: strings as they are, numbers and booleans printed, arrays of
/// those joined with ", ". Anything else, or a value a header cannot carry, is left out.
fn header_value(claim: &Value) -> Option<HeaderValue> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let text = match claim {
        Value::Array(items) => items
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()?
            .join(", "),
        v => scalar(v)?,
    };
    // Visible ASCII and spaces only: no control characters, nothing a backend could split on.
    if text.len() > 4096 || !text.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return None;
    }
    HeaderValue::from_str(&text).ok()
}

fn refusal_of(kind: &ErrorKind) -> AuthRefusal {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => AuthRefusal::BadSignature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName => AuthRefusal::Algorithm,
        _ => AuthRefusal::Malformed,
    }
}

/// The secret from `path`: the file's bytes without one trailing line ending, at least as
/// long as the longest hash of the HS* algorithms allowed (RFC 7518 §3.2).
fn hmac_key(path: &Path, algorithms: &[Algorithm]) -> Result<DecodingKey, AuthError> {
    let bytes = std::fs::read(path).map_err(|e| AuthError::File(path.to_owned(), e.to_string()))?;
    let secret = bytes
        .strip_suffix(b"\n")
        .map(|s| s.strip_suffix(b"\r").unwrap_or(s))
        .unwrap_or(&bytes);
    let need = algorithms
        .iter()
        .map(|a| match a {
            Algorithm::HS256 => 32,
            Algorithm::HS384 => 48,
            Algorithm::HS512 => 64,
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    if secret.len() < need {
        let why = format!(
            "the secret is {} bytes; the HS algorithms allowed need at least {need}",
            secret.len()
        );
        return Err(AuthError::File(path.to_owned(), why));
    }
    DecodingKey::from_secret(secret).map_err(|e| AuthError::File(path.to_owned(), e.to_string()))
}

/// A PEM public key of any family jsonwebtoken verifies with.
fn public_key(path: &Path) -> Result<DecodingKey, AuthError> {
    let pem = std::fs::read(path).map_err(|e| AuthError::File(path.to_owned(), e.to_string()))?;
    DecodingKey::from_rsa_pem(&pem)
        .or_else(|_| DecodingKey::from_ec_pem(&pem))
        .or_else(|_| DecodingKey::from_ed_pem(&pem))
        .map_err(|_| {
            let why = "not a PEM RSA, EC (P-256/P-384) or Ed25519 public key".to_owned();
            AuthError::File(path.to_owned(), why)
        })
}
