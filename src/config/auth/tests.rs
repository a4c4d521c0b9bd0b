//! `[auth.NAME]` sections, the route keys that use them and the per-IP failure limit: full
//! sections parse into their values and print back to them, and every problem has its
//! message and line.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ::http::HeaderName;
use jsonwebtoken::Algorithm;

use crate::auth::config::*;
use crate::config::tests::{errors, nz, MANIFEST, MINIMAL};
use crate::config::*;

/// A route that uses `[auth.users]`, for sections written above it.
const USERS_ROUTE: &str =
    "[[route]]\npath = \"/chat\"\nbackends = [\"127.0.0.1:9000\"]\nauth = \"users\"\n";
/// A file that exists, for keys whose file is only checked for being readable.
const A_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
/// A JWT section that needs no file (lines 1-4).
const JWT: &str = "[auth.users]\ntype = \"jwt\"\nalgorithms = [\"RS256\"]\njwks_url = \"https://idp.example/jwks\"\n";
/// A forward section (lines 1-3).
const FORWARD: &str = "[auth.users]\ntype = \"forward\"\nurl = \"http://127.0.0.1:9001/auth\"\n";

/// A directory of its own with the given files in it, removed on drop.
struct Files(PathBuf);

impl Files {
    fn new(files: &[(&str, &str)]) -> Files {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wsguard-config-{}-{n}", std::process::id()));
        for (name, content) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        Files(dir)
    }

    /// The config's name: relative paths resolve against this directory.
    fn origin(&self) -> String {
        self.0.join("t.toml").display().to_string()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The problem lines of `src` equal `expected`, in order.
fn assert_problems(src: &str, expected: &[&str]) {
    let err = errors(src);
    let got: Vec<&str> = err.lines().collect();
    assert_eq!(got, expected, "\n{err}");
}

/// `src` loads, and its effective settings load back to the same settings.
fn round_trip(src: &str, origin: &str) -> Config {
    let c = Config::from_str(src, origin).unwrap_or_else(|e| panic!("{e}"));
    let text = c.to_effective_toml();
    let again = Config::from_str(&text, origin).unwrap_or_else(|e| panic!("{text}\n{e}"));
    assert_eq!(again, c, "{text}");
    assert_eq!(again.to_effective_toml(), text);
    c
}

fn header(name: &'static str) -> HeaderName {
    HeaderName::from_static(name)
}

#[test]
fn full_jwt_section_parses_into_its_values() {
    let files = Files::new(&[
        ("keys/rs.pem", "-----BEGIN PUBLIC KEY-----\n"),
        ("keys/es.pem", "-----BEGIN PUBLIC KEY-----\n"),
        ("keys/hs.secret", "hunter2-the-secret\n"),
        ("certs/idp-ca.pem", "-----BEGIN CERTIFICATE-----\n"),
    ]);
    let src = r#"
[limits]
auth_failures_per_ip = 5
auth_failure_burst = 2

[auth.users]
type = "jwt"
grace = "1m"
cookie = "session"
query = "access_token"
protocol_prefix = "access_token."
bearer = false
algorithms = ["RS256", "ES256", "HS512", "EdDSA"]
public_keys = ["keys/rs.pem", "keys/es.pem"]
hmac_secret_file = "keys/hs.secret"
jwks_url = "https://idp.example/.well-known/jwks.json"
jwks_ca_file = "certs/idp-ca.pem"
jwks_refresh = "10m"
jwks_min_refresh = "1m"
jwks_timeout = "500ms"
issuer = ["https://idp.example/", "https://idp2.example/"]
audience = "chat"
leeway = "0s"
require_exp = false
claim_headers = { sub = "X-Auth-Subject", "realm.roles" = "x-auth-roles", "it's \"odd\"\n" = "X-Odd" }

[[route]]
path = "/chat"
backends = ["127.0.0.1:9000"]
auth = "users"
keep_token = true
max_session = "30d"

[[route]]
path = "/open"
backends = ["127.0.0.1:9000"]
max_session = "90s"
"#;
    let c = round_trip(src, &files.origin());
    let dir = &files.0;
    assert_eq!(
        (c.limits.auth_failures_per_ip, c.limits.auth_failure_burst),
        (nz(5), nz(2))
    );
    let expected = AuthConfig {
        name: "users".into(),
        grace: Duration::from_secs(60),
        kind: AuthKind::Jwt(JwtConfig {
            sources: TokenSources {
                cookie: Some("session".into()),
                query: Some("access_token".into()),
                protocol_prefix: Some("access_token.".into()),
                bearer: false,
            },
            algorithms: vec![
                Algorithm::RS256,
                Algorithm::ES256,
                Algorithm::HS512,
                Algorithm::EdDSA,
            ],
            public_keys: vec![dir.join("keys/rs.pem"), dir.join("keys/es.pem")],
            hmac_secret_file: Some(dir.join("keys/hs.secret")),
            jwks: Some(JwksConfig {
                url: "https://idp.example/.well-known/jwks.json".into(),
                ca_file: Some(dir.join("certs/idp-ca.pem")),
                refresh: Duration::from_secs(600),
                min_refresh: Duration::from_secs(60),
                timeout: Duration::from_millis(500),
            }),
            issuers: vec![
                "https://idp.example/".into(),
                "https://idp2.example/".into(),
            ],
            audiences: vec!["chat".into()],
            leeway: Duration::ZERO,
            require_exp: false,
            claim_headers: vec![
                ("sub".into(), header("x-auth-subject")),
                ("realm.roles".into(), header("x-auth-roles")),
                ("it's \"odd\"\n".into(), header("x-odd")),
            ],
        }),
    };
    assert_eq!(c.auth, [expected]);
    assert_eq!(
        c.routes[0].auth,
        RouteAuth {
            auth: Some(0),
            keep_token: true,
            max_session: Some(Duration::from_secs(30 * 86_400)),
        }
    );
    assert_eq!(
        c.routes[1].auth,
        RouteAuth {
            auth: None,
            keep_token: false,
            max_session: Some(Duration::from_secs(90)),
        }
    );
    let text = c.to_effective_toml();
    assert!(!text.contains("hunter2"), "the secret is printed:\n{text}");
    for line in [
        "auth_failures_per_ip = 5\nauth_failure_burst = 2\n",
        "[auth.users]\ntype = \"jwt\"\ngrace = \"1m\"\n",
        "algorithms = [\"RS256\", \"ES256\", \"HS512\", \"EdDSA\"]\n",
        "claim_headers = { \"sub\" = \"x-auth-subject\", \"realm.roles\" = \"x-auth-roles\", \"it's \\\"odd\\\"\\u000A\" = \"x-odd\" }\n",
        "auth = \"users\"\nkeep_token = true\nmax_session = \"720h\"\n",
        "# auth: not set (open route)\nmax_session = \"90s\"\n",
    ] {
        assert!(text.contains(line), "lacks {line}:\n{text}");
    }
}

#[test]
fn full_forward_section_parses_into_its_values() {
    let files = Files::new(&[("certs/auth-ca.pem", "-----BEGIN CERTIFICATE-----\n")]);
    let src = r#"[auth.sso]
type = "forward"
grace = "5s"
url = "https://auth.internal:9001/auth?realm=chat"
ca_file = "certs/auth-ca.pem"
timeout = "10ms"
copy_headers = ["X-Auth-User", "X-Auth-Roles"]
on_error = "open"
cache_ttl = "1h"
cache_size = 1000000
expires_header = "X-Session-End"

[[route]]
path = "/chat"
backends = ["127.0.0.1:9000"]
auth = "sso"
"#;
    let c = round_trip(src, &files.origin());
    let expected = AuthConfig {
        name: "sso".into(),
        grace: Duration::from_secs(5),
        kind: AuthKind::Forward(ForwardConfig {
            url: "https://auth.internal:9001/auth?realm=chat"
                .parse()
                .unwrap(),
            ca_file: Some(files.0.join("certs/auth-ca.pem")),
            timeout: Duration::from_millis(10),
            copy_headers: vec![header("x-auth-user"), header("x-auth-roles")],
            on_error: ForwardOnError::Open,
            cache_ttl: Some(Duration::from_secs(3600)),
            cache_size: 1_000_000,
            expires_header: header("x-session-end"),
        }),
    };
    assert_eq!(c.auth, [expected]);
    assert_eq!(c.routes[0].auth.auth, Some(0));
    assert!(!c.routes[0].auth.keep_token);
    // The cache off, and how it prints.
    let src = FORWARD.to_owned() + "cache_ttl = \"off\"\n" + USERS_ROUTE;
    let c = round_trip(&src, "t.toml");
    let AuthKind::Forward(f) = &c.auth[0].kind else {
        panic!("not forward")
    };
    assert_eq!(f.cache_ttl, None);
    let text = c.to_effective_toml();
    assert!(
        text.contains("cache_ttl = \"off\"\n# cache_size: no cache (cache_ttl is off)\n"),
        "{text}"
    );
}

#[test]
fn defaults_fill_in() {
    let c = round_trip(&(JWT.to_owned() + USERS_ROUTE), "t.toml");
    let expected = AuthConfig {
        name: "users".into(),
        grace: Duration::ZERO,
        kind: AuthKind::Jwt(JwtConfig {
            sources: TokenSources {
                bearer: true,
                ..TokenSources::default()
            },
            algorithms: vec![Algorithm::RS256],
            public_keys: vec![],
            hmac_secret_file: None,
            jwks: Some(JwksConfig {
                url: "https://idp.example/jwks".into(),
                ca_file: None,
                refresh: DEFAULT_JWKS_REFRESH,
                min_refresh: DEFAULT_JWKS_MIN_REFRESH,
                timeout: DEFAULT_JWKS_TIMEOUT,
            }),
            issuers: vec![],
            audiences: vec![],
            leeway: DEFAULT_LEEWAY,
            require_exp: true,
            claim_headers: vec![],
        }),
    };
    assert_eq!(c.auth, [expected]);
    assert_eq!(
        c.routes[0].auth,
        RouteAuth {
            auth: Some(0),
            keep_token: false,
            max_session: None
        }
    );
    let text = c.to_effective_toml();
    for line in [
        "[auth.users]\ntype = \"jwt\"\ngrace = \"0ms\"\n# cookie: not set\n# query: not set\n# protocol_prefix: not set\nbearer = true\n",
        "public_keys = []\n# hmac_secret_file: not set\njwks_url = \"https://idp.example/jwks\"\n# jwks_ca_file: not set (the system's roots)\njwks_refresh = \"5m\"\njwks_min_refresh = \"30s\"\njwks_timeout = \"5s\"\n# issuer: not checked\n# audience: not checked\nleeway = \"30s\"\nrequire_exp = true\nclaim_headers = {}\n",
    ] {
        assert!(text.contains(line), "lacks {line}:\n{text}");
    }

    let c = round_trip(&(FORWARD.to_owned() + USERS_ROUTE), "t.toml");
    let AuthKind::Forward(f) = &c.auth[0].kind else {
        panic!("not forward")
    };
    assert_eq!(
        *f,
        ForwardConfig {
            url: "http://127.0.0.1:9001/auth".parse().unwrap(),
            ca_file: None,
            timeout: DEFAULT_FORWARD_TIMEOUT,
            copy_headers: vec![],
            on_error: ForwardOnError::Closed,
            cache_ttl: Some(DEFAULT_CACHE_TTL),
            cache_size: DEFAULT_CACHE_SIZE,
            expires_header: header(DEFAULT_EXPIRES_HEADER),
        }
    );
    let text = c.to_effective_toml();
    assert!(text.contains("[auth.users]\ntype = \"forward\"\ngrace = \"0ms\"\nurl = \"http://127.0.0.1:9001/auth\"\n# ca_file: not set (the system's roots)\ntimeout = \"2s\"\ncopy_headers = []\non_error = \"closed\"\ncache_ttl = \"10s\"\ncache_size = 10000\nexpires_header = \"x-auth-expires\"\n"), "{text}");

    // Without any section: every route open, the failure limit at its default.
    let c = round_trip(MINIMAL, "t.toml");
    assert!(c.auth.is_empty());
    assert_eq!(c.routes[0].auth, RouteAuth::default());
    assert_eq!(
        (c.limits.auth_failures_per_ip, c.limits.auth_failure_burst),
        (
            nz(DEFAULT_AUTH_FAILURES_PER_IP),
            nz(DEFAULT_AUTH_FAILURE_BURST)
        )
    );
    let text = c.to_effective_toml();
    for line in [
        "auth_failures_per_ip = 30\nauth_failure_burst = 10\n",
        "# [auth.NAME]: none (every route is open)\n",
        "# auth: not set (open route)\nmax_session = \"off\"\n",
    ] {
        assert!(text.contains(line), "lacks {line}:\n{text}");
    }
}

#[test]
fn sections_keep_their_file_order() {
    let src = "[auth.zeta]\ntype = \"forward\"\nurl = \"http://a/\"\n[auth.alpha]\ntype = \"forward\"\nurl = \"http://b/\"\n[[route]]\npath = \"/a\"\nbackends = [\"x:1\"]\nauth = \"alpha\"\n[[route]]\npath = \"/z\"\nbackends = [\"x:1\"]\nauth = \"zeta\"\n";
    let c = round_trip(src, "t.toml");
    let names: Vec<&str> = c.auth.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha"]);
    assert_eq!(c.routes[0].auth.auth, Some(1));
    assert_eq!(c.routes[1].auth.auth, Some(0));
}

#[test]
fn failure_limit_is_checked() {
    let c = round_trip(
        &("[limits]\nauth_failures_per_ip = \"off\"\n".to_owned() + MINIMAL),
        "t.toml",
    );
    assert_eq!(
        (c.limits.auth_failures_per_ip, c.limits.auth_failure_burst),
        (None, None)
    );
    // Like handshake_burst, the burst may be below the rate (one is per minute).
    let c = round_trip(
        &("[limits]\nauth_failures_per_ip = 100\nauth_failure_burst = 1\n".to_owned() + MINIMAL),
        "t.toml",
    );
    assert_eq!(
        (c.limits.auth_failures_per_ip, c.limits.auth_failure_burst),
        (nz(100), nz(1))
    );
    assert_problems(
        &("[limits]\nauth_failures_per_ip = 0\nauth_failure_burst = 1000001\n".to_owned() + MINIMAL),
        &[
            "t.toml:2: limits.auth_failures_per_ip: 0 is out of range; use 1 to 1000000, or \"off\" for no limit",
            "t.toml:3: limits.auth_failure_burst: 1000001 is out of range; use 1 to 1000000, or \"off\" for no limit",
        ],
    );
    assert_problems(
        &("[limits]\nauth_failures_per_ip = \"off\"\nauth_failure_burst = 5\n".to_owned() + MINIMAL),
        &["t.toml:3: limits.auth_failure_burst: is set but limits.auth_failures_per_ip is \"off\"; set limits.auth_failures_per_ip too, or remove limits.auth_failure_burst"],
    );
    assert_problems(
        &("[limits]\nauth_failure_burst = \"off\"\n".to_owned() + MINIMAL),
        &["t.toml:2: limits.auth_failure_burst: \"off\" is only allowed when limits.auth_failures_per_ip is \"off\" (here 30, the default); remove limits.auth_failure_burst for the default (10) or give a number"],
    );
}

#[test]
fn section_names_types_and_shapes() {
    assert_problems(
        "[auth.\"my users\"]\ntype = \"forward\"\nurl = \"http://a/\"\n[[route]]\npath = \"/\"\nbackends = [\"x:1\"]\nauth = \"my users\"\n",
        &["t.toml:1: auth.my users: \"my users\" is not a valid section name; use 1 to 64 letters, digits, \"-\" or \"_\""],
    );
    let long = "a".repeat(65);
    let src = format!("[auth.{long}]\ntype = \"forward\"\nurl = \"http://a/\"\n[[route]]\npath = \"/\"\nbackends = [\"x:1\"]\nauth = \"{long}\"\n");
    assert!(errors(&src).contains("is not a valid section name"));
    assert_problems(
        &("[auth.users]\ngrace = \"2h\"\n".to_owned() + USERS_ROUTE),
        &[
            "t.toml:1: auth.users: missing type; add type = \"jwt\" or type = \"forward\"",
            "t.toml:2: auth.users.grace: 2h is out of range; use 0ms to 1h",
        ],
    );
    assert_problems(
        &("[auth.users]\ntype = \"oauth\"\n".to_owned() + USERS_ROUTE),
        &["t.toml:2: auth.users.type: \"oauth\" is not allowed; use one of \"jwt\", \"forward\""],
    );
    assert_problems(
        &("auth = 3\n".to_owned() + MINIMAL),
        &["t.toml:1: auth: \"auth\" must be [auth.NAME] sections (tables), found integer; write e.g. [auth.users] with type = \"jwt\""],
    );
    assert_problems(
        &("[auth]\ntype = \"jwt\"\n".to_owned() + MINIMAL),
        &["t.toml:2: auth.type: \"type\" directly under [auth] is not a section (found string); write [auth.NAME] sections, e.g. [auth.users] with type = \"jwt\""],
    );
}

#[test]
fn unknown_keys_get_suggestions_and_inline_secrets_their_own_message() {
    let src = JWT.to_owned()
        + "algoritms = [\"RS256\"]\nhmac_secret = \"hunter2\"\nsecret = \"hunter2\"\n[server]\ncookie = \"x\"\n"
        + USERS_ROUTE;
    let err = errors(&src);
    assert!(!err.contains("hunter2"), "a secret is echoed:\n{err}");
    assert_problems(
        &src,
        &[
            "t.toml:5: auth.users.algoritms: unknown key \"algoritms\" in [auth.users]; did you mean \"algorithms\"?",
            "t.toml:6: auth.users.hmac_secret: secrets are never inline in the TOML; put it in a file and name it in hmac_secret_file",
            "t.toml:7: auth.users.secret: secrets are never inline in the TOML; put it in a file and name it in hmac_secret_file",
            "t.toml:9: server.cookie: unknown key \"cookie\" in [server]; \"cookie\" belongs in [auth.NAME]",
        ],
    );
    assert_problems(
        &("[aut.users]\ntype = \"jwt\"\n".to_owned() + MINIMAL),
        &["t.toml:1: aut: unknown section or key \"aut\" at the top level; did you mean [auth.NAME]?"],
    );
}

#[test]
fn every_key_belongs_to_one_type_or_both() {
    let raw = crate::config::raw::RawAuth::default();
    let mut listed: Vec<&str> = ["type", "grace"]
        .into_iter()
        .chain(super::jwt_keys(&raw).map(|(k, _)| k))
        .chain(super::forward_keys(&raw).map(|(k, _)| k))
        .collect();
    listed.sort_unstable();
    let (_, keys) = crate::config::raw::SCHEMA
        .iter()
        .find(|(s, _)| *s == "auth")
        .unwrap();
    let mut keys = keys.to_vec();
    keys.sort_unstable();
    assert_eq!(listed, keys);
}

#[test]
fn keys_of_the_other_type_are_named() {
    assert_problems(
        &(JWT.to_owned() + "url = \"http://a/\"\ncache_size = 5\n" + USERS_ROUTE),
        &[
            "t.toml:5: auth.users.url: belongs to type = \"forward\" sections, and this one is type = \"jwt\"; remove it",
            "t.toml:6: auth.users.cache_size: belongs to type = \"forward\" sections, and this one is type = \"jwt\"; remove it",
        ],
    );
    assert_problems(
        &(FORWARD.to_owned() + "algorithms = [\"RS256\"]\nbearer = true\n" + USERS_ROUTE),
        &[
            "t.toml:4: auth.users.algorithms: belongs to type = \"jwt\" sections, and this one is type = \"forward\"; remove it",
            "t.toml:5: auth.users.bearer: belongs to type = \"jwt\" sections, and this one is type = \"forward\"; remove it",
        ],
    );
}

#[test]
fn token_sources_are_checked() {
    assert_problems(
        &(JWT.to_owned() + "cookie = \"my session\"\nquery = \"a&b\"\nprotocol_prefix = \"\"\n" + USERS_ROUTE),
        &[
            "t.toml:5: auth.users.cookie: \"my session\" is not a valid cookie name (an HTTP token: letters, digits and !#$%&'*+-.^_`|~)",
            "t.toml:6: auth.users.query: \"a&b\" is not a valid query parameter name; use letters, digits and -._~",
            "t.toml:7: auth.users.protocol_prefix: \"\" is not a valid subprotocol prefix (an HTTP token: letters, digits and !#$%&'*+-.^_`|~)",
        ],
    );
    assert_problems(
        &(JWT.to_owned() + "bearer = false\n" + USERS_ROUTE),
        &["t.toml:5: auth.users.bearer: is false and none of cookie, query or protocol_prefix is set, so no token could ever be found; set one of them, or remove bearer = false"],
    );
    let c = round_trip(
        &(JWT.to_owned() + "bearer = false\nquery = \"t\"\n" + USERS_ROUTE),
        "t.toml",
    );
    let AuthKind::Jwt(j) = &c.auth[0].kind else {
        panic!("not jwt")
    };
    assert_eq!(
        (j.sources.query.as_deref(), j.sources.bearer),
        (Some("t"), false)
    );
}

#[test]
fn algorithms_are_checked() {
    let section = |algorithms: &str| {
        format!("[auth.users]\ntype = \"jwt\"\njwks_url = \"https://idp/\"\nhmac_secret_file = \"{A_FILE}\"\n{algorithms}\n{USERS_ROUTE}")
    };
    assert_problems(
        &section(""),
        &["t.toml:1: auth.users: missing algorithms; add the algorithms your tokens are signed with, e.g. algorithms = [\"RS256\"]"],
    );
    assert_problems(
        &section("algorithms = []"),
        &["t.toml:5: auth.users.algorithms: is empty; list the algorithms your tokens are signed with, e.g. [\"RS256\"]"],
    );
    assert_problems(
        &section("algorithms = \"RS256\""),
        &["t.toml:5: auth.users.algorithms: expected an array of algorithm names like [\"RS256\"], found a string"],
    );
    assert_problems(
        &section("algorithms = [\n  \"none\",\n  \"rs256\",\n  \"XS256\",\n  \"RS256\",\n  \"RS256\",\n  7,\n]"),
        &[
            "t.toml:6: auth.users.algorithms[0]: \"none\" is never accepted: a token without a signature proves nothing; list the algorithms your tokens are signed with, e.g. \"RS256\"",
            "t.toml:7: auth.users.algorithms[1]: \"rs256\" is not a supported JWT algorithm; did you mean \"RS256\"? (names are case-sensitive)",
            "t.toml:8: auth.users.algorithms[2]: \"XS256\" is not a supported JWT algorithm; use one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA",
            "t.toml:10: auth.users.algorithms[4]: \"RS256\" is listed twice; remove one",
            "t.toml:11: auth.users.algorithms[5]: expected an algorithm name like \"RS256\", found an integer",
        ],
    );
    // Every RFC 7518 name parses.
    let all = ALGORITHMS.map(|(name, _)| format!("\"{name}\"")).join(", ");
    let c = round_trip(&section(&format!("algorithms = [{all}]")), "t.toml");
    let AuthKind::Jwt(j) = &c.auth[0].kind else {
        panic!("not jwt")
    };
    assert_eq!(j.algorithms, ALGORITHMS.map(|(_, a)| a));
}

#[test]
fn every_algorithm_has_its_key_source_and_every_source_its_algorithm() {
    let head = "[auth.users]\ntype = \"jwt\"\n";
    assert_problems(
        &format!("{head}algorithms = [\"HS256\", \"PS256\"]\n{USERS_ROUTE}"),
        &[
            "t.toml:3: auth.users.algorithms: lists HS256 but hmac_secret_file is not set; name the file holding the shared secret in hmac_secret_file",
            "t.toml:3: auth.users.algorithms: lists PS256 but neither public_keys nor jwks_url is set; give PEM public keys in public_keys or the identity provider's key set in jwks_url",
        ],
    );
    assert_problems(
        &format!("{head}algorithms = [\"ES384\"]\njwks_url = \"https://idp/\"\nhmac_secret_file = \"{A_FILE}\"\n{USERS_ROUTE}"),
        &["t.toml:5: auth.users.hmac_secret_file: is set but no algorithm uses it; add HS256, HS384 or HS512 to algorithms, or remove hmac_secret_file"],
    );
    assert_problems(
        &format!("{head}algorithms = [\"HS384\"]\nhmac_secret_file = \"{A_FILE}\"\npublic_keys = []\njwks_url = \"https://idp/\"\n{USERS_ROUTE}"),
        &[
            "t.toml:5: auth.users.public_keys: is set but no algorithm uses it; add a public-key algorithm such as RS256, ES256 or EdDSA to algorithms, or remove public_keys",
            "t.toml:6: auth.users.jwks_url: is set but no algorithm uses it; add a public-key algorithm such as RS256, ES256 or EdDSA to algorithms, or remove jwks_url",
        ],
    );
    // An empty public_keys is no key source.
    assert!(errors(&format!(
        "{head}algorithms = [\"EdDSA\"]\npublic_keys = []\n{USERS_ROUTE}"
    ))
    .contains("lists EdDSA but neither public_keys nor jwks_url is set"));
}

#[test]
fn key_files_must_be_readable() {
    let files = Files::new(&[("keys/rs.pem", "x"), ("keys/dir/.keep", "")]);
    let src = format!("[auth.users]\ntype = \"jwt\"\nalgorithms = [\"RS256\", \"HS256\"]\npublic_keys = [\"keys/rs.pem\", \"keys/missing.pem\", \"keys/dir\", \"\"]\nhmac_secret_file = \"keys/nope\"\n{USERS_ROUTE}");
    let err = Config::from_str(&src, &files.origin()).unwrap_err();
    let got: Vec<String> = err
        .problems
        .iter()
        .map(|p| format!("{:?}: {}: {}", p.line, p.key, p.message))
        .collect();
    let dir = files.0.display();
    assert_eq!(
        got,
        [
            format!("Some(4): auth.users.public_keys[1]: cannot read \"{dir}/keys/missing.pem\": No such file or directory (os error 2)"),
            format!("Some(4): auth.users.public_keys[2]: cannot read \"{dir}/keys/dir\": it is a directory"),
            "Some(4): auth.users.public_keys[3]: is empty; give the path of a PEM public key".to_owned(),
            format!("Some(5): auth.users.hmac_secret_file: cannot read \"{dir}/keys/nope\": No such file or directory (os error 2)"),
        ]
    );
}

#[test]
fn jwks_settings_are_checked() {
    let head = "[auth.users]\ntype = \"jwt\"\nalgorithms = [\"RS256\"]\n";
    assert_problems(
        &format!("{head}jwks_url = \"http://idp.example/jwks\"\n{USERS_ROUTE}"),
        &["t.toml:4: auth.users.jwks_url: \"http://idp.example/jwks\" must be an https:// URL, e.g. \"https://idp.example/.well-known/jwks.json\""],
    );
    assert_problems(
        &format!("{head}jwks_url = \"https://me:hunter2@idp.example/jwks\"\n{USERS_ROUTE}"),
        &["t.toml:4: auth.users.jwks_url: has a user name or password in it; remove it (wsguard sends no credentials of its own, and `wsguard check` prints the URL)"],
    );
    assert_problems(
        &format!("{head}jwks_url = \"jwks.json\"\n{USERS_ROUTE}"),
        &["t.toml:4: auth.users.jwks_url: \"jwks.json\" is not an absolute URL with a host; write e.g. \"https://idp.example/.well-known/jwks.json\""],
    );
    assert_problems(
        &format!("{head}jwks_url = \"https://idp/#keys\"\n{USERS_ROUTE}"),
        &["t.toml:4: auth.users.jwks_url: \"https://idp/#keys\" has a fragment (#…); remove it"],
    );
    assert_problems(
        &format!("{head}public_keys = [\"{A_FILE}\"]\njwks_ca_file = \"{A_FILE}\"\njwks_refresh = \"1h\"\njwks_min_refresh = \"1m\"\njwks_timeout = \"1s\"\n{USERS_ROUTE}"),
        &[
            "t.toml:5: auth.users.jwks_ca_file: is set but auth.users.jwks_url is not; it only applies to the JWKS fetch: set jwks_url or remove jwks_ca_file",
            "t.toml:6: auth.users.jwks_refresh: is set but auth.users.jwks_url is not; it only applies to the JWKS fetch: set jwks_url or remove jwks_refresh",
            "t.toml:7: auth.users.jwks_min_refresh: is set but auth.users.jwks_url is not; it only applies to the JWKS fetch: set jwks_url or remove jwks_min_refresh",
            "t.toml:8: auth.users.jwks_timeout: is set but auth.users.jwks_url is not; it only applies to the JWKS fetch: set jwks_url or remove jwks_timeout",
        ],
    );
    assert_problems(
        &format!("{head}jwks_url = \"https://idp/\"\njwks_refresh = \"59s\"\njwks_min_refresh = \"0s\"\njwks_timeout = \"61s\"\n{USERS_ROUTE}"),
        &[
            "t.toml:5: auth.users.jwks_refresh: 59s is out of range; use 1m to 24h",
            "t.toml:6: auth.users.jwks_min_refresh: 0ms is out of range; use 1s to 24h",
            "t.toml:7: auth.users.jwks_timeout: 61s is out of range; use 100ms to 1m",
        ],
    );
    assert_problems(
        &format!("{head}jwks_url = \"https://idp/\"\njwks_min_refresh = \"6m\"\n{USERS_ROUTE}"),
        &["t.toml:5: auth.users.jwks_min_refresh: 6m is longer than auth.users.jwks_refresh (5m, the default); lower jwks_min_refresh or raise jwks_refresh"],
    );
}

#[test]
fn claims_checked_are_checked() {
    assert_problems(
        &(JWT.to_owned() + "issuer = \"\"\naudience = []\nleeway = \"6m\"\nrequire_exp = \"yes\"\n" + USERS_ROUTE),
        &[
            "t.toml:5: auth.users.issuer: is an empty string; give the value tokens must carry, or remove the key to not check it",
            "t.toml:6: auth.users.audience: is empty; list the accepted values, or remove the key to not check it",
            "t.toml:7: auth.users.leeway: 6m is out of range; use 0ms to 5m",
            "t.toml:8: auth.users.require_exp: expected true or false, found a string",
        ],
    );
    assert_problems(
        &(JWT.to_owned() + "issuer = 7\naudience = [\"a\", \"a\", 1]\n" + USERS_ROUTE),
        &[
            "t.toml:5: auth.users.issuer: expected an issuer like \"https://idp.example/\", or an array of them, found an integer",
            "t.toml:6: auth.users.audience[1]: \"a\" is listed twice; remove one",
            "t.toml:6: auth.users.audience[2]: expected an audience like \"chat\", found an integer",
        ],
    );
}

#[test]
fn claim_and_copy_headers_are_checked() {
    let src = JWT.to_owned()
        + "claim_headers = { a = \"Authorization\", b = \"Sec-WebSocket-Key\", c = \"X-Forwarded-User\", d = \"X Auth\", e = \"X-User\", f = \"x-user\", g = 7, \"\" = \"X-Empty\" }\n"
        + USERS_ROUTE;
    let reserved = |h: &str| {
        format!("\"{h}\" is a header wsguard sets, strips or checks itself (hop-by-hop, WebSocket handshake, forwarding, Origin or credentials); use a name of your own, e.g. \"X-Auth-User\"")
    };
    let expected = [
        format!("t.toml:5: auth.users.claim_headers.a: {}", reserved("Authorization")),
        format!("t.toml:5: auth.users.claim_headers.b: {}", reserved("Sec-WebSocket-Key")),
        format!("t.toml:5: auth.users.claim_headers.c: {}", reserved("X-Forwarded-User")),
        "t.toml:5: auth.users.claim_headers.d: \"X Auth\" is not a valid header name (an HTTP token: letters, digits and !#$%&'*+-.^_`|~)".to_owned(),
        "t.toml:5: auth.users.claim_headers.f: \"x-user\" is already the header of claim \"e\" (header names are case-insensitive); give each claim its own header".to_owned(),
        "t.toml:5: auth.users.claim_headers.g: expected a header name like \"X-Auth-Subject\", found an integer".to_owned(),
        "t.toml:5: auth.users.claim_headers.: the claim name is empty; write e.g. sub = \"X-Auth-Subject\"".to_owned(),
    ];
    let err = errors(&src);
    let got: Vec<&str> = err.lines().collect();
    assert_eq!(got, expected, "\n{err}");

    for (value, found) in [("\"X-Sub\"", "a string"), ("1979-05-27", "a table or date")] {
        assert_problems(
            &(JWT.to_owned() + &format!("claim_headers = {value}\n") + USERS_ROUTE),
            &[&format!("t.toml:5: auth.users.claim_headers: expected an inline table like {{ sub = \"X-Auth-Subject\" }}, found {found}")],
        );
    }
    assert_problems(
        &(JWT.to_owned() + "claim_headers = { sub = 1979-05-27 }\n" + USERS_ROUTE),
        &["t.toml:5: auth.users.claim_headers.sub: expected a header name like \"X-Auth-Subject\", found a table or date"],
    );

    assert_problems(
        &(FORWARD.to_owned() + "copy_headers = [\"X-User\", \"Cookie\", \"x-USER\", \"\"]\nexpires_header = \"X Expires\"\n" + USERS_ROUTE),
        &[
            &format!("t.toml:4: auth.users.copy_headers[1]: {}", reserved("Cookie")),
            "t.toml:4: auth.users.copy_headers[2]: \"x-USER\" is listed twice (header names are case-insensitive); remove one",
            "t.toml:4: auth.users.copy_headers[3]: \"\" is not a valid header name (an HTTP token: letters, digits and !#$%&'*+-.^_`|~)",
            "t.toml:5: auth.users.expires_header: \"X Expires\" is not a valid header name (an HTTP token: letters, digits and !#$%&'*+-.^_`|~)",
        ],
    );
}

#[test]
fn forward_settings_are_checked() {
    assert_problems(
        &("[auth.users]\ntype = \"forward\"\n".to_owned() + USERS_ROUTE),
        &["t.toml:1: auth.users: missing url; add e.g. url = \"http://127.0.0.1:9001/auth\""],
    );
    for (url, why) in [
        ("ftp://a/auth", "\"ftp://a/auth\" must be an http:// or https:// URL, e.g. \"http://127.0.0.1:9001/auth\""),
        ("http://", "\"http://\" is not an absolute URL with a host; write e.g. \"http://127.0.0.1:9001/auth\""),
        ("/auth", "\"/auth\" is not an absolute URL with a host; write e.g. \"http://127.0.0.1:9001/auth\""),
        ("http://u:p@a/", "has a user name or password in it; remove it (wsguard sends no credentials of its own, and `wsguard check` prints the URL)"),
    ] {
        assert_problems(
            &format!("[auth.users]\ntype = \"forward\"\nurl = \"{url}\"\n{USERS_ROUTE}"),
            &[&format!("t.toml:3: auth.users.url: {why}")],
        );
    }
    assert_problems(
        &format!("{FORWARD}ca_file = \"{A_FILE}\"\ntimeout = \"9ms\"\non_error = \"maybe\"\ncache_ttl = \"2h\"\ncache_size = 0\n{USERS_ROUTE}"),
        &[
            "t.toml:5: auth.users.timeout: 9ms is out of range; use 10ms to 30s",
            "t.toml:6: auth.users.on_error: \"maybe\" is not allowed; use one of \"closed\", \"open\"",
            "t.toml:7: auth.users.cache_ttl: 2h is out of range; use 1ms to 1h, or \"off\"",
            "t.toml:8: auth.users.cache_size: 0 is out of range; use 1 to 1000000",
        ],
    );
    assert_problems(
        &format!("{FORWARD}ca_file = \"{A_FILE}\"\ncache_ttl = \"off\"\ncache_size = 10\n{USERS_ROUTE}"),
        &[
            "t.toml:4: auth.users.ca_file: is set but auth.users.url is not an https:// URL; the CA is only for TLS",
            "t.toml:6: auth.users.cache_size: is set but auth.users.cache_ttl is \"off\", so there is no cache; remove cache_size or set cache_ttl",
        ],
    );
}

#[test]
fn routes_name_sections_and_sections_need_routes() {
    let two = "[auth.users]\ntype = \"forward\"\nurl = \"http://a/\"\n[auth.sso]\ntype = \"forward\"\nurl = \"http://b/\"\n";
    assert_problems(
        &format!("{two}[[route]]\npath = \"/a\"\nbackends = [\"x:1\"]\nauth = \"userz\"\n[[route]]\npath = \"/b\"\nbackends = [\"x:1\"]\nauth = \"sso\"\n"),
        &[
            "t.toml:1: auth.users: no route uses it; name it in a [[route]] auth = \"users\" or remove it",
            "t.toml:10: route[0].auth: \"userz\" names no [auth.NAME] section; did you mean \"users\"? (known: \"users\", \"sso\")",
        ],
    );
    assert_problems(
        &format!("{two}[[route]]\npath = \"/a\"\nbackends = [\"x:1\"]\nauth = \"admin\"\n"),
        &[
            "t.toml:1: auth.users: no route uses it; name it in a [[route]] auth = \"users\" or remove it",
            "t.toml:4: auth.sso: no route uses it; name it in a [[route]] auth = \"sso\" or remove it",
            "t.toml:10: route[0].auth: \"admin\" names no [auth.NAME] section; known: \"users\", \"sso\"",
        ],
    );
    assert_problems(
        USERS_ROUTE,
        &["t.toml:4: route[0].auth: \"users\" names no [auth.NAME] section, and there is none; add [auth.users] with its type, or remove auth"],
    );
    assert_problems(
        &(MINIMAL.to_owned() + "auth = 1\nkeep_token = true\n"),
        &["t.toml:4: route[0].auth: expected the name of an [auth.NAME] section, like \"users\", found an integer"],
    );
    // keep_token needs auth; max_session does not, and is bounded.
    assert_problems(
        &(MINIMAL.to_owned() + "keep_token = false\nmax_session = \"31d\"\n"),
        &[
            "t.toml:4: route[0].keep_token: is set but route[0].auth is not; keep_token says whether the token goes on to the backend: name an [auth.NAME] section in auth, or remove keep_token",
            "t.toml:5: route[0].max_session: 744h is out of range; use 1s to 720h, or \"off\"",
        ],
    );
    assert_problems(
        &(MINIMAL.to_owned() + "max_session = \"500ms\"\n"),
        &["t.toml:4: route[0].max_session: 500ms is out of range; use 1s to 720h, or \"off\""],
    );
}

#[test]
fn example_auth_sections_load_when_uncommented() {
    let text = std::fs::read_to_string(Path::new(MANIFEST).join("config/example.toml")).unwrap();
    let uncomment = |line: &str, keys: &[&str]| match line.strip_prefix("# ") {
        Some(rest) if rest.starts_with("[auth.") => rest.to_owned(),
        Some(rest) if keys.iter().any(|k| rest.starts_with(&format!("{k} = "))) => rest.to_owned(),
        _ => line.to_owned(),
    };
    let (_, auth_keys) = crate::config::raw::SCHEMA
        .iter()
        .find(|(s, _)| *s == "auth")
        .unwrap();
    let blocks: Vec<String> = text
        .split("\n\n")
        .map(|block| {
            let keys: &[&str] = if block.contains("\n# [auth.") {
                auth_keys
            } else {
                &["auth", "keep_token"]
            };
            block
                .lines()
                .map(|l| uncomment(l, keys))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    let files = Files::new(&[
        ("keys/rs256.pub.pem", "x"),
        ("keys/hs256.secret", "x"),
        ("certs/idp-ca.pem", "x"),
        ("certs/auth-ca.pem", "x"),
    ]);
    let c = round_trip(&blocks.join("\n\n"), &files.origin());
    let names: Vec<&str> = c.auth.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["users", "sso"]);
    assert_eq!(c.routes[0].auth.auth, Some(0));
    assert_eq!(c.routes[1].auth.auth, Some(1));
}
