//! `[[route]]` validation: paths, backends, subprotocols, duplicate routes, and the route's
//! authentication (`auth`, `keep_token`, `max_session`).

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::check::{check_token, Checker, Setting};
use super::error::{suggest, ConfigProblem};
use super::raw::RawRoute;
use super::{Backend, PathMatch, Route};
use crate::auth::config::RouteAuth;

/// Shortest `[[route]] max_session` (1 s).
const MIN_MAX_SESSION: Duration = Duration::from_secs(1);
/// Longest `[[route]] max_session` (30 days).
const MAX_MAX_SESSION: Duration = Duration::from_secs(30 * 86_400);

impl Checker<'_> {
    /// Every route; `auth_names` are the `[auth.NAME]` sections in file order.
    pub(super) fn routes(
        &mut self,
        raw: &[Spanned<RawRoute>],
        auth_names: &[&str],
    ) -> Option<Vec<Route>> {
        if raw.is_empty() {
            self.report("route", None, "no routes; add at least one [[route]] with path = \"/...\" and backends = [\"host:port\"]");
            return None;
        }
        let mut routes = Vec::new();
        let mut seen: Vec<(String, PathMatch, usize, usize)> = Vec::new();
        let mut ok = true;
        for (i, r) in raw.iter().enumerate() {
            match self.route(i, r, auth_names) {
                Some((route, line)) => {
                    if let Some((_, _, j, first)) = seen
                        .iter()
                        .find(|(p, m, ..)| *p == route.path && *m == route.path_match)
                    {
                        let msg = format!(
                            "duplicate route: path \"{}\" with match \"{}\" is already route[{j}] (line {first}); remove one or change its path",
                            route.path, route.path_match
                        );
                        self.problems.push(ConfigProblem::new(
                            format!("route[{i}].path"),
                            Some(line),
                            msg,
                        ));
                        ok = false;
                    }
                    seen.push((route.path.clone(), route.path_match, i, line));
                    routes.push(route);
                }
                None => ok = false,
            }
        }
        ok.then_some(routes)
    }

    /// One route and the line of its path (or of its [[route]] header).
    fn route(
        &mut self,
        i: usize,
        spanned: &Spanned<RawRoute>,
        auth_names: &[&str],
    ) -> Option<(Route, usize)> {
        let r = spanned.get_ref();
        let key = |k: &str| format!("route[{i}].{k}");
        let header = Some(spanned.span());
        let path = match &r.path {
            None => {
                self.report(
                    &format!("route[{i}]"),
                    header.clone(),
                    "missing path; add path = \"/...\"",
                );
                None
            }
            Some(leaf) => self
                .string(&key("path"), leaf, "a path like \"/chat\"")
                .and_then(|p| {
                    check_route_path(p)
                        .map_err(|m| self.report(&key("path"), Some(leaf.span()), m))
                        .ok()
                }),
        };
        let path_match = self.choice(
            &key("match"),
            &r.path_match,
            PathMatch::Exact,
            &[("exact", PathMatch::Exact), ("prefix", PathMatch::Prefix)],
        );
        let backends = self.backends(i, r, header.clone());
        let subprotocols = self.subprotocols(i, r);
        let deflate = self.deflate_mode(&key("deflate"), &r.deflate);
        let auth = self.route_auth(i, r, auth_names);
        let http = self.route_http(i, r);
        let line = r
            .path
            .as_ref()
            .map(|l| l.span())
            .or(header)
            .map(|s| self.lines.line_of_span(&s));
        let route = Route {
            path: path?,
            path_match: path_match?,
            backends: backends?,
            subprotocols: subprotocols?,
            deflate: deflate?,
            auth: auth?,
            http: http?,
        };
        Some((route, line.unwrap_or(0)))
    }

    fn backends(
        &mut self,
        i: usize,
        r: &RawRoute,
        header: Option<Range<usize>>,
    ) -> Option<Vec<Backend>> {
        let key = format!("route[{i}].backends");
        let Some(field) = &r.backends else {
            self.report(
                &format!("route[{i}]"),
                header,
                "missing backends; add backends = [\"host:port\"]",
            );
            return None;
        };
        let backends = self.each(
            &key,
            &r.backends,
            "an array like [\"127.0.0.1:9000\"]",
            "a \"host:port\" string",
            Backend::parse,
        )?;
        if backends.is_empty() {
            self.report(
                &key,
                Some(field.span()),
                "is empty; list at least one backend, e.g. [\"127.0.0.1:9000\"]",
            );
            return None;
        }
        Some(backends)
    }

    fn subprotocols(&mut self, i: usize, r: &RawRoute) -> Option<Vec<String>> {
        let mut seen: Vec<String> = Vec::new();
        self.each(
            &format!("route[{i}].subprotocols"),
            &r.subprotocols,
            "an array of subprotocol names",
            "a subprotocol name",
            |s| {
                check_token(s, "subprotocol name")?;
                if seen.iter().any(|o| o == s) {
                    return Err(format!("\"{s}\" is listed twice; remove one"));
                }
                seen.push(s.to_owned());
                Ok(s.to_owned())
            },
        )
    }

    /// `auth` (an index into the `[auth.NAME]` sections), `keep_token` (only with `auth`) and
    /// `max_session`.
    fn route_auth(&mut self, i: usize, r: &RawRoute, auth_names: &[&str]) -> Option<RouteAuth> {
        let key = |k: &str| format!("route[{i}].{k}");
        let want = "the name of an [auth.NAME] section, like \"users\"";
        let auth = self.parsed(&key("auth"), &r.auth, None, want, |s| {
            match auth_names.iter().position(|n| *n == s) {
                Some(index) => Ok(Some(index)),
                None => Err(unknown_auth(s, auth_names)),
            }
        });
        let keep_token = self.boolean(&key("keep_token"), &r.keep_token, false);
        let max_session = self.duration_setting(
            &key("max_session"),
            &r.max_session,
            MIN_MAX_SESSION..=MAX_MAX_SESSION,
            true,
        );
        if let (None, Some(leaf)) = (&r.auth, &r.keep_token) {
            let msg = format!("is set but route[{i}].auth is not; keep_token says whether the token goes on to the backend: name an [auth.NAME] section in auth, or remove keep_token");
            self.report(&key("keep_token"), Some(leaf.span()), msg);
            return None;
        }
        Some(RouteAuth {
            auth: auth?,
            keep_token: keep_token?,
            max_session: match max_session? {
                Setting::Value(d) => Some(d),
                Setting::Absent | Setting::Off => None,
            },
        })
    }
}

/// Why `name` names no section: the known names, and the closest one.
fn unknown_auth(name: &str, names: &[&str]) -> String {
    if names.is_empty() {
        return format!("\"{name}\" names no [auth.NAME] section, and there is none; add [auth.{name}] with its type, or remove auth");
    }
    let known: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    let known = known.join(", ");
    match suggest(name, names) {
        Some(close) => format!(
            "\"{name}\" names no [auth.NAME] section; did you mean \"{close}\"? (known: {known})"
        ),
        None => format!("\"{name}\" names no [auth.NAME] section; known: {known}"),
    }
}

fn check_route_path(p: &str) -> Result<String, String> {
    if !p.starts_with('/') {
        return Err(format!(
            "\"{p}\" must start with \"/\", e.g. \"/{}\"",
            p.trim_start_matches('/')
        ));
    }
    if p.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "\"{p}\" contains whitespace or control characters; remove them"
        ));
    }
    if p.contains(['?', '#']) {
        return Err(format!("\"{p}\" contains a query or fragment; routes match the path only, remove everything from \"?\" or \"#\""));
    }
    if super::has_dot_segment(p) || super::has_encoded_separator(p) {
        return Err(format!("\"{p}\" contains \".\" or \"..\" segments or an encoded \".\", \"/\" or \"\\\"; write the plain path"));
    }
    Ok(p.to_owned())
}
