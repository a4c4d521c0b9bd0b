//! How a request or a relayed connection ends, told once: the metrics and the one log line
//! of a refused request (info when the client caused it, warn when the backend did) and of a
//! relayed connection that closed.

use std::net::SocketAddr;
use std::time::Duration;

use tracing::Level;

use crate::metrics::{
    code_label, ClosedLabels, DirectionLabels, Metrics, ReasonLabels, RefusedLabels,
    ViolationLabels,
};
use crate::refusal::{Refusal, Side};
use crate::relay::{Ender, Summary};

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

/// The request a refusal answers.
pub(super) struct Asked<'a> {
    pub path: &'a str,
    /// The configured route, or "none".
    pub route: &'a str,
    pub origin: &'a str,
}

/// Counts and logs a refused request.
pub(super) fn refused(metrics: &Metrics, refusal: Refusal, asked: &Asked<'_>) {
    if let Refusal::ClientIp(r) = refusal {
        metrics
            .rate_limited
            .get_or_create(&ReasonLabels { reason: r.label() })
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
        path = asked.path,
        status = refusal.status().as_u16(),
        rule = refusal.label(),
        origin = %asked.origin,
        "{what}: {}",
        refusal.message()
    );
}

/// A relayed connection, for its closing line.
pub(super) struct Relayed<'a> {
    pub peer: SocketAddr,
    pub path: &'a str,
    pub route: &'a str,
    pub origin: &'a str,
    pub backend: &'a str,
    pub duration: Duration,
}

/// Adds a finished connection to the metrics and logs its one line: at warn when a frame
/// rule was broken.
pub(super) fn closed(metrics: &Metrics, summary: &Summary, relayed: &Relayed<'_>) {
    record(metrics, summary);
    let (level, what) = match summary.violation {
        Some(_) => (Level::WARN, "connection closed: frame rule broken"),
        None => (Level::INFO, "connection closed"),
    };
    event_at!(
        level,
        peer = %relayed.peer,
        path = %relayed.path,
        route = %relayed.route,
        origin = %relayed.origin,
        backend = %relayed.backend,
        by = summary.ended_by.label(),
        rule = summary.violation.map(|v| v.label()),
        code = summary.client_code,
        reason = summary.violation.map(display),
        duration_ms = millis(relayed.duration),
        frames_up = summary.frames_up,
        bytes_up = summary.bytes_up,
        frames_down = summary.frames_down,
        bytes_down = summary.bytes_down,
        "{what}"
    );
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
            code: code_label(summary.client_code),
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
