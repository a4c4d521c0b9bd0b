// === Validation: raw structs → Config, collecting every problem ===

use std::net::SocketAddr;
use std::ops::{Range, RangeInclusive};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::error::{ConfigErrors, ConfigProblem, Lines};
use super::raw::{check_keys, Field, Leaf, RawBackendFrames, RawConfig, RawFrames};
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
    let root =
        DeTable::parse(src).map_err(|e| fail(vec![serde_problem(e, "TOML syntax error")]))?;
    let unknown = check_keys(root.get_ref(), &lines);
    if !unknown.is_empty() {
        return Err(fail(unknown));
    }
    let raw = RawConfig::deserialize(toml::de::Deserializer::from(root))
        .map_err(|e| fail(vec![serde_problem(e, "invalid config")]))?;
    let base = Path::new(origin_name).parent();
    let mut c = Checker {
        lines: &lines,
        problems: Vec::new(),
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
        self.parsed(key, field, default, "an address like \"127.0.0.1:8443\"", |s| {
            s.parse().map_err(|_| {
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

    fn duration(&mut self, key: &str, field: &Field, default: Duration) -> Option<Duration> {
        let range = MIN_TIMEOUT..=MAX_TIMEOUT;
        let Some(leaf) = field else {
            return Some(default);
        };
        let d = match leaf.get_ref() {
            Leaf::Int(n) => Err(format!("{n} has no unit; write e.g. \"{n}s\" or \"{n}ms\"")),
            Leaf::Str(s) => parse_duration(s),
            _ => return self.mistyped(key, leaf, "a duration like \"10s\""),
        };
        let d = d.map_err(|m| self.report(key, Some(leaf.span()), m)).ok()?;
        if !range.contains(&d) {
            let (lo, hi) = (
                format_duration(*range.start()),
                format_duration(*range.end()),
            );
            self.report(
                key,
                Some(leaf.span()),
                format!("{} is out of range; use {lo} to {hi}", format_duration(d)),
            );
            return None;
        }
        Some(d)
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
        let routes = self.routes(&raw.route);
        let d = &raw.demo;
        let backend_listen = self.addr(
            "demo.backend_listen",
            &d.backend_listen,
            DEFAULT_DEMO_BACKEND_LISTEN,
        );
        let page_listen = self.addr("demo.page_listen", &d.page_listen, DEFAULT_DEMO_PAGE_LISTEN);
        Some(Config {
            source_name: origin_name.to_owned(),
            server: server?,
            origin: origin?,
            frames: frames?,
            mask_key_policy: mask_key_policy?,
            backend_frames: backend_frames?,
            routes: routes?,
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
        let (tls_cert, tls_key) = tls?;
        Some(ServerConfig {
            listen: listen?,
            tls_cert,
            tls_key,
            handshake_timeout: handshake_timeout?,
            max_request_head: head?.unwrap_or(DEFAULT_MAX_REQUEST_HEAD),
            backend_connect_timeout: connect?,
            close_timeout: close?,
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
