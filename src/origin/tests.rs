//! The allow-list end to end: entries as written, header values as sent.

use std::collections::HashSet;

use super::allow::WILDCARD_SHAPE;
use super::*;
use OriginRefusal::*;

fn list(entries: &[&str], allow_missing: bool) -> AllowList {
    let entries = entries.iter().map(|e| {
        e.parse()
            .unwrap_or_else(|err| panic!("{e:?} refused: {err}"))
    });
    AllowList::new(entries, allow_missing)
}

const ENTRIES: &[&str] = &[
    "https://chat.example.com",
    "http://localhost:8080",
    "https://*.example.com",
    "https://*.wild.test:8443",
    "https://bücher.example",
    "http://[::1]:3000",
    "http://127.0.0.1:8080",
    "https://a.com:443",
    "http://b.com",
];

#[test]
fn header_table() {
    let list = list(ENTRIES, false);
    let ok = Ok(());
    let huge = format!("https://{}.example.com", "a".repeat(3000));
    let cases: &[(&str, Result<(), OriginRefusal>)] = &[
        // exact and case-folding
        ("https://chat.example.com", ok),
        ("HTTPS://CHAT.Example.COM", ok),
        ("http://localhost:8080", ok),
        ("http://LOCALHOST:8080", ok),
        // default ports are explicit
        ("https://chat.example.com:443", ok),
        ("https://a.com", ok),
        ("https://a.com:443", ok),
        ("http://b.com", ok),
        ("http://b.com:80", ok),
        ("https://b.com", Err(NotAllowed)),
        ("http://b.com:8080", Err(NotAllowed)),
        // non-default ports must match exactly
        ("http://localhost", Err(NotAllowed)),
        ("http://localhost:80", Err(NotAllowed)),
        ("http://localhost:8081", Err(NotAllowed)),
        ("https://chat.example.com:8443", Err(NotAllowed)),
        // scheme mismatch
        ("http://chat.example.com", Err(NotAllowed)),
        ("http://a.example.com", Err(NotAllowed)),
        // wildcard depth and the never-match cases
        ("https://a.example.com", ok),
        ("https://a.b.example.com", ok),
        ("https://A.B.C.Example.com:443", ok),
        ("https://example.com", Err(NotAllowed)),
        ("https://evilexample.com", Err(NotAllowed)),
        ("https://a.evilexample.com", Err(NotAllowed)),
        ("https://example.com.evil.net", Err(NotAllowed)),
        ("https://a.example.com.evil.net", Err(NotAllowed)),
        ("https://a.example.com:8443", Err(NotAllowed)),
        ("https://x.wild.test:8443", ok),
        ("https://x.y.wild.test:8443", ok),
        ("https://x.wild.test", Err(NotAllowed)),
        ("https://wild.test:8443", Err(NotAllowed)),
        ("http://x.wild.test:8443", Err(NotAllowed)),
        ("https://*.example.com", Err(Malformed)),
        // IDN: the header carries punycode; raw Unicode bytes are not a serialized origin
        ("https://xn--bcher-kva.example", ok),
        ("https://XN--BCHER-KVA.example", ok),
        ("https://bücher.example", Err(Malformed)),
        ("https://bucher.example", Err(NotAllowed)),
        // IP literals
        ("http://[::1]:3000", ok),
        ("http://[0:0:0:0:0:0:0:1]:3000", ok),
        ("http://[::1]:3001", Err(NotAllowed)),
        ("http://[::1]", Err(NotAllowed)),
        ("http://[::1%25eth0]:3000", Err(Malformed)),
        ("http://[::1:3000", Err(Malformed)),
        ("http://[::1]x:3000", Err(Malformed)),
        ("http://::1:3000", Err(Malformed)),
        ("http://127.0.0.1:8080", ok),
        ("http://127.0.0.2:8080", Err(NotAllowed)),
        ("http://127.1:8080", Err(Malformed)),
        ("http://0127.0.0.1:8080", Err(Malformed)),
        ("http://0x7f.0.0.1:8080", Err(Malformed)),
        ("http://256.0.0.1:8080", Err(Malformed)),
        // not a bare origin
        ("https://chat.example.com.", Err(Malformed)),
        ("https://chat.example.com/", Err(Malformed)),
        ("https://chat.example.com/chat", Err(Malformed)),
        ("https://chat.example.com?x=1", Err(Malformed)),
        ("https://chat.example.com#x", Err(Malformed)),
        ("https://chat.example.com@evil.com", Err(Malformed)),
        ("https://user@chat.example.com", Err(Malformed)),
        ("https://evil.com#@chat.example.com", Err(Malformed)),
        ("https://evil.com\\@chat.example.com", Err(Malformed)),
        ("https://chat%2eexample.com", Err(Malformed)),
        ("https://a..example.com", Err(Malformed)),
        ("https://-_-.example.com", ok),
        ("https://a!b.example.com", Err(Malformed)),
        ("chat.example.com", Err(Malformed)),
        ("//chat.example.com", Err(Malformed)),
        ("https://", Err(Malformed)),
        ("https://:443", Err(Malformed)),
        ("", Err(Malformed)),
        // ports
        ("https://chat.example.com:", Err(Malformed)),
        ("https://chat.example.com:0", Err(Malformed)),
        ("https://chat.example.com:0443", Err(Malformed)),
        ("https://chat.example.com:65536", Err(Malformed)),
        (
            "https://chat.example.com:99999999999999999999",
            Err(Malformed),
        ),
        ("https://chat.example.com:-1", Err(Malformed)),
        ("https://chat.example.com:+443", Err(Malformed)),
        ("https://chat.example.com:443:443", Err(Malformed)),
        ("https://x.wild.test:65535", Err(NotAllowed)),
        // schemes
        ("wss://chat.example.com", Err(Malformed)),
        ("ws://localhost:8080", Err(Malformed)),
        ("ftp://chat.example.com", Err(Malformed)),
        ("chrome-extension://abcdef", Err(Malformed)),
        ("file://", Err(Malformed)),
        // whitespace and control characters
        (" https://chat.example.com", Err(Malformed)),
        ("https://chat.example.com ", Err(Malformed)),
        ("https://chat .example.com", Err(Malformed)),
        ("https://chat.example.com\t", Err(Malformed)),
        ("https://chat.example.com\r\nX-Evil: 1", Err(Malformed)),
        ("https://chat.example.com\0", Err(Malformed)),
        ("https://chat.example.com https://evil.com", Err(Malformed)),
        // null is case-sensitive (RFC 6454 §7.1) and refused unless listed
        ("null", Err(Null)),
        ("NULL", Err(Malformed)),
        ("Null", Err(Malformed)),
        (&huge, Err(Malformed)),
    ];
    for (value, want) in cases {
        assert_eq!(list.check(&[value.as_bytes()]), *want, "Origin: {value:?}");
    }
    assert!(cases.len() >= 40);
}

#[test]
fn raw_bytes_that_are_not_ascii_are_malformed() {
    let list = list(ENTRIES, false);
    let bad: &[&[u8]] = &[
        b"https://chat.example.com\xff",
        b"\xc3\xa9",
        b"\x80",
        &[0u8; 16],
    ];
    for value in bad {
        assert_eq!(list.check(&[value]), Err(Malformed), "{value:?}");
    }
    // A 16 KiB value is refused on its length alone.
    let big = vec![b'a'; 16 * 1024];
    assert_eq!(list.check(&[&big]), Err(Malformed));
}

#[test]
fn missing_multiple_and_null() {
    let strict = list(&["https://chat.example.com"], false);
    let lenient = list(&["https://chat.example.com", "null"], true);
    let good: &[u8] = b"https://chat.example.com";
    assert_eq!(strict.check(&[]), Err(Missing));
    assert_eq!(lenient.check(&[]), Ok(()));
    assert_eq!(strict.check(&[good, good]), Err(Multiple));
    assert_eq!(lenient.check(&[good, good]), Err(Multiple));
    assert_eq!(lenient.check(&[good, b"null", b"x"]), Err(Multiple));
    assert_eq!(strict.check(&[b"null"]), Err(Null));
    assert_eq!(lenient.check(&[b"null"]), Ok(()));
    assert_eq!(lenient.check(&[b"https://evil.com"]), Err(NotAllowed));
    assert!(lenient.allows_missing() && !strict.allows_missing());
}

#[test]
fn empty_list_refuses_every_origin() {
    let list = list(&[], true);
    assert_eq!(list.check(&[]), Ok(()));
    assert_eq!(list.check(&[b"https://chat.example.com"]), Err(NotAllowed));
    assert_eq!(list.entries().count(), 0);
}

#[test]
fn entries_are_normalized_and_deduplicated() {
    let list = list(
        &[
            "HTTPS://Chat.Example.com:443",
            "https://chat.example.com",
            "https://*.Bücher.example:8443",
            "null",
            "http://[0::1]",
            "http://localhost:80",
            "https://*.bücher.example:8443",
            "null",
        ],
        false,
    );
    let shown: Vec<String> = list.entries().collect();
    assert_eq!(
        shown,
        [
            "https://chat.example.com",
            "https://*.xn--bcher-kva.example:8443",
            "null",
            "http://[::1]",
            "http://localhost",
        ]
    );
    assert_eq!(
        list.check(&[b"https://a.xn--bcher-kva.example:8443"]),
        Ok(())
    );
}

#[test]
fn entry_errors_table() {
    let cases: &[(&str, &str)] = &[
        ("*", "an allow-list of everything is no allow-list"),
        ("https://*", "an allow-list of everything is no allow-list"),
        ("*://*", "an allow-list of everything is no allow-list"),
        ("*.example.com", "needs a scheme"),
        ("https://a.*.example.com", WILDCARD_SHAPE),
        ("https://*a.example.com", WILDCARD_SHAPE),
        ("https://*.*.example.com", WILDCARD_SHAPE),
        ("https://example.*", WILDCARD_SHAPE),
        ("https://*.com", "too broad"),
        ("https://*.127.0.0.1", "not an IP address"),
        ("https://*.[::1]", "enclose a whole IPv6 host"),
        ("wss://chat.example.com", "never ws:// or wss://"),
        ("ws://localhost:8080", "never ws:// or wss://"),
        ("ftp://chat.example.com", "scheme must be http or https"),
        ("chat.example.com", "write scheme://host[:port]"),
        ("NULL", "write scheme://host[:port]"),
        ("", "empty"),
        (" https://chat.example.com", "whitespace"),
        ("https://chat.example.com/", "trailing '/'"),
        ("https://chat.example.com/chat", "no path"),
        ("https://user@chat.example.com", "userinfo"),
        ("https://chat.example.com.", "trailing '.'"),
        ("https://*.example.com.", "trailing '.'"),
        ("https://chat.example.com:0", "port 0"),
        ("https://chat.example.com:70000", "1 to 65535"),
        ("https://chat.example.com:08443", "leading zero"),
        ("https://chat.example.com:", "empty port"),
        ("https://chat%2eexample.com", "percent-encoding"),
        ("http://[::g]", "IPv6"),
        ("http://127.1", "dotted-quad"),
        ("https://a..example.com", "empty label"),
    ];
    for (entry, want) in cases {
        let error = entry
            .parse::<AllowEntry>()
            .expect_err(&format!("{entry:?} accepted"));
        assert_eq!(error.entry, *entry);
        assert!(
            error.message.contains(want),
            "{entry:?}: {:?} lacks {want:?}",
            error.message
        );
    }
}

#[test]
fn entry_errors_echo_briefly_and_escaped() {
    let long = format!("https://{}", "é".repeat(2000));
    let error = long.parse::<AllowEntry>().expect_err("too long");
    assert!(error.entry.len() <= 120 + '…'.len_utf8(), "{}", error.entry);
    assert!(error.message.contains("2048"));
    let error = "https://a.example\nhttps://b.example"
        .parse::<AllowEntry>()
        .expect_err("line break");
    assert_eq!(
        error.to_string(),
        "\"https://a.example\\nhttps://b.example\": contains whitespace or control characters; remove them"
    );
}

#[test]
fn labels_and_reasons_are_distinct() {
    let all = [Missing, Multiple, Null, Malformed, NotAllowed];
    let labels: HashSet<&str> = all.iter().map(|r| r.label()).collect();
    let reasons: HashSet<&str> = all.iter().map(|r| r.reason()).collect();
    assert_eq!((labels.len(), reasons.len()), (5, 5));
    assert_eq!(NotAllowed.reason(), "origin not allowed");
    assert!(labels.iter().all(|l| l.starts_with("origin_")));
}

#[test]
fn arbitrary_bytes_never_panic() {
    let list = list(ENTRIES, true);
    let alphabet = b"hs:/[].*@%#?x0123456789abcdeflnu-_ \t\xff\xc3\xa9\x00";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 40) as usize;
        let mut value = b"https://".to_vec();
        for i in 0..len {
            let pick = (state.rotate_left(i as u32 * 5) % alphabet.len() as u64) as usize;
            value.push(alphabet[pick]);
        }
        let _ = list.check(&[&value]);
        let _ = list.check(&[&value[8..]]);
        if let Ok(text) = std::str::from_utf8(&value) {
            let _ = text.parse::<AllowEntry>();
        }
    }
}
