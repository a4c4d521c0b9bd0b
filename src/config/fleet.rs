//! Validation of `[limits.shared]` (per-IP limits shared through Redis).

use std::path::Path;
use std::time::Duration;

use redis::IntoConnectionInfo;
use toml::Spanned;

use super::check::Checker;
use super::raw::{Field, RawShared};
use crate::fleet::{OnError, SharedConfig, DEFAULT_KEY_PREFIX, DEFAULT_LEASE, DEFAULT_TIMEOUT};

/// Shortest `lease` (3 s, renewed every second): less is a renewal storm for the store.
const MIN_LEASE: Duration = Duration::from_secs(3);
/// Longest `lease` (1 h): a dead instance's connections count that long.
const MAX_LEASE: Duration = Duration::from_secs(3600);
/// Longest `timeout` (10 s): a handshake waits at most this for the store.
const MAX_STORE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `key_prefix`, in bytes.
const MAX_KEY_PREFIX: usize = 64;

impl Checker<'_> {
    pub(super) fn shared(
        &mut self,
        s: &Spanned<RawShared>,
        base: Option<&Path>,
    ) -> Option<SharedConfig> {
        let url = self.redis_url(s);
        let password_file = self.file(
            "limits.shared.password_file",
            &s.get_ref().password_file,
            base,
            "give the path of a file holding the password, or remove the key",
        );
        let ca_file = self.file(
            "limits.shared.ca_file",
            &s.get_ref().ca_file,
            base,
            "give a PEM file path, or remove the key to trust the system's roots",
        );
        let r = s.get_ref();
        let key_prefix = self.key_prefix(&r.key_prefix);
        let timeout = self.duration_in(
            "limits.shared.timeout",
            &r.timeout,
            DEFAULT_TIMEOUT,
            Duration::from_millis(1)..=MAX_STORE_TIMEOUT,
        );
        let on_error = self.choice(
            "limits.shared.on_error",
            &r.on_error,
            OnError::Open,
            &[("open", OnError::Open), ("closed", OnError::Closed)],
        );
        let lease = self.duration_in(
            "limits.shared.lease",
            &r.lease,
            DEFAULT_LEASE,
            MIN_LEASE..=MAX_LEASE,
        );
        let url = url?;
        let ca_file = ca_file?;
        if ca_file.is_some() && !url.starts_with("rediss://") {
            let msg =
                "is set but limits.shared.redis is not a rediss:// URL; the CA is only for TLS";
            let span = r.ca_file.as_ref().map(|l| l.span());
            self.report("limits.shared.ca_file", span, msg);
            return None;
        }
        Some(SharedConfig {
            url,
            password_file: password_file?,
            ca_file,
            key_prefix: key_prefix?,
            timeout: timeout?,
            on_error: on_error?,
            lease: lease?,
        })
    }

    /// `redis`: required, a URL the client reads, and without a password.
    fn redis_url(&mut self, s: &Spanned<RawShared>) -> Option<String> {
        const KEY: &str = "limits.shared.redis";
        let Some(leaf) = &s.get_ref().redis else {
            let msg =
                "is required in [limits.shared]: write e.g. redis = \"redis://10.0.0.5:6379/0\"";
            self.report(KEY, Some(s.span()), msg);
            return None;
        };
        let url = self.string(KEY, leaf, "a URL like \"redis://10.0.0.5:6379/0\"")?;
        let problem = match url.into_connection_info() {
            Err(e) => Some(format!(
                "is not a Redis URL ({}); write e.g. \"redis://10.0.0.5:6379/0\", \"rediss://…\" or \"unix:///run/redis.sock\"",
                e.detail().unwrap_or("unreadable")
            )),
            Ok(info) if info.redis_settings().password().is_some() => Some(
                "carries a password; put it in a file and name that file in limits.shared.password_file, so it never shows in the config or its printout".to_owned(),
            ),
            Ok(_) => None,
        };
        match problem {
            Some(msg) => {
                self.report(KEY, Some(leaf.span()), msg);
                None
            }
            None => Some(url.to_owned()),
        }
    }

    fn key_prefix(&mut self, field: &Field) -> Option<String> {
        let want = "a string like \"wsguard:\"";
        let default = DEFAULT_KEY_PREFIX.to_owned();
        self.parsed("limits.shared.key_prefix", field, default, want, |p| {
            let ok = !p.is_empty()
                && p.len() <= MAX_KEY_PREFIX
                && p.bytes().all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}');
            ok.then(|| p.to_owned()).ok_or_else(|| format!("must be 1 to {MAX_KEY_PREFIX} printable ASCII characters without spaces or braces (braces would break the keys' hash tag)"))
        })
    }
}
