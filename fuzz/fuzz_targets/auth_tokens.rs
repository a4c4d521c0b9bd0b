//! The path a credential takes before any signature is checked: an upgrade request with
//! tokens put in random sources (cookies, query parameters, subprotocol values, bearer
//! headers, each spelled in the ways a client may), through the handshake check, the
//! token search and the stripping, to the head a backend would receive. Besides "no
//! panic": no token of a configured source is in that head, nothing else was taken out,
//! and the subprotocol the 101 falls back to is one the client offered. And the claims
//! check on JSON from fuzz bytes: what passes has every registered claim of its type.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use arbitrary::Arbitrary;
use http::request::Parts;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use wsguard::auth::config::{JwtConfig, TokenSources};
use wsguard::auth::{claims, token};
use wsguard::config::Config;
use wsguard::handshake::{self, offered_protocols};
use wsguard::upstream::{self, ClientInfo, Identity, Sender};

const CONFIG: &str = r#"
[origin]
allow = ["https://chat.example.com"]

[[route]]
path = "/"
match = "prefix"
backends = ["127.0.0.1:9000"]
"#;

const COOKIE: &str = "session";
const QUERY: &str = "access_token";
const PREFIX: &str = "token.";

fn setup() -> &'static Config {
    static SETUP: OnceLock<Config> = OnceLock::new();
    SETUP.get_or_init(|| Config::from_str(CONFIG, "fuzz.toml").expect("fuzz config is valid"))
}

#[derive(Arbitrary, Debug)]
struct Input {
    cookie: bool,
    query: bool,
    protocol: bool,
    bearer: bool,
    /// The token's text; each source gets its own, marked `~c`, `~q`, `~p` or `~b`.
    token: String,
    path: String,
    pairs: Vec<Pair>,
    cookies: Vec<Vec<Crumb>>,
    offers: Vec<Vec<Offer>>,
    authorization: Vec<Auth>,
    claims: Claims,
}

#[derive(Arbitrary, Debug)]
enum Pair {
    /// The token parameter, its name's bytes percent-encoded where `escape` has a bit set.
    Token {
        escape: u16,
        escape_value: bool,
        no_value: bool,
    },
    Other(String, String),
}

#[derive(Arbitrary, Debug)]
enum Crumb {
    Token {
        left: u8,
        right: u8,
        quoted: bool,
    },
    Other(String, String),
    /// A piece without `=`.
    Bare(String),
}

#[derive(Arbitrary, Debug)]
enum Offer {
    Token,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Auth {
    /// `bearer` in the cases of `case`'s bits, then `gap` spaces or tabs, then the token.
    Bearer {
        case: u8,
        gap: u8,
    },
    Other(String),
}

#[derive(Arbitrary, Debug)]
struct Claims {
    json: String,
    issuer: bool,
    audience: bool,
    require_exp: bool,
    leeway: u8,
    now: u32,
}

/// `s` with only letters, digits, `-`, `_` and `.`: nothing that splits a query, a cookie
/// or an offer, nothing a percent escape or a token marker (`~`) starts with.
fn plain(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(max)
        .collect()
}

fn escaped(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// The request, and what a backend must still get of it when every source is configured
/// and stripped: its query pairs, cookie pieces, authorization values.
struct Built {
    parts: Parts,
    kept_pairs: Vec<String>,
    kept_crumbs: Vec<String>,
    kept_auth: Vec<String>,
    path: String,
}

fn build(input: &Input, sources: &TokenSources) -> Option<Built> {
    let text = plain(&input.token, 64);
    let tok = |mark: char| format!("~{mark}{text}");
    let path = format!("/{}", plain(&input.path, 32));

    let (mut pairs, mut kept_pairs) = (Vec::new(), Vec::new());
    for p in input.pairs.iter().take(8) {
        match p {
            Pair::Token {
                escape,
                escape_value,
                no_value,
            } => {
                let name: String = QUERY
                    .char_indices()
                    .map(|(i, c)| {
                        if escape & (1 << i) != 0 {
                            escaped(&c.to_string())
                        } else {
                            c.to_string()
                        }
                    })
                    .collect();
                let value = if *escape_value {
                    escaped(&tok('q'))
                } else {
                    tok('q')
                };
                let pair = if *no_value {
                    name
                } else {
                    format!("{name}={value}")
                };
                if sources.query.is_none() {
                    kept_pairs.push(pair.clone());
                }
                pairs.push(pair);
            }
            Pair::Other(n, v) => {
                let (n, v) = (plain(n, 16), plain(v, 16));
                let pair = format!("{n}={v}");
                if sources.query.is_none() || n != QUERY {
                    kept_pairs.push(pair.clone());
                }
                pairs.push(pair);
            }
        }
    }
    let target = if pairs.is_empty() {
        path.clone()
    } else {
        format!("{path}?{}", pairs.join("&"))
    };

    let mut req = http::Request::get(target)
        .header("host", "chat.example.com")
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("origin", "https://chat.example.com");

    let mut kept_crumbs = Vec::new();
    for header in input.cookies.iter().take(4) {
        let mut pieces = Vec::new();
        for c in header.iter().take(8) {
            let (piece, token_named) = match c {
                Crumb::Token {
                    left,
                    right,
                    quoted,
                } => {
                    let pad = |n: &u8| " ".repeat(usize::from(n % 3));
                    let value = if *quoted {
                        format!("\"{}\"", tok('c'))
                    } else {
                        tok('c')
                    };
                    (format!("{}{COOKIE}{}={value}", pad(left), pad(right)), true)
                }
                Crumb::Other(n, v) => {
                    let n = plain(n, 16);
                    let named = n == COOKIE;
                    (format!("{n}={}", plain(v, 16)), named)
                }
                Crumb::Bare(s) => {
                    let s = plain(s, 16);
                    let named = s == COOKIE;
                    (s, named)
                }
            };
            if sources.cookie.is_none() || !token_named {
                kept_crumbs.push(piece.trim().to_owned());
            }
            pieces.push(piece);
        }
        req = req.header("cookie", pieces.join(";"));
    }
    kept_crumbs.retain(|c| !c.is_empty());

    for header in input.offers.iter().take(4) {
        let offers: Vec<String> = header
            .iter()
            .take(8)
            .map(|o| match o {
                Offer::Token => format!("{PREFIX}{}", tok('p')),
                Offer::Other(s) => plain(s, 16),
            })
            .collect();
        req = req.header("sec-websocket-protocol", offers.join(", "));
    }

    let mut kept_auth = Vec::new();
    for a in input.authorization.iter().take(4) {
        let value = match a {
            Auth::Bearer { case, gap } => {
                let scheme: String = "bearer"
                    .chars()
                    .enumerate()
                    .map(|(i, c)| {
                        if case & (1 << i) != 0 {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        }
                    })
                    .collect();
                let gap = if gap % 2 == 0 { " " } else { "\t" }.repeat(usize::from(gap % 3) + 1);
                let value = format!("{scheme}{gap}{}", tok('b'));
                if !sources.bearer {
                    kept_auth.push(value.clone());
                }
                value
            }
            Auth::Other(s) => {
                let value = format!("Basic {}", plain(s, 16));
                kept_auth.push(value.trim().to_owned());
                value
            }
        };
        req = req.header("authorization", value);
    }

    let (parts, ()) = req.body(()).ok()?.into_parts();
    Some(Built {
        parts,
        kept_pairs,
        kept_crumbs,
        kept_auth,
        path,
    })
}

/// The head `bytes` as a request.
fn parse(bytes: &[u8]) -> Parts {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = req.parse(bytes) else {
        panic!(
            "the backend's head does not parse: {:?}",
            String::from_utf8_lossy(bytes)
        );
    };
    let mut builder = http::Request::get(req.path.expect("a target"));
    for h in req.headers.iter() {
        builder = builder.header(h.name, h.value);
    }
    builder.body(()).expect("a valid request").into_parts().0
}

fn values(parts: &Parts, name: &str) -> Vec<String> {
    parts
        .headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
        .collect()
}

fn strip_check(input: &Input) {
    let sources = TokenSources {
        cookie: input.cookie.then(|| COOKIE.to_owned()),
        query: input.query.then(|| QUERY.to_owned()),
        protocol_prefix: input.protocol.then(|| PREFIX.to_owned()),
        bearer: input.bearer,
    };
    let Some(mut built) = build(input, &sources) else {
        return;
    };
    let Ok(mut upgrade) = handshake::check(&built.parts, setup()) else {
        return;
    };
    // The search must not panic on anything; what it finds is checked by the tests.
    let _ = token::find(&sources, &built.parts);

    let before = upgrade.protocols.clone();
    let offered: Vec<String> = offered_protocols(&built.parts.headers)
        .map(str::to_owned)
        .collect();
    let answer = token::strip(&sources, &mut built.parts, &mut upgrade.protocols);
    let client = ClientInfo {
        peer: SocketAddr::from(([192, 0, 2, 1], 40000)),
        tls: true,
    };
    let sender = Sender {
        client: &client,
        identity: Identity::default(),
    };
    let head = upstream::request_head(&built.parts, &upgrade, &sender);
    let text = String::from_utf8_lossy(&head);

    // No token of a configured source, in any spelling it was sent in.
    for (on, mark) in [
        (sources.cookie.is_some(), 'c'),
        (sources.query.is_some(), 'q'),
        (sources.protocol_prefix.is_some(), 'p'),
        (sources.bearer, 'b'),
    ] {
        if on {
            let raw = format!("~{mark}");
            assert!(!text.contains(&raw), "{raw} reached the backend:\n{text}");
            assert!(!text.contains(&escaped(&raw)), "{raw} escaped:\n{text}");
        }
    }
    let got = parse(&head);
    let only = |s: TokenSources| token::find(&s, &got);
    let none = TokenSources::default();
    if let Some(c) = &sources.cookie {
        let s = TokenSources {
            cookie: Some(c.clone()),
            ..none.clone()
        };
        assert_eq!(only(s), None, "{text}");
    }
    if let Some(q) = &sources.query {
        let s = TokenSources {
            query: Some(q.clone()),
            ..none.clone()
        };
        assert_eq!(only(s), None, "{text}");
    }
    if let Some(p) = &sources.protocol_prefix {
        let s = TokenSources {
            protocol_prefix: Some(p.clone()),
            ..none.clone()
        };
        assert_eq!(only(s), None, "{text}");
    }
    if sources.bearer {
        let s = TokenSources {
            bearer: true,
            ..none.clone()
        };
        assert!(!matches!(only(s), Some(Ok(_))), "{text}");
    }

    // Nothing that is not a token was taken out, and the order is the client's.
    let target = got.uri.path_and_query().expect("a target").as_str();
    let want = if built.kept_pairs.is_empty() {
        built.path.clone()
    } else {
        format!("{}?{}", built.path, built.kept_pairs.join("&"))
    };
    assert_eq!(target, want, "{text}");
    let crumbs: Vec<String> = values(&got, "cookie")
        .iter()
        .flat_map(|v| v.split(';').map(|c| c.trim().to_owned()))
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(crumbs, built.kept_crumbs, "{text}");
    assert_eq!(values(&got, "authorization"), built.kept_auth, "{text}");
    let kept: Vec<String> = match &sources.protocol_prefix {
        Some(p) => before.into_iter().filter(|o| !o.starts_with(p)).collect(),
        None => before,
    };
    assert_eq!(upgrade.protocols, kept);
    let sent: Vec<String> = offered_protocols(&got.headers).map(str::to_owned).collect();
    assert_eq!(sent, kept, "{text}");

    // The 101's fallback: only when nothing is left to offer, and one the client sent.
    if let Some(a) = answer {
        assert!(upgrade.protocols.is_empty());
        assert!(offered.contains(&a), "{a} was not offered");
    }
}

/// What the claims check lets through has every registered claim of its type.
fn claims_check(c: &Claims) {
    let Ok(map) = serde_json::from_str::<Map<String, Value>>(&c.json) else {
        return;
    };
    let cfg = JwtConfig {
        sources: TokenSources::default(),
        algorithms: vec![],
        public_keys: vec![],
        hmac_secret_file: None,
        jwks: None,
        issuers: if c.issuer {
            vec!["https://idp.test".to_owned()]
        } else {
            vec![]
        },
        audiences: if c.audience {
            vec!["chat".to_owned()]
        } else {
            vec![]
        },
        leeway: Duration::from_secs(u64::from(c.leeway)),
        require_exp: c.require_exp,
        claim_headers: vec![],
    };
    let now = UNIX_EPOCH + Duration::from_secs(u64::from(c.now));
    let Ok(exp) = claims::check(&map, &cfg, now) else {
        return;
    };
    for name in ["iss", "sub", "jti"] {
        assert!(map.get(name).is_none_or(Value::is_string), "{name}");
    }
    let date = |name| map.get(name).map(|v| v.as_f64().filter(|s| *s >= 0.0));
    for name in ["exp", "nbf", "iat"] {
        assert!(!matches!(date(name), Some(None)), "{name}");
    }
    assert_eq!(exp.is_some(), map.contains_key("exp"));
    assert!(exp.is_some() || !c.require_exp);
    if let Some(Some(nbf)) = date("nbf") {
        let now = now.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(nbf <= now + f64::from(c.leeway));
    }
    if c.issuer {
        assert_eq!(map.get("iss"), Some(&Value::from("https://idp.test")));
    }
    let aud: Option<Vec<&str>> = match map.get("aud") {
        None => None,
        Some(Value::String(s)) => Some(vec![s]),
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|v| v.as_str().expect("aud holds strings"))
                .collect(),
        ),
        Some(other) => panic!("aud {other}"),
    };
    if c.audience {
        assert!(aud.expect("aud is required").contains(&"chat"));
    }
}

fuzz_target!(|input: Input| {
    strip_check(&input);
    claims_check(&input.claims);
});
