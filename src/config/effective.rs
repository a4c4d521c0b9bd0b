//! The effective settings as TOML, every default filled in (for `wsguard check`). What it
//! prints parses back to the same settings.

use std::fmt::Write;

use super::units::{format_duration, format_size};
use std::num::NonZeroU32;

use super::{Config, FrameLimits, RateConfig};

fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    let items: Vec<String> = items.into_iter().map(|s| q(&s)).collect();
    format!("[{}]", items.join(", "))
}

fn limits(out: &mut String, l: &FrameLimits) {
    let size = |v: Option<u64>| v.map(|n| q(&format_size(n)));
    let rows = [
        ("max_frame_size", size(l.max_frame_size)),
        ("max_message_size", size(l.max_message_size)),
        ("max_fragments", l.max_fragments.map(|n| n.to_string())),
    ];
    for (key, value) in rows {
        match value {
            Some(v) => writeln!(out, "{key} = {v}"),
            None => writeln!(out, "# {key}: unlimited (not set)"),
        }
        .ok();
    }
}

/// A limit that may be "off".
fn on_off(n: Option<NonZeroU32>, size: bool) -> String {
    match n {
        None => q("off"),
        Some(n) if size => q(&format_size(u64::from(n.get()))),
        Some(n) => n.to_string(),
    }
}

/// A burst: printed only when its rate is on (validation keeps them both on or both off).
fn burst(out: &mut String, key: &str, rate_key: &str, n: Option<NonZeroU32>, size: bool) {
    match n {
        Some(_) => writeln!(out, "{key} = {}", on_off(n, size)),
        None => writeln!(out, "# {key}: off ({rate_key} is off)"),
    }
    .ok();
}

fn rate(out: &mut String, rate: &RateConfig) {
    let r = &rate.quota;
    let mps = "messages_per_second";
    let _ = writeln!(out, "{mps} = {}", on_off(r.messages_per_second, false));
    burst(out, "burst", mps, r.burst, false);
    let bps = "bytes_per_second";
    let _ = writeln!(out, "{bps} = {}", on_off(r.bytes_per_second, true));
    burst(out, "burst_bytes", bps, r.burst_bytes, true);
    let cps = "control_per_second";
    let _ = writeln!(out, "{cps} = {}", on_off(r.control_per_second, false));
    burst(out, "control_burst", cps, r.control_burst, false);
    let _ = writeln!(out, "on_limit = {}", q(&rate.on_limit.to_string()));
}

pub(super) fn render(c: &Config) -> String {
    let mut o = String::new();
    let s = &c.server;
    let _ = writeln!(o, "# effective settings of {}", c.source_name);
    let _ = writeln!(o, "[server]\nlisten = {}", q(&s.listen.to_string()));
    match (&s.tls_cert, &s.tls_key) {
        (Some(cert), Some(key)) => {
            let _ = writeln!(o, "tls_cert = {}", q(&cert.display().to_string()));
            let _ = writeln!(o, "tls_key = {}", q(&key.display().to_string()));
        }
        _ => o.push_str("# tls_cert, tls_key: not set (plain ws://)\n"),
    }
    let _ = writeln!(
        o,
        "handshake_timeout = {}",
        q(&format_duration(s.handshake_timeout))
    );
    let _ = writeln!(
        o,
        "max_request_head = {}",
        q(&format_size(s.max_request_head))
    );
    let _ = writeln!(
        o,
        "backend_connect_timeout = {}",
        q(&format_duration(s.backend_connect_timeout))
    );
    let _ = writeln!(
        o,
        "close_timeout = {}",
        q(&format_duration(s.close_timeout))
    );
    let _ = writeln!(
        o,
        "shutdown_timeout = {}",
        q(&format_duration(s.shutdown_timeout))
    );
    let _ = writeln!(o, "idle_timeout = {}", q(&format_duration(s.idle_timeout)));
    let ping = s
        .ping_interval
        .map_or_else(|| "off".to_owned(), format_duration);
    let _ = writeln!(o, "ping_interval = {}", q(&ping));
    let _ = writeln!(o, "pong_timeout = {}", q(&format_duration(s.pong_timeout)));

    o.push_str("\n[admin]\n");
    match c.admin.listen {
        Some(a) => writeln!(o, "listen = {}", q(&a.to_string())),
        None => writeln!(o, "# listen: not set (no admin listener)"),
    }
    .ok();

    let org = &c.origin;
    let _ = writeln!(o, "\n[origin]\nallow = {}", list(org.allow.entries()));
    let _ = writeln!(o, "allow_missing = {}", org.allow.allows_missing());
    let _ = writeln!(o, "mode = {}", q(&org.mode.to_string()));

    o.push_str("\n[frames]\n");
    limits(&mut o, &c.frames);
    let _ = writeln!(o, "mask_key_policy = {}", q(&c.mask_key_policy.to_string()));
    o.push_str("\n[backend_frames]\n");
    limits(&mut o, &c.backend_frames);

    o.push_str("\n[rate]\n");
    rate(&mut o, &c.rate);
    o.push_str("\n[backend_rate]\n");
    rate(&mut o, &c.backend_rate);

    let l = &c.limits;
    let _ = writeln!(o, "\n[limits]\nmax_connections = {}", l.max_connections);
    let _ = writeln!(
        o,
        "connections_per_ip = {}",
        on_off(l.connections_per_ip, false)
    );
    let hpi = "handshakes_per_ip";
    let _ = writeln!(o, "{hpi} = {}", on_off(l.handshakes_per_ip, false));
    burst(&mut o, "handshake_burst", hpi, l.handshake_burst, false);
    let _ = writeln!(o, "max_tracked_ips = {}", l.max_tracked_ips);
    let _ = writeln!(
        o,
        "trusted_proxies = {}",
        list(l.trusted_proxies.networks().iter().map(|n| n.to_string()))
    );
    let _ = writeln!(o, "proxy_protocol = {}", l.proxy_protocol);
    match &l.shared {
        Some(sh) => {
            let _ = writeln!(o, "\n[limits.shared]\nredis = {}", q(&sh.url));
            let path =
                |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| q(&p.display().to_string()));
            for (key, value) in [
                ("password_file", path(&sh.password_file)),
                ("ca_file", path(&sh.ca_file)),
            ] {
                match value {
                    Some(v) => writeln!(o, "{key} = {v}"),
                    None => writeln!(o, "# {key}: not set"),
                }
                .ok();
            }
            let _ = writeln!(o, "key_prefix = {}", q(&sh.key_prefix));
            let _ = writeln!(o, "timeout = {}", q(&format_duration(sh.timeout)));
            let _ = writeln!(o, "on_error = {}", q(&sh.on_error.to_string()));
            let _ = writeln!(o, "lease = {}", q(&format_duration(sh.lease)));
        }
        None => {
            o.push_str("# [limits.shared]: not set (per-IP limits count this instance alone)\n")
        }
    }

    let d = &c.deflate;
    let _ = writeln!(o, "\n[deflate]\nmode = {}", q(&d.mode.to_string()));
    let _ = writeln!(o, "context_takeover = {}", d.context_takeover);
    let _ = writeln!(o, "max_window_bits = {}", d.max_window_bits);
    let _ = writeln!(o, "inspect_backend = {}", d.inspect_backend);

    for r in &c.routes {
        let _ = writeln!(o, "\n[[route]]\npath = {}", q(&r.path));
        let _ = writeln!(o, "match = {}", q(&r.path_match.to_string()));
        let _ = writeln!(
            o,
            "backends = {}",
            list(r.backends.iter().map(|b| b.to_string()))
        );
        let _ = writeln!(o, "subprotocols = {}", list(r.subprotocols.iter().cloned()));
        if let Some(mode) = r.deflate {
            let _ = writeln!(o, "deflate = {}", q(&mode.to_string()));
        }
    }

    let d = &c.demo;
    let _ = writeln!(
        o,
        "\n[demo]\nbackend_listen = {}",
        q(&d.backend_listen.to_string())
    );
    let _ = writeln!(o, "page_listen = {}", q(&d.page_listen.to_string()));
    o
}
