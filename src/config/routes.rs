//! `[[route]]` validation: paths, backends, subprotocols, duplicate routes.

use std::ops::Range;

use toml::Spanned;

use super::check::Checker;
use super::error::ConfigProblem;
use super::raw::RawRoute;
use super::{Backend, PathMatch, Route};
use crate::auth::config::RouteAuth;

impl Checker<'_> {
    pub(super) fn routes(&mut self, raw: &[Spanned<RawRoute>]) -> Option<Vec<Route>> {
        if raw.is_empty() {
            self.report("route", None, "no routes; add at least one [[route]] with path = \"/...\" and backends = [\"host:port\"]");
            return None;
        }
        let mut routes = Vec::new();
        let mut seen: Vec<(String, PathMatch, usize, usize)> = Vec::new();
        let mut ok = true;
        for (i, r) in raw.iter().enumerate() {
            match self.route(i, r) {
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
    fn route(&mut self, i: usize, spanned: &Spanned<RawRoute>) -> Option<(Route, usize)> {
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
            auth: RouteAuth::default(),
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
                if s.is_empty() || !s.bytes().all(is_tchar) {
                    return Err(format!("\"{s}\" is not a valid subprotocol name (an HTTP token: letters, digits and !#$%&'*+-.^_`|~)"));
                }
                if seen.iter().any(|o| o == s) {
                    return Err(format!("\"{s}\" is listed twice; remove one"));
                }
                seen.push(s.to_owned());
                Ok(s.to_owned())
            },
        )
    }
}

/// RFC 9110 §5.6.2 token character.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
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
