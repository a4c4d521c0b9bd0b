//! Validation of the `[auth.NAME]` sections: the name and type of each (here), a JWT check
//! (jwt.rs), a forward check (forward.rs), and the rules shared by both: service URLs and the
//! header names a credential may send to a backend. A route names a section with
//! `auth = "NAME"` (routes.rs); a section no route names is refused.

mod forward;
mod jwt;
#[cfg(test)]
mod tests;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Uri};
use toml::Spanned;

use super::check::{check_token, Checker};
use super::raw::{Field, Leaf, RawAuth, RawAuths, RawRoute};
use crate::auth::config::{AuthConfig, AuthKind};

/// Longest section name, in bytes.
const MAX_NAME: usize = 64;
/// Longest `grace` (1 h): a credential's expiry should still mean something.
const MAX_GRACE: Duration = Duration::from_secs(3600);
/// Request headers a credential may not set on the way to the backend: hop-by-hop, the
/// handshake's, those wsguard forwards or strips itself, Origin and the credentials.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "connection",
    "content-length",
    "cookie",
    "forwarded",
    "host",
    "keep-alive",
    "origin",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-real-ip",
];
const RESERVED_PREFIXES: &[&str] = &["sec-websocket-", "x-forwarded-"];

#[derive(Debug, Clone, Copy)]
enum Type {
    Jwt,
    Forward,
}

/// The keys only `type = "jwt"` reads.
fn jwt_keys(r: &RawAuth) -> [(&'static str, &Field); 17] {
    [
        ("cookie", &r.cookie),
        ("query", &r.query),
        ("protocol_prefix", &r.protocol_prefix),
        ("bearer", &r.bearer),
        ("algorithms", &r.algorithms),
        ("public_keys", &r.public_keys),
        ("hmac_secret_file", &r.hmac_secret_file),
        ("jwks_url", &r.jwks_url),
        ("jwks_ca_file", &r.jwks_ca_file),
        ("jwks_refresh", &r.jwks_refresh),
        ("jwks_min_refresh", &r.jwks_min_refresh),
        ("jwks_timeout", &r.jwks_timeout),
        ("issuer", &r.issuer),
        ("audience", &r.audience),
        ("leeway", &r.leeway),
        ("require_exp", &r.require_exp),
        ("claim_headers", &r.claim_headers),
    ]
}

/// The keys only `type = "forward"` reads.
fn forward_keys(r: &RawAuth) -> [(&'static str, &Field); 8] {
    [
        ("url", &r.url),
        ("ca_file", &r.ca_file),
        ("timeout", &r.timeout),
        ("copy_headers", &r.copy_headers),
        ("on_error", &r.on_error),
        ("cache_ttl", &r.cache_ttl),
        ("cache_size", &r.cache_size),
        ("expires_header", &r.expires_header),
    ]
}

fn span(field: &Field) -> Option<Range<usize>> {
    field.as_ref().map(|l| l.span())
}

impl Checker<'_> {
    /// Every `[auth.NAME]` section, in file order.
    pub(super) fn auth_sections(
        &mut self,
        raw: &RawAuths,
        base: Option<&Path>,
    ) -> Option<Vec<AuthConfig>> {
        let sections: Vec<Option<AuthConfig>> = raw
            .0
            .iter()
            .map(|(name, section)| self.auth_section(name, section.get_ref(), base))
            .collect();
        sections.into_iter().collect()
    }

    /// An `[auth.NAME]` that no route names is refused, like every other setting that would
    /// have no effect. `false` when one is.
    pub(super) fn auth_used(&mut self, raw: &RawAuths, routes: &[Spanned<RawRoute>]) -> bool {
        let named = |name: &str| {
            routes.iter().any(|r| {
                matches!(r.get_ref().auth.as_ref().map(|l| l.get_ref()), Some(Leaf::Str(s)) if s == name)
            })
        };
        let mut ok = true;
        for (name, _) in &raw.0 {
            let n: &str = name.get_ref();
            if !named(n) {
                let msg =
                    format!("no route uses it; name it in a [[route]] auth = \"{n}\" or remove it");
                self.report(&format!("auth.{n}"), Some(name.span()), msg);
                ok = false;
            }
        }
        ok
    }

    fn auth_section(
        &mut self,
        name: &Spanned<String>,
        r: &RawAuth,
        base: Option<&Path>,
    ) -> Option<AuthConfig> {
        let n: &str = name.get_ref();
        let p = format!("auth.{n}");
        let header = Some(name.span());
        let name_ok = !n.is_empty()
            && n.len() <= MAX_NAME
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            let msg = format!("\"{n}\" is not a valid section name; use 1 to {MAX_NAME} letters, digits, \"-\" or \"_\"");
            self.report(&p, header.clone(), msg);
        }
        let grace = self.duration_in(
            &format!("{p}.grace"),
            &r.grace,
            Duration::ZERO,
            Duration::ZERO..=MAX_GRACE,
        );
        let kind = match &r.kind {
            None => {
                let msg = "missing type; add type = \"jwt\" or type = \"forward\"";
                self.report(&p, header.clone(), msg);
                None
            }
            Some(_) => self.choice(
                &format!("{p}.type"),
                &r.kind,
                Type::Jwt,
                &[("jwt", Type::Jwt), ("forward", Type::Forward)],
            ),
        };
        let (kind, others_ok) = match kind? {
            Type::Jwt => (
                self.jwt(&p, header, r, base).map(AuthKind::Jwt),
                self.no_keys_of(&p, &forward_keys(r), "forward", "jwt"),
            ),
            Type::Forward => (
                self.forward(&p, header, r, base).map(AuthKind::Forward),
                self.no_keys_of(&p, &jwt_keys(r), "jwt", "forward"),
            ),
        };
        let section = AuthConfig {
            name: n.to_owned(),
            kind: kind?,
            grace: grace?,
        };
        (name_ok && others_ok).then_some(section)
    }

    /// PEM roots that sign a service's certificate, instead of the system's.
    fn ca_file(
        &mut self,
        key: &str,
        field: &Field,
        base: Option<&Path>,
    ) -> Option<Option<PathBuf>> {
        let hint = "give a PEM file path, or remove the key to trust the system's roots";
        let path = self.file(key, field, base, hint)?;
        self.readable(key, field, path)
    }

    /// Reports every key of type `owner` written in a section of type `this`.
    fn no_keys_of(&mut self, p: &str, keys: &[(&str, &Field)], owner: &str, this: &str) -> bool {
        let mut ok = true;
        for (key, field) in keys {
            if let Some(leaf) = field {
                let msg = format!("belongs to type = \"{owner}\" sections, and this one is type = \"{this}\"; remove it");
                self.report(&format!("{p}.{key}"), Some(leaf.span()), msg);
                ok = false;
            }
        }
        ok
    }
}

/// An absolute URL with one of `schemes` and a host, without credentials or a fragment.
fn service_url(s: &str, schemes: &[&str], example: &str) -> Result<Uri, String> {
    let authority = s
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?', '#']).next())
        .unwrap_or_default();
    // Checked before anything echoes the URL: the part before "@" may be a password.
    if authority.contains('@') {
        return Err("has a user name or password in it; remove it (wsguard sends no credentials of its own, and `wsguard check` prints the URL)".to_owned());
    }
    if s.contains('#') {
        return Err(format!("\"{s}\" has a fragment (#…); remove it"));
    }
    let uri: Uri = s
        .parse()
        .ok()
        .filter(|u: &Uri| u.scheme().is_some() && u.host().is_some_and(|h| !h.is_empty()))
        .ok_or_else(|| {
            format!("\"{s}\" is not an absolute URL with a host; write e.g. \"{example}\"")
        })?;
    let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
    if !schemes.contains(&scheme.as_str()) {
        let allowed: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
        return Err(format!(
            "\"{s}\" must be an {} URL, e.g. \"{example}\"",
            allowed.join(" or ")
        ));
    }
    Ok(uri)
}

fn header_name(s: &str) -> Result<HeaderName, String> {
    check_token(s, "header name")?;
    HeaderName::from_bytes(s.as_bytes()).map_err(|_| format!("\"{s}\" is not a valid header name"))
}

/// A header name a credential may set on the request to the backend.
fn backend_header(s: &str) -> Result<HeaderName, String> {
    let h = header_name(s)?;
    let name = h.as_str();
    if RESERVED_HEADERS.contains(&name) || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Err(format!("\"{s}\" is a header wsguard sets, strips or checks itself (hop-by-hop, WebSocket handshake, forwarding, Origin or credentials); use a name of your own, e.g. \"X-Auth-User\""));
    }
    Ok(h)
}
