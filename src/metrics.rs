//! Counters, gauges and histograms for `/metrics` (Prometheus text format via
//! `prometheus-client`). Every label value comes from a closed set — a rule
//! label, a configured route or backend, a known close code — so the number
//! of series is bounded by the configuration, never by clients.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub reason: &'static str,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClosedLabels {
    pub code: &'static str,
    pub by: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViolationLabels {
    pub rule: &'static str,
    pub side: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    /// The `[auth.NAME]` section: bounded by the configuration.
    pub auth: String,
    pub outcome: &'static str,
}

/// Authentication's metrics (`[auth.*]`); series appear once a section is used.
#[derive(Clone, Debug)]
pub struct AuthMetrics {
    /// Handshakes decided, by section and outcome (`allowed`, or the refusal's rule).
    pub decisions: Family<AuthLabels, Counter>,
    /// Forward-auth decision cache lookups, by section and outcome (`hit`, `miss`).
    pub cache: Family<AuthLabels, Counter>,
    /// JWKS fetches, by section and outcome (`ok`, `error`).
    pub jwks_fetches: Family<AuthLabels, Counter>,
    /// Time to decide one handshake (verification or the auth service's answer).
    pub seconds: Histogram,
}

/// The shared tier's metrics (`[limits.shared]`), registered only when it is configured.
#[derive(Clone, Debug)]
pub struct SharedMetrics {
    /// 1 while the store answers, 0 while handshakes are decided by `on_error`.
    pub up: Gauge,
    /// Connection leases this process holds in the store.
    pub leases: Gauge,
    /// One admission round trip (the Lua script).
    pub seconds: Histogram,
    pub errors: Family<KindLabels, Counter>,
    pub decisions: Family<OutcomeLabels, Counter>,
}

/// All of wsguard's metrics. One instance per process, shared by reloads so
/// counters survive a SIGHUP.
pub struct Metrics {
    registry: Registry,
    pub connections_accepted: Counter,
    pub connections_active: Gauge,
    pub connections_closed: Family<ClosedLabels, Counter>,
    pub handshakes_refused: Family<RefusedLabels, Counter>,
    pub origins_reported: Family<ReasonLabels, Counter>,
    pub frames: Family<DirectionLabels, Counter>,
    pub bytes: Family<DirectionLabels, Counter>,
    pub violations: Family<ViolationLabels, Counter>,
    pub backend_connect_failures: Family<BackendLabels, Counter>,
    pub rate_limited: Family<ReasonLabels, Counter>,
    pub connections_dropped: Family<ReasonLabels, Counter>,
    pub tls_handshake_failures: Family<ReasonLabels, Counter>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_request_seconds: Histogram,
    pub handshake_seconds: Histogram,
    pub backend_connect_seconds: Histogram,
    pub auth: AuthMetrics,
}

/// Latency buckets from 100 µs to ~6.5 s, doubling: handshakes over TLS on
/// loopback take ~1 ms, over the internet tens to hundreds.
fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 17)
}

// === impl Metrics ===

impl Metrics {
    /// `untracked_handshakes` reads, at each scrape, the count the per-IP handshake limiter
    /// keeps of handshakes it let through untracked (its table was full).
    pub fn new(untracked_handshakes: impl Fn() -> u64 + Send + Sync + 'static) -> Metrics {
        let mut registry = Registry::with_prefix("wsguard");
        let m = Metrics {
            connections_accepted: Counter::default(),
            connections_active: Gauge::default(),
            connections_closed: Family::default(),
            handshakes_refused: Family::default(),
            origins_reported: Family::default(),
            frames: Family::default(),
            bytes: Family::default(),
            violations: Family::default(),
            backend_connect_failures: Family::default(),
            rate_limited: Family::default(),
            connections_dropped: Family::default(),
            tls_handshake_failures: Family::default(),
            http_requests: Family::default(),
            // From 1 ms to ~9 min: a polling answer takes milliseconds, a held long-poll its
            // 25 s, a stream up to `[http] max_duration`.
            http_request_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 20),
            ),
            handshake_seconds: Histogram::new(latency_buckets()),
            backend_connect_seconds: Histogram::new(latency_buckets()),
            auth: AuthMetrics {
                decisions: Family::default(),
                cache: Family::default(),
                jwks_fetches: Family::default(),
                // From 10 µs: a JWT verification takes tens of microseconds.
                seconds: Histogram::new(
                    prometheus_client::metrics::histogram::exponential_buckets(0.00001, 2.0, 20),
                ),
            },
            registry: Registry::default(),
        };
        registry.register(
            "connections_accepted",
            "TCP connections accepted",
            m.connections_accepted.clone(),
        );
        registry.register(
            "connections_active",
            "Connections open now (handshaking or relaying)",
            m.connections_active.clone(),
        );
        registry.register(
            "connections_closed",
            "Relayed WebSocket connections closed, by close code sent to the client and by who ended them",
            m.connections_closed.clone(),
        );
        registry.register(
            "handshakes_refused",
            "Upgrade requests refused, by rule and route",
            m.handshakes_refused.clone(),
        );
        registry.register(
            "origins_reported",
            "Origins that would have been refused, let through in report mode",
            m.origins_reported.clone(),
        );
        registry.register(
            "frames",
            "Frames relayed, by direction (up = client to backend)",
            m.frames.clone(),
        );
        registry.register(
            "bytes",
            "Bytes relayed (frame headers and payloads), by direction",
            m.bytes.clone(),
        );
        registry.register(
            "violations",
            "Frame rules broken, by rule and by who broke it",
            m.violations.clone(),
        );
        registry.register(
            "backend_connect_failures",
            "Failed backend connection attempts, by backend",
            m.backend_connect_failures.clone(),
        );
        registry.register(
            "rate_limited",
            "Rate-limit hits, by limit",
            m.rate_limited.clone(),
        );
        registry.register(
            "connections_dropped",
            "Connections closed before any HTTP answer, by reason",
            m.connections_dropped.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out, by reason",
            m.tls_handshake_failures.clone(),
        );
        registry.register(
            "http_requests",
            "Pass-through HTTP requests answered, by route and status (refusals included)",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Pass-through HTTP requests, from their head to the end of their answer",
            m.http_request_seconds.clone(),
        );
        registry.register_collector(Box::new(ReadCounter {
            name: "handshakes_untracked",
            help: "Handshakes let through without a per-IP quota because its table was full",
            read: Box::new(untracked_handshakes),
        }));
        registry.register(
            "handshake_duration_seconds",
            "From TCP accept to the 101 sent to the client",
            m.handshake_seconds.clone(),
        );
        registry.register(
            "backend_connect_duration_seconds",
            "TCP connect to a backend",
            m.backend_connect_seconds.clone(),
        );
        registry.register(
            "auth_decisions",
            "Handshakes decided by authentication, by [auth] section and outcome",
            m.auth.decisions.clone(),
        );
        registry.register(
            "auth_cache",
            "Forward-auth decision cache lookups, by [auth] section and outcome",
            m.auth.cache.clone(),
        );
        registry.register(
            "auth_jwks_fetches",
            "JWKS fetches, by [auth] section and outcome",
            m.auth.jwks_fetches.clone(),
        );
        registry.register(
            "auth_duration_seconds",
            "Time to authenticate one handshake",
            m.auth.seconds.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Registers the shared tier's metrics (at start, before the metrics are shared).
    pub fn register_shared(&mut self) -> SharedMetrics {
        let m = SharedMetrics {
            up: Gauge::default(),
            leases: Gauge::default(),
            // From 50 µs: a store on the same network answers in a fraction of a millisecond.
            seconds: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.00005, 2.0, 16,
            )),
            errors: Family::default(),
            decisions: Family::default(),
        };
        let r = &mut self.registry;
        r.register(
            "shared_store_up",
            "1 while the shared limit store answers, 0 while on_error decides",
            m.up.clone(),
        );
        r.register(
            "shared_leases",
            "Connection leases this instance holds in the shared store",
            m.leases.clone(),
        );
        r.register(
            "shared_store_duration_seconds",
            "One admission round trip to the shared store",
            m.seconds.clone(),
        );
        r.register(
            "shared_store_errors",
            "Shared store calls that failed, by kind",
            m.errors.clone(),
        );
        r.register(
            "shared_decisions",
            "Handshakes decided by the shared tier, by outcome",
            m.decisions.clone(),
        );
        m
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// A counter kept elsewhere (by a module that does not know about metrics), read at each
/// scrape.
struct ReadCounter {
    name: &'static str,
    help: &'static str,
    read: Box<dyn Fn() -> u64 + Send + Sync>,
}

impl fmt::Debug for ReadCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadCounter")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Collector for ReadCounter {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let counter = ConstCounter::new((self.read)());
        let metric =
            encoder.encode_descriptor(self.name, self.help, None, counter.metric_type())?;
        counter.encode(metric)
    }
}

/// A close code as a bounded label: the codes RFC 6455 names, or a class.
pub fn code_label(code: Option<u16>) -> &'static str {
    match code {
        None => "none",
        Some(1000) => "1000",
        Some(1001) => "1001",
        Some(1002) => "1002",
        Some(1003) => "1003",
        Some(1005) => "1005",
        Some(1007) => "1007",
        Some(1008) => "1008",
        Some(1009) => "1009",
        Some(1010) => "1010",
        Some(1011) => "1011",
        Some(1012) => "1012",
        Some(1013) => "1013",
        Some(1014) => "1014",
        Some(3000..=3999) => "3xxx",
        Some(4000..=4999) => "4xxx",
        Some(_) => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_family_and_bounded_codes() {
        let m = Metrics::new(|| 7);
        m.connections_accepted.inc();
        m.handshakes_refused
            .get_or_create(&RefusedLabels {
                reason: "origin_not_allowed",
                route: "/chat".into(),
            })
            .inc();
        let text = m.encode();
        assert!(
            text.contains("wsguard_connections_accepted_total 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "wsguard_handshakes_refused_total{reason=\"origin_not_allowed\",route=\"/chat\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE wsguard_handshake_duration_seconds histogram"));
        assert!(
            text.contains("wsguard_handshakes_untracked_total 7\n"),
            "{text}"
        );
        assert_eq!(code_label(Some(4321)), "4xxx");
        assert_eq!(code_label(Some(1005)), "1005");
        assert_eq!(code_label(Some(1006)), "other");
    }
}
