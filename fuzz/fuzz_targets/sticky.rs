//! Sticky sessions: requests and handshake answers from fuzz bytes, for every framework.
//! Besides "no panic": a tagged id pins to its tag and untags back to the client's
//! spelling of the backend's id, an untagged query is the query with one piece cut out,
//! and a tagged answer is the answer with `.tag` inserted (and Engine.IO v3's length
//! rewritten), still JSON where the input was, its id read back to the same tag.
#![no_main]

use arbitrary::Arbitrary;
use http::Method;
use libfuzzer_sys::fuzz_target;
use wsguard::sticky::{pin, tag, tag_answer, tags_answer, untag_query, Pin, Sticky, Tag};

#[derive(Arbitrary, Debug)]
struct Input {
    post: bool,
    path: String,
    query: String,
    addr: String,
    id: String,
    pairs: Vec<(String, String)>,
    body: Body,
}

#[derive(Arbitrary, Debug)]
enum Body {
    Raw(Vec<u8>),
    /// An open packet around `id` (JSON-escaped), then `tail`.
    Open {
        before: bool,
        tail: Vec<u8>,
    },
    /// The same packet in a v3 payload with its length in UTF-16 units.
    OpenV3 {
        tail: String,
    },
    Negotiate {
        version: u8,
        redirect: bool,
    },
}

const ALL: [Sticky; 4] = [
    Sticky::None,
    Sticky::EngineIo,
    Sticky::SignalR,
    Sticky::SockJs,
];

/// Every byte but unreserved ones percent-encoded: a value no query parser splits.
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

fn plain(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect()
}

/// Nothing panics, and what untag_query returns is the query with one range cut out,
/// exactly when pin found a tag.
fn hostile(input: &Input) {
    let method = if input.post {
        Method::POST
    } else {
        Method::GET
    };
    for sticky in ALL {
        let pinned = pin(sticky, &input.path, Some(&input.query));
        let _ = tags_answer(sticky, &method, &input.path, Some(&input.query));
        let untagged = untag_query(sticky, &input.query);
        assert_eq!(
            matches!(pinned, Pin::Tagged(_)),
            untagged.is_some(),
            "{sticky:?} {:?}",
            input.query
        );
        if let Some(out) = untagged {
            let q = &input.query;
            let cut = q.len() - out.len();
            // `.` and 8 characters, each of them one byte or a three-byte escape.
            assert!((9..=27).contains(&cut), "{q:?} -> {out:?}");
            let same = q
                .bytes()
                .zip(out.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            assert_eq!(&q[same + cut..], &out[same..], "{q:?} -> {out:?}");
        }
        if let Pin::Hashed(session) = pinned {
            assert!(!session.is_empty() && !session.contains(['/', '.']));
        }
    }
}

/// A tagged id in a query with other plain parameters pins and untags back.
fn round_trip(input: &Input, tg: Tag) {
    if input.id.is_empty() {
        return;
    }
    let id = escape(&input.id);
    for (sticky, name) in [(Sticky::EngineIo, "sid"), (Sticky::SignalR, "id")] {
        let mut pairs: Vec<String> = input
            .pairs
            .iter()
            .take(6)
            .map(|(n, v)| (plain(n), plain(v)))
            .filter(|(n, _)| !n.eq_ignore_ascii_case(name))
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let at = pairs.len() / 2;
        pairs.insert(at, format!("{name}={id}.{tg}"));
        let q = pairs.join("&");
        assert_eq!(pin(sticky, "/", Some(&q)), Pin::Tagged(tg), "{q}");
        pairs[at] = format!("{name}={id}");
        assert_eq!(untag_query(sticky, &q), Some(pairs.join("&")), "{q}");
    }
}

fn is_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes).is_ok()
}

fn answers(input: &Input, tg: Tag) {
    let id = serde_json::Value::from(input.id.as_str()).to_string();
    let packet = |before: bool| {
        if before {
            format!(r#"0{{"upgrades":["websocket"],"sid":{id},"pingInterval":25000}}"#)
        } else {
            format!(r#"0{{"sid":{id},"upgrades":[],"pingTimeout":20000}}"#)
        }
    };
    let body: Vec<u8> = match &input.body {
        Body::Raw(b) => b.clone(),
        Body::Open { before, tail } => {
            let mut b = packet(*before).into_bytes();
            b.extend_from_slice(tail);
            b
        }
        Body::OpenV3 { tail } => {
            let p = packet(false);
            format!("{}:{p}{tail}", p.encode_utf16().count()).into_bytes()
        }
        Body::Negotiate { version, redirect } => {
            let extra = if *redirect {
                r#","url":"https://x/""#
            } else {
                ""
            };
            format!(
                r#"{{"connectionId":{id},"connectionToken":{id},"negotiateVersion":{version}{extra}}}"#
            )
            .into_bytes()
        }
    };
    let suffix = format!(".{tg}");
    for sticky in ALL {
        let Some(out) = tag_answer(sticky, &body, &tg) else {
            continue;
        };
        assert!(matches!(sticky, Sticky::EngineIo | Sticky::SignalR));
        // The v3 length prefix is the only other change: compare after it.
        let (from, to) = match (
            body.iter().position(|b| *b == b':'),
            out.iter().position(|b| *b == b':'),
        ) {
            (Some(i), Some(j)) if !body.starts_with(b"0{") && sticky == Sticky::EngineIo => (i, j),
            _ => (0, 0),
        };
        let (b, o) = (&body[from..], &out[to..]);
        assert_eq!(o.len(), b.len() + suffix.len());
        let same = b.iter().zip(o).take_while(|(x, y)| x == y).count();
        assert_eq!(&o[same..same + suffix.len()], suffix.as_bytes());
        assert_eq!(&o[same + suffix.len()..], &b[same..]);
        // Still JSON: the whole answer for SignalR, the open packet for Engine.IO.
        let json = |x: &[u8], start: usize| -> Vec<u8> {
            let end = x.iter().position(|c| *c == 0x1e).unwrap_or(x.len());
            x[start..end].to_vec()
        };
        let (bj, oj) = match sticky {
            Sticky::SignalR => (body.clone(), out.clone()),
            _ if from == 0 => (json(&body, 1), json(&out, 1)),
            _ => continue,
        };
        assert!(is_json(&bj) && is_json(&oj));
        // The id the client reads back pins to the tag and untags to the backend's.
        let v: serde_json::Value = serde_json::from_slice(&oj).expect("JSON");
        let key = match sticky {
            Sticky::SignalR if v["negotiateVersion"].as_f64().unwrap_or(0.0) >= 1.0 => {
                "connectionToken"
            }
            Sticky::SignalR => "connectionId",
            _ => "sid",
        };
        let read = v[key].as_str().expect("a string id");
        let old: serde_json::Value = serde_json::from_slice(&bj).expect("JSON");
        assert_eq!(
            read,
            format!("{}{suffix}", old[key].as_str().expect("a string"))
        );
        let name = if sticky == Sticky::SignalR {
            "id"
        } else {
            "sid"
        };
        let q = format!("{name}={}", escape(read));
        assert_eq!(pin(sticky, "/", Some(&q)), Pin::Tagged(tg));
        assert_eq!(
            untag_query(sticky, &q),
            Some(format!("{name}={}", escape(old[key].as_str().unwrap())))
        );
    }
    // Input that is not JSON anywhere is never rewritten for SignalR.
    if !is_json(&body) {
        assert_eq!(tag_answer(Sticky::SignalR, &body, &tg), None);
    }
}

fuzz_target!(|input: Input| {
    let tg = tag(&input.addr);
    hostile(&input);
    round_trip(&input, tg);
    answers(&input, tg);
});
