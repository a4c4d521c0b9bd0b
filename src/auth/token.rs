//! Where a JWT is found in an upgrade request, in a fixed order (cookie, query parameter,
//! subprotocol value, `Authorization: Bearer`), and the request target with the token
//! taken out. Pure: no I/O.

use http::header::{self, HeaderMap};
use http::request::Parts;

use super::config::TokenSources;
use crate::handshake::offered_protocols;

/// Where a token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cookie,
    Query,
    Protocol,
    Bearer,
}

/// A token as presented, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub value: String,
    pub source: Source,
}

/// The token of the first configured source present in `parts`. `Err(())` when that source
/// is present but holds no usable token (an empty value, a non-Bearer `Authorization`,
/// several `Authorization` headers).
pub fn find(sources: &TokenSources, parts: &Parts) -> Option<Result<Token, ()>> {
    let h = &parts.headers;
    let ok = |v: Option<String>| v.map(Ok);
    let candidates = [
        (
            ok(sources.cookie.as_deref().and_then(|n| cookie(h, n))),
            Source::Cookie,
        ),
        (
            ok(sources
                .query
                .as_deref()
                .and_then(|n| query(parts.uri.query(), n))),
            Source::Query,
        ),
        (
            ok(sources
                .protocol_prefix
                .as_deref()
                .and_then(|p| protocol(h, p))),
            Source::Protocol,
        ),
        (sources.bearer.then(|| bearer(h)).flatten(), Source::Bearer),
    ];
    let (value, source) = candidates.into_iter().find(|(v, _)| v.is_some())?;
    Some(value?.and_then(|value| {
        if value.is_empty() {
            Err(())
        } else {
            Ok(Token { value, source })
        }
    }))
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

/// The request target (path and query) without any query parameter `name`; `None` when it
/// has none, so the target goes on as it came.
pub fn target_without(parts: &Parts, name: &str) -> Option<String> {
    let query = parts.uri.query()?;
    let is_token = |pair: &&str| {
        let n = pair.split_once('=').map_or(*pair, |(n, _)| n);
        percent_decode(n).as_deref() == Some(name)
    };
    if !query.split('&').any(|p| is_token(&p)) {
        return None;
    }
    let kept: Vec<&str> = query.split('&').filter(|p| !is_token(p)).collect();
    let path = parts.uri.path();
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

    fn token(value: &str, source: Source) -> Option<Result<Token, ()>> {
        Some(Ok(Token {
            value: value.into(),
            source,
        }))
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
        assert_eq!(find(&all(), &p), token("c", Source::Cookie));
        let only = |s: TokenSources| find(&s, &p);
        let none = TokenSources::default();
        assert_eq!(
            only(TokenSources {
                query: Some("access_token".into()),
                ..none.clone()
            }),
            token("q", Source::Query)
        );
        assert_eq!(
            only(TokenSources {
                protocol_prefix: Some("token.".into()),
                ..none.clone()
            }),
            token("p", Source::Protocol)
        );
        assert_eq!(
            only(TokenSources {
                bearer: true,
                ..none.clone()
            }),
            token("b", Source::Bearer)
        );
        assert_eq!(only(none), None);
    }

    #[test]
    fn cookie_values_and_names() {
        let s = all();
        let p = parts("/", &[("cookie", "sessionx=no; session=\"q\"")]);
        assert_eq!(find(&s, &p), token("q", Source::Cookie));
        let p = parts("/", &[("cookie", "other=1"), ("cookie", "session=two")]);
        assert_eq!(find(&s, &p), token("two", Source::Cookie));
        assert_eq!(
            find(&s, &parts("/", &[("cookie", "session=")])),
            Some(Err(()))
        );
    }

    #[test]
    fn query_values_are_decoded() {
        let s = all();
        let p = parts("/c?x=1&access%5Ftoken=a%2Eb&access_token=second", &[]);
        assert_eq!(find(&s, &p), token("a.b", Source::Query));
        assert_eq!(find(&s, &parts("/c?access_token", &[])), Some(Err(())));
        assert_eq!(find(&s, &parts("/c?access_token=%zz", &[])), Some(Err(())));
    }

    #[test]
    fn bearer_rules() {
        let s = all();
        let p = parts("/", &[("authorization", "bEaReR  t.u.v ")]);
        assert_eq!(find(&s, &p), token("t.u.v", Source::Bearer));
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
            target_without(&p, "access_token").as_deref(),
            Some("/chat?room=1&b=2")
        );
        let p = parts("/chat?access_token=x", &[]);
        assert_eq!(target_without(&p, "access_token").as_deref(), Some("/chat"));
        let p = parts("/chat?room=1", &[]);
        assert_eq!(target_without(&p, "access_token"), None);
    }
}
