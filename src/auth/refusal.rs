//! Every way authentication refuses a handshake; `refusal.rs` at the crate root maps each to
//! the wire with the other refusals.

use std::time::Duration;

use http::StatusCode;

/// The challenge of a 401 without a token (RFC 6750 §3), and of an auth service's 401
/// that carried none (RFC 9110 §15.5.2: a 401 must carry one).
pub const BEARER: &str = "Bearer realm=\"wsguard\"";
/// The challenge of a 401 for a token that was presented and refused.
pub const BEARER_INVALID: &str = "Bearer realm=\"wsguard\", error=\"invalid_token\"";

/// Why authentication refused a handshake. Closed set: each variant is one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRefusal {
    /// No configured source holds a token.
    Missing,
    /// The token is not a JWT (or its source holds an empty or unusable value).
    Malformed,
    /// The token's `alg` is not in `algorithms` (`none` never is).
    Algorithm,
    /// No key for the token's `kid` and algorithm.
    UnknownKey,
    /// No key verifies the signature.
    BadSignature,
    /// Past `exp` (with the leeway).
    Expired,
    /// Before `nbf` (with the leeway).
    NotYetValid,
    /// `iss` or `aud` not accepted: a valid token, but not for this service (403).
    Claims,
    /// The auth service answered 401.
    Unauthorized,
    /// The auth service answered 403.
    Forbidden,
    /// No verdict: the auth service failed, or no JWKS has been fetched yet (503).
    Unavailable,
    /// The client IP is out of `auth_failures_per_ip` (429).
    TooManyFailures { retry_after: Duration },
}

impl AuthRefusal {
    pub fn status(&self) -> StatusCode {
        match self {
            AuthRefusal::Claims | AuthRefusal::Forbidden => StatusCode::FORBIDDEN,
            AuthRefusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AuthRefusal::TooManyFailures { .. } => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// Metric and log label.
    pub fn label(&self) -> &'static str {
        match self {
            AuthRefusal::Missing => "auth_missing",
            AuthRefusal::Malformed => "auth_malformed",
            AuthRefusal::Algorithm => "auth_algorithm",
            AuthRefusal::UnknownKey => "auth_unknown_key",
            AuthRefusal::BadSignature => "auth_bad_signature",
            AuthRefusal::Expired => "auth_expired",
            AuthRefusal::NotYetValid => "auth_not_yet_valid",
            AuthRefusal::Claims => "auth_claims",
            AuthRefusal::Unauthorized => "auth_unauthorized",
            AuthRefusal::Forbidden => "auth_forbidden",
            AuthRefusal::Unavailable => "auth_unavailable",
            AuthRefusal::TooManyFailures { .. } => "auth_failures",
        }
    }

    /// The response body and log text.
    pub fn message(&self) -> &'static str {
        match self {
            AuthRefusal::Missing => "authentication required",
            AuthRefusal::Malformed => "the token is malformed",
            AuthRefusal::Algorithm => "the token's algorithm is not accepted",
            AuthRefusal::UnknownKey => "the token's signing key is unknown",
            AuthRefusal::BadSignature => "the token's signature is invalid",
            AuthRefusal::Expired => "the token has expired",
            AuthRefusal::NotYetValid => "the token is not valid yet",
            AuthRefusal::Claims => "the token is not accepted here",
            AuthRefusal::Unauthorized => "the auth service refused the credentials",
            AuthRefusal::Forbidden => "the auth service denied access",
            AuthRefusal::Unavailable => "authentication is unavailable; retry later",
            AuthRefusal::TooManyFailures { .. } => {
                "too many failed authentications from this client; retry later"
            }
        }
    }

    /// Whether a 401 of wsguard's own says `invalid_token` (RFC 6750 §3): a token was
    /// presented and refused. An auth service's 401 carries its own challenge.
    pub fn invalid_token(&self) -> bool {
        self.status() == StatusCode::UNAUTHORIZED
            && !matches!(self, AuthRefusal::Missing | AuthRefusal::Unauthorized)
    }

    /// Whether a credential was presented and found wrong, which costs the client IP one of
    /// its `auth_failures_per_ip`. Expired and not-yet-valid tokens carry a valid signature
    /// (nobody guesses those), and a missing one guesses nothing.
    pub fn counts_as_failure(&self) -> bool {
        matches!(
            self,
            AuthRefusal::Malformed
                | AuthRefusal::Algorithm
                | AuthRefusal::UnknownKey
                | AuthRefusal::BadSignature
                | AuthRefusal::Unauthorized
                | AuthRefusal::Forbidden
        )
    }
}
