//! The checker: the typed readers every section is built from (strings, choices, booleans,
//! addresses, sizes, durations, counts, limits that may be "off", lists). Each reports what is
//! wrong at the value's line and returns `None`, so a section can go on and report the rest.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::error::{ConfigProblem, Lines};
use super::raw::{Field, Leaf};
use super::units::{format_duration, format_size, parse_duration, parse_size};
use super::{MAX_RATE, MAX_SIZE_LIMIT, MAX_TIMEOUT, MIN_TIMEOUT};

/// Collects every problem found while a raw config is turned into a `Config`.
pub(super) struct Checker<'a> {
    pub(super) lines: &'a Lines,
    pub(super) problems: Vec<ConfigProblem>,
}

/// A key that may be absent (use the default), "off", or a value.
#[derive(Debug, Clone, Copy)]
pub(super) enum Setting<T> {
    Absent,
    Off,
    Value(T),
}

/// What a whole-number key holds, which decides how it is read and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Whole {
    /// Bytes: an integer, or a string with a binary unit ("64 KiB").
    Size,
    /// A plain integer.
    Count,
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

    pub(super) fn addr(&mut self, key: &str, field: &Field, default: &str) -> Option<SocketAddr> {
        let default = default.parse().ok()?;
        Some(self.optional_addr(key, field)?.unwrap_or(default))
    }

    /// An IP address with a port; `Some(None)` when absent.
    pub(super) fn optional_addr(&mut self, key: &str, field: &Field) -> Option<Option<SocketAddr>> {
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
    pub(super) fn duration(
        &mut self,
        key: &str,
        field: &Field,
        default: Duration,
    ) -> Option<Duration> {
        self.duration_in(key, field, default, MIN_TIMEOUT..=MAX_TIMEOUT)
    }

    /// A duration within `range`, or `default` when absent.
    pub(super) fn duration_in(
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
    pub(super) fn duration_setting(
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

    /// A whole number of `kind` within `range`; `Some(None)` when absent.
    pub(super) fn whole(
        &mut self,
        key: &str,
        field: &Field,
        range: RangeInclusive<u64>,
        kind: Whole,
    ) -> Option<Option<u64>> {
        let Some(leaf) = field else { return Some(None) };
        let (lo, hi) = (*range.start(), *range.end());
        let n = match (kind, leaf.get_ref()) {
            (Whole::Size, Leaf::Int(n)) => {
                u64::try_from(*n).map_err(|_| format!("{n} is negative; sizes are bytes >= 0"))
            }
            (Whole::Size, Leaf::Str(s)) => parse_size(s),
            (Whole::Count, Leaf::Int(n)) => {
                u64::try_from(*n).map_err(|_| format!("{n} is out of range; use {lo} to {hi}"))
            }
            (Whole::Size, _) => {
                return self.mistyped(key, leaf, "a size like \"64 KiB\" or a number of bytes")
            }
            (Whole::Count, _) => return self.mistyped(key, leaf, "an integer"),
        };
        let n = n.map_err(|m| self.report(key, Some(leaf.span()), m)).ok()?;
        if range.contains(&n) {
            return Some(Some(n));
        }
        let (shown, lo, hi) = match kind {
            Whole::Size => (
                if n == 0 {
                    "0".to_owned()
                } else {
                    format_size(n)
                },
                format_size(lo),
                match hi {
                    MAX_SIZE_LIMIT => "2^63-1 bytes".to_owned(),
                    end => format_size(end),
                },
            ),
            Whole::Count => (n.to_string(), lo.to_string(), hi.to_string()),
        };
        self.report(
            key,
            Some(leaf.span()),
            format!("{shown} is out of range; use {lo} to {hi}"),
        );
        None
    }

    /// A limit in 1..=`max` that may also be "off": an integer count, or with `size` a size
    /// ("1 MiB" or a number of bytes).
    pub(super) fn limit(
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

    /// A file path resolved against `base` (the config file's directory); `Some(None)` when
    /// absent. `hint` says what to write instead of an empty string.
    pub(super) fn file(
        &mut self,
        key: &str,
        field: &Field,
        base: Option<&Path>,
        hint: &str,
    ) -> Option<Option<PathBuf>> {
        let Some(leaf) = field else { return Some(None) };
        self.file_at(key, leaf, base, hint).map(Some)
    }

    fn file_at(
        &mut self,
        key: &str,
        leaf: &Spanned<Leaf>,
        base: Option<&Path>,
        hint: &str,
    ) -> Option<PathBuf> {
        let s = self.string(key, leaf, "a file path")?;
        if s.trim().is_empty() {
            self.report(key, Some(leaf.span()), format!("is empty; {hint}"));
            return None;
        }
        let p = Path::new(s);
        Some(match base {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_path_buf(),
        })
    }

    /// `path`, as [`Checker::file`] read it from `field`, must name a regular file this process
    /// can open, so that a missing or unreadable file is reported here, at its line. The file
    /// is only opened, never read.
    pub(super) fn readable(
        &mut self,
        key: &str,
        field: &Field,
        path: Option<PathBuf>,
    ) -> Option<Option<PathBuf>> {
        match (path, field) {
            (Some(path), Some(leaf)) => self.can_read(key, leaf, path).map(Some),
            _ => Some(None),
        }
    }

    /// An array of file paths (absent = empty), each resolved as [`Checker::file`] and
    /// [`Checker::readable`], and reported as `key[i]`.
    pub(super) fn readable_files(
        &mut self,
        key: &str,
        field: &Field,
        base: Option<&Path>,
        hint: &str,
    ) -> Option<Vec<PathBuf>> {
        let items = self.list(key, field, "an array of file paths")?;
        let files: Vec<PathBuf> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let key = format!("{key}[{i}]");
                let path = self.file_at(&key, item, base, hint)?;
                self.can_read(&key, item, path)
            })
            .collect();
        (files.len() == items.len()).then_some(files)
    }

    fn can_read(&mut self, key: &str, leaf: &Spanned<Leaf>, path: PathBuf) -> Option<PathBuf> {
        // The type first: opening a FIFO would block until a writer comes.
        let problem = match std::fs::metadata(&path) {
            Err(e) => Some(e.to_string()),
            Ok(m) if m.is_dir() => Some("it is a directory".to_owned()),
            Ok(m) if !m.is_file() => Some("it is not a regular file".to_owned()),
            Ok(_) => std::fs::File::open(&path).err().map(|e| e.to_string()),
        };
        match problem {
            Some(why) => {
                let msg = format!("cannot read \"{}\": {why}", path.display());
                self.report(key, Some(leaf.span()), msg);
                None
            }
            None => Some(path),
        }
    }

    /// `true` or `false`, or `default` when absent.
    pub(super) fn boolean(&mut self, key: &str, field: &Field, default: bool) -> Option<bool> {
        match field {
            None => Some(default),
            Some(leaf) => match leaf.get_ref() {
                Leaf::Bool(b) => Some(*b),
                _ => self.mistyped(key, leaf, "true or false"),
            },
        }
    }

    /// An array of strings (absent = empty), each turned into a `T` by `parse`. Every bad item
    /// is reported as `key[i]` at its own line; `None` if any was bad.
    pub(super) fn each<T>(
        &mut self,
        key: &str,
        field: &Field,
        want_list: &str,
        want_item: &str,
        mut parse: impl FnMut(&str) -> Result<T, String>,
    ) -> Option<Vec<T>> {
        let items = self.list(key, field, want_list)?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let item_key = format!("{key}[{i}]");
            let Some(s) = self.string(&item_key, item, want_item) else {
                continue;
            };
            match parse(s) {
                Ok(v) => out.push(v),
                Err(msg) => self.report(&item_key, Some(item.span()), msg),
            }
        }
        (out.len() == items.len()).then_some(out)
    }
}

/// A non-empty RFC 9110 §5.6.2 token (the form of cookie, header and subprotocol names).
pub(super) fn check_token(s: &str, what: &str) -> Result<(), String> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if s.is_empty() || !s.bytes().all(tchar) {
        return Err(format!(
            "\"{s}\" is not a valid {what} (an HTTP token: letters, digits and !#$%&'*+-.^_`|~)"
        ));
    }
    Ok(())
}
