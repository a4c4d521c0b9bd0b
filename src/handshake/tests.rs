use super::*;
use crate::config::Config;

fn config(extra_origin: &str) -> Config {
    let src = format!(
        "[origin]\nallow = [\"https://chat.example.com\"]\n{extra_origin}\n[[route]]\npath = \"/chat\"\nbackends = [\"127.0.0.1:9000\"]\nsubprotocols = [\"chat.v2\", \"chat.v3\"]\n\n[[route]]\npath = \"/open\"\nbackends = [\"127.0.0.1:9000\"]\n"
    );
    Config::from_str(&src, "test.toml").unwrap()
}

fn request(lines: &[(&str, &str)]) -> Parts {
    let mut b = http::Request::builder().method("GET").uri("/chat");
    for (k, v) in lines {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn good() -> Vec<(&'static str, &'static str)> {
    vec![
        ("host", "chat.example.com"),
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("origin", "https://chat.example.com"),
    ]
}

fn without(name: &str) -> Vec<(&'static str, &'static str)> {
    good().into_iter().filter(|(k, _)| *k != name).collect()
}

fn with(name: &'static str, value: &'static str) -> Vec<(&'static str, &'static str)> {
    let mut v = without(name);
    v.push((name, value));
    v
}

#[test]
fn rfc_sample_key_gives_the_rfc_accept() {
    // RFC 6455 §1.3.
    assert_eq!(
        accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn a_good_request_passes() {
    let c = config("");
    let up = check(&request(&good()), &c).unwrap();
    assert_eq!(up.route, 0);
    assert_eq!(up.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert!(up.protocols.is_empty());
    assert_eq!(up.origin_report, None);
}

#[test]
fn tokens_are_case_insensitive_and_comma_separated() {
    let c = config("");
    let mut r = with("upgrade", "WebSocket");
    r.retain(|(k, _)| *k != "connection");
    r.push(("connection", "KEEP-ALIVE ,  UPGRADE"));
    assert!(check(&request(&r), &c).is_ok());
}

#[test]
fn refusals_in_order() {
    let c = config("");
    let cases: Vec<(Vec<(&str, &str)>, Refusal)> = vec![
        (without("upgrade"), Refusal::NotWebSocket),
        (with("upgrade", "h2c"), Refusal::NotWebSocket),
        (without("connection"), Refusal::NoConnectionUpgrade),
        (
            with("sec-websocket-version", "8"),
            Refusal::UnsupportedVersion,
        ),
        (
            without("sec-websocket-version"),
            Refusal::UnsupportedVersion,
        ),
        (without("sec-websocket-key"), Refusal::BadKey),
        (with("sec-websocket-key", "short"), Refusal::BadKey),
        (
            with("sec-websocket-key", "AAAAAAAAAAAAAAAAAAAAAAAA"),
            Refusal::BadKey,
        ),
        (without("host"), Refusal::BadHost),
        (with("transfer-encoding", "chunked"), Refusal::BodyOnUpgrade),
        (without("origin"), Refusal::Origin(OriginRefusal::Missing)),
        (
            with("origin", "https://evil.com"),
            Refusal::Origin(OriginRefusal::NotAllowed),
        ),
        (with("origin", "null"), Refusal::Origin(OriginRefusal::Null)),
        // Version beats key: the order is fixed.
        (
            {
                let mut r = with("sec-websocket-version", "12");
                r.retain(|(k, _)| *k != "sec-websocket-key");
                r
            },
            Refusal::UnsupportedVersion,
        ),
    ];
    for (req, expected) in cases {
        assert_eq!(check(&request(&req), &c), Err(expected), "{req:?}");
    }
}

#[test]
fn method_version_and_path() {
    let c = config("");
    let mut post = request(&good());
    post.method = Method::POST;
    assert_eq!(check(&post, &c), Err(Refusal::BadMethod));
    let mut old = request(&good());
    old.version = Version::HTTP_10;
    assert_eq!(check(&old, &c), Err(Refusal::BadHttpVersion));
    let mut elsewhere = request(&good());
    elsewhere.uri = "/elsewhere".parse().unwrap();
    assert_eq!(check(&elsewhere, &c), Err(Refusal::NoRoute));
    let mut plain = request(&without("upgrade"));
    plain.uri = "/elsewhere".parse().unwrap();
    assert_eq!(check(&plain, &c), Err(Refusal::NoRoute));
}

#[test]
fn report_mode_passes_and_says_why() {
    let c = config("mode = \"report\"");
    let up = check(&request(&with("origin", "https://evil.com")), &c).unwrap();
    assert_eq!(up.origin_report, Some(OriginRefusal::NotAllowed));
}

#[test]
fn subprotocols_are_filtered_by_the_route() {
    let c = config("");
    let r = with(
        "sec-websocket-protocol",
        "chat.v1, chat.v3 ,bad token,chat.v2",
    );
    let up = check(&request(&r), &c).unwrap();
    assert_eq!(up.protocols, vec!["chat.v3", "chat.v2"]);

    // A route without a list forwards every valid token, in order.
    let mut open = request(&r);
    open.uri = "/open".parse().unwrap();
    let up = check(&open, &c).unwrap();
    assert_eq!(up.protocols, vec!["chat.v1", "chat.v3", "chat.v2"]);
}

#[test]
fn an_offer_filtered_to_nothing_is_shown_without_tokens_and_bounded() {
    let allowed = vec!["chat.v2".to_owned()];
    let offer = |v: &str| request(&[("sec-websocket-protocol", v)]).headers;
    // Filtered to nothing: shown in order, token values left out.
    let h = offer("chat.v1, token.secret, mqtt");
    assert_eq!(
        declined_offer(&h, &allowed, Some("token.")),
        Some("chat.v1, mqtt".to_owned())
    );
    // Something let through, no list on the route, nothing offered, or only a token.
    assert_eq!(
        declined_offer(&offer("chat.v1, chat.v2"), &allowed, None),
        None
    );
    assert_eq!(declined_offer(&h, &[], None), None);
    assert_eq!(
        declined_offer(&request(&good()).headers, &allowed, None),
        None
    );
    assert_eq!(
        declined_offer(&offer("token.secret"), &allowed, Some("token.")),
        None
    );
    // A long offer is cut: at most 16 entries and 200 bytes.
    let many: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
    let shown = declined_offer(&offer(&many.join(",")), &allowed, None).unwrap();
    assert_eq!(shown, many[..16].join(", "));
    let long = format!("{},{}", "a".repeat(150), "b".repeat(150));
    let shown = declined_offer(&offer(&long), &allowed, None).unwrap();
    assert_eq!(shown.len(), 200);
}
