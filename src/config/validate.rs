//! Validation: raw structs → [`Config`], collecting every problem. [`load`] runs the passes
//! (TOML syntax, unknown keys, serde, then the sections); this file owns the sections other
//! than rates and routes, and the checks across keys.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::DeTable;

use super::check::{Checker, Setting, Whole};
use super::error::{ConfigErrors, ConfigProblem, Lines};
use super::keys::{check_keys, strip_unknown};
use super::rates::{BurstDefault, Pair, BACKEND_RATE_DEFAULTS, RATE_DEFAULTS};
use super::raw::{Field, RawConfig, RawLimits, RawOrigin};
use super::units::{format_duration, format_size};
use super::*;
use crate::client_ip::{parse_network, TrustedProxies};
use crate::origin::{AllowEntry, AllowList};

/// `[frames]` keys that are absent: client frames are always bounded.
const CLIENT_FRAME_DEFAULTS: FrameLimits = FrameLimits {
    max_frame_size: Some(DEFAULT_MAX_FRAME_SIZE),
    max_message_size: Some(DEFAULT_MAX_MESSAGE_SIZE),
    max_fragments: Some(DEFAULT_MAX_FRAGMENTS),
};

pub(super) fn load(src: &str, origin_name: &str) -> Result<Config, ConfigErrors> {
    let lines = Lines::new(src);
    let fail = |problems: Vec<ConfigProblem>| ConfigErrors {
        source_name: origin_name.to_owned(),
        problems,
    };
    let serde_problem = |e: toml::de::Error, what: &str| {
        let line = e.span().map(|s| lines.line_of_span(&s));
        let msg = e.message().lines().collect::<Vec<_>>().join("; ");
        ConfigProblem::new("", line, format!("{what}: {msg}"))
    };
    let mut root =
        DeTable::parse(src).map_err(|e| fail(vec![serde_problem(e, "TOML syntax error")]))?;
    let mut unknown = check_keys(root.get_ref(), &lines);
    // Unknown keys are reported and removed; validation goes on with the rest.
    if !unknown.is_empty() && !strip_unknown(root.get_mut()) {
        return Err(fail(unknown));
    }
    let raw = match RawConfig::deserialize(toml::de::Deserializer::from(root)) {
        Ok(raw) => raw,
        Err(e) => {
            unknown.push(serde_problem(e, "invalid config"));
            return Err(fail(unknown));
        }
    };
    let base = Path::new(origin_name).parent();
    let mut c = Checker {
        lines: &lines,
        problems: unknown,
    };
    let config = c.config(&raw, origin_name, base);
    match config {
        Some(config) if c.problems.is_empty() => Ok(config),
        _ if c.problems.is_empty() => Err(fail(vec![ConfigProblem::new(
            "",
            None,
            "internal error: validation failed without a reason; please report this",
        )])),
        _ => {
            c.problems.sort_by_key(|p| p.line);
            Err(fail(c.problems))
        }
    }
}

impl Checker<'_> {
    fn config(
        &mut self,
        raw: &RawConfig,
        origin_name: &str,
        base: Option<&Path>,
    ) -> Option<Config> {
        let server = self.server(raw, base);
        let origin = self.origin(&raw.origin);
        let f = &raw.frames;
        let frames = self.frame_limits(
            "frames",
            [&f.max_frame_size, &f.max_message_size, &f.max_fragments],
            CLIENT_FRAME_DEFAULTS,
        );
        let mask_key_policy = self.choice(
            "frames.mask_key_policy",
            &f.mask_key_policy,
            MaskKeyPolicy::Strict,
            &[
                ("strict", MaskKeyPolicy::Strict),
                ("rfc", MaskKeyPolicy::Rfc),
            ],
        );
        let b = &raw.backend_frames;
        let backend_frames = self.frame_limits(
            "backend_frames",
            [&b.max_frame_size, &b.max_message_size, &b.max_fragments],
            FrameLimits::default(),
        );
        let rate = self.rate("rate", &raw.rate, &RATE_DEFAULTS);
        let backend_rate = self.rate("backend_rate", &raw.backend_rate, &BACKEND_RATE_DEFAULTS);
        let limits = self.limits(&raw.limits, base);
        let deflate = self.deflate(&raw.deflate);
        let http = self.http(&raw.http, limits.as_ref().map(|l| l.max_connections));
        let auth = self.auth_sections(&raw.auth, base);
        let routes = self.routes(&raw.route, &raw.auth.names());
        let auth_used = self.auth_used(&raw.auth, &raw.route);
        let admin_listen = self.optional_addr("admin.listen", &raw.admin.listen);
        let d = &raw.demo;
        let backend_listen = self.addr(
            "demo.backend_listen",
            &d.backend_listen,
            DEFAULT_DEMO_BACKEND_LISTEN,
        );
        let page_listen = self.addr("demo.page_listen", &d.page_listen, DEFAULT_DEMO_PAGE_LISTEN);
        let server = server?;
        if !auth_used {
            return None;
        }
        let admin = AdminConfig {
            listen: admin_listen?,
        };
        if let Some(a) = admin.listen {
            let s = server.listen;
            if a.port() == s.port()
                && (a.ip() == s.ip() || a.ip().is_unspecified() || s.ip().is_unspecified())
            {
                let by_default = if raw.server.listen.is_none() {
                    ", the default"
                } else {
                    ""
                };
                let msg = format!("\"{a}\" overlaps server.listen (\"{s}\"{by_default}); give the admin listener its own port, e.g. \"127.0.0.1:9091\"");
                let span = raw.admin.listen.as_ref().map(|l| l.span());
                self.report("admin.listen", span, msg);
                return None;
            }
        }
        Some(Config {
            source_name: origin_name.to_owned(),
            server,
            origin: origin?,
            frames: frames?,
            mask_key_policy: mask_key_policy?,
            backend_frames: backend_frames?,
            rate: rate?,
            backend_rate: backend_rate?,
            limits: limits?,
            deflate: deflate?,
            http: http?,
            routes: routes?,
            auth: auth?,
            admin,
            demo: DemoConfig {
                backend_listen: backend_listen?,
                page_listen: page_listen?,
                in_file: raw.demo.backend_listen.is_some() || raw.demo.page_listen.is_some(),
            },
        })
    }

    fn server(&mut self, raw: &RawConfig, base: Option<&Path>) -> Option<ServerConfig> {
        let s = &raw.server;
        let listen = self.addr("server.listen", &s.listen, DEFAULT_LISTEN);
        let tls = self.tls(&s.tls_cert, &s.tls_key, base);
        let handshake_timeout = self.duration(
            "server.handshake_timeout",
            &s.handshake_timeout,
            DEFAULT_HANDSHAKE_TIMEOUT,
        );
        let head = self.whole(
            "server.max_request_head",
            &s.max_request_head,
            MIN_MAX_REQUEST_HEAD..=MAX_MAX_REQUEST_HEAD,
            Whole::Size,
        );
        let connect = self.duration(
            "server.backend_connect_timeout",
            &s.backend_connect_timeout,
            DEFAULT_BACKEND_CONNECT_TIMEOUT,
        );
        let close = self.duration(
            "server.close_timeout",
            &s.close_timeout,
            DEFAULT_CLOSE_TIMEOUT,
        );
        let shutdown = self.duration_in(
            "server.shutdown_timeout",
            &s.shutdown_timeout,
            DEFAULT_SHUTDOWN_TIMEOUT,
            MIN_TIMEOUT..=MAX_SHUTDOWN_TIMEOUT,
        );
        let idle = self.duration_in(
            "server.idle_timeout",
            &s.idle_timeout,
            DEFAULT_IDLE_TIMEOUT,
            MIN_IDLE_TIMEOUT..=MAX_IDLE_TIMEOUT,
        );
        let ping = self.duration_setting(
            "server.ping_interval",
            &s.ping_interval,
            MIN_PING_INTERVAL..=MAX_PING_INTERVAL,
            true,
        );
        let pong = self.duration("server.pong_timeout", &s.pong_timeout, DEFAULT_PONG_TIMEOUT);
        let (idle, ping) = (idle?, ping?);
        let ping_interval = match ping {
            Setting::Value(p) if p >= idle => {
                let by_default = if s.idle_timeout.is_none() {
                    ", the default"
                } else {
                    ""
                };
                let msg = format!(
                    "{} is not shorter than server.idle_timeout ({}{by_default}), so the idle close would always come first; lower server.ping_interval or raise server.idle_timeout",
                    format_duration(p),
                    format_duration(idle),
                );
                self.report(
                    "server.ping_interval",
                    s.ping_interval.as_ref().map(|l| l.span()),
                    msg,
                );
                return None;
            }
            Setting::Value(p) => Some(p),
            Setting::Absent | Setting::Off => None,
        };
        let (tls_cert, tls_key) = tls?;
        Some(ServerConfig {
            listen: listen?,
            tls_cert,
            tls_key,
            handshake_timeout: handshake_timeout?,
            max_request_head: head?.unwrap_or(DEFAULT_MAX_REQUEST_HEAD),
            backend_connect_timeout: connect?,
            close_timeout: close?,
            shutdown_timeout: shutdown?,
            idle_timeout: idle,
            ping_interval,
            pong_timeout: pong?,
        })
    }

    fn tls(
        &mut self,
        cert: &Field,
        key: &Field,
        base: Option<&Path>,
    ) -> Option<(Option<PathBuf>, Option<PathBuf>)> {
        let hint = "give a PEM file path, or remove both tls_cert and tls_key for plain ws://";
        let c = self.file("server.tls_cert", cert, base, hint);
        let k = self.file("server.tls_key", key, base, hint);
        match (c?, k?) {
            (Some(cert), Some(key)) => Some((Some(cert), Some(key))),
            (None, None) => Some((None, None)),
            (set, _) => {
                let (name, other, leaf) = if set.is_some() {
                    ("server.tls_cert", "tls_key", cert)
                } else {
                    ("server.tls_key", "tls_cert", key)
                };
                let msg = format!(
                    "is set but server.{other} is not; set both server.tls_cert and server.tls_key for TLS, or neither for plain ws://"
                );
                self.report(name, leaf.as_ref().map(|l| l.span()), msg);
                None
            }
        }
    }

    fn origin(&mut self, o: &RawOrigin) -> Option<OriginConfig> {
        let entries = self.each(
            "origin.allow",
            &o.allow,
            "an array of origins",
            "an origin string like \"https://chat.example.com\"",
            |s| s.parse::<AllowEntry>().map_err(|e| e.to_string()),
        );
        let allow_missing = self.boolean("origin.allow_missing", &o.allow_missing, false);
        let mode = self.choice(
            "origin.mode",
            &o.mode,
            OriginMode::Enforce,
            &[
                ("enforce", OriginMode::Enforce),
                ("report", OriginMode::Report),
            ],
        );
        Some(OriginConfig {
            allow: AllowList::new(entries?, allow_missing?),
            mode: mode?,
        })
    }

    /// One direction's size limits from its `max_frame_size`, `max_message_size` and
    /// `max_fragments` keys; an absent key takes its value from `defaults`.
    fn frame_limits(
        &mut self,
        section: &str,
        [frame, message, fragments]: [&Field; 3],
        defaults: FrameLimits,
    ) -> Option<FrameLimits> {
        let key = |k: &str| format!("{section}.{k}");
        let frame_size = self.whole(
            &key("max_frame_size"),
            frame,
            1..=MAX_SIZE_LIMIT,
            Whole::Size,
        );
        let message_size = self.whole(
            &key("max_message_size"),
            message,
            1..=MAX_SIZE_LIMIT,
            Whole::Size,
        );
        let fragment_count = self.whole(
            &key("max_fragments"),
            fragments,
            1..=MAX_MAX_FRAGMENTS,
            Whole::Count,
        );
        let limits = FrameLimits {
            max_frame_size: frame_size?.or(defaults.max_frame_size),
            max_message_size: message_size?.or(defaults.max_message_size),
            max_fragments: fragment_count?.or(defaults.max_fragments),
        };
        self.message_covers_frame(section, &limits, message, frame)
            .then_some(limits)
    }

    fn limits(&mut self, l: &RawLimits, base: Option<&Path>) -> Option<LimitsConfig> {
        let max_connections = self.whole(
            "limits.max_connections",
            &l.max_connections,
            1..=u64::from(MAX_MAX_CONNECTIONS),
            Whole::Count,
        );
        let per_ip = self.limit(
            "limits.connections_per_ip",
            &l.connections_per_ip,
            MAX_MAX_CONNECTIONS,
            false,
        );
        let handshakes = self.rate_pair(&Pair {
            section: "limits",
            rate_key: "handshakes_per_ip",
            rate: &l.handshakes_per_ip,
            burst_key: "handshake_burst",
            burst: &l.handshake_burst,
            default_rate: Some(DEFAULT_HANDSHAKES_PER_IP),
            default_burst: BurstDefault::Fixed(DEFAULT_HANDSHAKE_BURST),
            cover: false,
            size: false,
            max: MAX_MAX_CONNECTIONS,
        });
        let auth_failures = self.rate_pair(&Pair {
            section: "limits",
            rate_key: "auth_failures_per_ip",
            rate: &l.auth_failures_per_ip,
            burst_key: "auth_failure_burst",
            burst: &l.auth_failure_burst,
            default_rate: Some(DEFAULT_AUTH_FAILURES_PER_IP),
            default_burst: BurstDefault::Fixed(DEFAULT_AUTH_FAILURE_BURST),
            cover: false,
            size: false,
            max: MAX_MAX_CONNECTIONS,
        });
        let tracked = self.whole(
            "limits.max_tracked_ips",
            &l.max_tracked_ips,
            u64::from(MIN_MAX_TRACKED_IPS)..=u64::from(MAX_MAX_TRACKED_IPS),
            Whole::Count,
        );
        let networks = self.each(
            "limits.trusted_proxies",
            &l.trusted_proxies,
            "an array of CIDRs or addresses",
            "a CIDR or address string like \"10.0.0.0/8\" or \"127.0.0.1\"",
            parse_network,
        );
        let proxy_protocol = self.boolean("limits.proxy_protocol", &l.proxy_protocol, false);
        let shared = match &l.shared {
            None => Some(None),
            Some(s) => self.shared(s, base).map(Some),
        };
        if proxy_protocol == Some(true) && networks.as_ref().is_some_and(Vec::is_empty) {
            let msg = "is true but limits.trusted_proxies is empty; a PROXY header is believed only from trusted peers, so every connection would be refused. List your load balancers' addresses in limits.trusted_proxies (e.g. [\"10.0.0.0/8\"]) or set proxy_protocol = false";
            let span = l.proxy_protocol.as_ref().map(|l| l.span());
            self.report("limits.proxy_protocol", span, msg);
            return None;
        }
        let connections_per_ip = match per_ip? {
            Setting::Value(v) => Some(v),
            Setting::Off => None,
            Setting::Absent => NonZeroU32::new(DEFAULT_CONNECTIONS_PER_IP),
        };
        let (handshakes_per_ip, handshake_burst) = handshakes?;
        let (auth_failures_per_ip, auth_failure_burst) = auth_failures?;
        let shared = shared?;
        if shared.is_some() && connections_per_ip.is_none() && handshakes_per_ip.is_none() {
            let msg = "is set but limits.connections_per_ip and limits.handshakes_per_ip are both \"off\": there is nothing to share. Turn one on or remove [limits.shared]";
            let span = l.shared.as_ref().map(|s| s.span());
            self.report("limits.shared", span, msg);
            return None;
        }
        let max_connections = max_connections?.map_or(DEFAULT_MAX_CONNECTIONS, |n| n as u32);
        let max_tracked_ips = tracked?.map_or(DEFAULT_MAX_TRACKED_IPS, |n| n as u32);
        Some(LimitsConfig {
            max_connections,
            connections_per_ip,
            handshakes_per_ip,
            handshake_burst,
            max_tracked_ips,
            trusted_proxies: TrustedProxies::new(networks?),
            proxy_protocol: proxy_protocol?,
            shared,
            auth_failures_per_ip,
            auth_failure_burst,
        })
    }

    /// max_message_size >= max_frame_size, else one problem naming both keys.
    fn message_covers_frame(
        &mut self,
        section: &str,
        l: &FrameLimits,
        message: &Field,
        frame: &Field,
    ) -> bool {
        let (Some(m), Some(f)) = (l.max_message_size, l.max_frame_size) else {
            return true;
        };
        if m >= f {
            return true;
        }
        let (m, f) = (format_size(m), format_size(f));
        let (key, leaf, msg) = match message {
            Some(leaf) => (
                "max_message_size",
                Some(leaf),
                format!("{m} is smaller than {section}.max_frame_size ({f}); raise {section}.max_message_size or lower {section}.max_frame_size"),
            ),
            None => (
                "max_frame_size",
                frame.as_ref(),
                format!("{f} is larger than {section}.max_message_size ({m}, the default); set {section}.max_message_size to at least {f} or lower {section}.max_frame_size"),
            ),
        };
        self.report(&format!("{section}.{key}"), leaf.map(|l| l.span()), msg);
        false
    }
}
