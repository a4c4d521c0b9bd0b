//! `[auth.NAME]` sections once validated, and the route and limit keys that use them.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;
use jsonwebtoken::Algorithm;

use super::http::ClientError;

/// Default `leeway` (30 s) for `nbf`: clocks of an identity provider and a
/// proxy drift by seconds, not minutes.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Default `jwks_refresh` (5 min): a rotated key is picked up within this even when no
/// token names it yet.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);
/// Default `jwks_min_refresh` (30 s): a token with an unknown `kid` triggers a fetch at
/// most this often, so made-up `kid`s cannot turn into a flood against the provider.
pub const DEFAULT_JWKS_MIN_REFRESH: Duration = Duration::from_secs(30);
/// Default `timeout` of a JWKS fetch (5 s).
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `timeout` of a forward-auth request (2 s): the handshake waits for it.
pub const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// Default `cache_ttl` (10 s) of forward-auth decisions.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(10);
/// Default `cache_size` (10,000 decisions).
pub const DEFAULT_CACHE_SIZE: usize = 10_000;
/// Default `expires_header` of forward auth.
pub const DEFAULT_EXPIRES_HEADER: &str = "x-auth-expires";

/// The algorithms `algorithms` may list, by their RFC 7518 names (EdDSA: RFC 8037). "none" is
/// not one of them: a token without a signature proves nothing.
pub const ALGORITHMS: [(&str, Algorithm); 12] = [
    ("HS256", Algorithm::HS256),
    ("HS384", Algorithm::HS384),
    ("HS512", Algorithm::HS512),
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// An algorithm's RFC 7518 name ("RS256"), for printing and log lines.
pub fn algorithm_name(alg: Algorithm) -> &'static str {
    ALGORITHMS
        .iter()
        .find(|(_, a)| *a == alg)
        .map_or("unsupported", |(name, _)| name)
}

/// One `[auth.NAME]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// `NAME`, as routes refer to it (`[[route]] auth = "NAME"`).
    pub name: String,
    pub kind: AuthKind,
    /// Added to a credential's expiry before its connection is closed (`grace`).
    pub grace: Duration,
}

/// `type = "jwt"` or `type = "forward"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthKind {
    Jwt(JwtConfig),
    Forward(ForwardConfig),
}

/// Where a token is looked for, in this fixed order; the first source present is used.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenSources {
    /// Cookie name (`cookie`).
    pub cookie: Option<String>,
    /// Query parameter name (`query`).
    pub query: Option<String>,
    /// A `Sec-WebSocket-Protocol` value starting with this prefix (`protocol_prefix`).
    pub protocol_prefix: Option<String>,
    /// `Authorization: Bearer` (`bearer`, default true).
    pub bearer: bool,
}

/// `type = "jwt"`: tokens verified in-process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    pub sources: TokenSources,
    /// `algorithms`: the allow-list. Validation guarantees a key source for every family
    /// listed (HMAC secret for HS*, public keys or JWKS for the others).
    pub algorithms: Vec<Algorithm>,
    /// `public_keys`: PEM public keys (RSA, EC or Ed25519), resolved against the config
    /// file's directory.
    pub public_keys: Vec<PathBuf>,
    /// `hmac_secret_file`: the HS* secret, the file's bytes with one trailing newline removed.
    pub hmac_secret_file: Option<PathBuf>,
    pub jwks: Option<JwksConfig>,
    /// `issuer`: accepted `iss` values; empty = not checked.
    pub issuers: Vec<String>,
    /// `audience`: accepted `aud` values; empty = not checked.
    pub audiences: Vec<String>,
    /// `leeway` for `nbf` (`exp` is bounded by the section's grace).
    pub leeway: Duration,
    /// `require_exp` (default true): a token without `exp` is refused.
    pub require_exp: bool,
    /// `claim_headers`: claim name → header sent to the backend.
    pub claim_headers: Vec<(String, HeaderName)>,
}

/// `jwks_url` and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksConfig {
    /// An `https://` URL.
    pub url: String,
    /// `jwks_ca_file`: PEM roots instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// `jwks_refresh`: fetched again this often.
    pub refresh: Duration,
    /// `jwks_min_refresh`: an unknown `kid` fetches at most this often.
    pub min_refresh: Duration,
    /// `jwks_timeout`: one fetch, connect to last byte.
    pub timeout: Duration,
}

/// `on_error` of forward auth: what a handshake gets when the service fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardOnError {
    /// 503 (the default).
    Closed,
    /// Let the handshake through unauthenticated (counted and logged).
    Open,
}

impl fmt::Display for ForwardOnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ForwardOnError::Closed => "closed",
            ForwardOnError::Open => "open",
        })
    }
}

/// `type = "forward"`: a sub-request to an auth service decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    /// `url`: `http://` or `https://`.
    pub url: http::Uri,
    /// `ca_file`: PEM roots for an `https://` service instead of the system's.
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    /// `copy_headers`: headers of a 2xx answer sent on to the backend.
    pub copy_headers: Vec<HeaderName>,
    pub on_error: ForwardOnError,
    /// `cache_ttl`; `None` = no cache.
    pub cache_ttl: Option<Duration>,
    pub cache_size: usize,
    /// `expires_header`: a 2xx answer's session end (Unix seconds); `Cache-Control:
    /// max-age` is read too.
    pub expires_header: HeaderName,
}

/// A route's use of authentication (`[[route]] auth`, `keep_token`, `max_session`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteAuth {
    /// Index into `Config::auth`; `None` = open route.
    pub auth: Option<usize>,
    /// Forward the token (query parameter or subprotocol value) to the backend.
    pub keep_token: bool,
    /// Close every connection of the route after this long (1008); `None` = off.
    pub max_session: Option<Duration>,
}

/// Why an `[auth.NAME]` could not start.
#[derive(Debug)]
pub enum AuthError {
    /// A key or secret file could not be read or used.
    File(PathBuf, String),
    Client(ClientError),
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::File(path, why) => write!(f, "{}: {why}", path.display()),
            AuthError::Client(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for AuthError {}
