//! Where a JWT is found in an upgrade request, in a fixed order (cookie, query parameter,
//! subprotocol value, `Authorization: Bearer`), and the request the backend gets with every
//! configured source taken out. Pure: no I/O.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::Uri;

use super::config::TokenSources;
use crate::handshake::offered_protocols;

/// The token of the first configured source present in `parts`. `Err(())` when that source
/// is present but holds no usable token (an empty value, a non-Bearer `Authorization`,
/// several `Authorization` headers).
pub fn find(sources: &TokenSources, parts: &Parts) -> Option<Result<String, ()>> {
    let h = &parts.headers;
    let ok = |v: Option<String>| v.map(Ok);
    let candidates = [
        ok(sources.cookie.as_deref().and_then(|n| cookie(h, n))),
        ok(sources
            .query
            .as_deref()
            .and_then(|n| query(parts.uri.query(), n))),
        ok(sources
            .protocol_prefix
            .as_deref()
            .and_then(|p| protocol(h, p))),
        sources.bearer.then(|| bearer(h)).flatten(),
    ];
    let value = candidates.into_iter().find(Option::is_some)??;
    Some(value.and_then(|v| if v.is_empty() { Err(()) } else { Ok(v) }))
}

/// The value of the first cookie `name` (RFC 6265 §5.4 sends the most specific first),
/// without its optional double quotes.
fn cookie(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| {
            let v = v.trim();
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
                .to_owned()
        })
}

/// The percent-decoded value of the first query parameter `name`.
fn query(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(n, _)| percent_decode(n).as_deref() == Some(name))
        .map(|(_, v)| percent_decode(v).unwrap_or_default())
}

/// The rest of the first offered subprotocol that starts with `prefix`.
fn protocol(h: &HeaderMap, prefix: &str) -> Option<String> {
    offered_protocols(h)
        .find_map(|p| p.strip_prefix(prefix))
        .map(str::to_owned)
}

/// `Authorization: Bearer <token>` (RFC 6750 §2.1; the scheme is case-insensitive). `None`
/// without the header; `Err` when it is repeated or another scheme.
fn bearer(h: &HeaderMap) -> Option<Result<String, ()>> {
    let mut all = h.get_all(header::AUTHORIZATION).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return Some(Err(()));
    }
    let value = first.to_str().map_err(|_| ()).and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ').ok_or(())?;
        if scheme.eq_ignore_ascii_case("bearer") {
            Ok(token.trim().to_owned())
        } else {
            Err(())
        }
    });
    Some(value)
}

/// `%XX` decoded (`+` is kept: JWTs never hold one, and RFC 3986 does not make it a space).
/// `None` if the result is not UTF-8 or an escape is broken.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Takes every configured source out of a request that goes on to the backend, whichever
/// one held the token that was used: a second credential beside the identity headers would
/// reach the backend unverified. From `parts`: the cookie, the query parameter and
/// `Authorization: Bearer`; from `protocols` (the offer the backend gets, the client's own
/// header never being forwarded): the values with the prefix. Everything else stays, in
/// its order. Matches are wider than [`find`]'s where a backend may read more (cookie names
/// with spaces around them, any `Bearer` header, any bytes), so nothing a backend could
/// take for the token is left.
///
/// Returns the first offered value with the prefix when no other value is left to offer:
/// the 101 names it, since a browser fails a handshake whose answer picks none of its
/// offers, and it is one the client sent.
pub fn strip(
    sources: &TokenSources,
    parts: &mut Parts,
    protocols: &mut Vec<String>,
) -> Option<String> {
    if let Some(name) = &sources.cookie {
        retain(&mut parts.headers, header::COOKIE, |v| {
            without_cookie(v, name.as_bytes())
        });
    }
    if let Some(name) = &sources.query {
        if let Some(target) = target_without(&parts.uri, name) {
            // A path and some of a valid query's own parameters are a valid target again;
            // were they not, the path alone still goes on without the token.
            parts.uri = Uri::try_from(target)
                .or_else(|_| Uri::try_from(parts.uri.path()))
                .unwrap_or_default();
        }
    }
    if sources.bearer {
        retain(&mut parts.headers, header::AUTHORIZATION, |v| {
            (!is_bearer(v)).then(|| v.clone())
        });
    }
    let prefix = sources.protocol_prefix.as_deref()?;
    protocols.retain(|p| !p.starts_with(prefix));
    if !protocols.is_empty() {
        return None;
    }
    offered_protocols(&parts.headers)
        .find(|p| p.starts_with(prefix))
        .map(str::to_owned)
}

/// Replaces the values of `name` by what `keep` makes of each, in order.
fn retain(h: &mut HeaderMap, name: HeaderName, keep: impl Fn(&HeaderValue) -> Option<HeaderValue>) {
    let kept: Vec<HeaderValue> = h.get_all(&name).iter().filter_map(keep).collect();
    h.remove(&name);
    for v in kept {
        h.append(&name, v);
    }
}

/// A `Cookie` value without its pairs named `name`, compared with the spaces around the
/// name taken off (RFC 6265 §5.2 strips them); `None` if nothing is left. A value without
/// such a pair stays as it came.
fn without_cookie(value: &HeaderValue, name: &[u8]) -> Option<HeaderValue> {
    let is_token = |pair: &[u8]| {
        let n = pair.split(|&b| b == b'=').next().unwrap_or_default();
        n.trim_ascii() == name
    };
    let pairs = value.as_bytes().split(|&b| b == b';');
    if !pairs.clone().any(is_token) {
        return Some(value.clone());
    }
    let kept: Vec<&[u8]> = pairs
        .map(<[u8]>::trim_ascii)
        .filter(|p| !p.is_empty() && !is_token(p))
        .collect();
    if kept.is_empty() {
        return None;
    }
    // Pieces of a valid value joined by "; " are a valid value.
    HeaderValue::from_bytes(&kept.join(&b"; "[..])).ok()
}

/// An `Authorization` value of the Bearer scheme, however it is spelled or followed.
fn is_bearer(value: &HeaderValue) -> bool {
    let v = value.as_bytes().trim_ascii_start();
    v.get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case(b"bearer"))
        && v.get(6).is_none_or(u8::is_ascii_whitespace)
}

/// The request target (path and query) without any query parameter `name`; `None` when it
/// has none, so the target goes on as it came.
fn target_without(uri: &Uri, name: &str) -> Option<String> {
    let query = uri.query()?;
    let is_token = |pair: &&str| {
        let n = pair.split_once('=').map_or(*pair, |(n, _)| n);
        percent_decode(n).as_deref() == Some(name)
    };
    if !query.split('&').any(|p| is_token(&p)) {
        return None;
    }
    let kept: Vec<&str> = query.split('&').filter(|p| !is_token(p)).collect();
    let path = uri.path();
    Some(if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(target: &str, headers: &[(&str, &str)]) -> Parts {
        let mut req = http::Request::get(target);
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    fn all() -> TokenSources {
        TokenSources {
            cookie: Some("session".into()),
            query: Some("access_token".into()),
            protocol_prefix: Some("token.".into()),
            bearer: true,
        }
    }

    fn token(value: &str) -> Option<Result<String, ()>> {
        Some(Ok(value.into()))
    }

    #[test]
    fn sources_are_tried_in_order() {
        let p = parts(
            "/chat?access_token=q",
            &[
                ("cookie", "a=1; session=c"),
                ("sec-websocket-protocol", "chat, token.p"),
                ("authorization", "Bearer b"),
            ],
        );
        assert_eq!(find(&all(), &p), token("c"));
        let only = |s: TokenSources| find(&s, &p);
        let none = TokenSources::default();
        assert_eq!(
            only(TokenSources {
                query: Some("access_token".into()),
                ..none.clone()
            }),
            token("q")
        );
        assert_eq!(
            only(TokenSources {
                protocol_prefix: Some("token.".into()),
                ..none.clone()
            }),
            token("p")
        );
        assert_eq!(
            only(TokenSources {
                bearer: true,
                ..none.clone()
            }),
            token("b")
        );
        assert_eq!(only(none), None);
    }

    #[test]
    fn cookie_values_and_names() {
        let s = all();
        let p = parts("/", &[("cookie", "sessionx=no; session=\"q\"")]);
        assert_eq!(find(&s, &p), token("q"));
        let p = parts("/", &[("cookie", "other=1"), ("cookie", "session=two")]);
        assert_eq!(find(&s, &p), token("two"));
        assert_eq!(
            find(&s, &parts("/", &[("cookie", "session=")])),
            Some(Err(()))
        );
    }

    #[test]
    fn query_values_are_decoded() {
        let s = all();
        let p = parts("/c?x=1&access%5Ftoken=a%2Eb&access_token=second", &[]);
        assert_eq!(find(&s, &p), token("a.b"));
        assert_eq!(find(&s, &parts("/c?access_token", &[])), Some(Err(())));
        assert_eq!(find(&s, &parts("/c?access_token=%zz", &[])), Some(Err(())));
    }

    #[test]
    fn bearer_rules() {
        let s = all();
        let p = parts("/", &[("authorization", "bEaReR  t.u.v ")]);
        assert_eq!(find(&s, &p), token("t.u.v"));
        for bad in ["Basic abc", "Bearer", "Bearer "] {
            let p = parts("/", &[("authorization", bad)]);
            assert_eq!(find(&s, &p), Some(Err(())), "{bad}");
        }
        let twice = parts(
            "/",
            &[("authorization", "Bearer a"), ("authorization", "Bearer b")],
        );
        assert_eq!(find(&s, &twice), Some(Err(())));
    }

    #[test]
    fn the_token_parameter_is_taken_out_of_the_target() {
        let p = parts("/chat?room=1&access_token=x&b=2&access_token=y", &[]);
        assert_eq!(
            target_without(&p.uri, "access_token").as_deref(),
            Some("/chat?room=1&b=2")
        );
        let p = parts("/chat?access_token=x", &[]);
        assert_eq!(
            target_without(&p.uri, "access_token").as_deref(),
            Some("/chat")
        );
        let p = parts("/chat?room=1", &[]);
        assert_eq!(target_without(&p.uri, "access_token"), None);
    }

    /// What [`strip`] leaves of a request: its target, its `Cookie` and `Authorization`
    /// values, the offer for the backend and the 101's fallback.
    fn stripped(
        sources: &TokenSources,
        target: &str,
        headers: &[(&str, &str)],
    ) -> (
        String,
        Vec<String>,
        Vec<String>,
        Vec<String>,
        Option<String>,
    ) {
        let mut p = parts(target, headers);
        let mut protocols: Vec<String> = offered_protocols(&p.headers).map(str::to_owned).collect();
        let answer = strip(sources, &mut p, &mut protocols);
        let all = |name| {
            p.headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect()
        };
        (
            p.uri.to_string(),
            all(header::COOKIE),
            all(header::AUTHORIZATION),
            protocols,
            answer,
        )
    }

    #[test]
    fn every_source_is_stripped_whichever_held_the_token() {
        let headers = [
            ("cookie", "theme=dark; session=alice"),
            ("cookie", "session=second"),
            ("sec-websocket-protocol", "chat, token.carol, token.dave"),
            ("authorization", "Bearer erin"),
            ("authorization", "Basic dXNlcjpwdw=="),
        ];
        let p = parts("/chat?room=7&access_token=bob&b=2", &headers);
        assert_eq!(find(&all(), &p), token("alice"));
        let (target, cookies, authorization, protocols, answer) =
            stripped(&all(), "/chat?room=7&access_token=bob&b=2", &headers);
        assert_eq!(target, "/chat?room=7&b=2");
        assert_eq!(cookies, ["theme=dark"]);
        assert_eq!(authorization, ["Basic dXNlcjpwdw=="]);
        assert_eq!(protocols, ["chat"]);
        assert_eq!(answer, None);
    }

    #[test]
    fn unconfigured_sources_and_other_values_stay_as_they_came() {
        let headers = [
            ("cookie", "theme=dark;session=alice"),
            ("sec-websocket-protocol", "chat, token.carol"),
            ("authorization", "Bearer erin"),
        ];
        let target = "/chat?access_token=bob";
        let (t, cookies, authorization, protocols, answer) =
            stripped(&TokenSources::default(), target, &headers);
        assert_eq!(t, target);
        assert_eq!(cookies, ["theme=dark;session=alice"]);
        assert_eq!(authorization, ["Bearer erin"]);
        assert_eq!(protocols, ["chat", "token.carol"]);
        assert_eq!(answer, None);
    }

    #[test]
    fn stripping_matches_what_a_backend_may_read() {
        let headers = [
            ("cookie", " session = \"a\" ;x=1; session"),
            ("cookie", "session=b"),
            ("authorization", "bEaReR\tc"),
            ("authorization", "Bearer"),
            ("authorization", "Bearerx d"),
        ];
        let (target, cookies, authorization, _, _) =
            stripped(&all(), "/c?access%5Ftoken=q&access_token&x=1", &headers);
        assert_eq!(target, "/c?x=1");
        assert_eq!(cookies, ["x=1"]);
        assert_eq!(authorization, ["Bearerx d"]);
        let (target, ..) = stripped(&all(), "/c?access_token=q", &[]);
        assert_eq!(target, "/c");
    }

    #[test]
    fn a_token_offer_left_alone_is_what_the_101_names() {
        let offer = [("sec-websocket-protocol", "token.carol, token.dave")];
        let (.., protocols, answer) = stripped(&all(), "/", &offer);
        assert!(protocols.is_empty());
        assert_eq!(answer.as_deref(), Some("token.carol"));
        let (.., answer) = stripped(&all(), "/", &[("sec-websocket-protocol", "chat")]);
        assert_eq!(answer, None);
        let (.., answer) = stripped(&all(), "/", &[]);
        assert_eq!(answer, None);
    }
}
