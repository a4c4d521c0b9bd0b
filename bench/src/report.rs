//! The comparison table (markdown) and the target verdicts, from the JSON
//! lines of `run --out`. The last line for a (label, scenario) wins.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Columns, in order: label in the JSON and its heading.
pub const PEERS: [(&str, &str); 6] = [
    ("direct", "direct"),
    ("nginx", "nginx"),
    ("nginx-64k", "nginx 64k"),
    ("haproxy", "HAProxy"),
    ("wsguard", "wsguard"),
    ("wsguard-nib", "wsguard, inspect_backend off"),
];

/// How a row's number comes out of a result line (JSON paths: keys joined by dots).
#[derive(Clone, Copy)]
enum Metric {
    Num(&'static str),
    /// Shown whole.
    Count(&'static str),
    /// 1 GiB over the KiB per connection at the path.
    PerGiB(&'static str),
}

/// Rows: scenario, metric, heading, lower is better.
const ROWS: &[(&str, Metric, &str, bool)] = &[
    (
        "bin64",
        Metric::Num("msgs_per_s"),
        "64 B binary, 64×16, ws: msgs/s",
        false,
    ),
    (
        "bin64",
        Metric::Num("cpu_us_per_msg"),
        "64 B binary, 64×16, ws: CPU µs/msg",
        true,
    ),
    (
        "bin64-tls",
        Metric::Num("msgs_per_s"),
        "64 B binary, 64×16, wss: msgs/s",
        false,
    ),
    (
        "bin64-tls",
        Metric::Num("cpu_us_per_msg"),
        "64 B binary, 64×16, wss: CPU µs/msg",
        true,
    ),
    (
        "bin16k",
        Metric::Num("msgs_per_s"),
        "16 KiB binary, 16×4: msgs/s",
        false,
    ),
    (
        "bin16k",
        Metric::Num("cpu_ms_per_mb"),
        "16 KiB binary, 16×4: CPU ms/MB",
        true,
    ),
    (
        "text16k",
        Metric::Num("msgs_per_s"),
        "16 KiB text, 16×4: msgs/s",
        false,
    ),
    (
        "text16k",
        Metric::Num("cpu_ms_per_mb"),
        "16 KiB text, 16×4: CPU ms/MB",
        true,
    ),
    (
        "rate128",
        Metric::Num("msgs_per_s"),
        "128 B text, 20k/s, 200 conns, ws: msgs/s",
        false,
    ),
    (
        "rate128",
        Metric::Num("cpu_us_per_msg"),
        "128 B text, 20k/s, ws: CPU µs/msg",
        true,
    ),
    (
        "rate128",
        Metric::Num("latency_us.p50"),
        "128 B text, 20k/s, ws: RTT p50 µs",
        true,
    ),
    (
        "rate128",
        Metric::Num("latency_us.p90"),
        "128 B text, 20k/s, ws: RTT p90 µs",
        true,
    ),
    (
        "rate128",
        Metric::Num("latency_us.p99"),
        "128 B text, 20k/s, ws: RTT p99 µs",
        true,
    ),
    (
        "rate128",
        Metric::Num("latency_us.p999"),
        "128 B text, 20k/s, ws: RTT p99.9 µs",
        true,
    ),
    (
        "rate128-tls",
        Metric::Num("cpu_us_per_msg"),
        "128 B text, 20k/s, wss: CPU µs/msg",
        true,
    ),
    (
        "rate128-tls",
        Metric::Num("latency_us.p50"),
        "128 B text, 20k/s, wss: RTT p50 µs",
        true,
    ),
    (
        "rate128-tls",
        Metric::Num("latency_us.p90"),
        "128 B text, 20k/s, wss: RTT p90 µs",
        true,
    ),
    (
        "rate128-tls",
        Metric::Num("latency_us.p99"),
        "128 B text, 20k/s, wss: RTT p99 µs",
        true,
    ),
    (
        "rate128-tls",
        Metric::Num("latency_us.p999"),
        "128 B text, 20k/s, wss: RTT p99.9 µs",
        true,
    ),
    (
        "churn",
        Metric::Num("cpu_us_per_conn"),
        "churn, wss, sessions resumed: CPU µs/conn",
        true,
    ),
    (
        "churn",
        Metric::Num("connect_to_echo_us.p50"),
        "churn, wss, sessions resumed: connect → echo p50 µs",
        true,
    ),
    (
        "churn",
        Metric::Num("connect_to_echo_us.p99"),
        "churn, wss, sessions resumed: connect → echo p99 µs",
        true,
    ),
    (
        "churn",
        Metric::Count("completed"),
        "churn, wss, sessions resumed: conns completed",
        false,
    ),
    (
        "churn",
        Metric::Count("failed"),
        "churn, wss, sessions resumed: conns failed",
        true,
    ),
    (
        "churn",
        Metric::Count("resumed"),
        "churn, wss, sessions resumed: handshakes resumed",
        false,
    ),
    (
        "churn-full",
        Metric::Num("cpu_us_per_conn"),
        "churn, wss, full handshakes: CPU µs/conn",
        true,
    ),
    (
        "churn-full",
        Metric::Num("connect_to_echo_us.p50"),
        "churn, wss, full handshakes: connect → echo p50 µs",
        true,
    ),
    (
        "churn-full",
        Metric::Num("connect_to_echo_us.p99"),
        "churn, wss, full handshakes: connect → echo p99 µs",
        true,
    ),
    (
        "churn-full",
        Metric::Count("completed"),
        "churn, wss, full handshakes: conns completed",
        false,
    ),
    (
        "churn-full",
        Metric::Count("failed"),
        "churn, wss, full handshakes: conns failed",
        true,
    ),
    (
        "soak",
        Metric::Num("cpu_us_per_msg"),
        "soak, wss, 1 msg/s per conn: CPU µs/msg",
        true,
    ),
    (
        "soak",
        Metric::Num("latency_us.p50"),
        "soak, wss: RTT p50 µs",
        true,
    ),
    (
        "soak",
        Metric::Num("latency_us.p90"),
        "soak, wss: RTT p90 µs",
        true,
    ),
    (
        "soak",
        Metric::Num("latency_us.p99"),
        "soak, wss: RTT p99 µs",
        true,
    ),
    (
        "soak",
        Metric::Count("lost"),
        "soak, wss: echoes lost",
        true,
    ),
    (
        "soak",
        Metric::Count("reordered"),
        "soak, wss: echoes reordered",
        true,
    ),
    (
        "soak",
        Metric::Count("corrupt"),
        "soak, wss: echoes corrupt",
        true,
    ),
    (
        "soak",
        Metric::Num("rss_first_kib"),
        "soak, wss: proxy RSS KiB, first 10 s",
        true,
    ),
    (
        "soak",
        Metric::Num("rss_last_kib"),
        "soak, wss: proxy RSS KiB, last 10 s",
        true,
    ),
    (
        "soak",
        Metric::Num("rss_ratio"),
        "soak, wss: proxy RSS last ÷ first",
        true,
    ),
    (
        "chat1k",
        Metric::Num("msgs_per_s"),
        "1 KiB chat, deflate, 64×16: msgs/s",
        false,
    ),
    (
        "chat1k",
        Metric::Num("cpu_us_per_msg"),
        "1 KiB chat, deflate, 64×16: CPU µs/msg",
        true,
    ),
    (
        "chat1k",
        Metric::Num("wire_out_bytes_per_msg"),
        "1 KiB chat, deflate: wire B/msg to proxy",
        true,
    ),
    (
        "chat1k",
        Metric::Num("wire_in_bytes_per_msg"),
        "1 KiB chat, deflate: wire B/msg from proxy",
        true,
    ),
    (
        "chat1k-rate",
        Metric::Num("cpu_us_per_msg"),
        "1 KiB chat, deflate, 5k/s: CPU µs/msg",
        true,
    ),
    (
        "chat1k-rate",
        Metric::Num("latency_us.p90"),
        "1 KiB chat, deflate, 5k/s: RTT p90 µs",
        true,
    ),
    (
        "chat1k-rate",
        Metric::Num("latency_us.p99"),
        "1 KiB chat, deflate, 5k/s: RTT p99 µs",
        true,
    ),
    (
        "chat1k-plain",
        Metric::Num("cpu_us_per_msg"),
        "1 KiB chat, no offer, 64×16: CPU µs/msg",
        true,
    ),
    (
        "chat1k-plain",
        Metric::Num("wire_out_bytes_per_msg"),
        "1 KiB chat, no offer: wire B/msg to proxy",
        true,
    ),
    (
        "idle",
        Metric::Num("kib_per_conn_open"),
        "5,000 idle, ws: KiB RSS/conn after upgrade",
        true,
    ),
    (
        "idle",
        Metric::Num("kib_per_conn_after_msg"),
        "5,000 idle, ws: KiB RSS/conn after 1 msg each",
        true,
    ),
    (
        "idle",
        Metric::PerGiB("kib_per_conn_open"),
        "5,000 idle, ws: conns per GiB after upgrade",
        false,
    ),
    (
        "idle",
        Metric::PerGiB("kib_per_conn_after_msg"),
        "5,000 idle, ws: conns per GiB after 1 msg each",
        false,
    ),
    (
        "idle-tls",
        Metric::Num("kib_per_conn_open"),
        "5,000 idle, wss: KiB RSS/conn after upgrade",
        true,
    ),
    (
        "idle-tls",
        Metric::Num("kib_per_conn_after_msg"),
        "5,000 idle, wss: KiB RSS/conn after 1 msg each",
        true,
    ),
    (
        "idle-tls",
        Metric::PerGiB("kib_per_conn_open"),
        "5,000 idle, wss: conns per GiB after upgrade",
        false,
    ),
    (
        "idle-tls",
        Metric::PerGiB("kib_per_conn_after_msg"),
        "5,000 idle, wss: conns per GiB after 1 msg each",
        false,
    ),
    (
        "idle-deflate",
        Metric::Num("kib_per_conn_open"),
        "5,000 idle, deflate offered: KiB RSS/conn after upgrade",
        true,
    ),
    (
        "idle-deflate",
        Metric::Num("kib_per_conn_after_msg"),
        "5,000 idle, deflate offered: KiB RSS/conn after 1 msg each",
        true,
    ),
    (
        "longpoll",
        Metric::Num("requests_per_s"),
        "long-poll, 2 req/s per session: requests/s",
        false,
    ),
    (
        "longpoll",
        Metric::Num("cpu_us_per_request"),
        "long-poll: CPU µs/request",
        true,
    ),
    (
        "longpoll",
        Metric::Num("post_rtt_us.p50"),
        "long-poll: POST round trip p50 µs",
        true,
    ),
    (
        "longpoll",
        Metric::Num("post_rtt_us.p99"),
        "long-poll: POST round trip p99 µs",
        true,
    ),
    (
        "longpoll",
        Metric::Num("delivery_us.p50"),
        "long-poll: POST → held GET answer p50 µs",
        true,
    ),
    (
        "longpoll",
        Metric::Num("delivery_us.p99"),
        "long-poll: POST → held GET answer p99 µs",
        true,
    ),
    (
        "longpoll",
        Metric::Num("kib_per_held"),
        "long-poll: KiB RSS per held GET (2 conns)",
        true,
    ),
    (
        "longpoll",
        Metric::Count("unknown_sid"),
        "long-poll: requests without their session (400)",
        true,
    ),
    (
        "http-keepalive",
        Metric::Num("requests_per_s"),
        "HTTP keep-alive GET, 64 conns: requests/s",
        false,
    ),
    (
        "http-keepalive",
        Metric::Num("cpu_us_per_request"),
        "HTTP keep-alive GET: CPU µs/request",
        true,
    ),
    (
        "http-keepalive",
        Metric::Num("latency_us.p50"),
        "HTTP keep-alive GET: round trip p50 µs",
        true,
    ),
    (
        "http-keepalive",
        Metric::Num("latency_us.p99"),
        "HTTP keep-alive GET: round trip p99 µs",
        true,
    ),
];

/// Inspecting compressed chat may cost wsguard this many times the better
/// blind peer's CPU per message.
const CHAT_CPU_FACTOR: f64 = 2.0;
/// RSS noise allowed between the idle runs with and without the deflate
/// offer, per connection: a decompressor kept per connection is ~46 KiB.
const IDLE_DEFLATE_SLACK_KIB: f64 = 1.0;

/// Results keyed by (label, scenario).
pub type Results = BTreeMap<(String, String), Value>;

pub fn load(inputs: &[PathBuf]) -> Result<Results, String> {
    let mut out = Results::new();
    for path in inputs {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let v: Value = serde_json::from_str(line)
                .map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?;
            let key = (
                v["label"].as_str().unwrap_or_default().to_owned(),
                v["scenario"].as_str().unwrap_or_default().to_owned(),
            );
            out.insert(key, v);
        }
    }
    Ok(out)
}

fn metric(results: &Results, label: &str, scenario: &str, path: &str) -> Option<f64> {
    let mut v = results.get(&(label.to_owned(), scenario.to_owned()))?;
    for part in path.split('.') {
        v = v.get(part)?;
    }
    v.as_f64()
}

fn has_errors(results: &Results, label: &str, scenario: &str) -> bool {
    results
        .get(&(label.to_owned(), scenario.to_owned()))
        .is_some_and(|v| v["errors"].as_u64().unwrap_or(1) > 0)
}

fn fmt(x: f64) -> String {
    if x >= 10_000.0 {
        // Thousands separators for message rates.
        let s = format!("{x:.0}");
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// A row's number for one peer.
fn value(results: &Results, label: &str, scenario: &str, m: Metric) -> Option<f64> {
    match m {
        Metric::Num(path) | Metric::Count(path) => metric(results, label, scenario, path),
        Metric::PerGiB(path) => metric(results, label, scenario, path)
            .filter(|&kib| kib > 0.0)
            .map(|kib| f64::from(1u32 << 20) / kib),
    }
}

fn show(m: Metric, x: f64) -> String {
    match m {
        Metric::Count(_) if x < 10_000.0 => format!("{x:.0}"),
        _ => fmt(x),
    }
}

/// The better of nginx's two settings for a row.
fn best_nginx(results: &Results, scenario: &str, m: Metric, lower: bool) -> Option<f64> {
    let a = value(results, "nginx", scenario, m);
    let b = value(results, "nginx-64k", scenario, m);
    match (a, b) {
        (Some(a), Some(b)) => Some(if lower { a.min(b) } else { a.max(b) }),
        (a, b) => a.or(b),
    }
}

pub fn table(results: &Results) -> String {
    let mut out = String::new();
    out.push_str("| scenario: metric |");
    for (_, heading) in PEERS {
        let _ = write!(out, " {heading} |");
    }
    out.push_str(" wsguard ÷ nginx (better setting) | wsguard ÷ HAProxy |\n|---|");
    out.push_str(&"---:|".repeat(PEERS.len() + 2));
    out.push('\n');
    for &(scenario, m, heading, lower) in ROWS {
        if PEERS
            .iter()
            .all(|(l, _)| value(results, l, scenario, m).is_none())
        {
            continue;
        }
        let _ = write!(out, "| {heading} |");
        for (label, _) in PEERS {
            let cell = match value(results, label, scenario, m) {
                Some(x) if has_errors(results, label, scenario) => format!("{} ⚠", show(m, x)),
                Some(x) => show(m, x),
                None => "–".to_owned(),
            };
            let _ = write!(out, " {cell} |");
        }
        let ws = value(results, "wsguard", scenario, m);
        let ratio = |peer: Option<f64>| match (ws, peer) {
            (Some(w), Some(p)) if p > 0.0 => format!("**{:.2}×**", w / p),
            _ => "–".to_owned(),
        };
        let _ = writeln!(
            out,
            " {} | {} |",
            ratio(best_nginx(results, scenario, m, lower)),
            ratio(value(results, "haproxy", scenario, m))
        );
    }
    out
}

/// Issue 13's targets, each wsguard at most the better of nginx (either
/// setting) and HAProxy: scenario, JSON path, name.
const PEER_TARGETS: [(&str, &str, &str); 11] = [
    ("bin64", "cpu_us_per_msg", "64 B pipelined, ws: CPU µs/msg"),
    (
        "bin64-tls",
        "cpu_us_per_msg",
        "64 B pipelined, wss: CPU µs/msg",
    ),
    ("bin16k", "cpu_ms_per_mb", "16 KiB binary: CPU ms/MB"),
    ("rate128", "cpu_us_per_msg", "20k msgs/s, ws: CPU µs/msg"),
    (
        "rate128-tls",
        "cpu_us_per_msg",
        "20k msgs/s, wss: CPU µs/msg",
    ),
    ("rate128", "latency_us.p50", "20k msgs/s, ws: RTT p50 µs"),
    ("rate128", "latency_us.p90", "20k msgs/s, ws: RTT p90 µs"),
    (
        "idle",
        "kib_per_conn_after_msg",
        "idle, ws: KiB RSS/conn (after 1 msg)",
    ),
    (
        "idle-tls",
        "kib_per_conn_after_msg",
        "idle, wss: KiB RSS/conn (after 1 msg)",
    ),
    (
        "churn",
        "cpu_us_per_conn",
        "churn, wss, resumed: CPU µs/conn",
    ),
    ("soak", "cpu_us_per_msg", "soak, wss: CPU µs/msg"),
];
/// The soak's RSS over its last 10 s may differ from its first 10 s by this
/// much (%) and still count as flat.
const SOAK_RSS_FLAT_PCT: f64 = 2.0;

/// The targets: issue 13's against the better peer, the soak's flat memory,
/// and the earlier issues' own bounds (16 KiB text at most 1.2× binary;
/// inspected compressed chat at most `CHAT_CPU_FACTOR` × the better blind
/// peer; the deflate offer costs no idle memory). A peer's run with errors is
/// no bound; a wsguard value from a run with errors is marked ⚠.
pub fn verdicts(results: &Results) -> String {
    let mut out = String::from(
        "Bound: the better of nginx (either setting) and HAProxy unless the target says \
         otherwise.\n\n| target | wsguard | bound | wsguard ÷ bound | verdict |\n\
         |---|---:|---:|---:|---|\n",
    );
    let ws = |scenario: &str, path: &str| {
        metric(results, "wsguard", scenario, path)
            .map(|x| (x, has_errors(results, "wsguard", scenario)))
    };
    let best_peer = |scenario: &str, path: &str| {
        let clean = |label: &str| {
            metric(results, label, scenario, path).filter(|_| !has_errors(results, label, scenario))
        };
        [clean("nginx"), clean("nginx-64k"), clean("haproxy")]
            .into_iter()
            .flatten()
            .reduce(f64::min)
    };
    for (scenario, path, name) in PEER_TARGETS {
        verdict_row(
            &mut out,
            name,
            ws(scenario, path),
            best_peer(scenario, path),
        );
    }
    soak_flat(&mut out, results);
    verdict_row(
        &mut out,
        "1 KiB chat, deflate: CPU µs/msg ≤ 2 × better blind peer",
        ws("chat1k", "cpu_us_per_msg"),
        best_peer("chat1k", "cpu_us_per_msg").map(|b| CHAT_CPU_FACTOR * b),
    );
    verdict_row(
        &mut out,
        "1 KiB chat, deflate, 5k/s: CPU µs/msg ≤ 2 × better blind peer",
        ws("chat1k-rate", "cpu_us_per_msg"),
        best_peer("chat1k-rate", "cpu_us_per_msg").map(|b| CHAT_CPU_FACTOR * b),
    );
    let path = "kib_per_conn_after_msg";
    verdict_row(
        &mut out,
        "idle, deflate offered: KiB RSS/conn ≤ without + 1",
        ws("idle-deflate", path),
        metric(results, "wsguard", "idle", path).map(|b| b + IDLE_DEFLATE_SLACK_KIB),
    );
    verdict_row(
        &mut out,
        "16 KiB text: CPU ms/MB ≤ 1.2 × binary",
        ws("text16k", "cpu_ms_per_mb"),
        metric(results, "wsguard", "bin16k", "cpu_ms_per_mb").map(|b| 1.2 * b),
    );
    out
}

/// wsguard's value (and whether its run had errors) against a bound: met when
/// at most the bound.
fn verdict_row(out: &mut String, name: &str, ws: Option<(f64, bool)>, bound: Option<f64>) {
    let verdict = match (ws, bound) {
        (Some((w, _)), Some(b)) if w <= b => "met",
        (Some(_), Some(_)) => "**missed**",
        _ => "not measured",
    };
    let ratio = match (ws, bound) {
        (Some((w, _)), Some(b)) if b > 0.0 => format!("{:.2}×", w / b),
        _ => "–".into(),
    };
    let _ = writeln!(
        out,
        "| {name} | {} | {} | {ratio} | {verdict} |",
        show_ws(ws),
        bound.map(fmt).unwrap_or_else(|| "–".into())
    );
}

fn show_ws(ws: Option<(f64, bool)>) -> String {
    match ws {
        Some((w, true)) => format!("{} ⚠", fmt(w)),
        Some((w, false)) => fmt(w),
        None => "–".into(),
    }
}

/// The soak's RSS change from its first to its last 10 s (%), within
/// ±`SOAK_RSS_FLAT_PCT` with no echo lost.
fn soak_flat(out: &mut String, results: &Results) {
    let change = metric(results, "wsguard", "soak", "rss_ratio").map(|r| (r - 1.0) * 100.0);
    let lost = metric(results, "wsguard", "soak", "lost");
    let verdict = match (change, lost) {
        (Some(c), Some(l)) if c.abs() <= SOAK_RSS_FLAT_PCT && l == 0.0 => "met",
        (Some(_), Some(_)) => "**missed**",
        _ => "not measured",
    };
    let errors = has_errors(results, "wsguard", "soak");
    let cell = match (change, lost) {
        (Some(c), Some(l)) => format!("{} ({l:.0} lost)", show_ws(Some((c, errors)))),
        _ => "–".into(),
    };
    let _ = writeln!(
        out,
        "| soak, wss: RSS change, last 10 s vs first 10 s, % (0 lost) | {cell} | ±{} | – | {verdict} |",
        fmt(SOAK_RSS_FLAT_PCT),
    );
}

pub fn report(inputs: &[PathBuf], plot: Option<&Path>) -> Result<String, String> {
    let results = load(inputs)?;
    let mut out = table(&results);
    out.push('\n');
    out.push_str(&verdicts(&results));
    let errors: Vec<String> = results
        .iter()
        .filter(|(_, v)| v["errors"].as_u64().unwrap_or(1) > 0)
        .map(|((l, s), v)| {
            format!(
                "- ⚠ {l} / {s}: {} errors, first: {}",
                v["errors"], v["first_error"]
            )
        })
        .collect();
    if !errors.is_empty() {
        out.push('\n');
        out.push_str(&errors.join("\n"));
        out.push('\n');
    }
    if let Some(path) = plot {
        crate::plot::latency(&results, path)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_verdicts_from_lines() {
        let mut r = Results::new();
        for (label, cpu) in [
            ("nginx", 0.9),
            ("nginx-64k", 0.8),
            ("haproxy", 1.0),
            ("wsguard", 0.6),
        ] {
            r.insert(
                (label.into(), "bin64".into()),
                serde_json::json!({"cpu_us_per_msg": cpu, "msgs_per_s": 100000.0, "errors": 0}),
            );
        }
        let t = table(&r);
        assert!(t.contains("| 64 B binary, 64×16, ws: CPU µs/msg | – | 0.90 | 0.80 | 1.00 | 0.60 | – | **0.75×** | **0.60×** |"), "{t}");
        assert!(t.contains("100,000"));
        for (label, cpu) in [("nginx", 1.0), ("haproxy", 1.5), ("wsguard", 2.5)] {
            r.insert(
                (label.into(), "chat1k".into()),
                serde_json::json!({"cpu_us_per_msg": cpu, "errors": 0}),
            );
        }
        for (scenario, kib) in [("idle", 10.0), ("idle-deflate", 12.0)] {
            r.insert(
                ("wsguard".into(), scenario.into()),
                serde_json::json!({"kib_per_conn_after_msg": kib, "errors": 0}),
            );
        }
        let v = verdicts(&r);
        assert!(
            v.contains("| 64 B pipelined, ws: CPU µs/msg | 0.60 | 0.80 | 0.75× | met |"),
            "{v}"
        );
        assert!(
            v.contains("| 1 KiB chat, deflate: CPU µs/msg ≤ 2 × better blind peer | 2.50 | 2.00 | 1.25× | **missed** |"),
            "{v}"
        );
        assert!(
            v.contains(
                "| idle, deflate offered: KiB RSS/conn ≤ without + 1 | 12.0 | 11.0 | 1.09× | **missed** |"
            ),
            "{v}"
        );
        assert!(
            v.contains("| soak, wss: CPU µs/msg | – | – | – | not measured |"),
            "{v}"
        );
    }

    #[test]
    fn per_gib_counts_error_free_bounds_and_the_flat_soak() {
        let mut r = Results::new();
        let mut put = |label: &str, scenario: &str, v: Value| {
            r.insert((label.into(), scenario.into()), v);
        };
        put(
            "haproxy",
            "idle-tls",
            serde_json::json!({"kib_per_conn_after_msg": 8.0, "errors": 0}),
        );
        put(
            "wsguard",
            "idle-tls",
            serde_json::json!({"kib_per_conn_after_msg": 16.0, "errors": 0}),
        );
        // A cheaper run that failed connections is no bound.
        put(
            "nginx",
            "churn",
            serde_json::json!({"cpu_us_per_conn": 50.0, "failed": 3, "errors": 3}),
        );
        put(
            "haproxy",
            "churn",
            serde_json::json!({"cpu_us_per_conn": 200.0, "failed": 0, "errors": 0}),
        );
        put(
            "wsguard",
            "churn",
            serde_json::json!({"cpu_us_per_conn": 150.0, "failed": 0, "errors": 0}),
        );
        put(
            "wsguard",
            "soak",
            serde_json::json!({"rss_ratio": 1.015, "lost": 0, "errors": 0}),
        );
        let t = table(&r);
        assert!(
            t.contains("| 5,000 idle, wss: conns per GiB after 1 msg each | – | – | – | 131,072 | 65,536 | – | – | **0.50×** |"),
            "{t}"
        );
        assert!(
            t.contains("| churn, wss, sessions resumed: conns failed | – | 3 ⚠ | – | 0 | 0 | – | **0.00×** | – |"),
            "{t}"
        );
        let v = verdicts(&r);
        assert!(
            v.contains("| churn, wss, resumed: CPU µs/conn | 150 | 200 | 0.75× | met |"),
            "{v}"
        );
        assert!(
            v.contains(
                "| idle, wss: KiB RSS/conn (after 1 msg) | 16.0 | 8.00 | 2.00× | **missed** |"
            ),
            "{v}"
        );
        assert!(
            v.contains("| soak, wss: RSS change, last 10 s vs first 10 s, % (0 lost) | 1.50 (0 lost) | ±2.00 | – | met |"),
            "{v}"
        );
    }
}
