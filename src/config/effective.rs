//! The effective settings as TOML, every default filled in (for `wsguard check`). What it
//! prints parses back to the same settings.

use std::fmt::Write;
use std::num::NonZeroU32;
use std::path::Path;

use super::units::{format_duration, format_size};
use super::{Config, FrameLimits, RateConfig};
use crate::auth::config::{algorithm_name, AuthConfig, AuthKind, ForwardConfig, JwtConfig};

fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A key as a one-line basic string, whatever it holds (a multi-line string is no key).
fn key(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            // Control characters are all below U+0100, so four hex digits hold them.
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
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
    let beats = rate.heartbeats.payloads();
    let beats = beats.map(|p| String::from_utf8_lossy(p).into_owned());
    let _ = writeln!(out, "heartbeats = {}", list(beats));
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
    let afi = "auth_failures_per_ip";
    let _ = writeln!(o, "{afi} = {}", on_off(l.auth_failures_per_ip, false));
    burst(
        &mut o,
        "auth_failure_burst",
        afi,
        l.auth_failure_burst,
        false,
    );
    match &l.shared {
        Some(sh) => {
            let _ = writeln!(o, "\n[limits.shared]\nredis = {}", q(&sh.url));
            optional(
                &mut o,
                "password_file",
                sh.password_file.as_deref().map(path),
                "not set",
            );
            optional(
                &mut o,
                "ca_file",
                sh.ca_file.as_deref().map(path),
                "not set",
            );
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

    http(&mut o, &c.http);

    if c.auth.is_empty() {
        o.push_str("\n# [auth.NAME]: none (every route is open)\n");
    }
    for a in &c.auth {
        auth(&mut o, a);
    }

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
        match r.auth.auth.and_then(|i| c.auth.get(i)) {
            Some(a) => {
                let _ = writeln!(o, "auth = {}", q(&a.name));
                let _ = writeln!(o, "keep_token = {}", r.auth.keep_token);
            }
            None => o.push_str("# auth: not set (open route)\n"),
        }
        let max_session = r
            .auth
            .max_session
            .map_or_else(|| "off".to_owned(), format_duration);
        let _ = writeln!(o, "max_session = {}", q(&max_session));
        match r.http {
            Some(h) => {
                if let Some(f) = h.framework {
                    let _ = writeln!(o, "framework = {}", q(f.name()));
                }
                let _ = writeln!(o, "http = true");
                let head = format_duration(h.head_timeout(&c.http));
                let _ = writeln!(o, "# answer heads of this route wait up to {head}");
            }
            None => o.push_str("http = false\n"),
        }
    }

    let d = &c.demo;
    if d.in_file {
        let _ = writeln!(
            o,
            "\n[demo]\nbackend_listen = {}",
            q(&d.backend_listen.to_string())
        );
        let _ = writeln!(o, "page_listen = {}", q(&d.page_listen.to_string()));
    }
    o
}

/// `key = value`, or a comment saying it is not set and what that means.
fn optional(out: &mut String, key: &str, value: Option<String>, unset: &str) {
    match value {
        Some(v) => writeln!(out, "{key} = {v}"),
        None => writeln!(out, "# {key}: {unset}"),
    }
    .ok();
}

fn path(p: &Path) -> String {
    q(&p.display().to_string())
}

fn auth(out: &mut String, a: &AuthConfig) {
    let kind = match a.kind {
        AuthKind::Jwt(_) => "jwt",
        AuthKind::Forward(_) => "forward",
    };
    let _ = writeln!(out, "\n[auth.{}]\ntype = {}", a.name, q(kind));
    let _ = writeln!(out, "grace = {}", q(&format_duration(a.grace)));
    match &a.kind {
        AuthKind::Jwt(j) => jwt(out, j),
        AuthKind::Forward(f) => forward(out, f),
    }
}

/// A JWT section: file paths only, never a key or a secret.
fn jwt(out: &mut String, j: &JwtConfig) {
    let s = &j.sources;
    optional(out, "cookie", s.cookie.as_deref().map(q), "not set");
    optional(out, "query", s.query.as_deref().map(q), "not set");
    let prefix = s.protocol_prefix.as_deref().map(q);
    optional(out, "protocol_prefix", prefix, "not set");
    let _ = writeln!(out, "bearer = {}", s.bearer);
    let algorithms = j.algorithms.iter().map(|a| algorithm_name(*a).to_owned());
    let _ = writeln!(out, "algorithms = {}", list(algorithms));
    let keys = j.public_keys.iter().map(|p| p.display().to_string());
    let _ = writeln!(out, "public_keys = {}", list(keys));
    let secret = j.hmac_secret_file.as_deref().map(path);
    optional(out, "hmac_secret_file", secret, "not set");
    match &j.jwks {
        Some(k) => {
            let _ = writeln!(out, "jwks_url = {}", q(&k.url));
            let ca = k.ca_file.as_deref().map(path);
            optional(out, "jwks_ca_file", ca, "not set (the system's roots)");
            let _ = writeln!(out, "jwks_refresh = {}", q(&format_duration(k.refresh)));
            let _ = writeln!(
                out,
                "jwks_min_refresh = {}",
                q(&format_duration(k.min_refresh))
            );
            let _ = writeln!(out, "jwks_timeout = {}", q(&format_duration(k.timeout)));
        }
        None => out.push_str("# jwks_url: not set\n"),
    }
    let not_empty = |v: &Vec<String>| (!v.is_empty()).then(|| list(v.iter().cloned()));
    optional(out, "issuer", not_empty(&j.issuers), "not checked");
    optional(out, "audience", not_empty(&j.audiences), "not checked");
    let _ = writeln!(out, "leeway = {}", q(&format_duration(j.leeway)));
    let _ = writeln!(out, "require_exp = {}", j.require_exp);
    let claims: Vec<String> = j
        .claim_headers
        .iter()
        .map(|(claim, header)| format!("{} = {}", key(claim), q(header.as_str())))
        .collect();
    if claims.is_empty() {
        out.push_str("claim_headers = {}\n");
    } else {
        let _ = writeln!(out, "claim_headers = {{ {} }}", claims.join(", "));
    }
}

fn forward(out: &mut String, f: &ForwardConfig) {
    let _ = writeln!(out, "url = {}", q(&f.url.to_string()));
    let ca = f.ca_file.as_deref().map(path);
    optional(out, "ca_file", ca, "not set (the system's roots)");
    let _ = writeln!(out, "timeout = {}", q(&format_duration(f.timeout)));
    let headers = f.copy_headers.iter().map(|h| h.as_str().to_owned());
    let _ = writeln!(out, "copy_headers = {}", list(headers));
    let _ = writeln!(out, "on_error = {}", q(&f.on_error.to_string()));
    match f.cache_ttl {
        Some(ttl) => {
            let _ = writeln!(out, "cache_ttl = {}", q(&format_duration(ttl)));
            let _ = writeln!(out, "cache_size = {}", f.cache_size);
        }
        None => out.push_str("cache_ttl = \"off\"\n# cache_size: no cache (cache_ttl is off)\n"),
    }
    let _ = writeln!(out, "expires_header = {}", q(f.expires_header.as_str()));
}

fn http(o: &mut String, h: &super::HttpConfig) {
    let count = |n| on_off(n, false);
    let _ = writeln!(
        o,
        "\n[http]\nresponse_head_timeout = {}",
        q(&format_duration(h.response_head_timeout))
    );
    let _ = writeln!(
        o,
        "body_idle_timeout = {}",
        q(&format_duration(h.body_idle_timeout))
    );
    let _ = writeln!(o, "max_duration = {}", q(&format_duration(h.max_duration)));
    let _ = writeln!(o, "max_request_body = {}", h.max_request_body);
    let _ = writeln!(
        o,
        "max_response_head = {}",
        q(&format_size(h.max_response_head))
    );
    let _ = writeln!(o, "access_log = {}", h.access_log);
    let _ = writeln!(o, "requests_per_ip = {}", count(h.requests_per_ip));
    let _ = writeln!(o, "request_burst = {}", count(h.request_burst));
    let _ = writeln!(
        o,
        "held_requests_per_ip = {}",
        count(h.held_requests_per_ip)
    );
    let _ = writeln!(o, "max_held_requests = {}", h.max_held_requests);
}
