//! `[auth.NAME] type = "jwt"`: where the token is looked for, the algorithms and their keys
//! (PEM files, an HMAC secret file, a JWKS URL), and the claims checked and sent on.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use http::HeaderName;
use jsonwebtoken::{Algorithm, AlgorithmFamily};

use super::{backend_header, service_url, span};
use crate::auth::config::{
    algorithm_name, JwksConfig, JwtConfig, TokenSources, ALGORITHMS, DEFAULT_JWKS_MIN_REFRESH,
    DEFAULT_JWKS_REFRESH, DEFAULT_JWKS_TIMEOUT, DEFAULT_LEEWAY,
};
use crate::config::check::{check_token, Checker};
use crate::config::raw::{Field, Leaf, RawAuth};
use crate::config::units::format_duration;

/// Longest `leeway` (5 min): clocks drift by seconds; more only stretches every token.
const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// Shortest `jwks_refresh` (1 min): the identity provider is not polled harder than that.
const MIN_JWKS_REFRESH: Duration = Duration::from_secs(60);
/// Longest `jwks_refresh` (24 h): a removed key stops verifying within a day at most.
const MAX_JWKS_REFRESH: Duration = Duration::from_secs(86_400);
/// Shortest `jwks_min_refresh` (1 s).
const MIN_JWKS_MIN_REFRESH: Duration = Duration::from_secs(1);
/// Shortest `jwks_timeout` (100 ms): less fails over any real network.
const MIN_JWKS_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest `jwks_timeout` (60 s).
const MAX_JWKS_TIMEOUT: Duration = Duration::from_secs(60);
const JWKS_URL_EXAMPLE: &str = "https://idp.example/.well-known/jwks.json";

impl Checker<'_> {
    pub(super) fn jwt(
        &mut self,
        p: &str,
        header: Option<Range<usize>>,
        r: &RawAuth,
        base: Option<&Path>,
    ) -> Option<JwtConfig> {
        let key = |k: &str| format!("{p}.{k}");
        let sources = self.token_sources(p, header.clone(), r);
        let algorithms = self.algorithms(p, header, &r.algorithms);
        let public_keys = self.readable_files(
            &key("public_keys"),
            &r.public_keys,
            base,
            "give the path of a PEM public key",
        );
        let secret_key = key("hmac_secret_file");
        let hmac_secret_file = self
            .file(
                &secret_key,
                &r.hmac_secret_file,
                base,
                "give the path of the file holding the shared secret, or remove the key",
            )
            .and_then(|path| self.readable(&secret_key, &r.hmac_secret_file, path));
        let jwks = self.jwks(p, r, base);
        let issuers = self.one_or_many(
            &key("issuer"),
            &r.issuer,
            "an issuer like \"https://idp.example/\"",
        );
        let audiences =
            self.one_or_many(&key("audience"), &r.audience, "an audience like \"chat\"");
        let leeway = self.duration_in(
            &key("leeway"),
            &r.leeway,
            DEFAULT_LEEWAY,
            Duration::ZERO..=MAX_LEEWAY,
        );
        let require_exp = self.boolean(&key("require_exp"), &r.require_exp, true);
        let claim_headers = self.claim_headers(&key("claim_headers"), &r.claim_headers);
        let (algorithms, public_keys, hmac_secret_file, jwks) =
            (algorithms?, public_keys?, hmac_secret_file?, jwks?);
        let has = KeySources {
            public_keys: !public_keys.is_empty(),
            hmac: hmac_secret_file.is_some(),
            jwks: jwks.is_some(),
        };
        let keys_ok = self.key_sources(p, r, &algorithms, has);
        let jwt = JwtConfig {
            sources: sources?,
            algorithms,
            public_keys,
            hmac_secret_file,
            jwks,
            issuers: issuers?,
            audiences: audiences?,
            leeway: leeway?,
            require_exp: require_exp?,
            claim_headers: claim_headers?,
        };
        keys_ok.then_some(jwt)
    }

    /// `cookie`, `query`, `protocol_prefix`, `bearer`: at least one must be on.
    fn token_sources(
        &mut self,
        p: &str,
        header: Option<Range<usize>>,
        r: &RawAuth,
    ) -> Option<TokenSources> {
        let key = |k: &str| format!("{p}.{k}");
        let cookie = self.parsed(
            &key("cookie"),
            &r.cookie,
            None,
            "a cookie name like \"session\"",
            |s| check_token(s, "cookie name").map(|()| Some(s.to_owned())),
        );
        let query = self.parsed(
            &key("query"),
            &r.query,
            None,
            "a query parameter name like \"access_token\"",
            |s| {
                let ok = !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
                ok.then(|| Some(s.to_owned())).ok_or_else(|| {
                    format!(
                        "\"{s}\" is not a valid query parameter name; use letters, digits and -._~"
                    )
                })
            },
        );
        let protocol_prefix = self.parsed(
            &key("protocol_prefix"),
            &r.protocol_prefix,
            None,
            "a subprotocol prefix like \"access_token.\"",
            |s| check_token(s, "subprotocol prefix").map(|()| Some(s.to_owned())),
        );
        let bearer = self.boolean(&key("bearer"), &r.bearer, true);
        let sources = TokenSources {
            cookie: cookie?,
            query: query?,
            protocol_prefix: protocol_prefix?,
            bearer: bearer?,
        };
        if !sources.bearer
            && sources.cookie.is_none()
            && sources.query.is_none()
            && sources.protocol_prefix.is_none()
        {
            let msg = "is false and none of cookie, query or protocol_prefix is set, so no token could ever be found; set one of them, or remove bearer = false";
            self.report(&key("bearer"), span(&r.bearer).or(header), msg);
            return None;
        }
        Some(sources)
    }

    /// `algorithms`: required, not empty, each known and listed once.
    fn algorithms(
        &mut self,
        p: &str,
        header: Option<Range<usize>>,
        field: &Field,
    ) -> Option<Vec<Algorithm>> {
        let key = format!("{p}.algorithms");
        let Some(leaf) = field else {
            let msg = "missing algorithms; add the algorithms your tokens are signed with, e.g. algorithms = [\"RS256\"]";
            self.report(p, header, msg);
            return None;
        };
        let mut seen = Vec::new();
        let algorithms = self.each(
            &key,
            field,
            "an array of algorithm names like [\"RS256\"]",
            "an algorithm name like \"RS256\"",
            |s| {
                let alg = algorithm(s)?;
                if seen.contains(&alg) {
                    return Err(format!("\"{s}\" is listed twice; remove one"));
                }
                seen.push(alg);
                Ok(alg)
            },
        )?;
        if algorithms.is_empty() {
            let msg = "is empty; list the algorithms your tokens are signed with, e.g. [\"RS256\"]";
            self.report(&key, Some(leaf.span()), msg);
            return None;
        }
        Some(algorithms)
    }

    /// Every family listed has a key source, and every key source an algorithm that uses it.
    fn key_sources(
        &mut self,
        p: &str,
        r: &RawAuth,
        algorithms: &[Algorithm],
        has: KeySources,
    ) -> bool {
        let hmac = algorithms
            .iter()
            .find(|a| a.family() == AlgorithmFamily::Hmac);
        let public = algorithms
            .iter()
            .find(|a| a.family() != AlgorithmFamily::Hmac);
        let key = |k: &str| format!("{p}.{k}");
        let mut ok = true;
        match hmac {
            Some(a) if !has.hmac => {
                let msg = format!("lists {} but hmac_secret_file is not set; name the file holding the shared secret in hmac_secret_file", algorithm_name(*a));
                self.report(&key("algorithms"), span(&r.algorithms), msg);
                ok = false;
            }
            None if r.hmac_secret_file.is_some() => {
                let msg = "is set but no algorithm uses it; add HS256, HS384 or HS512 to algorithms, or remove hmac_secret_file";
                self.report(&key("hmac_secret_file"), span(&r.hmac_secret_file), msg);
                ok = false;
            }
            _ => {}
        }
        match public {
            Some(a) if !has.public_keys && !has.jwks => {
                let msg = format!("lists {} but neither public_keys nor jwks_url is set; give PEM public keys in public_keys or the identity provider's key set in jwks_url", algorithm_name(*a));
                self.report(&key("algorithms"), span(&r.algorithms), msg);
                ok = false;
            }
            Some(_) => {}
            None => {
                for (k, field) in [("public_keys", &r.public_keys), ("jwks_url", &r.jwks_url)] {
                    if let Some(leaf) = field {
                        let msg = format!("is set but no algorithm uses it; add a public-key algorithm such as RS256, ES256 or EdDSA to algorithms, or remove {k}");
                        self.report(&key(k), Some(leaf.span()), msg);
                        ok = false;
                    }
                }
            }
        }
        ok
    }

    /// `jwks_url` and its settings; `Some(None)` when there is no URL (and no setting of it).
    fn jwks(&mut self, p: &str, r: &RawAuth, base: Option<&Path>) -> Option<Option<JwksConfig>> {
        let key = |k: &str| format!("{p}.{k}");
        let url = self.parsed(
            &key("jwks_url"),
            &r.jwks_url,
            None,
            "an https:// URL",
            |s| service_url(s, &["https"], JWKS_URL_EXAMPLE).map(|_| Some(s.to_owned())),
        );
        let ca_file = self.ca_file(&key("jwks_ca_file"), &r.jwks_ca_file, base);
        let refresh = self.duration_in(
            &key("jwks_refresh"),
            &r.jwks_refresh,
            DEFAULT_JWKS_REFRESH,
            MIN_JWKS_REFRESH..=MAX_JWKS_REFRESH,
        );
        let min_refresh = self.duration_in(
            &key("jwks_min_refresh"),
            &r.jwks_min_refresh,
            DEFAULT_JWKS_MIN_REFRESH,
            MIN_JWKS_MIN_REFRESH..=MAX_JWKS_REFRESH,
        );
        let timeout = self.duration_in(
            &key("jwks_timeout"),
            &r.jwks_timeout,
            DEFAULT_JWKS_TIMEOUT,
            MIN_JWKS_TIMEOUT..=MAX_JWKS_TIMEOUT,
        );
        let (url, ca_file, refresh, min_refresh, timeout) =
            (url?, ca_file?, refresh?, min_refresh?, timeout?);
        let Some(url) = url else {
            let mut ok = true;
            for (k, field) in [
                ("jwks_ca_file", &r.jwks_ca_file),
                ("jwks_refresh", &r.jwks_refresh),
                ("jwks_min_refresh", &r.jwks_min_refresh),
                ("jwks_timeout", &r.jwks_timeout),
            ] {
                if let Some(leaf) = field {
                    let msg = format!("is set but {p}.jwks_url is not; it only applies to the JWKS fetch: set jwks_url or remove {k}");
                    self.report(&key(k), Some(leaf.span()), msg);
                    ok = false;
                }
            }
            return ok.then_some(None);
        };
        if min_refresh > refresh {
            let by_default = if r.jwks_refresh.is_none() {
                ", the default"
            } else {
                ""
            };
            let msg = format!(
                "{} is longer than {p}.jwks_refresh ({}{by_default}); lower jwks_min_refresh or raise jwks_refresh",
                format_duration(min_refresh),
                format_duration(refresh),
            );
            let at = span(&r.jwks_min_refresh).or(span(&r.jwks_refresh));
            self.report(&key("jwks_min_refresh"), at, msg);
            return None;
        }
        Some(Some(JwksConfig {
            url,
            ca_file,
            refresh,
            min_refresh,
            timeout,
        }))
    }

    /// A string or an array of strings (absent = none): none empty, none twice.
    fn one_or_many(&mut self, key: &str, field: &Field, want: &str) -> Option<Vec<String>> {
        let Some(leaf) = field else {
            return Some(Vec::new());
        };
        let mut seen: Vec<String> = Vec::new();
        let mut accept = |s: &str| {
            if s.is_empty() {
                return Err("is an empty string; give the value tokens must carry, or remove the key to not check it".to_owned());
            }
            if seen.iter().any(|v| v == s) {
                return Err(format!("\"{s}\" is listed twice; remove one"));
            }
            seen.push(s.to_owned());
            Ok(s.to_owned())
        };
        if let Leaf::Str(s) = leaf.get_ref() {
            return accept(s)
                .map(|v| vec![v])
                .map_err(|m| self.report(key, Some(leaf.span()), m))
                .ok();
        }
        let values = self.each(
            key,
            field,
            &format!("{want}, or an array of them"),
            want,
            accept,
        )?;
        if values.is_empty() {
            let msg = "is empty; list the accepted values, or remove the key to not check it";
            self.report(key, Some(leaf.span()), msg);
            return None;
        }
        Some(values)
    }

    /// `claim_headers`: an inline table claim → header name.
    fn claim_headers(&mut self, key: &str, field: &Field) -> Option<Vec<(String, HeaderName)>> {
        let Some(leaf) = field else {
            return Some(Vec::new());
        };
        let Leaf::Table(entries) = leaf.get_ref() else {
            return self.mistyped(
                key,
                leaf,
                "an inline table like { sub = \"X-Auth-Subject\" }",
            );
        };
        let mut headers: Vec<(String, HeaderName)> = Vec::new();
        let mut ok = true;
        for (claim, value) in entries {
            let item = format!("{key}.{claim}");
            let Some(s) = self.string(&item, value, "a header name like \"X-Auth-Subject\"") else {
                ok = false;
                continue;
            };
            let header = if claim.is_empty() {
                Err("the claim name is empty; write e.g. sub = \"X-Auth-Subject\"".to_owned())
            } else {
                backend_header(s).and_then(|h| match headers.iter().find(|(_, o)| *o == h) {
                    Some((other, _)) => Err(format!("\"{s}\" is already the header of claim \"{other}\" (header names are case-insensitive); give each claim its own header")),
                    None => Ok(h),
                })
            };
            match header {
                Ok(h) => headers.push((claim.clone(), h)),
                Err(msg) => {
                    self.report(&item, Some(value.span()), msg);
                    ok = false;
                }
            }
        }
        ok.then_some(headers)
    }
}

/// Which key sources a JWT section has.
#[derive(Debug, Clone, Copy)]
struct KeySources {
    public_keys: bool,
    hmac: bool,
    jwks: bool,
}

fn algorithm(s: &str) -> Result<Algorithm, String> {
    if let Some((_, alg)) = ALGORITHMS.iter().find(|(name, _)| *name == s) {
        return Ok(*alg);
    }
    if s.eq_ignore_ascii_case("none") {
        return Err(format!("\"{s}\" is never accepted: a token without a signature proves nothing; list the algorithms your tokens are signed with, e.g. \"RS256\""));
    }
    let names: Vec<&str> = ALGORITHMS.iter().map(|(name, _)| *name).collect();
    let hint = match names.iter().find(|name| name.eq_ignore_ascii_case(s)) {
        Some(name) => format!("did you mean \"{name}\"? (names are case-sensitive)"),
        None => format!("use one of {}", names.join(", ")),
    };
    Err(format!("\"{s}\" is not a supported JWT algorithm; {hint}"))
}
