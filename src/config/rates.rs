//! `[rate]`, `[backend_rate]` and the per-IP handshake rate: each rate with its burst,
//! cross-checked (a burst needs its rate, and covers it), and the defaults of each section.

use std::fmt;
use std::num::NonZeroU32;

use super::check::{Checker, Setting};
use super::raw::{Field, RawRate};
use super::units::format_size;
use super::{
    FrameRateConfig, OnLimit, RateConfig, DEFAULT_BURST_BYTES_FACTOR, DEFAULT_BURST_FACTOR,
    DEFAULT_MESSAGE_BURST_FACTOR, DEFAULT_RATE_BYTES, DEFAULT_RATE_CONTROL, DEFAULT_RATE_MESSAGES,
    MAX_HEARTBEATS, MAX_RATE,
};
use crate::limits::{Bucket, Heartbeats, RateLimit, DEFAULT_HEARTBEATS, MAX_HEARTBEAT_LEN};

impl Checker<'_> {
    pub(super) fn rate(
        &mut self,
        section: &'static str,
        r: &RawRate,
        d: &RateDefaults,
    ) -> Option<RateConfig> {
        let times = |n| BurstDefault::Times(n);
        let messages = self.rate_pair(&Pair {
            section,
            rate_key: "messages_per_second",
            rate: &r.messages_per_second,
            burst_key: "burst",
            burst: &r.burst,
            default_rate: d.messages,
            default_burst: times(DEFAULT_MESSAGE_BURST_FACTOR),
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
        let heartbeats = self.heartbeats(section, &r.heartbeats);
        let (messages, bytes, control) = (messages?, bytes?, control?);
        Some(RateConfig {
            quota: FrameRateConfig {
                messages_per_second: messages.0,
                burst: messages.1,
                bytes_per_second: bytes.0,
                burst_bytes: bytes.1,
                control_per_second: control.0,
                control_burst: control.1,
            },
            on_limit: on_limit?,
            heartbeats: heartbeats?,
        })
    }

    /// `heartbeats`: absent is the default list; each 1..=125 bytes, none twice.
    fn heartbeats(&mut self, section: &str, field: &Field) -> Option<Heartbeats> {
        if field.is_none() {
            return Some(Heartbeats::new(DEFAULT_HEARTBEATS));
        }
        let key = format!("{section}.heartbeats");
        let mut seen: Vec<String> = Vec::new();
        let list = self.each(
            &key,
            field,
            "an array of heartbeat payloads, like [\"2\", \"3\"]",
            "a heartbeat payload",
            |s| {
                if s.is_empty() || s.len() > MAX_HEARTBEAT_LEN {
                    return Err(format!(
                        "is {} bytes; a heartbeat is 1 to {MAX_HEARTBEAT_LEN} bytes",
                        s.len()
                    ));
                }
                if seen.iter().any(|o| o == s) {
                    return Err(format!("{s:?} is listed twice; remove one"));
                }
                seen.push(s.to_owned());
                Ok(s.to_owned())
            },
        )?;
        if list.len() > MAX_HEARTBEATS {
            let span = field.as_ref().map(|l| l.span());
            let msg = format!("lists {}; at most {MAX_HEARTBEATS}", list.len());
            self.report(&key, span, msg);
            return None;
        }
        Some(Heartbeats::new(list))
    }

    /// A rate (see [`Checker::limit`]) and its burst, cross-checked.
    pub(super) fn rate_pair(
        &mut self,
        p: &Pair<'_>,
    ) -> Option<(Option<NonZeroU32>, Option<NonZeroU32>)> {
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
}

/// A rate key and its burst key, for [`Checker::rate_pair`].
pub(super) struct Pair<'f> {
    pub(super) section: &'static str,
    pub(super) rate_key: &'static str,
    pub(super) rate: &'f Field,
    pub(super) burst_key: &'static str,
    pub(super) burst: &'f Field,
    /// The rate when its key is absent; `None` = off.
    pub(super) default_rate: Option<u32>,
    pub(super) default_burst: BurstDefault,
    /// The burst must be >= the rate (both per second).
    pub(super) cover: bool,
    /// Values are sizes ("1 MiB"), not counts.
    pub(super) size: bool,
    pub(super) max: u32,
}

/// The burst when its key is absent and its rate is on.
#[derive(Debug, Clone, Copy)]
pub(super) enum BurstDefault {
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
pub(super) struct RateDefaults {
    messages: Option<u32>,
    bytes: Option<u32>,
    control: Option<u32>,
    on_limit: OnLimit,
}

pub(super) const RATE_DEFAULTS: RateDefaults = RateDefaults {
    messages: Some(DEFAULT_RATE_MESSAGES),
    bytes: Some(DEFAULT_RATE_BYTES),
    control: Some(DEFAULT_RATE_CONTROL),
    on_limit: OnLimit::Close,
};

pub(super) const BACKEND_RATE_DEFAULTS: RateDefaults = RateDefaults {
    messages: None,
    bytes: None,
    control: None,
    on_limit: OnLimit::Delay,
};

/// `messages_per_second 100, burst 1000` (sizes for the byte bucket), as the configuration
/// says them: short enough for a close frame's reason.
impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (rate, burst) = match self.bucket {
            Bucket::Bytes => (
                format_size(u64::from(self.per_second)),
                format_size(u64::from(self.burst)),
            ),
            _ => (self.per_second.to_string(), self.burst.to_string()),
        };
        write!(f, "{} {rate}, burst {burst}", self.bucket.label())
    }
}
