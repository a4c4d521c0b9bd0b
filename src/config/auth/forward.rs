//! `[auth.NAME] type = "forward"`: the auth service, its timeout and failure mode, the
//! headers copied from its answer, and its decision cache.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use http::uri::Scheme;
use http::HeaderName;

use super::{backend_header, header_name, service_url, span};
use crate::auth::config::{
    ForwardConfig, ForwardOnError, DEFAULT_CACHE_SIZE, DEFAULT_CACHE_TTL, DEFAULT_EXPIRES_HEADER,
    DEFAULT_FORWARD_TIMEOUT,
};
use crate::config::check::{Checker, Setting, Whole};
use crate::config::raw::RawAuth;
use crate::config::MIN_TIMEOUT;

/// Shortest forward `timeout` (10 ms).
const MIN_FORWARD_TIMEOUT: Duration = Duration::from_millis(10);
/// Longest forward `timeout` (30 s): the client's handshake waits for it.
const MAX_FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest `cache_ttl` (1 h): a revoked session is let in at most this long.
const MAX_CACHE_TTL: Duration = Duration::from_secs(3600);
/// Largest `cache_size` (1,000,000 decisions).
const MAX_CACHE_SIZE: u64 = 1_000_000;
const FORWARD_URL_EXAMPLE: &str = "http://127.0.0.1:9001/auth";

impl Checker<'_> {
    pub(super) fn forward(
        &mut self,
        p: &str,
        header: Option<Range<usize>>,
        r: &RawAuth,
        base: Option<&Path>,
    ) -> Option<ForwardConfig> {
        let key = |k: &str| format!("{p}.{k}");
        let url = self.parsed(
            &key("url"),
            &r.url,
            None,
            "a URL like \"http://127.0.0.1:9001/auth\"",
            |s| service_url(s, &["http", "https"], FORWARD_URL_EXAMPLE).map(Some),
        );
        let ca_file = self.ca_file(&key("ca_file"), &r.ca_file, base);
        let timeout = self.duration_in(
            &key("timeout"),
            &r.timeout,
            DEFAULT_FORWARD_TIMEOUT,
            MIN_FORWARD_TIMEOUT..=MAX_FORWARD_TIMEOUT,
        );
        let mut seen = Vec::new();
        let copy_headers = self.each(
            &key("copy_headers"),
            &r.copy_headers,
            "an array of header names like [\"X-Auth-User\"]",
            "a header name like \"X-Auth-User\"",
            |s| {
                let h = backend_header(s)?;
                if seen.contains(&h) {
                    return Err(format!(
                        "\"{s}\" is listed twice (header names are case-insensitive); remove one"
                    ));
                }
                seen.push(h.clone());
                Ok(h)
            },
        );
        let on_error = self.choice(
            &key("on_error"),
            &r.on_error,
            ForwardOnError::Closed,
            &[
                ("closed", ForwardOnError::Closed),
                ("open", ForwardOnError::Open),
            ],
        );
        let cache_ttl = self.duration_setting(
            &key("cache_ttl"),
            &r.cache_ttl,
            MIN_TIMEOUT..=MAX_CACHE_TTL,
            true,
        );
        let cache_size = self.whole(
            &key("cache_size"),
            &r.cache_size,
            1..=MAX_CACHE_SIZE,
            Whole::Count,
        );
        let expires_header = self.parsed(
            &key("expires_header"),
            &r.expires_header,
            HeaderName::from_static(DEFAULT_EXPIRES_HEADER),
            "a header name like \"X-Auth-Expires\"",
            header_name,
        );
        let (url, ca_file, cache_ttl, cache_size) = (url?, ca_file?, cache_ttl?, cache_size?);
        let Some(url) = url else {
            let msg = format!("missing url; add e.g. url = \"{FORWARD_URL_EXAMPLE}\"");
            self.report(p, header, msg);
            return None;
        };
        let cache_ttl = match cache_ttl {
            Setting::Value(d) => Some(d),
            Setting::Off => None,
            Setting::Absent => Some(DEFAULT_CACHE_TTL),
        };
        let mut ok = true;
        if ca_file.is_some() && url.scheme() != Some(&Scheme::HTTPS) {
            let msg = format!("is set but {p}.url is not an https:// URL; the CA is only for TLS");
            self.report(&key("ca_file"), span(&r.ca_file), msg);
            ok = false;
        }
        if cache_ttl.is_none() && cache_size.is_some() {
            let msg = format!("is set but {p}.cache_ttl is \"off\", so there is no cache; remove cache_size or set cache_ttl");
            self.report(&key("cache_size"), span(&r.cache_size), msg);
            ok = false;
        }
        let forward = ForwardConfig {
            url,
            ca_file,
            timeout: timeout?,
            copy_headers: copy_headers?,
            on_error: on_error?,
            cache_ttl,
            // At most MAX_CACHE_SIZE once validated.
            cache_size: cache_size.map_or(DEFAULT_CACHE_SIZE, |n| n as usize),
            expires_header: expires_header?,
        };
        ok.then_some(forward)
    }
}
