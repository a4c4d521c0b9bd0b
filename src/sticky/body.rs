//! Tagging the session id inside a handshake answer: the Engine.IO open packet (v4 and
//! the text payload of v3) and the SignalR negotiate answer.
//!
//! The rewrite is targeted: `suffix` (`.` and the tag, plain ASCII) goes in just before
//! the closing quote of the id's JSON string, and every other byte stays as the backend
//! wrote it (key order, spacing, escapes). That is right for any JSON string, escapes in
//! the id included: an escape never spans the closing quote, so the client decodes the
//! backend's id followed by the suffix. The JSON is validated by serde_json first; the
//! scanner below relies on that and only finds where top-level members are.

use std::ops::Range;

/// Engine.IO's packet separator in a v4 polling payload. JSON cannot hold it unescaped,
/// so the first one ends the open packet.
const SEPARATOR: u8 = 0x1e;

/// The longest v3 length prefix read: bodies are bounded by the caller far below that.
const MAX_DIGITS: usize = 9;

/// A polling answer to an Engine.IO handshake with `suffix` added to its `sid`: the v4
/// payload (`0{…}` then maybe `\x1e` and more packets) or the v3 text payload
/// (`<len>:0{…}` then maybe more packets), its first length prefix rewritten. v3's binary
/// (XHR2) framing starts with byte 0 or 1 and is left alone; the open packet is text, so
/// a server only frames it in binary when other packets of the same answer are binary.
pub(crate) fn engine_io(body: &[u8], suffix: &str) -> Option<Vec<u8>> {
    if body.starts_with(b"0{") {
        let end = body
            .iter()
            .position(|b| *b == SEPARATOR)
            .unwrap_or(body.len());
        let at = 1 + string_end(&body[1..end], "sid")?;
        return Some(insert(body, at, suffix));
    }
    engine_io_v3(body, suffix)
}

fn engine_io_v3(body: &[u8], suffix: &str) -> Option<Vec<u8>> {
    let colon = body.iter().take(MAX_DIGITS + 1).position(|b| *b == b':')?;
    let digits = &body[..colon];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // At most 9 digits: no overflow.
    let units = digits
        .iter()
        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
    let rest = &body[colon + 1..];
    // The length counts characters as JavaScript does: UTF-16 code units.
    let text = match std::str::from_utf8(rest) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&rest[..e.valid_up_to()]).ok()?,
    };
    let mut counted = 0;
    let mut len = 0;
    for c in text.chars() {
        if counted >= units {
            break;
        }
        counted += c.len_utf16();
        len += c.len_utf8();
    }
    if counted != units {
        return None;
    }
    let packet = &rest[..len];
    if packet.first() != Some(&b'0') {
        return None;
    }
    let at = colon + 2 + string_end(&packet[1..], "sid")?;
    // The suffix is ASCII: one UTF-16 unit per byte.
    let prefix = (units + suffix.len()).to_string();
    let mut out = Vec::with_capacity(body.len() + suffix.len() + 1);
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(&body[colon..at]);
    out.extend_from_slice(suffix.as_bytes());
    out.extend_from_slice(&body[at..]);
    Some(out)
}

/// A SignalR negotiate answer with `suffix` added to the id the client routes with: the
/// connectionToken from negotiate version 1 on, else the connectionId, as the clients
/// pick it. A redirect (`url`, `accessToken`) or an `error` is not a session and is left
/// alone, as is anything else that is not one of these. Before version 1 the connectionId
/// is also what the application reads, so a v0 client sees its id with the tag.
pub(crate) fn signalr(body: &[u8], suffix: &str) -> Option<Vec<u8>> {
    if !is_json(body) {
        return None;
    }
    for key in ["url", "accessToken", "error"] {
        match member(body, key)? {
            Member::Absent => {}
            // The clients test these for truth, so a null or empty one is absent.
            Member::Once(v) if matches!(&body[v.clone()], b"null" | b"\"\"" | b"false") => {}
            _ => return None,
        }
    }
    let version = match member(body, "negotiateVersion")? {
        Member::Absent => 0.0,
        Member::Once(v) => serde_json::from_slice::<f64>(&body[v]).ok()?,
        Member::Many => return None,
    };
    let key = if version >= 1.0 {
        "connectionToken"
    } else {
        "connectionId"
    };
    let at = string_end(body, key)?;
    Some(insert(body, at, suffix))
}

fn insert(body: &[u8], at: usize, suffix: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + suffix.len());
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(suffix.as_bytes());
    out.extend_from_slice(&body[at..]);
    out
}

/// Where the closing quote of `key`'s value is, when `json` is valid JSON, an object that
/// has `key` once, and its value a non-empty string (an empty id cannot be tagged: the
/// tag is read back after the last `.` of a non-empty id).
fn string_end(json: &[u8], key: &str) -> Option<usize> {
    if !is_json(json) {
        return None;
    }
    match member(json, key)? {
        Member::Once(v) if v.len() > 2 && json[v.start] == b'"' => Some(v.end - 1),
        _ => None,
    }
}

/// Whether serde_json reads `bytes` into a `Value`: UTF-8 (skipping with `IgnoredAny` does
/// not check that), no lone surrogate escape, at most 128 deep. Stricter than JSON.parse,
/// which only leaves a few odd answers untagged.
fn is_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes).is_ok()
}

enum Member {
    Absent,
    /// The raw value's bytes.
    Once(Range<usize>),
    /// JSON.parse keeps the last of repeated keys, other parsers the first: not read.
    Many,
}

/// The top-level member `key` of `json`, which serde_json has validated; `None` when it
/// is not an object.
fn member(json: &[u8], key: &str) -> Option<Member> {
    let mut found = Member::Absent;
    let mut i = skip_space(json, 0);
    if json.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_space(json, i);
        match json.get(i)? {
            b'}' => return Some(found),
            b',' => i = skip_space(json, i + 1),
            _ => {}
        }
        let name = i..string_after(json, i)?;
        i = skip_space(json, name.end);
        // The ':'.
        i = skip_space(json, i + 1);
        let value = i..value_after(json, i)?;
        i = value.end;
        if key_is(&json[name], key) {
            found = match found {
                Member::Absent => Member::Once(value),
                _ => Member::Many,
            };
        }
    }
}

fn key_is(raw: &[u8], key: &str) -> bool {
    if raw.contains(&b'\\') {
        serde_json::from_slice::<String>(raw).is_ok_and(|k| k == key)
    } else {
        raw.get(1..raw.len().saturating_sub(1)) == Some(key.as_bytes())
    }
}

fn skip_space(json: &[u8], mut i: usize) -> usize {
    while json.get(i).is_some_and(|b| b" \t\r\n".contains(b)) {
        i += 1;
    }
    i
}

/// The end of the string starting at `i` (after its closing quote).
fn string_after(json: &[u8], mut i: usize) -> Option<usize> {
    if json.get(i) != Some(&b'"') {
        return None;
    }
    i += 1;
    loop {
        match json.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// The end of the value starting at `i`: a string, an object or array (nesting counted
/// without recursion), or a scalar up to the next delimiter.
fn value_after(json: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match json.get(i) {
            Some(b'"') => i = string_after(json, i)?,
            Some(b'{' | b'[') => {
                depth += 1;
                i += 1;
            }
            Some(b'}' | b']') if depth > 0 => {
                depth -= 1;
                i += 1;
            }
            None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n') if depth == 0 => {
                return Some(i)
            }
            Some(_) => i += 1,
            None => return None,
        }
        if depth == 0 && matches!(json.get(i - 1), Some(b'"' | b'}' | b']')) {
            return Some(i);
        }
    }
}
