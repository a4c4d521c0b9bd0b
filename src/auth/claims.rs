//! The registered claims (RFC 7519 §4.1) of a token whose signature verified. Their types
//! first, whether or not a rule reads them: `iss`, `sub` and `jti` are one string, `exp`,
//! `nbf` and `iat` a NumericDate, `aud` a string or an array of strings. A claim of the
//! wrong type, `null` included, is `auth_malformed`, as a missing `exp` is. Then `exp` when
//! required, `nbf` with the leeway, `iss` and `aud` against the configured values
//! (`auth_claims`). Pure: the caller passes the time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::config::JwtConfig;
use super::refusal::AuthRefusal;

/// Claims that hold one string. jsonwebtoken's own check takes an `iss` array that lists an
/// accepted issuer: RFC 7519 §4.1.1 makes `iss` a single StringOrURI.
const STRINGS: [&str; 3] = ["iss", "sub", "jti"];
/// Claims that hold a NumericDate (RFC 7519 §2): seconds since the epoch.
const DATES: [&str; 3] = ["exp", "nbf", "iat"];

/// Further out than this (about 31,700 years) an `exp` is this: `SystemTime` must not
/// overflow on a token that claims to live forever.
const MAX_SECONDS: f64 = 1e12;

/// Checks `claims` at `now`; what passes gives its `exp`, when present.
pub fn check(
    claims: &Map<String, Value>,
    cfg: &JwtConfig,
    now: SystemTime,
) -> Result<Option<SystemTime>, AuthRefusal> {
    let malformed = Err(AuthRefusal::Malformed);
    for name in STRINGS {
        if claims.get(name).is_some_and(|v| !v.is_string()) {
            return malformed;
        }
    }
    for name in DATES {
        if claims.get(name).is_some_and(|v| seconds(v).is_none()) {
            return malformed;
        }
    }
    let audiences = match claims.get("aud") {
        None => None,
        Some(Value::String(one)) => Some(vec![one.as_str()]),
        Some(Value::Array(all)) => match all.iter().map(Value::as_str).collect() {
            Some(all) => Some(all),
            None => return malformed,
        },
        Some(_) => return malformed,
    };

    let date = |name| claims.get(name).and_then(seconds);
    let exp = date("exp");
    if exp.is_none() && cfg.require_exp {
        return malformed;
    }
    let now = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    if date("nbf").is_some_and(|nbf| nbf > now + cfg.leeway.as_secs_f64()) {
        return Err(AuthRefusal::NotYetValid);
    }
    if !cfg.issuers.is_empty() {
        // A token without a claim the section requires is malformed, as one without `exp`.
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(AuthRefusal::Malformed)?;
        if !cfg.issuers.iter().any(|i| i == iss) {
            return Err(AuthRefusal::Claims);
        }
    }
    if !cfg.audiences.is_empty() {
        let aud = audiences.ok_or(AuthRefusal::Malformed)?;
        if !aud.iter().any(|a| cfg.audiences.iter().any(|c| c == a)) {
            return Err(AuthRefusal::Claims);
        }
    }
    Ok(exp.map(|s| UNIX_EPOCH + Duration::from_secs_f64(s.min(MAX_SECONDS))))
}

/// A NumericDate: a JSON number, not negative (JSON has no infinity or NaN).
fn seconds(v: &Value) -> Option<f64> {
    v.as_f64().filter(|s| *s >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> JwtConfig {
        JwtConfig {
            sources: Default::default(),
            algorithms: vec![],
            public_keys: vec![],
            hmac_secret_file: None,
            jwks: None,
            issuers: vec!["https://idp.test".into()],
            audiences: vec!["chat".into()],
            leeway: Duration::from_secs(30),
            require_exp: true,
            claim_headers: vec![],
        }
    }

    const NOW: u64 = 1_700_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn good() -> Value {
        json!({
            "iss": "https://idp.test",
            "sub": "alice",
            "aud": "chat",
            "exp": NOW + 60,
            "nbf": NOW,
            "iat": NOW,
            "jti": "j1",
        })
    }

    fn with(name: &str, value: Value) -> Map<String, Value> {
        let mut c = good();
        c[name] = value;
        c.as_object().unwrap().clone()
    }

    fn checked(
        claims: &Map<String, Value>,
        cfg: &JwtConfig,
    ) -> Result<Option<SystemTime>, AuthRefusal> {
        check(claims, cfg, at(NOW))
    }

    #[test]
    fn good_claims_give_their_exp() {
        let c = good().as_object().unwrap().clone();
        assert_eq!(checked(&c, &cfg()), Ok(Some(at(NOW + 60))));
        let c = with("aud", json!(["billing", "chat"]));
        assert_eq!(checked(&c, &cfg()), Ok(Some(at(NOW + 60))));
    }

    #[test]
    fn iss_is_one_string_even_when_issuer_is_not_set() {
        let open = JwtConfig {
            issuers: vec![],
            ..cfg()
        };
        for bad in [
            json!(["https://idp.test"]),
            json!(["https://idp.test", "https://evil.test"]),
            json!(7),
            Value::Null,
            json!({"iss": "https://idp.test"}),
            json!(true),
        ] {
            let c = with("iss", bad.clone());
            assert_eq!(checked(&c, &cfg()), Err(AuthRefusal::Malformed), "{bad}");
            assert_eq!(checked(&c, &open), Err(AuthRefusal::Malformed), "{bad}");
        }
        let c = with("iss", json!("https://evil.test"));
        assert_eq!(checked(&c, &cfg()), Err(AuthRefusal::Claims));
        assert!(checked(&c, &open).is_ok());
        // Case-sensitive (RFC 7519 §4.1.1).
        let c = with("iss", json!("https://IDP.test"));
        assert_eq!(checked(&c, &cfg()), Err(AuthRefusal::Claims));
    }

    #[test]
    fn other_registered_claims_have_their_types() {
        let cases = [
            ("sub", json!(["alice"])),
            ("sub", json!(1)),
            ("sub", Value::Null),
            ("jti", json!(1)),
            ("exp", json!("1700000060")),
            ("exp", json!(-1)),
            ("exp", Value::Null),
            ("nbf", json!("0")),
            ("nbf", json!([1])),
            ("iat", json!(true)),
            ("iat", json!(-5)),
            ("aud", json!(["chat", 1])),
            ("aud", json!(1)),
            ("aud", Value::Null),
            ("aud", json!({"chat": true})),
        ];
        for (name, bad) in cases {
            let c = with(name, bad.clone());
            assert_eq!(
                checked(&c, &cfg()),
                Err(AuthRefusal::Malformed),
                "{name}: {bad}"
            );
        }
        // Fractions are NumericDates too.
        let c = with("iat", json!(1.5));
        assert!(checked(&c, &cfg()).is_ok());
    }

    #[test]
    fn required_and_timed_claims() {
        let mut c = good().as_object().unwrap().clone();
        c.remove("exp");
        assert_eq!(checked(&c, &cfg()), Err(AuthRefusal::Malformed));
        let lax = JwtConfig {
            require_exp: false,
            ..cfg()
        };
        assert_eq!(checked(&c, &lax), Ok(None));
        for name in ["iss", "aud"] {
            let mut c = good().as_object().unwrap().clone();
            c.remove(name);
            assert_eq!(checked(&c, &cfg()), Err(AuthRefusal::Malformed), "{name}");
        }
        let c = with("nbf", json!(NOW + 30));
        assert!(checked(&c, &cfg()).is_ok(), "inside the leeway");
        let c = with("nbf", json!(NOW + 31));
        assert_eq!(checked(&c, &cfg()), Err(AuthRefusal::NotYetValid));
        let c = with("aud", json!([]));
        assert_eq!(checked(&c, &cfg()), Err(AuthRefusal::Claims));
        let c = with("exp", json!(1e300));
        let end = checked(&c, &cfg()).unwrap().unwrap();
        assert_eq!(end, UNIX_EPOCH + Duration::from_secs_f64(MAX_SECONDS));
    }
}
