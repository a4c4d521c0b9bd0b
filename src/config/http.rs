//! Validation of `[http]` (the pass-through half of routes: timeouts, caps and request
//! quotas) and of a route's `http` and `framework`.

use std::num::NonZeroU32;

use super::check::{Checker, Setting, Whole};
use super::rates::{BurstDefault, Pair};
use super::raw::{RawHttp, RawRoute};
use super::*;
use crate::framework::{Framework, HttpConfig, RouteHttp};

impl Checker<'_> {
    pub(super) fn http(&mut self, h: &RawHttp, max_connections: Option<u32>) -> Option<HttpConfig> {
        let range = MIN_TIMEOUT..=MAX_HTTP_TIMEOUT;
        let head = self.duration_in(
            "http.response_head_timeout",
            &h.response_head_timeout,
            DEFAULT_RESPONSE_HEAD_TIMEOUT,
            range.clone(),
        );
        let idle = self.duration_in(
            "http.body_idle_timeout",
            &h.body_idle_timeout,
            DEFAULT_BODY_IDLE_TIMEOUT,
            range.clone(),
        );
        let total = self.duration_in(
            "http.max_duration",
            &h.max_duration,
            DEFAULT_MAX_HTTP_DURATION,
            range,
        );
        let body = self.whole(
            "http.max_request_body",
            &h.max_request_body,
            0..=MAX_SIZE_LIMIT,
            Whole::Size,
        );
        let response_head = self.whole(
            "http.max_response_head",
            &h.max_response_head,
            MIN_MAX_REQUEST_HEAD..=MAX_MAX_RESPONSE_HEAD,
            Whole::Size,
        );
        let access_log = self.boolean("http.access_log", &h.access_log, false);
        let requests = self.rate_pair(&Pair {
            section: "http",
            rate_key: "requests_per_ip",
            rate: &h.requests_per_ip,
            burst_key: "request_burst",
            burst: &h.request_burst,
            default_rate: Some(DEFAULT_REQUESTS_PER_IP),
            default_burst: BurstDefault::Fixed(DEFAULT_REQUEST_BURST),
            cover: false,
            size: false,
            max: MAX_MAX_CONNECTIONS,
        });
        let held = self.limit(
            "http.held_requests_per_ip",
            &h.held_requests_per_ip,
            MAX_MAX_CONNECTIONS,
            false,
        );
        let max_held = self.whole(
            "http.max_held_requests",
            &h.max_held_requests,
            1..=u64::from(MAX_MAX_CONNECTIONS),
            Whole::Count,
        );
        let (head, idle, total) = (head?, idle?, total?);
        if total < head.max(idle) {
            let span = h.max_duration.as_ref().map(|l| l.span());
            let msg = format!(
                "{} is shorter than http.response_head_timeout ({}) or http.body_idle_timeout ({}), which it bounds; make it at least as long",
                format_duration(total),
                format_duration(head),
                format_duration(idle)
            );
            self.report("http.max_duration", span, msg);
            return None;
        }
        let (requests_per_ip, request_burst) = requests?;
        Some(HttpConfig {
            response_head_timeout: head,
            body_idle_timeout: idle,
            max_duration: total,
            max_request_body: body?.unwrap_or(DEFAULT_MAX_REQUEST_BODY),
            max_response_head: response_head?.unwrap_or(DEFAULT_MAX_RESPONSE_HEAD),
            access_log: access_log?,
            requests_per_ip,
            request_burst,
            held_requests_per_ip: match held? {
                Setting::Value(v) => Some(v),
                Setting::Off => None,
                Setting::Absent => NonZeroU32::new(DEFAULT_HELD_REQUESTS_PER_IP),
            },
            max_held_requests: max_held?
                .map_or(max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS), |n| {
                    n as u32
                }),
        })
    }

    /// A route's `framework` and `http`: `None` for a route of upgrades only.
    pub(super) fn route_http(&mut self, i: usize, r: &RawRoute) -> Option<Option<RouteHttp>> {
        let key = |k: &str| format!("route[{i}].{k}");
        let presets = Framework::ALL.map(|(name, f)| (name, Some(f)));
        let framework = self.choice(&key("framework"), &r.framework, None, &presets);
        let http = self.boolean(&key("http"), &r.http, false);
        let (framework, http) = (framework?, http?);
        if let (Some(f), Some(leaf)) = (framework, &r.http) {
            if !http {
                let msg = format!("is false but framework = \"{f}\" needs its HTTP requests to pass (its clients start with them); remove http, or remove framework for a route of upgrades only");
                self.report(&key("http"), Some(leaf.span()), msg);
                return None;
            }
        }
        Some((http || framework.is_some()).then_some(RouteHttp { framework }))
    }
}
