//! The `Sec-WebSocket-Extensions` grammar (RFC 6455 §9.1):
//!
//! ```text
//! extension-list = 1#extension
//! extension      = extension-token *( ";" extension-param )
//! extension-param = token [ "=" (token | quoted-string) ]
//! ```
//!
//! Commas and semicolons inside a quoted string do not split. An element
//! that does not follow the grammar is still returned, marked invalid, so a
//! caller can tell "some other extension" from "a broken one".

/// At most this many elements are read from one header value; the head is
/// already bounded by `max_request_head`, this bounds the work on it.
const MAX_ELEMENTS: usize = 32;
/// At most this many parameters are kept per element; RFC 7692 defines four.
const MAX_PARAMS: usize = 8;

/// One extension of a list, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element<'a> {
    pub name: &'a str,
    /// Name and unquoted value of each parameter, in order.
    pub params: Vec<(&'a str, Option<String>)>,
    /// The element follows the grammar.
    pub valid: bool,
}

/// The elements of one header value, empty list items skipped (RFC 9110 §5.6.1).
pub fn elements(value: &str) -> impl Iterator<Item = Element<'_>> {
    split_outside_quotes(value, b',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .take(MAX_ELEMENTS)
        .map(element)
}

fn element(s: &str) -> Element<'_> {
    let mut parts = split_outside_quotes(s, b';').map(str::trim);
    let name = parts.next().unwrap_or_default();
    let mut el = Element {
        name,
        params: Vec::new(),
        valid: is_token(name),
    };
    for part in parts {
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (part, None),
        };
        let value = match value {
            None => None,
            Some(v) => match unquote(v) {
                Some(v) => Some(v),
                None => {
                    el.valid = false;
                    continue;
                }
            },
        };
        if !is_token(key) || el.params.len() == MAX_PARAMS {
            el.valid = false;
            continue;
        }
        el.params.push((key, value));
    }
    el
}

/// A token as is, or a quoted-string's content with its escapes resolved.
/// Either way the result must be a token (RFC 6455 §9.1).
fn unquote(v: &str) -> Option<String> {
    let out = match v.strip_prefix('"') {
        None => v.to_owned(),
        Some(rest) => {
            let inner = rest.strip_suffix('"')?;
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.push(chars.next()?),
                    '"' => return None,
                    c => out.push(c),
                }
            }
            out
        }
    };
    is_token(&out).then_some(out)
}

/// RFC 9110 §5.6.2 `token`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Splits on `sep` where it is not inside a quoted string (a backslash
/// escapes the next character there).
fn split_outside_quotes(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let bytes = s.as_bytes();
    let (mut start, mut i, mut quoted) = (0, 0, false);
    std::iter::from_fn(move || {
        if start > bytes.len() {
            return None;
        }
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b if b == sep && !quoted => {
                    let part = &s[start..i];
                    i += 1;
                    start = i;
                    return Some(part);
                }
                _ => {}
            }
            i += 1;
        }
        let part = s.get(start..).unwrap_or_default();
        start = bytes.len() + 1;
        Some(part)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Vec<Element<'_>> {
        elements(v).collect()
    }

    #[test]
    fn splits_elements_and_params() {
        let els = parse("permessage-deflate; client_max_window_bits, foo ; a=1 ;b=\"x,y\"");
        assert_eq!(els.len(), 2);
        assert_eq!(els[0].name, "permessage-deflate");
        assert_eq!(els[0].params, vec![("client_max_window_bits", None)]);
        assert!(els[0].valid);
        assert_eq!(els[1].name, "foo");
        // `x,y` is not a token once unquoted: the element is kept, invalid.
        assert_eq!(els[1].params, vec![("a", Some("1".to_owned()))]);
        assert!(!els[1].valid);
    }

    #[test]
    fn quoted_values_are_unquoted() {
        let els = parse("permessage-deflate; server_max_window_bits=\"1\\0\"");
        assert_eq!(
            els[0].params,
            vec![("server_max_window_bits", Some("10".to_owned()))]
        );
        assert!(els[0].valid);
    }

    #[test]
    fn broken_grammar_is_invalid() {
        for v in [
            "permessage-deflate; =1",
            "permessage-deflate; a=\"open",
            "permessage-deflate; a=\"\"",
            "permessage-deflate; a b",
            "per message-deflate",
        ] {
            assert!(!parse(v)[0].valid, "{v}");
        }
    }

    #[test]
    fn empty_items_are_skipped_and_work_is_bounded() {
        assert!(parse(" , ,").is_empty());
        assert_eq!(parse(&"x,".repeat(1000)).len(), MAX_ELEMENTS);
        let many = format!("x{}", "; a".repeat(100));
        let el = &parse(&many)[0];
        assert_eq!(el.params.len(), MAX_PARAMS);
        assert!(!el.valid);
    }

    #[test]
    fn separators_inside_quotes_do_not_split() {
        let parts: Vec<&str> = split_outside_quotes("a=\"x;\\\"y\";b", b';').collect();
        assert_eq!(parts, vec!["a=\"x;\\\"y\"", "b"]);
    }
}
