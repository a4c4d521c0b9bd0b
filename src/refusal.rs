//! Every way a handshake can be refused, and the one place that maps each to
//! the wire: HTTP status, extra headers, response body, log text and a bounded
//! metric label. Frame-level refusals carry their close code in
//! [`crate::frame::Violation`].

use http::StatusCode;

use crate::auth::refusal::{AuthRefusal, BEARER, BEARER_INVALID};
use crate::limits::IpRefusal;
use crate::origin::OriginRefusal;

/// Who caused a refusal: decides 4xx vs 5xx and the log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Backend,
}

/// A refused upgrade request. Closed set: each variant is one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A plain HTTP request (no `Upgrade: websocket`) to a WebSocket route.
    NotWebSocket,
    /// No `[[route]]` matches the request path.
    NoRoute,
    /// An upgrade attempt with a method other than GET (RFC 6455 §4.1).
    BadMethod,
    /// An upgrade attempt over anything but HTTP/1.1.
    BadHttpVersion,
    /// `Upgrade: websocket` without the `upgrade` token in `Connection`.
    NoConnectionUpgrade,
    /// `Content-Length` or `Transfer-Encoding` on an upgrade: a body here is
    /// a request-smuggling shape, never a WebSocket client.
    BodyOnUpgrade,
    /// `Sec-WebSocket-Version` missing, repeated or not 13.
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` missing, repeated, not base64 or not 16 bytes.
    BadKey,
    /// `Host` missing or repeated.
    BadHost,
    /// The request head is over `server.max_request_head`, or over hyper's read buffer
    /// (hyper answers that one itself; a URI over 64 KiB gets its 414).
    HeadTooLarge,
    /// Not an HTTP/1.1 request head (bad request line, header syntax, continuation lines):
    /// hyper answers it itself.
    MalformedRequest,
    /// The `Origin` check failed (cross-site WebSocket hijacking defence).
    Origin(OriginRefusal),
    /// The client IP is over `connections_per_ip` or `handshakes_per_ip`.
    ClientIp(IpRefusal),
    /// The client IP is over the same limits counted across the fleet (`[limits.shared]`).
    Shared(IpRefusal),
    /// The shared limit store did not answer in time and `on_error = "closed"`.
    SharedStoreUnavailable,
    /// Authentication (`[[route]] auth`) refused the handshake.
    Auth(AuthRefusal),
    /// Over `max_connections`.
    Overloaded,
    /// No backend of the route accepted a TCP connection in time.
    BackendUnavailable,
    /// The backend answered the handshake with a 4xx status, passed on.
    BackendRefused(u16),
    /// The backend's answer was not a valid WebSocket handshake.
    BackendBadHandshake(&'static str),
    /// A pass-through request asks for an upgrade to something other than WebSocket
    /// (`h2c`, say): a tunnel past every check here.
    OtherUpgrade,
    /// A pass-through request with a method no chat framework uses and a proxy must not
    /// pass blind (`CONNECT` opens a tunnel, `TRACE` echoes cookies back).
    MethodNotAllowed,
    /// A pass-through upload over `[http] max_request_body`.
    BodyTooLarge,
    /// A pass-through upload that stalled for `[http] body_idle_timeout`.
    BodyTimeout,
    /// The client IP is over `[http] requests_per_ip` or `held_requests_per_ip`.
    Requests(IpRefusal),
    /// `[http] max_held_requests` are in flight.
    TooManyHeld,
    /// The proxy began to drain while the request waited for its answer head (a held
    /// long-poll): the client asks again, of an instance that stays.
    Draining,
    /// The backend sent no answer head within the route's response-head timeout.
    BackendTimeout,
    /// The backend's answer to a pass-through request was not valid HTTP/1.1 (a split
    /// header, a framing conflict, a head over `max_response_head`).
    BackendBadResponse,
}

// === impl Refusal ===

impl Refusal {
    pub fn side(&self) -> Side {
        match self {
            Refusal::BackendUnavailable
            | Refusal::BackendRefused(_)
            | Refusal::BackendBadHandshake(_)
            | Refusal::BackendTimeout
            | Refusal::BackendBadResponse => Side::Backend,
            _ => Side::Client,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::NotWebSocket | Refusal::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            Refusal::NoRoute => StatusCode::NOT_FOUND,
            Refusal::BadMethod
            | Refusal::BadHttpVersion
            | Refusal::NoConnectionUpgrade
            | Refusal::BodyOnUpgrade
            | Refusal::BadKey
            | Refusal::BadHost
            | Refusal::MalformedRequest => StatusCode::BAD_REQUEST,
            Refusal::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::Origin(_) => StatusCode::FORBIDDEN,
            Refusal::ClientIp(IpRefusal::TooManyTrackedIps)
            | Refusal::Overloaded
            | Refusal::SharedStoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::ClientIp(_) | Refusal::Shared(_) => StatusCode::TOO_MANY_REQUESTS,
            Refusal::BackendUnavailable | Refusal::BackendBadHandshake(_) => {
                StatusCode::BAD_GATEWAY
            }
            Refusal::BackendRefused(code) => {
                StatusCode::from_u16(*code).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            Refusal::Auth(a) => a.status(),
            Refusal::OtherUpgrade => StatusCode::BAD_REQUEST,
            Refusal::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::Requests(IpRefusal::TooManyTrackedIps)
            | Refusal::TooManyHeld
            | Refusal::Draining => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Requests(_) => StatusCode::TOO_MANY_REQUESTS,
            Refusal::BackendTimeout => StatusCode::GATEWAY_TIMEOUT,
            Refusal::BackendBadResponse => StatusCode::BAD_GATEWAY,
        }
    }

    /// Whether the client's connection stays open for its next request after this answer.
    /// Not where the request's framing is in doubt or its body is left unread, nor where
    /// the client is over a limit and costs less gone.
    pub fn keeps_connection(&self) -> bool {
        matches!(
            self,
            Refusal::NotWebSocket
                | Refusal::NoRoute
                | Refusal::UnsupportedVersion
                | Refusal::BadKey
                | Refusal::BadHost
                | Refusal::NoConnectionUpgrade
                | Refusal::Origin(_)
                | Refusal::MethodNotAllowed
                | Refusal::BackendUnavailable
                | Refusal::BackendRefused(_)
                | Refusal::BackendBadHandshake(_)
                | Refusal::BackendTimeout
                | Refusal::BackendBadResponse
        ) || matches!(self, Refusal::Auth(a) if a.counts_as_failure() || matches!(a, AuthRefusal::Missing))
    }

    /// Headers the answer must carry (RFC 6455 §4.2.2 for 426, RFC 6750 §3 for 401).
    pub fn headers(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Refusal::NotWebSocket => &[("upgrade", "websocket"), ("sec-websocket-version", "13")],
            Refusal::UnsupportedVersion => &[("sec-websocket-version", "13")],
            Refusal::Auth(AuthRefusal::Missing) => &[("www-authenticate", BEARER)],
            Refusal::Auth(a) if a.invalid_token() => &[("www-authenticate", BEARER_INVALID)],
            _ => &[],
        }
    }

    /// Seconds for `Retry-After` (RFC 9110 §10.2.3), rounded up.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Refusal::ClientIp(IpRefusal::TooManyHandshakes { retry_after })
            | Refusal::Shared(IpRefusal::TooManyHandshakes { retry_after })
            | Refusal::Requests(IpRefusal::TooManyHandshakes { retry_after })
            | Refusal::Auth(AuthRefusal::TooManyFailures { retry_after }) => {
                Some(retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0))
            }
            Refusal::Overloaded
            | Refusal::ClientIp(IpRefusal::TooManyTrackedIps)
            | Refusal::SharedStoreUnavailable
            | Refusal::Requests(_)
            | Refusal::TooManyHeld
            | Refusal::Draining
            | Refusal::Auth(AuthRefusal::Unavailable) => Some(1),
            _ => None,
        }
    }

    /// Metric and log label; a fixed string so label sets stay bounded.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::NotWebSocket => "not_websocket",
            Refusal::NoRoute => "no_route",
            Refusal::BadMethod => "bad_method",
            Refusal::BadHttpVersion => "bad_http_version",
            Refusal::NoConnectionUpgrade => "no_connection_upgrade",
            Refusal::BodyOnUpgrade => "body_on_upgrade",
            Refusal::UnsupportedVersion => "unsupported_version",
            Refusal::BadKey => "bad_key",
            Refusal::BadHost => "bad_host",
            Refusal::HeadTooLarge => "head_too_large",
            Refusal::MalformedRequest => "malformed_request",
            Refusal::Origin(o) => o.label(),
            Refusal::ClientIp(r) => r.label(),
            Refusal::Shared(IpRefusal::TooManyHandshakes { .. }) => "shared_ip_handshake_rate",
            Refusal::Shared(_) => "shared_ip_connections",
            Refusal::SharedStoreUnavailable => "shared_store_unavailable",
            Refusal::Auth(a) => a.label(),
            Refusal::Overloaded => "max_connections",
            Refusal::BackendUnavailable => "backend_unavailable",
            Refusal::BackendRefused(_) => "backend_refused",
            Refusal::BackendBadHandshake(_) => "backend_bad_handshake",
            Refusal::OtherUpgrade => "other_upgrade",
            Refusal::MethodNotAllowed => "method_not_allowed",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::Requests(IpRefusal::TooManyHandshakes { .. }) => "ip_request_rate",
            Refusal::Requests(IpRefusal::TooManyConnections) => "ip_held_requests",
            Refusal::Requests(IpRefusal::TooManyTrackedIps) => "ip_tracked_requests",
            Refusal::TooManyHeld => "max_held_requests",
            Refusal::Draining => "draining",
            Refusal::BackendTimeout => "backend_timeout",
            Refusal::BackendBadResponse => "backend_bad_response",
        }
    }

    /// The response body and log text: says which rule, never echoes input.
    pub fn message(&self) -> &'static str {
        match self {
            Refusal::NotWebSocket => "this path only accepts WebSocket upgrades",
            Refusal::NoRoute => "no route for this path",
            Refusal::BadMethod => "a WebSocket upgrade must use GET",
            Refusal::BadHttpVersion => "a WebSocket upgrade must use HTTP/1.1",
            Refusal::NoConnectionUpgrade => "Connection header lacks the upgrade token",
            Refusal::BodyOnUpgrade => "an upgrade request must not carry a body",
            Refusal::UnsupportedVersion => "Sec-WebSocket-Version must be 13",
            Refusal::BadKey => "Sec-WebSocket-Key must be one base64 value of 16 bytes",
            Refusal::BadHost => "exactly one Host header is required",
            Refusal::HeadTooLarge => "request head too large",
            Refusal::MalformedRequest => "malformed request",
            Refusal::Origin(o) => o.reason(),
            Refusal::ClientIp(IpRefusal::TooManyConnections)
            | Refusal::Shared(IpRefusal::TooManyConnections) => {
                "too many connections from this client"
            }
            Refusal::ClientIp(IpRefusal::TooManyHandshakes { .. })
            | Refusal::Shared(IpRefusal::TooManyHandshakes { .. }) => {
                "too many handshakes from this client; retry later"
            }
            Refusal::ClientIp(IpRefusal::TooManyTrackedIps)
            | Refusal::Shared(IpRefusal::TooManyTrackedIps)
            | Refusal::Overloaded => "too many connections; retry later",
            Refusal::SharedStoreUnavailable => {
                "the connection limits cannot be checked now; retry later"
            }
            Refusal::BackendUnavailable => "no backend is available",
            Refusal::BackendRefused(_) => "the backend refused the upgrade",
            Refusal::BackendBadHandshake(why) => why,
            Refusal::Auth(a) => a.message(),
            Refusal::OtherUpgrade => "only WebSocket upgrades are accepted",
            Refusal::MethodNotAllowed => "this method is not passed on",
            Refusal::BodyTooLarge => "request body too large",
            Refusal::BodyTimeout => "the request body stalled",
            Refusal::Requests(IpRefusal::TooManyHandshakes { .. }) => {
                "too many requests from this client; retry later"
            }
            Refusal::Requests(IpRefusal::TooManyConnections) => {
                "too many requests in flight from this client"
            }
            Refusal::Requests(IpRefusal::TooManyTrackedIps) | Refusal::TooManyHeld => {
                "too many requests in flight; retry later"
            }
            Refusal::Draining => "this instance is shutting down; retry",
            Refusal::BackendTimeout => "the backend did not answer in time",
            Refusal::BackendBadResponse => "the backend's answer is not valid HTTP",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_rules() {
        assert_eq!(Refusal::NotWebSocket.status(), 426);
        assert_eq!(Refusal::UnsupportedVersion.status(), 426);
        assert_eq!(Refusal::BadKey.status(), 400);
        assert_eq!(Refusal::MalformedRequest.status(), 400);
        assert_eq!(Refusal::HeadTooLarge.status(), 431);
        assert_eq!(Refusal::NoRoute.status(), 404);
        assert_eq!(Refusal::Origin(OriginRefusal::NotAllowed).status(), 403);
        assert_eq!(Refusal::BackendUnavailable.status(), 502);
        assert_eq!(Refusal::BackendRefused(401).status(), 401);
        assert_eq!(Refusal::BackendRefused(401).side(), Side::Backend);
        assert_eq!(Refusal::BadHost.side(), Side::Client);
        let shared = Refusal::Shared(IpRefusal::TooManyHandshakes {
            retry_after: std::time::Duration::from_millis(1200),
        });
        assert_eq!(shared.status(), 429);
        assert_eq!(shared.retry_after(), Some(2));
        assert_eq!(shared.label(), "shared_ip_handshake_rate");
        assert_eq!(Refusal::SharedStoreUnavailable.status(), 503);
        assert_eq!(Refusal::SharedStoreUnavailable.retry_after(), Some(1));
    }
}
