//! Reading one parameter of a raw query string the way the backends do: pairs split at
//! `&`, the name at the first `=`, names and values percent-decoded. Nothing is allocated:
//! names are compared while they are decoded.

/// A parameter's raw value and where it starts in the query.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Param<'a> {
    pub start: usize,
    pub value: &'a str,
}

/// How often a parameter is in a query.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Found<'a> {
    Absent,
    Once(Param<'a>),
    /// Backends read a repeated parameter differently (the first, the last, or all joined
    /// with `,`), so the caller takes none of them.
    Many,
}

/// The parameter `name` of `query`, its name compared after percent-decoding and, with
/// `ignore_case`, ASCII case-insensitively (ASP.NET Core reads query names so).
pub(crate) fn find<'a>(query: &'a str, name: &str, ignore_case: bool) -> Found<'a> {
    let mut found = Found::Absent;
    let mut at = 0;
    for pair in query.split('&') {
        let (key, value, value_at) = match pair.find('=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..], at + eq + 1),
            None => (pair, "", at + pair.len()),
        };
        at += pair.len() + 1;
        if !same(key, name, ignore_case) {
            continue;
        }
        found = match found {
            Found::Absent => Found::Once(Param {
                start: value_at,
                value,
            }),
            _ => return Found::Many,
        };
    }
    found
}

/// Whether `raw` percent-decodes to `name` (ASCII case-insensitively with `ignore_case`).
pub(crate) fn same(raw: &str, name: &str, ignore_case: bool) -> bool {
    let mut want = name.bytes();
    for (b, _) in decoded(raw) {
        let matches = match want.next() {
            Some(w) if ignore_case => b.eq_ignore_ascii_case(&w),
            Some(w) => b == w,
            None => false,
        };
        if !matches {
            return false;
        }
    }
    want.next().is_none()
}

/// A raw value's decoded bytes, each with the number of raw bytes it took (3 for a valid
/// `%XY`, else 1; `+` stays `+`, it is no character of an id or a tag either way).
fn decoded(raw: &str) -> impl Iterator<Item = (u8, usize)> + '_ {
    let bytes = raw.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        let b = *bytes.get(i)?;
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|c| hex(*c)),
                bytes.get(i + 2).and_then(|c| hex(*c)),
            ) {
                i += 3;
                return Some(((h << 4) | l, 3));
            }
        }
        i += 1;
        Some((b, 1))
    })
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A raw value as `<id>.<tag>` split at its last decoded `.` (a `.` may arrive as `%2E`):
/// the raw length of the id, never 0, and the decoded tag text, exactly `N` bytes. The
/// raw id is kept as the client spelled it, so the backend gets its own bytes back.
pub(crate) fn split_tag<const N: usize>(raw: &str) -> Option<(usize, [u8; N])> {
    let mut dot = None;
    let mut at = 0;
    for (b, len) in decoded(raw) {
        if b == b'.' {
            dot = Some((at, at + len));
        }
        at += len;
    }
    let (id_len, tag_at) = dot.filter(|(id_len, _)| *id_len > 0)?;
    let mut text = [0; N];
    let mut n = 0;
    for (b, _) in decoded(&raw[tag_at..]) {
        *text.get_mut(n)? = b;
        n += 1;
    }
    (n == N).then_some((id_len, text))
}
