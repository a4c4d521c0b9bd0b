//! Shipped configs load, invalid configs fail with their stated message, every problem is
//! reported at its line, and the effective settings parse back to the same settings.

use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::limits::{Heartbeats, DEFAULT_HEARTBEATS};

pub(super) const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");
pub(super) const MINIMAL: &str = "[[route]]\npath = \"/chat\"\nbackends = [\"127.0.0.1:9000\"]\n";

fn load(name: &str) -> Config {
    let path = Path::new(MANIFEST).join("config").join(name);
    Config::from_file(&path).unwrap_or_else(|e| panic!("{name} must load:\n{e}"))
}

pub(super) fn errors(src: &str) -> String {
    Config::from_str(src, "t.toml")
        .expect_err("must fail")
        .to_string()
}

/// One problem per line, in this order, each starting with its expected text.
fn assert_lines_start_with(err: &str, expected: &[&str]) {
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{err}");
    for (got, want) in lines.iter().zip(expected) {
        assert!(got.starts_with(want), "got: {got}\nwant: {want}");
    }
}

#[test]
fn shipped_wsguard_toml_loads() {
    let c = load("wsguard.toml");
    assert_eq!(c.server.listen, "127.0.0.1:8443".parse().unwrap());

    assert_eq!(
        c.server.tls_cert.clone().unwrap(),
        Path::new(MANIFEST).join("config/../certs/localhost.crt")
    );
    assert_eq!(
        c.server.tls_key.clone().unwrap(),
        Path::new(MANIFEST).join("config/../certs/localhost.key")
    );
    assert_eq!(
        c.origin.allow.entries().collect::<Vec<_>>(),
        ["http://localhost:8080", "http://127.0.0.1:8080"]
    );
    assert_eq!(
        c.route_for("/chat").unwrap().backends[0].to_string(),
        "127.0.0.1:9000"
    );
    assert_eq!(
        c.demo.page_listen,
        DEFAULT_DEMO_PAGE_LISTEN.parse().unwrap()
    );
    assert_eq!(c.admin.listen, Some("127.0.0.1:9091".parse().unwrap()));
    assert_eq!(c.rate.quota.messages_per_second, nz(DEFAULT_RATE_MESSAGES));
}

pub(super) fn nz(n: u32) -> Option<NonZeroU32> {
    NonZeroU32::new(n)
}

#[test]
fn shipped_conformance_toml_loads() {
    let c = load("conformance.toml");
    assert!(c.server.tls_cert.is_none() && c.server.tls_key.is_none());
    assert_eq!(c.mask_key_policy, MaskKeyPolicy::Strict);
    assert!(c.origin.allow.allows_missing());
    assert_eq!(c.frames.max_message_size, Some(20 << 20));
    assert_eq!(c.frames.max_fragments, Some(1_000_000));
    assert!(c.route_for("/runCase?case=1&agent=x").is_some());
    let r = c.rate.quota;
    for (name, v) in [
        ("messages_per_second", r.messages_per_second),
        ("burst", r.burst),
        ("bytes_per_second", r.bytes_per_second),
        ("burst_bytes", r.burst_bytes),
        ("control_per_second", r.control_per_second),
        ("control_burst", r.control_burst),
    ] {
        assert_eq!(v, None, "conformance.toml [rate] {name} must be off");
    }
    assert_eq!(c.limits.handshakes_per_ip, None);
}

#[test]
fn shipped_example_toml_loads_and_sets_every_key() {
    let c = load("example.toml");
    assert_eq!(c.routes.len(), 3);
    assert_eq!(
        c.routes[2].http.and_then(|h| h.framework),
        Some(super::Framework::SocketIo)
    );
    assert_eq!(c.backend_frames.max_fragments, Some(100_000));
    assert_eq!(
        c.routes[1].backends[0],
        Backend {
            host: "::1".into(),
            port: 9100
        }
    );
    // Every section and key the schema knows appears in example.toml.
    let text = std::fs::read_to_string(Path::new(MANIFEST).join("config/example.toml")).unwrap();
    for (section, keys) in raw::SCHEMA {
        if *section == "auth" {
            continue; // commented out, below
        }
        let header = match *section {
            "route" => "[[route]]".to_owned(),
            s => format!("[{s}]"),
        };
        let start = text
            .find(&format!("\n{header}\n"))
            .unwrap_or_else(|| panic!("example.toml lacks {header}"));
        let body = text[start + header.len() + 1..]
            .split("\n[")
            .next()
            .unwrap_or_default();
        for key in *keys {
            // A route's auth keys are commented out with the sections they name; the first
            // route shows `framework` commented out, the last one sets it.
            let commented =
                *section == "route" && ["auth", "keep_token", "framework"].contains(key);
            assert!(
                body.contains(&format!("\n{key} = "))
                    || nested(section, key)
                    || commented && body.contains(&format!("\n# {key} = ")),
                "example.toml lacks {key} in {header}"
            );
        }
    }
    // The [auth.NAME] sections are commented out (they need key files or a service); between
    // them they show every key.
    let auth: String = text
        .split("\n\n")
        .filter(|block| block.contains("\n# [auth."))
        .collect();
    let (_, keys) = raw::SCHEMA.iter().find(|(s, _)| *s == "auth").unwrap();
    for key in *keys {
        assert!(
            auth.contains(&format!("\n# {key} = ")),
            "example.toml lacks {key} in a # [auth.NAME] section"
        );
    }
    // Tables inside sections are shown commented out (they need a server of their own).
    for (section, tables) in raw::NESTED {
        for (table, keys) in *tables {
            let header = format!("# [{section}.{table}]");
            let start = text
                .find(&format!("\n{header}\n"))
                .unwrap_or_else(|| panic!("example.toml lacks {header}"));
            let body = text[start..].split("\n\n").next().unwrap_or_default();
            for key in *keys {
                assert!(
                    body.contains(&format!("\n# {key} = ")),
                    "example.toml lacks {key} in {header}"
                );
            }
        }
    }
}

fn nested(section: &str, key: &str) -> bool {
    raw::NESTED
        .iter()
        .any(|(s, tables)| *s == section && tables.iter().any(|(t, _)| *t == key))
}

#[test]
fn invalid_configs_fail_with_their_stated_message() {
    let dir = Path::new(MANIFEST).join("tests/invalid-configs");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| {
                panic!("{} lacks a first-line `# expect: ` comment", path.display())
            });
        let err = match Config::from_file(&path) {
            Ok(_) => panic!("{} loaded but must fail with: {expect}", path.display()),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(expect),
            "{}:\n  expected: {expect}\n  got: {err}",
            path.display()
        );
        count += 1;
    }
    assert!(count >= 12, "only {count} invalid configs found");
}

#[test]
fn defaults_fill_in() {
    let c = Config::from_str(MINIMAL, "t.toml").unwrap();
    assert_eq!(c.server.listen, DEFAULT_LISTEN.parse().unwrap());
    assert_eq!((&c.server.tls_cert, &c.server.tls_key), (&None, &None));
    assert_eq!(c.server.handshake_timeout, DEFAULT_HANDSHAKE_TIMEOUT);
    assert_eq!(c.server.max_request_head, DEFAULT_MAX_REQUEST_HEAD);
    assert_eq!(c.frames.max_frame_size, Some(DEFAULT_MAX_FRAME_SIZE));
    assert_eq!(c.frames.max_message_size, Some(DEFAULT_MAX_MESSAGE_SIZE));
    assert_eq!(c.frames.max_fragments, Some(DEFAULT_MAX_FRAGMENTS));
    assert_eq!(c.mask_key_policy, MaskKeyPolicy::Strict);
    assert_eq!(c.backend_frames, FrameLimits::default());
    assert_eq!(c.origin.mode, OriginMode::Enforce);
    assert!(!c.origin.allow.allows_missing());
    assert_eq!(c.routes[0].path_match, PathMatch::Exact);
    let s = &c.server;
    assert_eq!(s.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
    assert_eq!(s.idle_timeout, DEFAULT_IDLE_TIMEOUT);
    assert_eq!(s.ping_interval, None);
    assert_eq!(s.pong_timeout, DEFAULT_PONG_TIMEOUT);
    assert_eq!(c.admin.listen, None);
    assert_eq!(
        c.rate,
        RateConfig {
            quota: FrameRateConfig {
                messages_per_second: nz(100),
                burst: nz(1000),
                bytes_per_second: nz(1 << 20),
                burst_bytes: nz(4 << 20),
                control_per_second: nz(20),
                control_burst: nz(40),
            },
            on_limit: OnLimit::Close,
            heartbeats: Heartbeats::new(DEFAULT_HEARTBEATS),
        }
    );
    assert_eq!(
        c.backend_rate,
        RateConfig {
            quota: FrameRateConfig::default(),
            on_limit: OnLimit::Delay,
            heartbeats: Heartbeats::new(DEFAULT_HEARTBEATS),
        }
    );
    let l = &c.limits;
    assert_eq!(l.max_connections, 10_000);
    assert_eq!(l.connections_per_ip, nz(256));
    assert_eq!((l.handshakes_per_ip, l.handshake_burst), (nz(600), nz(200)));
    assert_eq!(l.max_tracked_ips, 100_000);
    assert!(l.trusted_proxies.is_empty());
    assert!(!l.proxy_protocol);
}

#[test]
fn rates_bursts_and_off() {
    // A burst defaults to its factor times an explicit rate; "off" turns a rate off.
    let src = "[rate]\nmessages_per_second = 500\nbytes_per_second = \"off\"\ncontrol_per_second = 5\ncontrol_burst = 5\n[backend_rate]\nbytes_per_second = 2048\non_limit = \"close\"\n".to_owned() + MINIMAL;
    let c = Config::from_str(&src, "t.toml").unwrap();
    assert_eq!(
        (c.rate.quota.messages_per_second, c.rate.quota.burst),
        (nz(500), nz(5000))
    );
    assert_eq!(
        (c.rate.quota.bytes_per_second, c.rate.quota.burst_bytes),
        (None, None)
    );
    assert_eq!(c.rate.quota.control_burst, nz(5));
    assert_eq!(c.backend_rate.quota.burst_bytes, nz(8192));
    assert_eq!(c.backend_rate.on_limit, OnLimit::Close);
    // The default burst saturates at the largest value rather than overflowing.
    let src = "[rate]\nbytes_per_second = \"2 GiB\"\n".to_owned() + MINIMAL;
    let c = Config::from_str(&src, "t.toml").unwrap();
    assert_eq!(c.rate.quota.burst_bytes, nz(u32::MAX));

    let err = errors(&("[rate]\nburst = 50\n".to_owned() + MINIMAL));
    assert!(err.contains("t.toml:2: rate.burst: 50 is smaller than rate.messages_per_second (100, the default); raise rate.burst to at least 100"), "{err}");
    let err = errors(&("[rate]\nmessages_per_second = \"off\"\nburst = 50\n".to_owned() + MINIMAL));
    assert!(err.contains("t.toml:3: rate.burst: is set but rate.messages_per_second is \"off\"; set rate.messages_per_second too, or remove rate.burst"), "{err}");
    let err = errors(&("[rate]\nburst_bytes = \"off\"\n".to_owned() + MINIMAL));
    assert!(err.contains("t.toml:2: rate.burst_bytes: \"off\" is only allowed when rate.bytes_per_second is \"off\" (here 1 MiB, the default); remove rate.burst_bytes for the default (4 × bytes_per_second)"), "{err}");
    let err = errors(&("[rate]\nbytes_per_second = \"4 GiB\"\n".to_owned() + MINIMAL));
    assert!(err.contains("rate.bytes_per_second: 4 GiB is out of range; use 1 B to 4294967295 B (4 GiB - 1 B), or \"off\""), "{err}");
    let err = errors(&("[rate]\nbytes_per_second = \"1 MB\"\n".to_owned() + MINIMAL));
    assert!(err.contains("ambiguous"), "{err}");
    let err = errors(&("[rate]\ncontrol_per_second = \"20\"\n".to_owned() + MINIMAL));
    assert!(err.contains("rate.control_per_second: \"20\" is not allowed; write a whole number (e.g. 100) or \"off\""), "{err}");
    let err = errors(&("[backend_rate]\nmessages_per_second = -1\n".to_owned() + MINIMAL));
    assert!(
        err.contains("backend_rate.messages_per_second: -1 is out of range"),
        "{err}"
    );
    let err = errors(&("[rate]\nmessages_per_second = true\n".to_owned() + MINIMAL));
    assert!(
        err.contains("expected an integer or \"off\", found a boolean"),
        "{err}"
    );
}

#[test]
fn server_timeouts_ping_and_admin() {
    let src = "[server]\nshutdown_timeout = \"10m\"\nidle_timeout = \"24h\"\nping_interval = \"1h\"\npong_timeout = \"500ms\"\n[admin]\nlisten = \"[::1]:9091\"\n".to_owned() + MINIMAL;
    let c = Config::from_str(&src, "t.toml").unwrap();
    assert_eq!(c.server.shutdown_timeout, Duration::from_secs(600));
    assert_eq!(c.server.idle_timeout, Duration::from_secs(86_400));
    assert_eq!(c.server.ping_interval, Some(Duration::from_secs(3600)));
    assert_eq!(c.server.pong_timeout, Duration::from_millis(500));
    assert_eq!(c.admin.listen, Some("[::1]:9091".parse().unwrap()));
    let src = "[server]\nping_interval = \"off\"\n".to_owned() + MINIMAL;
    assert_eq!(
        Config::from_str(&src, "t.toml")
            .unwrap()
            .server
            .ping_interval,
        None
    );

    let err = errors(&("[server]\nidle_timeout = \"500ms\"\n".to_owned() + MINIMAL));
    assert!(
        err.contains("server.idle_timeout: 500ms is out of range; use 1s to 24h"),
        "{err}"
    );
    let err = errors(&("[server]\nping_interval = \"2h\"\n".to_owned() + MINIMAL));
    assert!(
        err.contains("server.ping_interval: 2h is out of range; use 1s to 1h, or \"off\""),
        "{err}"
    );
    let err = errors(&("[server]\nping_interval = \"5m\"\n".to_owned() + MINIMAL));
    assert!(err.contains("t.toml:2: server.ping_interval: 5m is not shorter than server.idle_timeout (5m, the default)"), "{err}");
    let err = errors(&("[server]\npong_timeout = \"10m\"\n".to_owned() + MINIMAL));
    assert!(
        err.contains("server.pong_timeout: 10m is out of range; use 1ms to 5m"),
        "{err}"
    );
    let err = errors(&("[admin]\nlisten = \"127.0.0.1:8443\"\n".to_owned() + MINIMAL));
    assert!(err.contains("t.toml:2: admin.listen: \"127.0.0.1:8443\" overlaps server.listen (\"0.0.0.0:8443\", the default)"), "{err}");
    let err = errors(&("[admin]\nlisten = \"localhost:9091\"\n".to_owned() + MINIMAL));
    assert!(
        err.contains("admin.listen: \"localhost:9091\" is not an IP address with a port"),
        "{err}"
    );
    let err = errors(&("[admin]\nlistn = \"127.0.0.1:9091\"\n".to_owned() + MINIMAL));
    assert!(
        err.contains("admin.listn: unknown key \"listn\" in [admin]; did you mean \"listen\"?"),
        "{err}"
    );
}

#[test]
fn limits_are_checked() {
    let src = "[limits]\nmax_connections = 1\nconnections_per_ip = \"off\"\nhandshakes_per_ip = 10\nhandshake_burst = 100\nmax_tracked_ips = 1000\ntrusted_proxies = [\n  \"10.0.0.0/8\",\n  \"::1/128\",\n]\nproxy_protocol = true\n".to_owned() + MINIMAL;
    let c = Config::from_str(&src, "t.toml").unwrap();
    let l = &c.limits;
    assert_eq!(l.max_connections, 1);
    assert_eq!(l.connections_per_ip, None);
    assert_eq!((l.handshakes_per_ip, l.handshake_burst), (nz(10), nz(100)));
    assert_eq!(l.max_tracked_ips, 1000);
    let networks: Vec<String> = l
        .trusted_proxies
        .networks()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(networks, ["10.0.0.0/8", "::1/128"]);
    assert!(l.proxy_protocol);
    let src = "[limits]\nhandshakes_per_ip = \"off\"\n".to_owned() + MINIMAL;
    let c = Config::from_str(&src, "t.toml").unwrap();
    assert_eq!(
        (c.limits.handshakes_per_ip, c.limits.handshake_burst),
        (None, None)
    );

    let err = errors(&("[limits]\nmax_connections = 0\nmax_tracked_ips = 999\nconnections_per_ip = 0\ntrusted_proxies = [\"10.0.0.0/8\", 7]\nproxy_protocol = \"yes\"\n".to_owned() + MINIMAL));
    let expected = [
        "t.toml:2: limits.max_connections: 0 is out of range; use 1 to 1000000",
        "t.toml:3: limits.max_tracked_ips: 999 is out of range; use 1000 to 10000000",
        "t.toml:4: limits.connections_per_ip: 0 is out of range; use 1 to 1000000, or \"off\"",
        "t.toml:5: limits.trusted_proxies[1]: expected a CIDR or address string",
        "t.toml:6: limits.proxy_protocol: expected true or false, found a string",
    ];
    assert_lines_start_with(&err, &expected);
    let err = errors(
        &("[limits]\nhandshakes_per_ip = \"off\"\nhandshake_burst = 5\n".to_owned() + MINIMAL),
    );
    assert!(
        err.contains(
            "t.toml:3: limits.handshake_burst: is set but limits.handshakes_per_ip is \"off\""
        ),
        "{err}"
    );
    let err =
        errors(&("[limits]\nproxy_protocol = true\ntrusted_proxies = []\n".to_owned() + MINIMAL));
    assert!(
        err.contains(
            "t.toml:2: limits.proxy_protocol: is true but limits.trusted_proxies is empty"
        ),
        "{err}"
    );
    let err = errors(&("[limits]\nburst = 5\n".to_owned() + MINIMAL));
    assert!(
        err.contains(
            "limits.burst: unknown key \"burst\" in [limits]; \"burst\" belongs in [rate]"
        ),
        "{err}"
    );
}

#[test]
fn error_names_the_line() {
    let src = "[server]\nlisten = \"127.0.0.1:8443\"\n\n[frames]\nmax_fragments = 10\n\nmax_frame_size = \"12 parsecs\"\n\n".to_owned() + MINIMAL;
    let err = errors(&src);
    assert!(
        err.starts_with("t.toml:7: frames.max_frame_size: unknown size unit \"parsecs\""),
        "{err}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let src = r#"
[server]
tls_key = "k.pem"
handshake_timeout = "0ms"

[frames]
max_frame_size = "2 MiB"
max_message_size = "1 MiB"

[origin]
mode = "loud"

[[route]]
path = "chat"
backends = ["127.0.0.1:9000", "[::1]", "x:0"]
"#;
    let err = errors(src);
    let expected = [
        "t.toml:3: server.tls_key: is set but server.tls_cert is not",
        "t.toml:4: server.handshake_timeout: 0ms is out of range",
        "t.toml:8: frames.max_message_size: 1 MiB is smaller than frames.max_frame_size (2 MiB)",
        "t.toml:11: origin.mode: \"loud\" is not allowed",
        "t.toml:14: route[0].path: \"chat\" must start with \"/\"",
        "t.toml:15: route[0].backends[1]: \"[::1]\" has no port",
        "t.toml:15: route[0].backends[2]: \"0\" in \"x:0\" is not a port",
    ];
    assert_lines_start_with(&err, &expected);
}

#[test]
fn all_unknown_keys_are_reported_with_suggestions() {
    let src = "[server]\nlistn = \"x\"\n[frames]\nmax_frame_sise = 1\n[[route]]\npath = \"/\"\nbackend = []\n";
    let err = errors(src);
    assert!(
        err.contains(
            "t.toml:2: server.listn: unknown key \"listn\" in [server]; did you mean \"listen\"?"
        ),
        "{err}"
    );
    assert!(
        err.contains("t.toml:4: frames.max_frame_sise: unknown key"),
        "{err}"
    );
    assert!(err.contains("t.toml:7: route[0].backend: unknown key \"backend\" in [[route]]; did you mean \"backends\"?"), "{err}");
}

#[test]
fn sizes_and_durations_accept_documented_forms() {
    let src = "[server]\nmax_request_head = 4096\nclose_timeout = \"500ms\"\nhandshake_timeout = \"5m\"\n[frames]\nmax_frame_size = \"16MiB\"\nmax_message_size = \"1 GiB\"\n".to_owned() + MINIMAL;
    let c = Config::from_str(&src, "t.toml").unwrap();
    assert_eq!(c.server.max_request_head, 4096);
    assert_eq!(c.server.close_timeout, Duration::from_millis(500));
    assert_eq!(c.server.handshake_timeout, Duration::from_secs(300));
    assert_eq!(c.frames.max_frame_size, Some(16 << 20));
    assert_eq!(c.frames.max_message_size, Some(1 << 30));
    let err = errors(&("[server]\nclose_timeout = 10\n".to_owned() + MINIMAL));
    assert!(err.contains("10 has no unit; write e.g. \"10s\""), "{err}");
    let err = errors(&("[server]\nmax_request_head = \"2 MiB\"\n".to_owned() + MINIMAL));
    assert!(
        err.contains("2 MiB is out of range; use 1 KiB to 1 MiB"),
        "{err}"
    );
}

#[test]
fn backend_frames_are_checked_when_set() {
    let src = "[backend_frames]\nmax_frame_size = \"2 MiB\"\nmax_message_size = \"1 MiB\"\n"
        .to_owned()
        + MINIMAL;
    assert!(errors(&src).contains("t.toml:3: backend_frames.max_message_size: 1 MiB is smaller than backend_frames.max_frame_size"));
    let src = "[frames]\nmax_frame_size = \"2 MiB\"\n".to_owned() + MINIMAL;
    assert!(errors(&src).contains("t.toml:2: frames.max_frame_size: 2 MiB is larger than frames.max_message_size (1 MiB, the default)"));
    let src = "[backend_frames]\nmax_frame_size = \"2 MiB\"\n".to_owned() + MINIMAL;
    let c = Config::from_str(&src, "t.toml").unwrap();
    assert_eq!(c.backend_frames.max_frame_size, Some(2 << 20));
    assert_eq!(c.backend_frames.max_message_size, None);
}

#[test]
fn routes_match_at_segment_boundaries() {
    let src = r#"
[[route]]
path = "/chat"
match = "prefix"
backends = ["a:1"]
[[route]]
path = "/chat/admin"
match = "prefix"
backends = ["b:1"]
[[route]]
path = "/chat/admin"
backends = ["c:1"]
[[route]]
path = "/files/"
match = "prefix"
backends = ["d:1"]
"#;
    let c = Config::from_str(src, "t.toml").unwrap();
    let host = |p: &str| c.route_for(p).map(|r| r.backends[0].host.as_str());
    assert_eq!(host("/chat"), Some("a"));
    assert_eq!(host("/chat/room?x=1"), Some("a"));
    assert_eq!(host("/chatroom"), None);
    assert_eq!(host("/chat/admin"), Some("c"), "exact beats prefix");
    assert_eq!(host("/chat/admin/x"), Some("b"), "longest prefix wins");
    assert_eq!(host("/chat/adminx"), Some("a"));
    assert_eq!(host("/files/a"), Some("d"));
    assert_eq!(host("/files"), None);
    assert_eq!(host("/chat/../admin"), None, "dot segments never match");
    assert_eq!(host("/chat/%2e%2e/admin"), None);
    assert_eq!(host("/other"), None);
}

#[test]
fn same_path_with_different_match_is_not_a_duplicate() {
    let src = "[[route]]\npath = \"/a\"\nbackends = [\"x:1\"]\n[[route]]\npath = \"/a\"\nmatch = \"prefix\"\nbackends = [\"x:1\"]\n";
    assert!(Config::from_str(src, "t.toml").is_ok());
}

#[test]
fn bad_origins_and_trusted_proxies_are_config_problems_at_their_lines() {
    let src = "[origin]\nallow = [\n  \"https://a.example\",\n\n  \"https://*.com\",\n  7,\n]\n[limits]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.1/8\",\n  \"::1/129\"]\n".to_owned()
        + MINIMAL;
    let err = errors(&src);
    let expected = [
        "t.toml:5: origin.allow[1]: \"https://*.com\": a wildcard over a whole top-level domain is too broad",
        "t.toml:6: origin.allow[2]: expected an origin string like \"https://chat.example.com\", found an integer",
        "t.toml:9: limits.trusted_proxies[1]: \"10.0.0.1/8\" has host bits set; write \"10.0.0.0/8\"",
        "t.toml:10: limits.trusted_proxies[2]: \"::1/129\": prefix length must be 0-128",
    ];
    assert_lines_start_with(&err, &expected);
}

#[test]
fn origins_and_trusted_proxies_are_parsed_once_and_printed_normalized() {
    let src = "[origin]\nallow = [\"HTTPS://Chat.Example.com:443\", \"https://chat.example.com\", \"null\"]\nallow_missing = true\n[limits]\ntrusted_proxies = [\" 127.0.0.1 \", \"::ffff:10.0.0.0/104\"]\n".to_owned()
        + MINIMAL;
    let c = Config::from_str(&src, "t.toml").unwrap();
    assert_eq!(c.origin.allow.check(&[b"https://chat.example.com"]), Ok(()));
    assert!(c.origin.allow.check(&[]).is_ok());
    assert!(c
        .limits
        .trusted_proxies
        .contains("10.1.2.3".parse().unwrap()));
    let text = c.to_effective_toml();
    for line in [
        "allow = [\"https://chat.example.com\", \"null\"]\nallow_missing = true\n",
        "trusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]\n",
    ] {
        assert!(text.contains(line), "lacks {line}:\n{text}");
    }
    assert_eq!(Config::from_str(&text, "t.toml"), Ok(c));
}

/// `[demo]` means something only to `wsguard demo`: printed when the file sets it.
#[test]
fn effective_toml_has_demo_only_when_the_file_sets_it() {
    let plain = Config::from_str(MINIMAL, "t.toml").unwrap();
    let text = plain.to_effective_toml();
    assert!(!text.contains("[demo]"), "{text}");
    assert_eq!(Config::from_str(&text, "t.toml"), Ok(plain));

    let src = "[demo]\npage_listen = \"127.0.0.1:8181\"\n".to_owned() + MINIMAL;
    let demo = Config::from_str(&src, "t.toml").unwrap();
    let text = demo.to_effective_toml();
    let section = format!(
        "[demo]\nbackend_listen = \"{DEFAULT_DEMO_BACKEND_LISTEN}\"\npage_listen = \"127.0.0.1:8181\"\n"
    );
    assert!(text.contains(&section), "{text}");
    assert_eq!(Config::from_str(&text, "t.toml"), Ok(demo));
}

#[test]
fn effective_toml_round_trips() {
    for name in ["wsguard.toml", "conformance.toml", "example.toml"] {
        let src = std::fs::read_to_string(Path::new(MANIFEST).join("config").join(name)).unwrap();
        let c = Config::from_str(&src, name).unwrap();
        let text = c.to_effective_toml();
        let again = Config::from_str(&text, name).unwrap_or_else(|e| panic!("{text}\n{e}"));
        assert_eq!(c, again, "{text}");
    }
    let text = Config::from_str(MINIMAL, "t.toml")
        .unwrap()
        .to_effective_toml();
    assert!(text.contains("max_frame_size = \"1 MiB\""), "{text}");
    assert!(text.contains("handshake_timeout = \"10s\""), "{text}");
    assert!(text.contains("# max_frame_size: unlimited"), "{text}");
    for line in [
        "shutdown_timeout = \"30s\"",
        "idle_timeout = \"5m\"",
        "ping_interval = \"off\"",
        "pong_timeout = \"10s\"",
        "# listen: not set (no admin listener)",
        "[rate]\nmessages_per_second = 100\nburst = 1000\nbytes_per_second = \"1 MiB\"\nburst_bytes = \"4 MiB\"\ncontrol_per_second = 20\ncontrol_burst = 40\non_limit = \"close\"\n",
        "[backend_rate]\nmessages_per_second = \"off\"\n# burst: off (messages_per_second is off)\n",
        "on_limit = \"delay\"",
        "[limits]\nmax_connections = 10000\nconnections_per_ip = 256\nhandshakes_per_ip = 600\nhandshake_burst = 200\nmax_tracked_ips = 100000\ntrusted_proxies = []\nproxy_protocol = false\n",
    ] {
        assert!(text.contains(line), "lacks {line}:\n{text}");
    }
    // Non-default values round-trip too.
    let src = "[server]\nping_interval = \"30s\"\n[admin]\nlisten = \"127.0.0.1:9091\"\n[rate]\nmessages_per_second = \"off\"\nbytes_per_second = 1000\non_limit = \"delay\"\n[backend_rate]\ncontrol_per_second = 3\n[limits]\nhandshakes_per_ip = \"off\"\nconnections_per_ip = \"off\"\ntrusted_proxies = [\"127.0.0.1\"]\nproxy_protocol = true\n".to_owned() + MINIMAL;
    let c = Config::from_str(&src, "t.toml").unwrap();
    let text = c.to_effective_toml();
    let again = Config::from_str(&text, "t.toml").unwrap_or_else(|e| panic!("{text}\n{e}"));
    assert_eq!(c, again, "{text}");
}

#[test]
fn backend_addresses() {
    let ok = |s: &str, h: &str, p: u16| {
        assert_eq!(
            Backend::parse(s),
            Ok(Backend {
                host: h.into(),
                port: p
            }),
            "{s}"
        )
    };
    ok("127.0.0.1:9000", "127.0.0.1", 9000);
    ok("chat.internal:80", "chat.internal", 80);
    ok("[::1]:9000", "::1", 9000);
    for bad in [
        "127.0.0.1",
        ":80",
        "a:0",
        "a:70000",
        "ws://a:1",
        "[::1:9000",
        "[zz]:1",
        "a b:1",
        "999.1.1.1:1",
        "-a:1",
    ] {
        assert!(Backend::parse(bad).is_err(), "{bad} must be refused");
    }
    assert_eq!(
        Backend {
            host: "::1".into(),
            port: 9
        }
        .to_string(),
        "[::1]:9"
    );
}

#[test]
fn missing_file_is_one_problem() {
    let err = Config::from_file(Path::new("/nonexistent/wsguard.toml")).unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert!(err
        .to_string()
        .starts_with("/nonexistent/wsguard.toml: cannot read the config file"));
}

#[test]
fn unknown_keys_do_not_hide_the_other_problems() {
    let src = "[frames]\nmax_frame_sise = \"1 KiB\"\n\n[[route]]\npath = \"x\"\nbackends = []\nbogus = 1\n";
    let expected = [
        "t.toml:2: frames.max_frame_sise: unknown key",
        "t.toml:5: route[0].path:",
        "t.toml:6: route[0].backends:",
        "t.toml:7: route[0].bogus: unknown key",
    ];
    assert_lines_start_with(&errors(src), &expected);
}

#[test]
fn shared_limits_section() {
    let src = "[limits]\nconnections_per_ip = 4\n\n[limits.shared]\nredis = \"redis://10.0.0.5:6379/2\"\npassword_file = \"secrets/redis\"\ntimeout = \"20ms\"\non_error = \"closed\"\nlease = \"9s\"\n".to_owned() + MINIMAL;
    let c = Config::from_str(&src, "/etc/wsguard/t.toml").unwrap();
    let shared = c.limits.shared.as_ref().expect("set");
    assert_eq!(shared.url, "redis://10.0.0.5:6379/2");
    assert_eq!(
        shared.password_file.as_deref(),
        Some(Path::new("/etc/wsguard/secrets/redis"))
    );
    assert_eq!(shared.key_prefix, "wsguard:");
    assert_eq!(shared.timeout, std::time::Duration::from_millis(20));
    assert_eq!(shared.on_error, crate::fleet::OnError::Closed);
    assert_eq!(shared.lease, std::time::Duration::from_secs(9));
    let text = c.to_effective_toml();
    assert!(text.contains("[limits.shared]\nredis = \"redis://10.0.0.5:6379/2\"\npassword_file = \"/etc/wsguard/secrets/redis\"\n# ca_file: not set\nkey_prefix = \"wsguard:\"\ntimeout = \"20ms\"\non_error = \"closed\"\nlease = \"9s\"\n"), "{text}");
    assert_eq!(Config::from_str(&text, "/etc/wsguard/t.toml"), Ok(c));
    // Defaults, and the line that says it is off.
    let c = Config::from_str(
        &("[limits.shared]\nredis = \"rediss://r.internal:6380\"\nca_file = \"ca.pem\"\n"
            .to_owned()
            + MINIMAL),
        "t.toml",
    )
    .unwrap();
    let shared = c.limits.shared.unwrap();
    assert_eq!(
        (shared.timeout, shared.on_error, shared.lease),
        (
            crate::fleet::DEFAULT_TIMEOUT,
            crate::fleet::OnError::Open,
            crate::fleet::DEFAULT_LEASE
        )
    );
    let text = Config::from_str(MINIMAL, "t.toml")
        .unwrap()
        .to_effective_toml();
    assert!(text.contains("# [limits.shared]: not set"), "{text}");
}

#[test]
fn shared_limits_problems_are_named() {
    let e = errors(&("[limits.shared]\nredis = \"redis://:hunter2@10.0.0.5:6379\"\nkey_prefix = \"a{b}\"\ntimeout = \"11s\"\non_error = \"maybe\"\nlease = \"1s\"\nca_file = \"ca.pem\"\ncolour = 1\n".to_owned() + MINIMAL));
    for want in [
        "t.toml:2: limits.shared.redis: carries a password; put it in a file",
        "t.toml:3: limits.shared.key_prefix: must be 1 to 64 printable ASCII characters",
        "t.toml:4: limits.shared.timeout: 11s is out of range; use 1ms to 10s",
        "t.toml:5: limits.shared.on_error: \"maybe\" is not allowed; use one of \"open\", \"closed\"",
        "t.toml:6: limits.shared.lease: 1s is out of range; use 3s to 1h",
        "t.toml:8: limits.shared.colour: unknown key \"colour\" in [limits.shared]",
    ] {
        assert!(e.contains(want), "lacks {want}:\n{e}");
    }
    assert!(!e.contains("hunter2"), "the password is echoed:\n{e}");
    let e = errors(&("[limits.shared]\ntimeout = \"5ms\"\n".to_owned() + MINIMAL));
    assert!(
        e.contains("limits.shared.redis: is required in [limits.shared]"),
        "{e}"
    );
    let e = errors(
        &("[limits.shared]\nredis = \"redis://127.0.0.1\"\nca_file = \"ca.pem\"\n".to_owned()
            + MINIMAL),
    );
    assert!(e.contains("t.toml:3: limits.shared.ca_file: is set but limits.shared.redis is not a rediss:// URL"), "{e}");
    let e = errors(&("[limits]\nconnections_per_ip = \"off\"\nhandshakes_per_ip = \"off\"\n[limits.shared]\nredis = \"redis://127.0.0.1\"\n".to_owned() + MINIMAL));
    assert!(e.contains("limits.shared: is set but limits.connections_per_ip and limits.handshakes_per_ip are both \"off\""), "{e}");
    let e = errors(&("[limits]\nshared = 3\n".to_owned() + MINIMAL));
    assert!(
        e.contains("t.toml:2: limits.shared: \"limits.shared\" must be a [limits.shared] section"),
        "{e}"
    );
    let e = errors(&("[limits.shared]\nredis = \"http://x\"\n".to_owned() + MINIMAL));
    assert!(
        e.contains("t.toml:2: limits.shared.redis: is not a Redis URL"),
        "{e}"
    );
}

#[test]
fn the_defaults_and_shipped_configs_warn_of_nothing() {
    let c = Config::from_str(MINIMAL, "t.toml").unwrap();
    assert_eq!(c.warnings(), Vec::<String>::new());
    for name in ["example.toml", "wsguard.toml", "conformance.toml"] {
        assert_eq!(load(name).warnings(), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn caps_below_what_the_stacks_send_are_warned_of_by_key() {
    let low = "[frames]\nmax_frame_size = \"64 KiB\"\nmax_message_size = \"512 KiB\"\n\
               [rate]\nburst = 200\n\
               [limits]\nconnections_per_ip = 50\nhandshake_burst = 60\n";
    let c = Config::from_str(&format!("{low}{MINIMAL}"), "t.toml").unwrap();
    let warnings = c.warnings();
    let keys: Vec<&str> = warnings
        .iter()
        .map(|w| w.split(" = ").next().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "frames.max_frame_size",
            "frames.max_message_size",
            "rate.burst",
            "limits.connections_per_ip",
            "limits.handshake_burst",
        ]
    );
    let bytes =
        format!("[rate]\nbytes_per_second = \"256 KiB\"\nburst_bytes = \"512 KiB\"\n{MINIMAL}");
    let warnings = Config::from_str(&bytes, "t.toml").unwrap().warnings();
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].starts_with("rate.burst_bytes = \"512 KiB\" is below frames.max_frame_size")
    );
    // Delay mode slows a flush down instead of refusing it: no burst warnings.
    let delay = format!("[rate]\nburst = 200\non_limit = \"delay\"\n{MINIMAL}");
    assert_eq!(
        Config::from_str(&delay, "t.toml").unwrap().warnings(),
        Vec::<String>::new()
    );
}
