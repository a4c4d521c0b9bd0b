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

/// Rows: scenario, JSON path of the metric, heading, lower is better.
const ROWS: [(&str, &str, &str, bool); 29] = [
    (
        "bin64",
        "msgs_per_s",
        "64 B binary, 64×16, ws: msgs/s",
        false,
    ),
    (
        "bin64",
        "cpu_us_per_msg",
        "64 B binary, 64×16, ws: CPU µs/msg",
        true,
    ),
    (
        "bin64-tls",
        "msgs_per_s",
        "64 B binary, 64×16, wss: msgs/s",
        false,
    ),
    (
        "bin64-tls",
        "cpu_us_per_msg",
        "64 B binary, 64×16, wss: CPU µs/msg",
        true,
    ),
    ("bin16k", "msgs_per_s", "16 KiB binary, 16×4: msgs/s", false),
    (
        "bin16k",
        "cpu_ms_per_mb",
        "16 KiB binary, 16×4: CPU ms/MB",
        true,
    ),
    ("text16k", "msgs_per_s", "16 KiB text, 16×4: msgs/s", false),
    (
        "text16k",
        "cpu_ms_per_mb",
        "16 KiB text, 16×4: CPU ms/MB",
        true,
    ),
    (
        "rate128",
        "msgs_per_s",
        "128 B text, 20k/s, 200 conns, ws: msgs/s",
        false,
    ),
    (
        "rate128",
        "cpu_us_per_msg",
        "128 B text, 20k/s, ws: CPU µs/msg",
        true,
    ),
    (
        "rate128",
        "latency_us.p50",
        "128 B text, 20k/s, ws: RTT p50 µs",
        true,
    ),
    (
        "rate128",
        "latency_us.p99",
        "128 B text, 20k/s, ws: RTT p99 µs",
        true,
    ),
    (
        "rate128",
        "latency_us.p999",
        "128 B text, 20k/s, ws: RTT p99.9 µs",
        true,
    ),
    (
        "rate128-tls",
        "cpu_us_per_msg",
        "128 B text, 20k/s, wss: CPU µs/msg",
        true,
    ),
    (
        "rate128-tls",
        "latency_us.p50",
        "128 B text, 20k/s, wss: RTT p50 µs",
        true,
    ),
    (
        "rate128-tls",
        "latency_us.p99",
        "128 B text, 20k/s, wss: RTT p99 µs",
        true,
    ),
    (
        "rate128-tls",
        "latency_us.p999",
        "128 B text, 20k/s, wss: RTT p99.9 µs",
        true,
    ),
    (
        "chat1k",
        "msgs_per_s",
        "1 KiB chat, deflate, 64×16: msgs/s",
        false,
    ),
    (
        "chat1k",
        "cpu_us_per_msg",
        "1 KiB chat, deflate, 64×16: CPU µs/msg",
        true,
    ),
    (
        "chat1k",
        "wire_out_bytes_per_msg",
        "1 KiB chat, deflate: wire B/msg to proxy",
        true,
    ),
    (
        "chat1k",
        "wire_in_bytes_per_msg",
        "1 KiB chat, deflate: wire B/msg from proxy",
        true,
    ),
    (
        "chat1k-rate",
        "cpu_us_per_msg",
        "1 KiB chat, deflate, 5k/s: CPU µs/msg",
        true,
    ),
    (
        "chat1k-rate",
        "latency_us.p99",
        "1 KiB chat, deflate, 5k/s: RTT p99 µs",
        true,
    ),
    (
        "chat1k-plain",
        "cpu_us_per_msg",
        "1 KiB chat, no offer, 64×16: CPU µs/msg",
        true,
    ),
    (
        "chat1k-plain",
        "wire_out_bytes_per_msg",
        "1 KiB chat, no offer: wire B/msg to proxy",
        true,
    ),
    (
        "idle",
        "kib_per_conn_open",
        "5,000 idle: KiB RSS/conn after upgrade",
        true,
    ),
    (
        "idle",
        "kib_per_conn_after_msg",
        "5,000 idle: KiB RSS/conn after 1 msg each",
        true,
    ),
    (
        "idle-deflate",
        "kib_per_conn_open",
        "5,000 idle, deflate offered: KiB RSS/conn after upgrade",
        true,
    ),
    (
        "idle-deflate",
        "kib_per_conn_after_msg",
        "5,000 idle, deflate offered: KiB RSS/conn after 1 msg each",
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

/// The better of nginx's two settings for a metric.
fn best_nginx(results: &Results, scenario: &str, path: &str, lower: bool) -> Option<f64> {
    let a = metric(results, "nginx", scenario, path);
    let b = metric(results, "nginx-64k", scenario, path);
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
    for (scenario, path, heading, lower) in ROWS {
        if PEERS
            .iter()
            .all(|(l, _)| metric(results, l, scenario, path).is_none())
        {
            continue;
        }
        let _ = write!(out, "| {heading} |");
        for (label, _) in PEERS {
            let cell = match metric(results, label, scenario, path) {
                Some(x) if has_errors(results, label, scenario) => format!("{} ⚠", fmt(x)),
                Some(x) => fmt(x),
                None => "–".to_owned(),
            };
            let _ = write!(out, " {cell} |");
        }
        let ws = metric(results, "wsguard", scenario, path);
        let ratio = |peer: Option<f64>| match (ws, peer) {
            (Some(w), Some(p)) if p > 0.0 => format!("**{:.2}×**", w / p),
            _ => "–".to_owned(),
        };
        let _ = writeln!(
            out,
            " {} | {} |",
            ratio(best_nginx(results, scenario, path, lower)),
            ratio(metric(results, "haproxy", scenario, path))
        );
    }
    out
}

/// The issues' targets: wsguard at most the better of nginx (either setting)
/// and HAProxy on each cost metric; 16 KiB text at most 1.2× binary;
/// inspected compressed chat at most `CHAT_CPU_FACTOR` × the better blind
/// peer; the deflate offer costs no idle memory.
pub fn verdicts(results: &Results) -> String {
    let mut out = String::from("| target | wsguard | bound | verdict |\n|---|---:|---:|---|\n");
    let checks: [(&str, &str, &str); 7] = [
        ("bin64", "cpu_us_per_msg", "64 B pipelined: CPU µs/msg"),
        ("bin16k", "cpu_ms_per_mb", "16 KiB binary: CPU ms/MB"),
        ("rate128", "cpu_us_per_msg", "20k msgs/s: CPU µs/msg"),
        ("rate128", "latency_us.p99", "20k msgs/s: RTT p99 µs"),
        (
            "idle",
            "kib_per_conn_open",
            "idle: KiB RSS/conn (after upgrade)",
        ),
        (
            "idle",
            "kib_per_conn_after_msg",
            "idle: KiB RSS/conn (after 1 msg)",
        ),
        (
            "bin64-tls",
            "cpu_us_per_msg",
            "64 B pipelined, wss: CPU µs/msg",
        ),
    ];
    let best_peer = |scenario: &str, path: &str| {
        [
            best_nginx(results, scenario, path, true),
            metric(results, "haproxy", scenario, path),
        ]
        .into_iter()
        .flatten()
        .reduce(f64::min)
    };
    for (scenario, path, name) in checks {
        let ws = metric(results, "wsguard", scenario, path);
        verdict_row(&mut out, name, ws, best_peer(scenario, path));
    }
    verdict_row(
        &mut out,
        "1 KiB chat, deflate: CPU µs/msg ≤ 2 × better blind peer",
        metric(results, "wsguard", "chat1k", "cpu_us_per_msg"),
        best_peer("chat1k", "cpu_us_per_msg").map(|b| CHAT_CPU_FACTOR * b),
    );
    verdict_row(
        &mut out,
        "1 KiB chat, deflate, 5k/s: CPU µs/msg ≤ 2 × better blind peer",
        metric(results, "wsguard", "chat1k-rate", "cpu_us_per_msg"),
        best_peer("chat1k-rate", "cpu_us_per_msg").map(|b| CHAT_CPU_FACTOR * b),
    );
    let path = "kib_per_conn_after_msg";
    verdict_row(
        &mut out,
        "idle, deflate offered: KiB RSS/conn ≤ without + 1",
        metric(results, "wsguard", "idle-deflate", path),
        metric(results, "wsguard", "idle", path).map(|b| b + IDLE_DEFLATE_SLACK_KIB),
    );
    let bin = metric(results, "wsguard", "bin16k", "cpu_ms_per_mb");
    let text = metric(results, "wsguard", "text16k", "cpu_ms_per_mb");
    verdict_row(
        &mut out,
        "16 KiB text: CPU ms/MB ≤ 1.2 × binary",
        text,
        bin.map(|b| 1.2 * b),
    );
    out
}

fn verdict_row(out: &mut String, name: &str, ws: Option<f64>, bound: Option<f64>) {
    let verdict = match (ws, bound) {
        (Some(w), Some(b)) if w <= b => "met",
        (Some(_), Some(_)) => "**missed**",
        _ => "not measured",
    };
    let show = |x: Option<f64>| x.map(fmt).unwrap_or_else(|| "–".into());
    let _ = writeln!(
        out,
        "| {name} | {} | {} | {verdict} |",
        show(ws),
        show(bound)
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
            v.contains("| 64 B pipelined: CPU µs/msg | 0.60 | 0.80 | met |"),
            "{v}"
        );
        assert!(
            v.contains("| 1 KiB chat, deflate: CPU µs/msg ≤ 2 × better blind peer | 2.50 | 2.00 | **missed** |"),
            "{v}"
        );
        assert!(
            v.contains(
                "| idle, deflate offered: KiB RSS/conn ≤ without + 1 | 12.0 | 11.0 | **missed** |"
            ),
            "{v}"
        );
    }
}
