// === Validation: raw structs → Config, collecting every problem ===

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::ops::{Range, RangeInclusive};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::error::{ConfigErrors, ConfigProblem, Lines};
use super::raw::{
    check_keys, strip_unknown, Field, Leaf, RawBackendFrames, RawConfig, RawFrames, RawLimits,
    RawRate,
};
use super::units::{format_duration, format_size, parse_duration, parse_size};
use super::*;

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

pub(super) struct Checker<'a> {
    pub(super) lines: &'a Lines,
    pub(super) problems: Vec<ConfigProblem>,
}

impl Checker<'_> {
    pub(super) fn report(&mut self, key: &str, span: Option<Range<usize>>, msg: impl Into<String>) {
        let line = span.map(|s| self.lines.line_of_span(&s));
        self.problems.push(ConfigProblem::new(key, line, msg));
    }

    pub(super) fn wrong_type(&mut self, key: &str, leaf: &Spanned<Leaf>, want: &str) {
        let found = leaf.get_ref().kind();
        self.report(
            key,
            Some(leaf.span()),
            format!("expected {want}, found {found}"),
        );
    }

    pub(super) fn mistyped<T>(&mut self, key: &str, leaf: &Spanned<Leaf>, want: &str) -> Option<T> {
        self.wrong_type(key, leaf, want);
        None
    }

    pub(super) fn string<'l>(
        &mut self,
        key: &str,
        leaf: &'l Spanned<Leaf>,
        want: &str,
    ) -> Option<&'l str> {
        match leaf.get_ref() {
            Leaf::Str(s) => Some(s),
            _ => {
                self.wrong_type(key, leaf, want);
                None
            }
        }
    }

    /// Apply `parse` to a string field, or return `default` when the key is absent.
    pub(super) fn parsed<T>(
        &mut self,
        key: &str,
        field: &Field,
        default: T,
        want: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let Some(leaf) = field else {
            return Some(default);
        };
        let s = self.string(key, leaf, want)?;
        parse(s)
            .map_err(|msg| self.report(key, Some(leaf.span()), msg))
            .ok()
    }

    fn addr(&mut self, key: &str, field: &Field, default: &str) -> Option<SocketAddr> {
        let default = default.parse().ok()?;
        Some(self.optional_addr(key, field)?.unwrap_or(default))
    }

    /// An IP address with a port; `Some(None)` when absent.
    fn optional_addr(&mut self, key: &str, field: &Field) -> Option<Option<SocketAddr>> {
        self.parsed(key, field, None, "an address like \"127.0.0.1:8443\"", |s| {
            s.parse().map(Some).map_err(|_| {
                format!("\"{s}\" is not an IP address with a port; write e.g. \"0.0.0.0:8443\" or \"[::]:8443\"")
            })
        })
    }

    pub(super) fn choice<T: Copy>(
        &mut self,
        key: &str,
        field: &Field,
        default: T,
        options: &[(&str, T)],
    ) -> Option<T> {
        let names: Vec<String> = options.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        let want = format!("one of {}", names.join(", "));
        self.parsed(key, field, default, &want, |s| {
            options
                .iter()
                .find(|(n, _)| *n == s)
                .map(|(_, v)| *v)
                .ok_or_else(|| format!("\"{s}\" is not allowed; use {want}"))
        })
    }

    /// A duration in 1ms..=5m, or `default` when absent.
    fn duration(&mut self, key: &str, field: &Field, default: Duration) -> Option<Duration> {
        self.duration_in(key, field, default, MIN_TIMEOUT..=MAX_TIMEOUT)
    }

    /// A duration within `range`, or `default` when absent.
    fn duration_in(
        &mut self,
        key: &str,
        field: &Field,
        default: Duration,
        range: RangeInclusive<Duration>,
    ) -> Option<Duration> {
        match self.duration_setting(key, field, range, false)? {
            Setting::Value(d) => Some(d),
            Setting::Absent | Setting::Off => Some(default),
        }
    }

    /// A duration within `range`; with `off_allowed`, also the string "off".
    fn duration_setting(
        &mut self,
        key: &str,
        field: &Field,
        range: RangeInclusive<Duration>,
        off_allowed: bool,
    ) -> Option<Setting<Duration>> {
        let Some(leaf) = field else {
            return Some(Setting::Absent);
        };
        let d = match leaf.get_ref() {
            Leaf::Str(s) if off_allowed && s == "off" => return Some(Setting::Off),
            Leaf::Int(n) => Err(format!("{n} has no unit; write e.g. \"{n}s\" or \"{n}ms\"")),
            Leaf::Str(s) => parse_duration(s),
            _ if off_allowed => {
                return self.mistyped(key, leaf, "a duration like \"10s\" or \"off\"")
            }
            _ => return self.mistyped(key, leaf, "a duration like \"10s\""),
        };
        let d = d.map_err(|m| self.report(key, Some(leaf.span()), m)).ok()?;
        if !range.contains(&d) {
            let (lo, hi) = (
                format_duration(*range.start()),
                format_duration(*range.end()),
            );
            let off = if off_allowed { ", or \"off\"" } else { "" };
            self.report(
                key,
                Some(leaf.span()),
                format!(
                    "{} is out of range; use {lo} to {hi}{off}",
                    format_duration(d)
                ),
            );
            return None;
        }
        Some(Setting::Value(d))
    }

    /// A size (integer bytes or "64 KiB") within `range`; `Some(None)` when absent.
    fn size(
        &mut self,
        key: &str,
        field: &Field,
        range: RangeInclusive<u64>,
    ) -> Option<Option<u64>> {
        let Some(leaf) = field else { return Some(None) };
        let n = match leaf.get_ref() {
            Leaf::Int(n) => {
                u64::try_from(*n).map_err(|_| format!("{n} is negative; sizes are bytes >= 0"))
            }
            Leaf::Str(s) => parse_size(s),
            _ => return self.mistyped(key, leaf, "a size like \"64 KiB\" or a number of bytes"),
        };
        let n = n.map_err(|m| self.report(key, Some(leaf.span()), m)).ok()?;
        if !range.contains(&n) {
            let lo = format_size(*range.start());
            let hi = match *range.end() {
                MAX_SIZE_LIMIT => "2^63-1 bytes".to_owned(),
                end => format_size(end),
            };
            let shown = if n == 0 {
                "0".to_owned()
            } else {
                format_size(n)
            };
            self.report(
                key,
                Some(leaf.span()),
                format!("{shown} is out of range; use {lo} to {hi}"),
            );
            return None;
        }
        Some(Some(n))
    }

    /// A plain integer count within `range`; `Some(None)` when absent.
    fn count(
        &mut self,
        key: &str,
        field: &Field,
        range: RangeInclusive<u64>,
    ) -> Option<Option<u64>> {
        let Some(leaf) = field else { return Some(None) };
        let Leaf::Int(n) = leaf.get_ref() else {
            self.wrong_type(key, leaf, "an integer");
            return None;
        };
        match u64::try_from(*n).ok().filter(|n| range.contains(n)) {
            Some(n) => Some(Some(n)),
            None => {
                let (lo, hi) = (range.start(), range.end());
                self.report(
                    key,
                    Some(leaf.span()),
                    format!("{n} is out of range; use {lo} to {hi}"),
                );
                None
            }
        }
    }

    /// A limit in 1..=`max` that may also be "off": an integer count, or with `size` a size
    /// ("1 MiB" or a number of bytes).
    fn limit(
        &mut self,
        key: &str,
        field: &Field,
        max: u32,
        size: bool,
    ) -> Option<Setting<NonZeroU32>> {
        let Some(leaf) = field else {
            return Some(Setting::Absent);
        };
        let n: i128 = match leaf.get_ref() {
            Leaf::Str(s) if s == "off" => return Some(Setting::Off),
            Leaf::Int(n) => i128::from(*n),
            Leaf::Str(s) if size => match parse_size(s) {
                Ok(n) => i128::from(n),
                Err(m) => {
                    let m = format!("{m}, or \"off\" for no limit");
                    self.report(key, Some(leaf.span()), m);
                    return None;
                }
            },
            Leaf::Str(s) => {
                let m = format!("\"{s}\" is not allowed; write a whole number (e.g. 100) or \"off\" for no limit");
                self.report(key, Some(leaf.span()), m);
                return None;
            }
            _ if size => {
                return self.mistyped(
                    key,
                    leaf,
                    "a size like \"1 MiB\", a number of bytes, or \"off\"",
                )
            }
            _ => return self.mistyped(key, leaf, "an integer or \"off\""),
        };
        if let Some(v) = u32::try_from(n)
            .ok()
            .filter(|v| *v <= max)
            .and_then(NonZeroU32::new)
        {
            return Some(Setting::Value(v));
        }
        let (shown, lo, hi) = if size {
            let shown = u64::try_from(n)
                .ok()
                .filter(|n| *n > 0)
                .map_or_else(|| n.to_string(), format_size);
            let hi = match max {
                MAX_RATE => "4294967295 B (4 GiB - 1 B)".to_owned(),
                m => format_size(u64::from(m)),
            };
            (shown, "1 B".to_owned(), hi)
        } else {
            (n.to_string(), "1".to_owned(), max.to_string())
        };
        self.report(
            key,
            Some(leaf.span()),
            format!("{shown} is out of range; use {lo} to {hi}, or \"off\" for no limit"),
        );
        None
    }

    /// A rate (see [`Checker::limit`]) and its burst, cross-checked.
    fn rate_pair(&mut self, p: &Pair<'_>) -> Option<(Option<NonZeroU32>, Option<NonZeroU32>)> {
        let (rate_key, burst_key) = (
            format!("{}.{}", p.section, p.rate_key),
            format!("{}.{}", p.section, p.burst_key),
        );
        let rate = self.limit(&rate_key, p.rate, p.max, p.size);
        let burst = self.limit(&burst_key, p.burst, p.max, p.size);
        let (rate, burst) = (rate?, burst?);
        let by_default = matches!(rate, Setting::Absent);
        let rate = match rate {
            Setting::Value(v) => Some(v),
            Setting::Off => None,
            Setting::Absent => p.default_rate.and_then(NonZeroU32::new),
        };
        let show = |n: NonZeroU32| {
            if p.size {
                format_size(u64::from(n.get()))
            } else {
                n.to_string()
            }
        };
        let the_default = if by_default { ", the default" } else { "" };
        let burst_span = p.burst.as_ref().map(|l| l.span());
        match (rate, burst) {
            (None, Setting::Absent | Setting::Off) => Some((None, None)),
            (None, Setting::Value(_)) => {
                let off = if by_default {
                    "off (the default)"
                } else {
                    "\"off\""
                };
                let msg = format!(
                    "is set but {rate_key} is {off}; set {rate_key} too, or remove {burst_key}"
                );
                self.report(&burst_key, burst_span, msg);
                None
            }
            (Some(r), Setting::Off) => {
                let msg = format!(
                    "\"off\" is only allowed when {rate_key} is \"off\" (here {}{the_default}); remove {burst_key} for the default ({}) or give a number",
                    show(r),
                    p.default_burst.describe(p.rate_key, p.size),
                );
                self.report(&burst_key, burst_span, msg);
                None
            }
            (Some(r), Setting::Absent) => Some((Some(r), Some(p.default_burst.apply(r)))),
            (Some(r), Setting::Value(b)) if p.cover && b < r => {
                let msg = format!(
                    "{} is smaller than {rate_key} ({}{the_default}); raise {burst_key} to at least {} or lower {rate_key}",
                    show(b),
                    show(r),
                    show(r),
                );
                self.report(&burst_key, burst_span, msg);
                None
            }
            (Some(r), Setting::Value(b)) => Some((Some(r), Some(b))),
        }
    }

    pub(super) fn list<'l>(
        &mut self,
        key: &str,
        field: &'l Field,
        want: &str,
    ) -> Option<&'l [Spanned<Leaf>]> {
        let Some(leaf) = field else { return Some(&[]) };
        match leaf.get_ref() {
            Leaf::List(items) => Some(items),
            _ => {
                self.wrong_type(key, leaf, want);
                None
            }
        }
    }

    // === sections ===

    fn config(
        &mut self,
        raw: &RawConfig,
        origin_name: &str,
        base: Option<&Path>,
    ) -> Option<Config> {
        let server = self.server(raw, base);
        let origin = self.origin(raw);
        let frames = self.frames(&raw.frames);
        let mask_key_policy = self.choice(
            "frames.mask_key_policy",
            &raw.frames.mask_key_policy,
            MaskKeyPolicy::Strict,
            &[
                ("strict", MaskKeyPolicy::Strict),
                ("rfc", MaskKeyPolicy::Rfc),
            ],
        );
        let backend_frames = self.backend_frames(&raw.backend_frames);
        let rate = self.rate("rate", &raw.rate, &RATE_DEFAULTS);
        let backend_rate = self.rate("backend_rate", &raw.backend_rate, &BACKEND_RATE_DEFAULTS);
        let limits = self.limits(&raw.limits);
        let routes = self.routes(&raw.route);
        let admin_listen = self.optional_addr("admin.listen", &raw.admin.listen);
        let d = &raw.demo;
        let backend_listen = self.addr(
            "demo.backend_listen",
            &d.backend_listen,
            DEFAULT_DEMO_BACKEND_LISTEN,
        );
        let page_listen = self.addr("demo.page_listen", &d.page_listen, DEFAULT_DEMO_PAGE_LISTEN);
        let server = server?;
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
            routes: routes?,
            admin,
            demo: DemoConfig {
                backend_listen: backend_listen?,
                page_listen: page_listen?,
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
        let head = self.size(
            "server.max_request_head",
            &s.max_request_head,
            MIN_MAX_REQUEST_HEAD..=MAX_MAX_REQUEST_HEAD,
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
        let mut path = |name: &str, field: &Field| -> Option<Option<PathBuf>> {
            let Some(leaf) = field else { return Some(None) };
            let s = self.string(name, leaf, "a file path")?;
            if s.trim().is_empty() {
                let msg = "is empty; give a PEM file path, or remove both tls_cert and tls_key for plain ws://";
                self.report(name, Some(leaf.span()), msg);
                return None;
            }
            let p = Path::new(s);
            Some(Some(match base {
                Some(dir) if p.is_relative() => dir.join(p),
                _ => p.to_path_buf(),
            }))
        };
        let c = path("server.tls_cert", cert);
        let k = path("server.tls_key", key);
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

    fn origin(&mut self, raw: &RawConfig) -> Option<OriginConfig> {
        let o = &raw.origin;
        let mut ok = true;
        let mut allow = Vec::new();
        let mut allow_lines = Vec::new();
        for (i, item) in self
            .list("origin.allow", &o.allow, "an array of origins")?
            .iter()
            .enumerate()
        {
            match self.string(
                &format!("origin.allow[{i}]"),
                item,
                "an origin string like \"https://chat.example.com\"",
            ) {
                Some(s) => {
                    allow.push(s.to_owned());
                    allow_lines.push(self.lines.line_of_span(&item.span()));
                }
                None => ok = false,
            }
        }
        let allow_missing = match &o.allow_missing {
            None => Some(false),
            Some(leaf) => match leaf.get_ref() {
                Leaf::Bool(b) => Some(*b),
                _ => self.mistyped("origin.allow_missing", leaf, "true or false"),
            },
        };
        let mode = self.choice(
            "origin.mode",
            &o.mode,
            OriginMode::Enforce,
            &[
                ("enforce", OriginMode::Enforce),
                ("report", OriginMode::Report),
            ],
        );
        ok.then_some(OriginConfig {
            allow,
            allow_lines,
            allow_missing: allow_missing?,
            mode: mode?,
        })
    }

    fn frames(&mut self, f: &RawFrames) -> Option<FrameLimits> {
        let frame = self.size(
            "frames.max_frame_size",
            &f.max_frame_size,
            1..=MAX_SIZE_LIMIT,
        );
        let message = self.size(
            "frames.max_message_size",
            &f.max_message_size,
            1..=MAX_SIZE_LIMIT,
        );
        let fragments = self.count(
            "frames.max_fragments",
            &f.max_fragments,
            1..=MAX_MAX_FRAGMENTS,
        );
        let limits = FrameLimits {
            max_frame_size: Some(frame?.unwrap_or(DEFAULT_MAX_FRAME_SIZE)),
            max_message_size: Some(message?.unwrap_or(DEFAULT_MAX_MESSAGE_SIZE)),
            max_fragments: Some(fragments?.unwrap_or(DEFAULT_MAX_FRAGMENTS)),
        };
        self.message_covers_frame("frames", &limits, &f.max_message_size, &f.max_frame_size)
            .then_some(limits)
    }

    fn backend_frames(&mut self, f: &RawBackendFrames) -> Option<FrameLimits> {
        let limits = FrameLimits {
            max_frame_size: self.size(
                "backend_frames.max_frame_size",
                &f.max_frame_size,
                1..=MAX_SIZE_LIMIT,
            )?,
            max_message_size: self.size(
                "backend_frames.max_message_size",
                &f.max_message_size,
                1..=MAX_SIZE_LIMIT,
            )?,
            max_fragments: self.count(
                "backend_frames.max_fragments",
                &f.max_fragments,
                1..=MAX_MAX_FRAGMENTS,
            )?,
        };
        self.message_covers_frame(
            "backend_frames",
            &limits,
            &f.max_message_size,
            &f.max_frame_size,
        )
        .then_some(limits)
    }

    fn rate(&mut self, section: &'static str, r: &RawRate, d: &RateDefaults) -> Option<RateConfig> {
        let times = |n| BurstDefault::Times(n);
        let messages = self.rate_pair(&Pair {
            section,
            rate_key: "messages_per_second",
            rate: &r.messages_per_second,
            burst_key: "burst",
            burst: &r.burst,
            default_rate: d.messages,
            default_burst: times(DEFAULT_BURST_FACTOR),
            cover: true,
            size: false,
            max: MAX_RATE,
        });
        let bytes = self.rate_pair(&Pair {
            section,
            rate_key: "bytes_per_second",
            rate: &r.bytes_per_second,
            burst_key: "burst_bytes",
            burst: &r.burst_bytes,
            default_rate: d.bytes,
            default_burst: times(DEFAULT_BURST_BYTES_FACTOR),
            cover: true,
            size: true,
            max: MAX_RATE,
        });
        let control = self.rate_pair(&Pair {
            section,
            rate_key: "control_per_second",
            rate: &r.control_per_second,
            burst_key: "control_burst",
            burst: &r.control_burst,
            default_rate: d.control,
            default_burst: times(DEFAULT_BURST_FACTOR),
            cover: true,
            size: false,
            max: MAX_RATE,
        });
        let on_limit = self.choice(
            &format!("{section}.on_limit"),
            &r.on_limit,
            d.on_limit,
            &[("close", OnLimit::Close), ("delay", OnLimit::Delay)],
        );
        let ((messages_per_second, burst), (bytes_per_second, burst_bytes)) = (messages?, bytes?);
        let (control_per_second, control_burst) = control?;
        Some(RateConfig {
            quota: FrameRateConfig {
                messages_per_second,
                burst,
                bytes_per_second,
                burst_bytes,
                control_per_second,
                control_burst,
            },
            on_limit: on_limit?,
        })
    }

    fn limits(&mut self, l: &RawLimits) -> Option<LimitsConfig> {
        let max_connections = self.count(
            "limits.max_connections",
            &l.max_connections,
            1..=u64::from(MAX_MAX_CONNECTIONS),
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
        let tracked = self.count(
            "limits.max_tracked_ips",
            &l.max_tracked_ips,
            u64::from(MIN_MAX_TRACKED_IPS)..=u64::from(MAX_MAX_TRACKED_IPS),
        );
        let mut proxies_ok = true;
        let mut trusted_proxies = Vec::new();
        let mut trusted_proxies_lines = Vec::new();
        let items = self.list(
            "limits.trusted_proxies",
            &l.trusted_proxies,
            "an array of CIDRs or addresses",
        );
        for (i, item) in items.unwrap_or_default().iter().enumerate() {
            match self.string(
                &format!("limits.trusted_proxies[{i}]"),
                item,
                "a CIDR or address string like \"10.0.0.0/8\" or \"127.0.0.1\"",
            ) {
                Some(s) => {
                    trusted_proxies.push(s.to_owned());
                    trusted_proxies_lines.push(self.lines.line_of_span(&item.span()));
                }
                None => proxies_ok = false,
            }
        }
        let proxy_protocol = match &l.proxy_protocol {
            None => Some(false),
            Some(leaf) => match leaf.get_ref() {
                Leaf::Bool(b) => Some(*b),
                _ => self.mistyped("limits.proxy_protocol", leaf, "true or false"),
            },
        };
        if proxy_protocol == Some(true)
            && items.is_some()
            && proxies_ok
            && trusted_proxies.is_empty()
        {
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
        let max_connections = max_connections?.map_or(DEFAULT_MAX_CONNECTIONS, |n| n as u32);
        let max_tracked_ips = tracked?.map_or(DEFAULT_MAX_TRACKED_IPS, |n| n as u32);
        (items.is_some() && proxies_ok).then_some(LimitsConfig {
            max_connections,
            connections_per_ip,
            handshakes_per_ip,
            handshake_burst,
            max_tracked_ips,
            trusted_proxies,
            trusted_proxies_lines,
            proxy_protocol: proxy_protocol?,
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

/// A key that may be absent (use the default), "off", or a value.
#[derive(Debug, Clone, Copy)]
enum Setting<T> {
    Absent,
    Off,
    Value(T),
}

/// A rate key and its burst key, for [`Checker::rate_pair`].
struct Pair<'f> {
    section: &'static str,
    rate_key: &'static str,
    rate: &'f Field,
    burst_key: &'static str,
    burst: &'f Field,
    /// The rate when its key is absent; `None` = off.
    default_rate: Option<u32>,
    default_burst: BurstDefault,
    /// The burst must be >= the rate (both per second).
    cover: bool,
    /// Values are sizes ("1 MiB"), not counts.
    size: bool,
    max: u32,
}

/// The burst when its key is absent and its rate is on.
#[derive(Debug, Clone, Copy)]
enum BurstDefault {
    /// This many times the rate, at most `MAX_RATE`.
    Times(u32),
    Fixed(u32),
}

impl BurstDefault {
    fn apply(self, rate: NonZeroU32) -> NonZeroU32 {
        match self {
            BurstDefault::Times(n) => {
                rate.saturating_mul(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
            }
            BurstDefault::Fixed(n) => NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN),
        }
    }

    fn describe(self, rate_key: &str, size: bool) -> String {
        match self {
            BurstDefault::Times(n) => format!("{n} × {rate_key}"),
            BurstDefault::Fixed(n) if size => format_size(u64::from(n)),
            BurstDefault::Fixed(n) => n.to_string(),
        }
    }
}

/// Defaults of one rate section; `None` = off.
struct RateDefaults {
    messages: Option<u32>,
    bytes: Option<u32>,
    control: Option<u32>,
    on_limit: OnLimit,
}

const RATE_DEFAULTS: RateDefaults = RateDefaults {
    messages: Some(DEFAULT_RATE_MESSAGES),
    bytes: Some(DEFAULT_RATE_BYTES),
    control: Some(DEFAULT_RATE_CONTROL),
    on_limit: OnLimit::Close,
};

const BACKEND_RATE_DEFAULTS: RateDefaults = RateDefaults {
    messages: None,
    bytes: None,
    control: None,
    on_limit: OnLimit::Delay,
};
