//! The upgrade-request check on request heads parsed from fuzz bytes by
//! httparse (as hyper would), built into `http::request::Parts`. Besides "no
//! panic", an accepted request must really be a WebSocket upgrade: GET,
//! HTTP/1.1, one 16-byte base64 key, one Host, one allowed Origin, no body
//! headers, and only offered, allowed subprotocol tokens are passed on.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wsguard::config::Config;
use wsguard::handshake;

const CONFIG: &str = r#"
[origin]
allow = ["https://chat.example.com", "https://*.example.org", "http://localhost:8080", "null"]

[[route]]
path = "/chat"
backends = ["127.0.0.1:9000"]
subprotocols = ["chat.v2", "chat.v3"]

[[route]]
path = "/api"
match = "prefix"
backends = ["127.0.0.1:9001"]
"#;

fn setup() -> &'static Config {
    static SETUP: OnceLock<Config> = OnceLock::new();
    SETUP.get_or_init(|| Config::from_str(CONFIG, "fuzz.toml").expect("fuzz config is valid"))
}

fuzz_target!(|data: &[u8]| {
    let config = setup();
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = req.parse(data) else {
        return;
    };
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return;
    };
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .version(if version == 1 {
            http::Version::HTTP_11
        } else {
            http::Version::HTTP_10
        });
    for h in req.headers.iter() {
        builder = builder.header(h.name, h.value);
    }
    // Heads hyper could not represent never reach the check.
    let Ok(request) = builder.body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    let Ok(up) = handshake::check(&parts, config) else {
        return;
    };

    let h = &parts.headers;
    assert_eq!(parts.method, http::Method::GET);
    assert_eq!(parts.version, http::Version::HTTP_11);
    assert!(up.route < config.routes.len());
    assert!(config.routes[up.route].matches(parts.uri.path()));
    let one = |name: &str| {
        let mut all = h.get_all(name).iter();
        let first = all.next().expect("present");
        assert!(all.next().is_none(), "{name} repeated");
        first.as_bytes()
    };
    let key = one("sec-websocket-key");
    assert_eq!(key.len(), 24);
    assert_eq!(up.accept, handshake::accept_key(key));
    assert_eq!(one("sec-websocket-version").trim_ascii(), b"13");
    assert!(!one("host").is_empty());
    assert!(config.origin.allow.check(&[one("origin")]).is_ok());
    assert!(!h.contains_key("transfer-encoding"));
    assert!(h
        .get_all("content-length")
        .iter()
        .all(|v| v.as_bytes() == b"0"));
    let allowed = &config.routes[up.route].subprotocols;
    assert!(up.protocols.len() <= 16);
    for p in &up.protocols {
        assert!(handshake::is_token(p));
        assert!(allowed.is_empty() || allowed.contains(p));
        assert!(handshake::offered_protocols(h).any(|o| o == p));
    }
});
