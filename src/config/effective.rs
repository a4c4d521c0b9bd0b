// === Effective settings as TOML, every default filled in (for `wsguard check`) ===

use std::fmt::Write;

use super::units::{format_duration, format_size};
use super::{Config, FrameLimits};

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

    let org = &c.origin;
    let _ = writeln!(o, "\n[origin]\nallow = {}", list(org.allow.iter().cloned()));
    let _ = writeln!(o, "allow_missing = {}", org.allow_missing);
    let _ = writeln!(o, "mode = {}", q(&org.mode.to_string()));

    o.push_str("\n[frames]\n");
    limits(&mut o, &c.frames);
    let _ = writeln!(o, "mask_key_policy = {}", q(&c.mask_key_policy.to_string()));
    o.push_str("\n[backend_frames]\n");
    limits(&mut o, &c.backend_frames);

    for r in &c.routes {
        let _ = writeln!(o, "\n[[route]]\npath = {}", q(&r.path));
        let _ = writeln!(o, "match = {}", q(&r.path_match.to_string()));
        let _ = writeln!(
            o,
            "backends = {}",
            list(r.backends.iter().map(|b| b.to_string()))
        );
        let _ = writeln!(o, "subprotocols = {}", list(r.subprotocols.iter().cloned()));
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
