use super::*;

fn parts(lines: &[(&str, &str)]) -> Parts {
    let mut b = http::Request::builder().method("GET").uri("/chat?room=7");
    for (k, v) in lines {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn upgrade(protocols: &[&str]) -> Upgrade {
    Upgrade {
        route: 0,
        accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into(),
        protocols: protocols.iter().map(|p| p.to_string()).collect(),
        origin_report: None,
        deflate: None,
    }
}

fn sender<'a>(client: &'a ClientInfo, identity: Identity<'a>) -> Sender<'a> {
    Sender { client, identity }
}

fn client() -> ClientInfo {
    ClientInfo {
        peer: "[2001:db8::7]:5555".parse().unwrap(),
        tls: true,
    }
}

#[test]
fn forwarded_head_drops_hop_headers_and_sets_forwarding() {
    let req = parts(&[
        ("host", "chat.example.com"),
        ("connection", "Upgrade, X-Secret"),
        ("x-secret", "hop only"),
        ("keep-alive", "timeout=5"),
        ("x-forwarded-for", "6.6.6.6"),
        ("sec-websocket-extensions", "permessage-deflate"),
        ("sec-websocket-protocol", "evil"),
        ("cookie", "session=1"),
    ]);
    let head = String::from_utf8(request_head(
        &req,
        &upgrade(&["chat.v2"]),
        &sender(&client(), Identity::default()),
    ))
    .unwrap();
    assert!(head.starts_with("GET /chat?room=7 HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("host: chat.example.com\r\n"));
    assert!(head.contains("cookie: session=1\r\n"));
    assert!(head.contains("sec-websocket-protocol: chat.v2\r\n"));
    assert!(head.contains("x-forwarded-for: 2001:db8::7\r\n"));
    assert!(head.contains("x-forwarded-proto: https\r\n"));
    assert!(
        head.contains("forwarded: for=\"[2001:db8::7]\";proto=https;host=\"chat.example.com\"\r\n")
    );
    for gone in [
        "x-secret",
        "keep-alive",
        "6.6.6.6",
        "permessage-deflate",
        "evil",
    ] {
        assert!(!head.contains(gone), "{gone} leaked: {head}");
    }
    assert!(head.ends_with("\r\n\r\n"));
}

fn verify_raw(raw: &str, offered: &[&str]) -> Result<Option<String>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    resp.parse(raw.as_bytes()).unwrap();
    verify(&resp, &upgrade(offered)).map(|a| a.protocol)
}

const OK: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";

#[test]
fn backend_answers_are_verified() {
    assert_eq!(verify_raw(&format!("{OK}\r\n"), &[]), Ok(None));
    assert_eq!(
        verify_raw(
            &format!("{OK}Sec-WebSocket-Protocol: chat.v2\r\n\r\n"),
            &["chat.v2"]
        ),
        Ok(Some("chat.v2".into()))
    );
    let bad = |raw: String, offered: &[&str]| verify_raw(&raw, offered).unwrap_err();
    assert!(matches!(
        bad(
            format!("{OK}Sec-WebSocket-Protocol: admin\r\n\r\n"),
            &["chat.v2"]
        ),
        Refusal::BackendBadHandshake(_)
    ));
    assert!(matches!(
        bad(
            format!("{OK}Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"),
            &[]
        ),
        Refusal::BackendBadHandshake(_)
    ));
    assert!(matches!(
        bad(OK.replace("s3pP", "XXXX") + "\r\n", &[]),
        Refusal::BackendBadHandshake(_)
    ));
    assert!(matches!(
        bad(OK.replace("Upgrade: websocket\r\n", "") + "\r\n", &[]),
        Refusal::BackendBadHandshake(_)
    ));
    assert_eq!(
        bad("HTTP/1.1 401 Unauthorized\r\n\r\n".into(), &[]),
        Refusal::BackendRefused(401)
    );
    assert!(matches!(
        bad("HTTP/1.1 500 Oops\r\n\r\n".into(), &[]),
        Refusal::BackendBadHandshake(_)
    ));
}

#[test]
fn deflate_offer_goes_to_the_backend_and_its_answer_is_checked() {
    let policy = crate::deflate::Policy {
        context_takeover: false,
        max_window_bits: 15,
    };
    let mut up = upgrade(&[]);
    up.deflate = policy.negotiation([b"permessage-deflate; client_max_window_bits".as_slice()]);
    let head = String::from_utf8(request_head(
        &parts(&[]),
        &up,
        &sender(&client(), Identity::default()),
    ))
    .unwrap();
    assert!(
        head.contains("sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits\r\n"),
        "{head}"
    );
    let check = |ext: &str| {
        let raw = format!("{OK}Sec-WebSocket-Extensions: {ext}\r\n\r\n");
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        resp.parse(raw.as_bytes()).unwrap();
        verify(&resp, &up).map(|a| a.deflate)
    };
    let agreed = check("permessage-deflate; server_no_context_takeover").unwrap();
    assert_eq!(
        agreed.unwrap().response.to_string(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    assert_eq!(
        check("permessage-deflate").err(),
        Some(Refusal::BackendBadHandshake(
            "backend's permessage-deflate parameters were not offered"
        ))
    );
}

#[test]
fn identity_replaces_client_copies_of_its_headers() {
    let req = parts(&[
        ("host", "chat.example.com"),
        ("x-auth-subject", "admin"),
        ("X-Auth-Subject", "root"),
        ("x-other", "kept"),
    ]);
    let subject = HeaderName::from_static("x-auth-subject");
    let added = [(subject.clone(), http::HeaderValue::from_static("alice"))];
    let reserved = [subject, HeaderName::from_static("x-auth-email")];
    let identity = Identity {
        headers: &added,
        reserved: &reserved,
    };
    let head = String::from_utf8(request_head(
        &req,
        &upgrade(&[]),
        &sender(&client(), identity),
    ))
    .unwrap();
    assert_eq!(head.matches("x-auth-subject").count(), 1, "{head}");
    assert!(head.contains("x-auth-subject: alice\r\n"), "{head}");
    assert!(!head.contains("admin") && !head.contains("root"), "{head}");
    assert!(head.contains("x-other: kept\r\n"));
}
