//! How a connection ends, told once: the metrics and the one log line of a connection
//! dropped before any HTTP answer, of a failed TLS handshake, of a refused request and of a
//! relayed connection that closed. Refusals are logged at info when the client caused them,
//! at warn when the backend did or the proxy is overloaded; a peer that simply left is
//! counted and logged at debug.

use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tracing::Level;

use crate::auth::refusal::AuthRefusal;
use crate::auth::Denied;
use crate::frame::coding::close_code::NO_STATUS_RECEIVED;
use crate::limits::IpRefusal;
use crate::metrics::{
    code_label, ClosedLabels, DirectionLabels, Metrics, ReasonLabels, RefusedLabels,
    ViolationLabels,
};
use crate::refusal::{Refusal, Side};
use crate::relay::{Ender, Summary};
use crate::upstream::Failure;

/// One event at a level chosen at run time (tracing fixes the level per call site).
macro_rules! event_at {
    ($level:expr, $($event:tt)+) => {
        match $level {
            Level::WARN => tracing::warn!($($event)+),
            Level::INFO => tracing::info!($($event)+),
            _ => tracing::debug!($($event)+),
        }
    };
}

/// Why a connection was closed before any HTTP answer. Closed set: each variant is one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dropped {
    /// Twice `max_connections` open: dropped at accept to keep file descriptors.
    HardCap,
    /// At accept, over `connections_per_ip`, or a new client IP with the per-IP table full.
    ClientIp(IpRefusal),
    /// A trusted peer's PROXY header is malformed.
    ProxyHeaderInvalid,
    /// A trusted peer did not finish its PROXY header within `handshake_timeout`.
    ProxyHeaderTimeout,
    /// A trusted peer closed before its PROXY header was complete.
    ProxyHeaderClosed,
    /// A peer that is not a trusted proxy sent a PROXY header.
    ProxyHeaderUntrusted,
    /// No whole request head within `handshake_timeout`.
    HeaderTimeout,
    /// An HTTP/2 connection preface: WebSocket upgrades are HTTP/1.1.
    Http2,
}

// === impl Dropped ===

impl Dropped {
    /// Metric and log label.
    pub(super) fn label(self) -> &'static str {
        match self {
            Dropped::HardCap => "hard_cap",
            Dropped::ClientIp(r) => r.label(),
            Dropped::ProxyHeaderInvalid => "proxy_header_invalid",
            Dropped::ProxyHeaderTimeout => "proxy_header_timeout",
            Dropped::ProxyHeaderClosed => "proxy_header_closed",
            Dropped::ProxyHeaderUntrusted => "proxy_header_untrusted",
            Dropped::HeaderTimeout => "header_timeout",
            Dropped::Http2 => "http2",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Dropped::HardCap => "twice max_connections open",
            Dropped::ClientIp(IpRefusal::TooManyTrackedIps) => {
                "a new client IP while max_tracked_ips hold connections"
            }
            Dropped::ClientIp(_) => "the client IP holds connections_per_ip connections",
            Dropped::ProxyHeaderInvalid => "malformed PROXY header",
            Dropped::ProxyHeaderTimeout => "PROXY header not complete within handshake_timeout",
            Dropped::ProxyHeaderClosed => "peer closed during its PROXY header",
            Dropped::ProxyHeaderUntrusted => "PROXY header from a peer not in trusted_proxies",
            Dropped::HeaderTimeout => "request head not complete within handshake_timeout",
            Dropped::Http2 => "HTTP/2 preface; only HTTP/1.1 upgrades are served",
        }
    }

    fn level(self) -> Level {
        match self {
            Dropped::HardCap => Level::WARN,
            Dropped::ProxyHeaderClosed => Level::DEBUG,
            _ => Level::INFO,
        }
    }
}

/// Counts and logs a connection closed before any HTTP answer; `detail` says what was wrong.
pub(super) fn dropped(metrics: &Metrics, why: Dropped, detail: Option<&dyn Display>) {
    metrics
        .connections_dropped
        .get_or_create(&ReasonLabels {
            reason: why.label(),
        })
        .inc();
    if let Dropped::ClientIp(r) = why {
        metrics
            .rate_limited
            .get_or_create(&ReasonLabels { reason: r.label() })
            .inc();
    }
    event_at!(
        why.level(),
        rule = why.label(),
        error = detail.map(display),
        "connection dropped: {}",
        why.message()
    );
}

/// Why a TLS handshake failed. Closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TlsFailure {
    /// Not done within `handshake_timeout`.
    Timeout,
    /// The peer closed or reset the connection.
    PeerClosed,
    /// The bytes are not TLS records.
    NotTls,
    /// No protocol version, cipher suite or key exchange in common.
    Incompatible,
    /// No ALPN protocol in common: the client offered only others (`h2` alone, say); it got
    /// the `no_application_protocol` alert.
    NoAlpn,
    /// The client refused our certificate (an alert: unknown CA, bad certificate, …).
    CertificateRejected,
    /// Anything else (the error says what).
    Other,
}

// === impl TlsFailure ===

impl TlsFailure {
    /// Metric and log label.
    pub(super) fn label(self) -> &'static str {
        match self {
            TlsFailure::Timeout => "timeout",
            TlsFailure::PeerClosed => "peer_closed",
            TlsFailure::NotTls => "not_tls",
            TlsFailure::Incompatible => "incompatible",
            TlsFailure::NoAlpn => "no_alpn",
            TlsFailure::CertificateRejected => "certificate_rejected",
            TlsFailure::Other => "other",
        }
    }
}

/// Counts and logs a failed TLS handshake; `error` says what went wrong.
pub(super) fn tls_failed(metrics: &Metrics, why: TlsFailure, error: Option<&dyn Display>) {
    metrics
        .tls_handshake_failures
        .get_or_create(&ReasonLabels {
            reason: why.label(),
        })
        .inc();
    let level = match why {
        TlsFailure::PeerClosed => Level::DEBUG,
        _ => Level::INFO,
    };
    event_at!(
        level,
        rule = why.label(),
        error = error.map(display),
        "TLS handshake failed"
    );
}

/// The request a refusal answers, as far as it is known: hyper's own refusals come before
/// any request is parsed ([`Asked::UNPARSED`]).
pub(super) struct Asked<'a> {
    /// The client IP as named by the TCP peer, a trusted PROXY header or X-Forwarded-For.
    pub client: Option<IpAddr>,
    pub path: &'a str,
    /// The configured route, or "none".
    pub route: &'a str,
    pub origin: &'a str,
}

impl Asked<'static> {
    pub(super) const UNPARSED: Asked<'static> = Asked {
        client: None,
        path: "-",
        route: "none",
        origin: "-",
    };
}

/// What more a refusal's line says: how the backend failed, what authentication found.
#[derive(Default)]
pub(super) struct Detail<'a> {
    pub backend: Option<&'a Failure>,
    pub auth: Option<&'a Denied>,
}

/// Counts and logs a refused request.
pub(super) fn refused(metrics: &Metrics, refusal: Refusal, asked: &Asked<'_>, detail: &Detail<'_>) {
    let backend = detail.backend;
    let auth = detail.auth;
    if let Refusal::ClientIp(_)
    | Refusal::Shared(_)
    | Refusal::Auth(AuthRefusal::TooManyFailures { .. }) = refusal
    {
        metrics
            .rate_limited
            .get_or_create(&ReasonLabels {
                reason: refusal.label(),
            })
            .inc();
    }
    metrics
        .handshakes_refused
        .get_or_create(&RefusedLabels {
            reason: refusal.label(),
            route: asked.route.to_owned(),
        })
        .inc();
    let (level, what) = match refusal.side() {
        Side::Client => (Level::INFO, "handshake refused"),
        Side::Backend => (Level::WARN, "handshake failed at the backend"),
    };
    event_at!(
        level,
        client = asked.client.map(display),
        path = asked.path,
        status = refusal.status().as_u16(),
        rule = refusal.label(),
        origin = %asked.origin,
        backend = backend.map(|f| display(&f.backend)),
        error = backend
            .and_then(|f| f.error.as_deref())
            .or(auth.and_then(|a| a.detail.as_deref())),
        kid = auth.and_then(|a| a.kid.as_deref()),
        tried = backend.map(|f| f.tried),
        "{what}: {}",
        refusal.message()
    );
}

/// A relayed connection, for its closing line.
pub(super) struct Relayed<'a> {
    pub peer: SocketAddr,
    /// The client IP (see [`Asked::client`]).
    pub client: IpAddr,
    pub path: &'a str,
    pub route: &'a str,
    pub origin: &'a str,
    pub backend: &'a str,
    /// permessage-deflate was negotiated.
    pub deflate: bool,
    pub duration: Duration,
}

/// Adds a finished connection to the metrics and logs its one line: at warn when a frame
/// rule was broken.
pub(super) fn closed(metrics: &Metrics, summary: &Summary, relayed: &Relayed<'_>) {
    record(metrics, summary);
    let (level, what) = match (summary.violation, summary.limit) {
        (Some(_), _) => (Level::WARN, "connection closed: frame rule broken"),
        (None, Some(_)) => (Level::INFO, "connection closed: rate limit"),
        (None, None) => (Level::INFO, "connection closed"),
    };
    let reason: Option<&dyn Display> = match (&summary.violation, &summary.limit) {
        (Some(v), _) => Some(v),
        (None, Some(l)) => Some(l),
        (None, None) => None,
    };
    event_at!(
        level,
        peer = %relayed.peer,
        client = %relayed.client,
        path = %relayed.path,
        route = %relayed.route,
        origin = %relayed.origin,
        backend = %relayed.backend,
        deflate = relayed.deflate,
        by = summary.ended_by.label(),
        rule = summary
            .violation
            .map(|v| v.label())
            .or(summary.limit.map(|l| l.bucket.label())),
        code = client_code(summary),
        reason = reason.map(display),
        duration_ms = millis(relayed.duration),
        frames_up = summary.frames_up,
        bytes_up = summary.bytes_up,
        frames_down = summary.frames_down,
        bytes_down = summary.bytes_down,
        "{what}"
    );
}

/// The close code the client got. A peer's close frame without one is 1005 (RFC 6455
/// §7.1.5): only the peers' own close frames, relayed, can carry none, so `None` stays for
/// a client that got no close frame at all.
fn client_code(summary: &Summary) -> Option<u16> {
    match (summary.ended_by, summary.client_code) {
        (Ender::Client | Ender::Backend, None) => Some(NO_STATUS_RECEIVED),
        (_, code) => code,
    }
}

/// A duration as whole milliseconds, for log fields.
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn record(metrics: &Metrics, summary: &Summary) {
    let up = DirectionLabels { direction: "up" };
    let down = DirectionLabels { direction: "down" };
    metrics.frames.get_or_create(&up).inc_by(summary.frames_up);
    metrics.bytes.get_or_create(&up).inc_by(summary.bytes_up);
    metrics
        .frames
        .get_or_create(&down)
        .inc_by(summary.frames_down);
    metrics
        .bytes
        .get_or_create(&down)
        .inc_by(summary.bytes_down);
    metrics
        .connections_closed
        .get_or_create(&ClosedLabels {
            code: code_label(client_code(summary)),
            by: summary.ended_by.label(),
        })
        .inc();
    let hits = [
        ("client_delay", summary.throttled_up),
        ("backend_delay", summary.throttled_down),
        (
            "client_close",
            u64::from(summary.ended_by == Ender::ClientRateLimited),
        ),
        (
            "backend_close",
            u64::from(summary.ended_by == Ender::BackendRateLimited),
        ),
    ];
    for (reason, n) in hits {
        if n > 0 {
            metrics
                .rate_limited
                .get_or_create(&ReasonLabels { reason })
                .inc_by(n);
        }
    }
    if let Some(v) = summary.violation {
        let side = match summary.ended_by {
            Ender::BackendViolation => "backend",
            _ => "client",
        };
        metrics
            .violations
            .get_or_create(&ViolationLabels {
                rule: v.label(),
                side,
            })
            .inc();
    }
}
