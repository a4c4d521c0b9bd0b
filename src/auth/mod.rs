//! Authentication at the handshake (`[auth.NAME]`, `[[route]] auth`): after the handshake
//! rules, the Origin and the per-IP limits, before any backend is contacted. A JWT verified
//! in-process ([`jwt`], keys from files or [`jwks`]) or a sub-request to an auth service
//! ([`forward`], with its decision cache). What passes carries identity headers for the
//! backend and the time its credential runs out, when the relay closes it with 1008. Every
//! refusal is an [`AuthRefusal`], mapped to the wire in `refusal.rs`. Tokens, cookies and
//! credentials never reach a log line or a metric label: the rule and the `kid` at most.

mod cache;
pub mod claims;
pub mod config;
mod failures;
pub mod forward;
pub mod http;
pub mod jwks;
mod jwt;
pub mod refusal;
pub mod token;
mod verify;

use std::time::{Duration, SystemTime};

use ::http::request::Parts;
use ::http::{HeaderName, HeaderValue, StatusCode};
use bytes::Bytes;
use tokio::time::Instant;

use crate::metrics::{AuthLabels, AuthMetrics};
use crate::upstream::ClientInfo;
use config::{AuthConfig, AuthError, AuthKind, ForwardOnError, TokenSources};
use forward::{Decision, Forward};
use jwt::JwtAuth;

pub use failures::AuthFailures;
pub use refusal::AuthRefusal;

/// What an accepted handshake carries to the backend and the relay.
#[derive(Debug, Default)]
pub struct Granted {
    /// Identity headers for the backend request.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// When the credential runs out, grace included: the relay closes with 1008 then.
    pub session_end: Option<Instant>,
    /// Let through unauthenticated: the auth service failed and `on_error = "open"`.
    pub unauthenticated: bool,
}

/// A refused handshake: the rule, and what its log line and answer need.
#[derive(Debug)]
pub struct Denied {
    pub refusal: AuthRefusal,
    /// The token's `kid`, for the log line.
    pub kid: Option<String>,
    /// What failed, for the log line (an auth service's error; never a credential).
    pub detail: Option<String>,
    /// An auth service's 401/403 answer, passed to the client.
    pub answer: Option<Passed>,
}

impl Denied {
    fn new(refusal: AuthRefusal) -> Denied {
        Denied {
            refusal,
            kid: None,
            detail: None,
            answer: None,
        }
    }
}

/// An auth service's refusal as the client gets it.
#[derive(Debug)]
pub struct Passed {
    pub body: Bytes,
    /// The service's challenge, or wsguard's for a 401 that carried none.
    pub www_authenticate: Option<HeaderValue>,
}

/// One started `[auth.NAME]`.
pub struct Authenticator {
    cfg: AuthConfig,
    kind: Kind,
    metrics: AuthMetrics,
}

enum Kind {
    Jwt(Box<JwtAuth>),
    Forward {
        service: Box<Forward>,
        on_error: ForwardOnError,
    },
}

impl Authenticator {
    /// Reads its key files and starts its background work (JWKS fetches) on the current
    /// tokio runtime.
    pub fn start(cfg: &AuthConfig, metrics: &AuthMetrics) -> Result<Authenticator, AuthError> {
        let kind = match &cfg.kind {
            AuthKind::Jwt(j) => Kind::Jwt(Box::new(JwtAuth::new(&cfg.name, j, metrics)?)),
            AuthKind::Forward(f) => Kind::Forward {
                service: Box::new(Forward::new(&cfg.name, f, metrics).map_err(AuthError::Client)?),
                on_error: f.on_error,
            },
        };
        Ok(Authenticator {
            cfg: cfg.clone(),
            kind,
            metrics: metrics.clone(),
        })
    }

    pub fn config(&self) -> &AuthConfig {
        &self.cfg
    }

    /// Where a token is looked for: `None` for forward auth, whose service reads the
    /// request.
    pub fn sources(&self) -> Option<&TokenSources> {
        match &self.kind {
            Kind::Jwt(jwt) => Some(jwt.sources()),
            Kind::Forward { .. } => None,
        }
    }

    /// Decides the upgrade request `parts` from `client`.
    pub async fn authenticate(
        &self,
        parts: &Parts,
        client: &ClientInfo,
    ) -> Result<Granted, Denied> {
        let started = std::time::Instant::now();
        let decided = match &self.kind {
            Kind::Jwt(jwt) => self.jwt(jwt, parts).await,
            Kind::Forward { service, on_error } => {
                self.forward(service, *on_error, parts, client).await
            }
        };
        self.metrics
            .seconds
            .observe(started.elapsed().as_secs_f64());
        let outcome = match &decided {
            Ok(g) if g.unauthenticated => "error_open",
            Ok(_) => "allowed",
            Err(d) => d.refusal.label(),
        };
        self.metrics
            .decisions
            .get_or_create(&AuthLabels {
                auth: self.cfg.name.clone(),
                outcome,
            })
            .inc();
        decided
    }

    async fn jwt(&self, jwt: &JwtAuth, parts: &Parts) -> Result<Granted, Denied> {
        let token = match token::find(jwt.sources(), parts) {
            None => return Err(Denied::new(AuthRefusal::Missing)),
            Some(Err(())) => return Err(Denied::new(AuthRefusal::Malformed)),
            Some(Ok(t)) => t,
        };
        let verified = jwt.verify(&token).await.map_err(|r| Denied {
            kid: r.kid,
            ..Denied::new(r.refusal)
        })?;
        Ok(Granted {
            headers: verified.headers,
            session_end: self.session_end(verified.expires).map_err(Denied::new)?,
            ..Granted::default()
        })
    }

    async fn forward(
        &self,
        forward: &Forward,
        on_error: ForwardOnError,
        parts: &Parts,
        client: &ClientInfo,
    ) -> Result<Granted, Denied> {
        match forward.check(parts, client).await {
            Decision::Allow { headers, expires } => Ok(Granted {
                headers,
                session_end: self.session_end(expires).map_err(Denied::new)?,
                ..Granted::default()
            }),
            Decision::Deny {
                status,
                body,
                www_authenticate,
            } => {
                let refusal = if status == StatusCode::FORBIDDEN {
                    AuthRefusal::Forbidden
                } else {
                    AuthRefusal::Unauthorized
                };
                let ours = || {
                    let unauthorized = refusal == AuthRefusal::Unauthorized;
                    unauthorized.then(|| HeaderValue::from_static(refusal::BEARER))
                };
                let www_authenticate = www_authenticate.or_else(ours);
                Err(Denied {
                    answer: Some(Passed {
                        body,
                        www_authenticate,
                    }),
                    ..Denied::new(refusal)
                })
            }
            Decision::Unavailable(why) => {
                if on_error == ForwardOnError::Open {
                    tracing::warn!(auth = %self.cfg.name, error = %why, "auth service unavailable; on_error = \"open\" lets the handshake through unauthenticated");
                    return Ok(Granted {
                        unauthenticated: true,
                        ..Granted::default()
                    });
                }
                Err(Denied {
                    detail: Some(why),
                    ..Denied::new(AuthRefusal::Unavailable)
                })
            }
        }
    }

    /// When a session whose credential runs out at `expires` ends: `expires` plus the grace,
    /// on the monotonic clock the relay's timers use. Already past: the credential has
    /// expired, and the handshake is refused rather than opened and closed at once.
    fn session_end(&self, expires: Option<SystemTime>) -> Result<Option<Instant>, AuthRefusal> {
        let Some(expires) = expires else {
            return Ok(None);
        };
        let end = expires.checked_add(self.cfg.grace).unwrap_or(expires);
        match end.duration_since(SystemTime::now()) {
            Ok(left) if !left.is_zero() => Ok(Some(Instant::now() + left.min(MAX_SESSION_TIMER))),
            _ => Err(AuthRefusal::Expired),
        }
    }
}

/// Session timers further out than this (about 30 years) are treated as this: `Instant`
/// arithmetic must not overflow on a token that claims to live forever.
const MAX_SESSION_TIMER: Duration = Duration::from_secs(30 * 365 * 86_400);
