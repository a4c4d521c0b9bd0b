use http::Method;
use proptest::prelude::*;

use crate::sticky::{pin, rendezvous, tag, tag_answer, tags_answer, untag_query, Pin, Sticky};

const EIO: Sticky = Sticky::EngineIo;
const SR: Sticky = Sticky::SignalR;

fn t(addr: &str) -> String {
    tag(addr).to_string()
}

fn pinned(sticky: Sticky, query: &str) -> Pin<'_> {
    pin(sticky, "/", Some(query))
}

#[test]
fn tags_are_fixed_by_the_address() {
    // Hard-coded: a change here re-routes every live session of a fleet being upgraded.
    assert_eq!(t("10.0.0.1:3000"), "-1K69B6K");
    assert_eq!(t("backend-b.internal:8080"), "pyyqTWAo");
    assert_eq!(tag("10.0.0.1:3000"), tag("10.0.0.1:3000"));
    assert_ne!(tag("10.0.0.1:3000"), tag("10.0.0.1:3001"));
    assert_eq!(format!("{:?}", tag("10.0.0.1:3000")), "Tag(-1K69B6K)");
    for addr in ["a:1", "[::1]:443", "", "x".repeat(1000).as_str()] {
        let text = t(addr);
        assert_eq!(text.len(), 8);
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
}

#[test]
fn tagged_ids_pin_and_untag() {
    for addr in ["10.0.0.1:3000", "b:1", "c:2", "[2001:db8::1]:80"] {
        let tg = tag(addr);
        let q = format!("EIO=4&transport=polling&sid=Xy_-0123456789abcdef.{tg}");
        assert_eq!(pinned(EIO, &q), Pin::Tagged(tg));
        assert_eq!(
            untag_query(EIO, &q).as_deref(),
            Some("EIO=4&transport=polling&sid=Xy_-0123456789abcdef")
        );
        let q = format!("id=AbCdEfGhIjKlMnOpQrStUv.{tg}");
        assert_eq!(pinned(SR, &q), Pin::Tagged(tg));
        assert_eq!(
            untag_query(SR, &q).as_deref(),
            Some("id=AbCdEfGhIjKlMnOpQrStUv")
        );
    }
}

#[test]
fn the_last_dot_splits() {
    let tg = t("b:1");
    let q = format!("sid=a.b.{tg}&EIO=4");
    assert_eq!(pinned(EIO, &q), Pin::Tagged(tag("b:1")));
    assert_eq!(untag_query(EIO, &q).as_deref(), Some("sid=a.b&EIO=4"));
    // An id that itself ends in something tag-shaped keeps it.
    let q = format!("sid=id.AAAAAAAA.{tg}");
    assert_eq!(untag_query(EIO, &q).as_deref(), Some("sid=id.AAAAAAAA"));
}

#[test]
fn untagged_and_malformed_ids_are_unpinned_and_kept() {
    let tg = t("b:1");
    for q in [
        "sid=abc".to_owned(),
        "sid=abc.".to_owned(),
        "sid=abc.short".to_owned(),
        "sid=abc.AAAAAAAAA".to_owned(),
        "sid=abc.AAAA+AAA".to_owned(),
        "sid=abc.AAAA%zzAA".to_owned(),
        format!("sid=.{tg}"),
        format!("sid=%2E{tg}"),
        format!("sid=abc.{tg}x"),
        format!("sid=abc.{tg}%"),
        format!("sidx=abc.{tg}"),
        format!("xsid=abc.{tg}"),
        format!("SID=abc.{tg}"),
        format!("id=abc.{tg}"),
        String::new(),
        "&&&=&".to_owned(),
        "%".to_owned(),
        "sid".to_owned(),
    ] {
        assert_eq!(pinned(EIO, &q), Pin::Unpinned, "{q}");
        assert_eq!(untag_query(EIO, &q), None, "{q}");
    }
    assert_eq!(pin(EIO, "/", None), Pin::Unpinned);
}

#[test]
fn a_tag_of_no_backend_is_read_but_matches_none() {
    // Well-formed: the caller looks it up among the route's tags and finds nothing, so the
    // request is unpinned; the tag still goes, the backend never issued it.
    let route = [tag("a:1"), tag("b:1")];
    let Pin::Tagged(found) = pinned(EIO, "sid=abc.AAAAAAAA") else {
        panic!("not read");
    };
    assert!(!route.contains(&found));
    assert_eq!(
        untag_query(EIO, "sid=abc.AAAAAAAA").as_deref(),
        Some("sid=abc")
    );
}

#[test]
fn percent_escapes_are_read_and_the_id_keeps_its_spelling() {
    let tg = tag("b:1");
    let cases = [
        (format!("sid=abc%2E{tg}"), "sid=abc"),
        (format!("sid=abc%2e{tg}"), "sid=abc"),
        (format!("sid=a%2Eb.{tg}"), "sid=a%2Eb"),
        (format!("sid=a%2Eb%2E{tg}"), "sid=a%2Eb"),
        (format!("s%69d=abc.{tg}"), "s%69d=abc"),
        (format!("%73%69%64=%61bc.{tg}"), "%73%69%64=%61bc"),
    ];
    for (q, want) in &cases {
        assert_eq!(pinned(EIO, q), Pin::Tagged(tg), "{q}");
        assert_eq!(untag_query(EIO, q).as_deref(), Some(*want), "{q}");
    }
    // The tag's own characters escaped.
    let text = tg.to_string();
    let escaped: String = text.bytes().map(|b| format!("%{b:02X}")).collect();
    let q = format!("sid=abc.{escaped}");
    assert_eq!(pinned(EIO, &q), Pin::Tagged(tg));
    assert_eq!(untag_query(EIO, &q).as_deref(), Some("sid=abc"));
}

#[test]
fn every_other_byte_of_the_query_is_kept() {
    let tg = t("b:1");
    let q = format!("&&x=1&=&t=P%2Eq.r&sid=abc.{tg}&y=%2E&b64=1&");
    assert_eq!(
        untag_query(EIO, &q).as_deref(),
        Some("&&x=1&=&t=P%2Eq.r&sid=abc&y=%2E&b64=1&")
    );
    // `=` inside the value is the value's.
    let q = format!("sid=a=b.{tg}");
    assert_eq!(untag_query(EIO, &q).as_deref(), Some("sid=a=b"));
}

#[test]
fn a_repeated_id_parameter_is_unpinned_and_kept() {
    let tg = t("b:1");
    for q in [
        format!("sid=a.{tg}&sid=b.{tg}"),
        format!("sid=a.{tg}&sid=b"),
        format!("sid=a&sid=b.{tg}"),
        format!("sid=a.{tg}&s%69d=b"),
        format!("sid=a.{tg}&sid"),
    ] {
        assert_eq!(pinned(EIO, &q), Pin::Unpinned, "{q}");
        assert_eq!(untag_query(EIO, &q), None, "{q}");
    }
    // ASP.NET Core reads query names case-insensitively: `ID` is `id` there.
    assert_eq!(pinned(SR, &format!("id=a.{tg}&ID=b")), Pin::Unpinned);
    assert_eq!(untag_query(SR, &format!("iD=a.{tg}&Id=b")), None);
    assert_eq!(pinned(SR, &format!("ID=a.{tg}")), Pin::Tagged(tag("b:1")));
    assert_eq!(
        untag_query(SR, &format!("ID=a.{tg}")).as_deref(),
        Some("ID=a")
    );
}

#[test]
fn only_the_framework_parameter_is_read() {
    let tg = t("b:1");
    let q = format!("sid=a.{tg}&id=b.{tg}");
    assert_eq!(
        untag_query(EIO, &q).as_deref(),
        Some(format!("sid=a&id=b.{tg}").as_str())
    );
    assert_eq!(
        untag_query(SR, &q).as_deref(),
        Some(format!("sid=a.{tg}&id=b").as_str())
    );
    for sticky in [Sticky::None, Sticky::SockJs] {
        assert_eq!(untag_query(sticky, &q), None);
        assert_eq!(pin(sticky, "/", Some(&q)), Pin::Unpinned);
    }
}

#[test]
fn engine_io_handshakes_are_polling_gets_without_sid() {
    let yes = |q: &str| tags_answer(EIO, &Method::GET, "/", Some(q));
    assert!(yes("EIO=4&transport=polling&t=OzQ1a2b"));
    assert!(yes("transport=polling&EIO=3"));
    assert!(yes("EIO=3&transport=polling&b64=1"));
    assert!(yes("EIO=%34&transport=polling"));
    assert!(!yes("EIO=4&transport=polling&sid=abc"));
    assert!(!yes("EIO=4&transport=polling&sid="));
    assert!(!yes("EIO=4&transport=websocket"));
    assert!(!yes("EIO=4&transport=polling&transport=polling"));
    assert!(!yes("EIO=4&EIO=4&transport=polling"));
    assert!(!yes("EIO=5&transport=polling"));
    assert!(!yes("EIO=2&transport=polling"));
    assert!(!yes("EIO=3&transport=polling&j=0"));
    assert!(!yes("transport=polling"));
    assert!(!yes(""));
    assert!(!tags_answer(EIO, &Method::GET, "/", None));
    assert!(!tags_answer(
        EIO,
        &Method::POST,
        "/",
        Some("EIO=4&transport=polling")
    ));
}

#[test]
fn signalr_handshakes_are_negotiate_posts() {
    let yes = |m: &Method, p: &str| tags_answer(SR, m, p, Some("negotiateVersion=1"));
    assert!(yes(&Method::POST, "/negotiate"));
    assert!(yes(&Method::POST, "negotiate"));
    assert!(yes(&Method::POST, "/chathub/negotiate"));
    assert!(tags_answer(SR, &Method::POST, "/negotiate", None));
    assert!(!yes(&Method::GET, "/negotiate"));
    assert!(!yes(&Method::POST, "/negotiate/"));
    assert!(!yes(&Method::POST, "/negotiatex"));
    assert!(!yes(&Method::POST, "/"));
    for sticky in [Sticky::None, Sticky::SockJs] {
        assert!(!tags_answer(sticky, &Method::POST, "/negotiate", None));
        assert!(!tags_answer(
            sticky,
            &Method::GET,
            "/",
            Some("EIO=4&transport=polling")
        ));
    }
}

const OPEN: &str = r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;

fn tagged_str(sticky: Sticky, body: &str, addr: &str) -> Option<String> {
    tag_answer(sticky, body.as_bytes(), &tag(addr)).map(|b| String::from_utf8(b).unwrap())
}

#[test]
fn engine_io_v4_open_packet_is_tagged_in_place() {
    let tg = t("b:1");
    let want = OPEN.replace("AAAC\"", &format!("AAAC.{tg}\""));
    assert_eq!(tagged_str(EIO, OPEN, "b:1"), Some(want.clone()));
    // More packets after the separator are kept.
    let body = format!("{OPEN}\x1e40{{\"sid\":\"other\"}}");
    assert_eq!(
        tagged_str(EIO, &body, "b:1"),
        Some(format!("{want}\x1e40{{\"sid\":\"other\"}}"))
    );
    // Key order and spacing as the backend wrote them.
    let body = "0{ \"upgrades\" : [] ,\n \"sid\" : \"x\" , \"pingInterval\":1}";
    assert_eq!(
        tagged_str(EIO, body, "b:1"),
        Some(format!(
            "0{{ \"upgrades\" : [] ,\n \"sid\" : \"x.{tg}\" , \"pingInterval\":1}}"
        ))
    );
}

#[test]
fn escapes_in_an_id_are_kept_and_the_client_reads_the_tag() {
    let tg = tag("b:1");
    let body = r#"0{"s\u0069d":"ab\u002ecd\"e","upgrades":[]}"#;
    let out = tagged_str(EIO, body, "b:1").expect("tagged");
    assert_eq!(
        out,
        format!(r#"0{{"s\u0069d":"ab\u002ecd\"e.{tg}","upgrades":[]}}"#)
    );
    let v: serde_json::Value = serde_json::from_str(&out[1..]).unwrap();
    let sid = v["sid"].as_str().unwrap();
    assert_eq!(sid, format!("ab.cd\"e.{tg}"));
    // The client sends it escaped as it pleases; the backend gets its id back.
    let q = format!("sid=ab.cd%22e.{tg}");
    assert_eq!(pinned(EIO, &q), Pin::Tagged(tg));
    assert_eq!(untag_query(EIO, &q).as_deref(), Some("sid=ab.cd%22e"));
}

#[test]
fn engine_io_bodies_of_another_shape_are_left_alone() {
    for body in [
        "",
        "0",
        "0{",
        "0{}",
        "0{\"sid\":\"\"}",
        "0{\"sid\":12}",
        "0{\"sid\":null}",
        "0{\"sid\":[\"a\"]}",
        "0{\"sid\":\"a\",\"sid\":\"b\"}",
        "0{\"x\":{\"sid\":\"a\"}}",
        "0{\"x\":\"\\\"sid\\\":\\\"a\"}",
        "0{\"sid\":\"a\"} trailing",
        "0[\"sid\",\"a\"]",
        "4{\"sid\":\"a\"}",
        "1",
        "{\"sid\":\"a\"}",
        "0{\"sid\":\"a\"\x1e}",
        "<html>502</html>",
        "0{\"sid\":\"a\\ud800\"}",
    ] {
        assert_eq!(tagged_str(EIO, body, "b:1"), None, "{body:?}");
    }
    assert_eq!(
        tag_answer(EIO, b"0{\"sid\":\"\xff\"}", &tag("b:1")),
        None,
        "not UTF-8"
    );
    // Deep nesting fails serde_json's recursion limit rather than the stack.
    let deep = format!(
        "0{{\"sid\":\"a\",\"x\":{}{}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    assert_eq!(tagged_str(EIO, &deep, "b:1"), None);
}

#[test]
fn engine_io_v3_length_prefix_is_rewritten() {
    let tg = t("b:1");
    let packet = r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000}"#;
    let body = format!("{}:{packet}2:40", packet.len());
    let want_packet = packet.replace("AAAC\"", &format!("AAAC.{tg}\""));
    assert_eq!(
        tagged_str(EIO, &body, "b:1"),
        Some(format!("{}:{want_packet}2:40", packet.len() + 9))
    );
    assert_eq!(packet.len(), 96);

    // Characters, as JavaScript counts them: é is 1 UTF-16 unit (2 bytes), 😀 is 2 (4 bytes).
    let packet = r#"0{"sid":"é😀"}"#;
    let units = packet.encode_utf16().count();
    assert_eq!((units, packet.len()), (14, 17));
    let body = format!("{units}:{packet}1:6");
    assert_eq!(
        tagged_str(EIO, &body, "b:1"),
        Some(format!("{}:0{{\"sid\":\"é😀.{tg}\"}}1:6", units + 9))
    );
    // Leading zeros are read and written canonically.
    assert_eq!(
        tagged_str(EIO, "012:0{\"sid\":\"a\"}", "b:1"),
        Some(format!("21:0{{\"sid\":\"a.{tg}\"}}"))
    );

    for body in [
        "11:0{\"sid\":\"é😀\"}".to_owned(),       // ends inside the emoji
        "15:0{\"sid\":\"é😀\"}".to_owned(),       // past the end
        "11:0{\"sid\":\"a\"}".to_owned(),         // short
        "13:0{\"sid\":\"a\"}".to_owned(),         // long
        ":0{\"sid\":\"a\"}".to_owned(),           // no length
        "1x:0{\"sid\":\"a\"}".to_owned(),         // not a number
        "0000000012:0{\"sid\":\"a\"}".to_owned(), // too many digits
        "99999999999999999999999:0".to_owned(),
        "12:4{\"sid\":\"a\"}".to_owned(), // not an open packet
        "12 0{\"sid\":\"a\"}".to_owned(),
        "\u{0}1\u{ff}0{\"sid\":\"a\"}".to_owned(), // XHR2 binary framing
    ] {
        assert_eq!(tagged_str(EIO, &body, "b:1"), None, "{body:?}");
    }
    let mut binary = vec![0u8, 1, 1, 255];
    binary.extend_from_slice(b"0{\"sid\":\"a\"}");
    assert_eq!(tag_answer(EIO, &binary, &tag("b:1")), None);
}

#[test]
fn signalr_tags_the_id_the_client_routes_with() {
    let tg = t("b:1");
    let v1 = r#"{"connectionId":"807809a5-31bf-470d-9e23-afaee35d8a0d","connectionToken":"AbCdEfGhIjKlMnOpQrStUv","negotiateVersion":1,"availableTransports":[{"transport":"WebSockets","transferFormats":["Text","Binary"]}]}"#;
    assert_eq!(
        tagged_str(SR, v1, "b:1"),
        Some(v1.replace("QrStUv\"", &format!("QrStUv.{tg}\"")))
    );
    // v0: no token, the client routes with the connectionId.
    let v0 = r#"{"connectionId":"807809a5-31bf-470d-9e23-afaee35d8a0d","availableTransports":[]}"#;
    assert_eq!(
        tagged_str(SR, v0, "b:1"),
        Some(v0.replace("8a0d\"", &format!("8a0d.{tg}\"")))
    );
    // A token without negotiateVersion ≥ 1 is not what the clients use.
    let odd = r#"{"connectionId":"a","connectionToken":"b","negotiateVersion":0}"#;
    assert_eq!(
        tagged_str(SR, odd, "b:1"),
        Some(odd.replace("\"a\"", &format!("\"a.{tg}\"")))
    );
    // A null error is no error (the clients test it for truth).
    let ok = r#" {"error":null,"connectionId":"a"} "#;
    assert_eq!(
        tagged_str(SR, ok, "b:1"),
        Some(ok.replace("\"a\"", &format!("\"a.{tg}\"")))
    );
}

#[test]
fn signalr_redirects_errors_and_other_shapes_are_left_alone() {
    for body in [
        r#"{"url":"https://asrs.example/client/?hub=chat","accessToken":"eyJ..."}"#,
        r#"{"url":"https://asrs.example/client/?hub=chat","connectionId":"a"}"#,
        r#"{"accessToken":"eyJ...","connectionId":"a"}"#,
        r#"{"error":"Negotiate failed","connectionId":"a"}"#,
        r#"{"connectionId":"a","negotiateVersion":1}"#,
        r#"{"connectionId":"a","connectionToken":"","negotiateVersion":1}"#,
        r#"{"connectionId":"a","connectionToken":"b","connectionToken":"c","negotiateVersion":1}"#,
        r#"{"connectionId":"a","negotiateVersion":1,"negotiateVersion":0}"#,
        r#"{"connectionId":"a","negotiateVersion":"1"}"#,
        r#"{"connectionId":7}"#,
        r#"{}"#,
        r#"[]"#,
        r#""connectionId""#,
        "",
        "{\"connectionId\":\"a\"}\x1e",
    ] {
        assert_eq!(tagged_str(SR, body, "b:1"), None, "{body}");
    }
    for sticky in [Sticky::None, Sticky::SockJs] {
        assert_eq!(tagged_str(sticky, OPEN, "b:1"), None);
        assert_eq!(tagged_str(sticky, r#"{"connectionId":"a"}"#, "b:1"), None);
    }
}

#[test]
fn sockjs_session_urls_are_hashed_by_session() {
    for transport in [
        "websocket",
        "xhr",
        "xhr_send",
        "xhr_streaming",
        "eventsource",
        "htmlfile",
        "jsonp",
        "jsonp_send",
    ] {
        let path = format!("/123/f00-b4r_%20x/{transport}");
        assert_eq!(
            pin(Sticky::SockJs, &path, Some("c=cb")),
            Pin::Hashed("f00-b4r_%20x"),
            "{path}"
        );
        assert_eq!(
            pin(Sticky::SockJs, &path[1..], None),
            Pin::Hashed("f00-b4r_%20x")
        );
    }
    for path in [
        "",
        "/",
        "/info",
        "/iframe.html",
        "/iframe-0.3.4.html",
        "/websocket",
        "/123/abc",
        "/123/abc/",
        "/123/abc/xhr/",
        "/123/abc/xhr/x",
        "/x/123/abc/xhr",
        "//abc/xhr",
        "/123//xhr",
        "/1.2/abc/xhr",
        "/123/a.b/xhr",
        "/123/abc/XHR",
        "/123/abc/xhr_",
        "/123/abc/unknown",
        "//123/abc/xhr",
    ] {
        assert_eq!(pin(Sticky::SockJs, path, None), Pin::Unpinned, "{path}");
    }
    // The other frameworks do not read the path.
    assert_eq!(pin(EIO, "/123/abc/xhr", None), Pin::Unpinned);
}

fn backends(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("10.0.0.{i}:3000")).collect()
}

#[test]
fn rendezvous_is_fixed_and_complete() {
    let all = backends(5);
    // Hard-coded, as the tags are.
    assert_eq!(rendezvous("f00-b4r", &all), RENDEZVOUS);
    assert_eq!(rendezvous("f00-b4r", &all), rendezvous("f00-b4r", &all));
    for id in ["a", "b", "", "x".repeat(500).as_str()] {
        let mut order = rendezvous(id, &all);
        order.sort_unstable();
        assert_eq!(order, [0, 1, 2, 3, 4]);
    }
    assert!(rendezvous::<String>("a", &[]).is_empty());
    // The list's order does not matter, only the addresses.
    let reversed: Vec<String> = all.iter().rev().cloned().collect();
    for id in ["a", "b", "c"] {
        let order: Vec<&str> = rendezvous(id, &all)
            .iter()
            .map(|i| all[*i].as_str())
            .collect();
        let other: Vec<&str> = rendezvous(id, &reversed)
            .iter()
            .map(|i| reversed[*i].as_str())
            .collect();
        assert_eq!(order, other);
    }
}

#[test]
fn removing_a_backend_moves_only_its_sessions() {
    let all = backends(4);
    let gone = 2;
    let rest: Vec<String> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != gone)
        .map(|(_, a)| a.clone())
        .collect();
    let mut first = [0usize; 4];
    for n in 0..4000 {
        let id = format!("session-{n}");
        let before = rendezvous(&id, &all);
        let after = rendezvous(&id, &rest);
        first[before[0]] += 1;
        // The same order with the removed one left out.
        let want: Vec<&str> = before
            .iter()
            .filter(|i| **i != gone)
            .map(|i| all[*i].as_str())
            .collect();
        let got: Vec<&str> = after.iter().map(|i| rest[*i].as_str()).collect();
        assert_eq!(got, want, "{id}");
    }
    // Spread about evenly: each gets a quarter, give or take.
    for count in first {
        assert!((800..1200).contains(&count), "{first:?}");
    }
}

fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn untag_undoes_tag(id in "\\PC{1,40}", addr in "\\PC{0,30}", before in "[a-z=&%.]{0,12}", after in "[a-z=&%.]{0,12}") {
        let tg = tag(&addr);
        let sid = escape(&id);
        let before = if before.is_empty() { String::new() } else { format!("x{before}&") };
        let after = if after.is_empty() { String::new() } else { format!("&y{after}") };
        prop_assume!(!before.contains("sid") && !after.contains("sid"));
        let q = format!("{before}sid={sid}.{tg}{after}");
        prop_assert_eq!(pinned(EIO, &q), Pin::Tagged(tg));
        prop_assert_eq!(untag_query(EIO, &q), Some(format!("{before}sid={sid}{after}")));
    }

    #[test]
    fn tagged_answers_round_trip(id in "[ -~é😀]{1,30}", addr in "\\PC{0,30}") {
        let tg = tag(&addr);
        let open = format!("0{}", serde_json::json!({"sid": id, "upgrades": []}));
        let out = tag_answer(EIO, open.as_bytes(), &tg).expect("tagged");
        let v: serde_json::Value = serde_json::from_slice(&out[1..]).unwrap();
        let sid = v["sid"].as_str().unwrap();
        prop_assert_eq!(sid, format!("{id}.{tg}"));
        let q = format!("EIO=4&sid={}", escape(sid));
        prop_assert_eq!(pinned(EIO, &q), Pin::Tagged(tg));
        prop_assert_eq!(untag_query(EIO, &q), Some(format!("EIO=4&sid={}", escape(&id))));
    }

    #[test]
    fn hostile_input_does_not_panic(q in "\\PC{0,60}", body in proptest::collection::vec(any::<u8>(), 0..80)) {
        for sticky in [Sticky::None, EIO, SR, Sticky::SockJs] {
            let _ = pin(sticky, &q, Some(&q));
            let _ = untag_query(sticky, &q);
            let _ = tags_answer(sticky, &Method::GET, &q, Some(&q));
            let _ = tag_answer(sticky, &body, &tag("b:1"));
        }
    }
}

/// Computed independently (Python hashlib) from the definition in sockjs.rs.
const RENDEZVOUS: [usize; 5] = [1, 3, 0, 4, 2];
