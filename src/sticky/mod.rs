//! Sticky sessions for the HTTP transports of Socket.IO (Engine.IO), SignalR and SockJS:
//! the pure part, reading requests and rewriting handshake answers; the proxy's HTTP path
//! does the I/O.
//!
//! Long polling, SSE and the WebSocket upgrade of one framework session are separate
//! requests, and each must reach the backend that holds the session, through any of
//! several wsguard instances behind a round-robin balancer, for cross-site XHR that sends
//! no cookies. So the backend is read from the request itself, statelessly: every
//! instance with the same backend list decides the same way, with nothing shared.
//!
//! - **Ids the backend chooses** (Engine.IO's `sid`, SignalR's connection token) are
//!   tagged: the answer to a new session's handshake gets `.` and the backend's [`Tag`]
//!   appended to the id ([`tags_answer`], [`tag_answer`]); the client then sends the
//!   tagged id in every request (`sid=`, `id=`), [`pin`] reads the tag back and
//!   [`untag_query`] removes it before forwarding, so the backend only ever sees its own
//!   id. Hashing such an id would not do: the backend chose it, not the hash.
//! - **Ids the client chooses** (SockJS's session in the path) are hashed: [`rendezvous`]
//!   orders the route's backends for the id, the same order everywhere, and the caller
//!   takes the first one up.
//!
//! A client can name any backend of its route with a tag it made up; that is no more than
//! a round-robin balancer lets it reach. A tag matching none of the route's backends
//! leaves the request unpinned. Nor is a tag secret: it is a hash of the address alone
//! (so instances need no shared key), and a client who guesses an address can confirm it.

mod body;
mod query;
mod sockjs;
mod tag;
#[cfg(test)]
mod tests;

use query::Found;

pub use sockjs::rendezvous;
pub use tag::{tag, Tag};

/// How a route's framework keeps a session on one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sticky {
    None,
    EngineIo,
    SignalR,
    SockJs,
}

/// Where a request goes, read from its path and query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin<'a> {
    /// Any backend: a handshake, a request of no session, or one whose id is untagged or
    /// ambiguous.
    Unpinned,
    /// The backend with this tag, if the route has one (else any).
    Tagged(Tag),
    /// The first backend up in [`rendezvous`] order for this SockJS session id.
    Hashed(&'a str),
}

/// The query parameter holding a backend-chosen id, and whether backends read its name
/// case-insensitively (ASP.NET Core does, Engine.IO servers do not).
fn id_param(sticky: Sticky) -> Option<(&'static str, bool)> {
    match sticky {
        Sticky::EngineIo => Some(("sid", false)),
        Sticky::SignalR => Some(("id", true)),
        Sticky::None | Sticky::SockJs => None,
    }
}

/// The tagged id parameter of `query`: its place, the id's raw length and the tag. A
/// repeated parameter is none: a request with two `sid`s is a smuggling shape (wsguard
/// would route by one and a backend might read the other), so it is unpinned and
/// forwarded as it came, tags and all, and the backend refuses ids it never issued.
fn tagged<'a>(sticky: Sticky, query: &'a str) -> Option<(query::Param<'a>, usize, Tag)> {
    let (name, ignore_case) = id_param(sticky)?;
    let Found::Once(param) = query::find(query, name, ignore_case) else {
        return None;
    };
    let (id_len, text) = query::split_tag::<{ tag::LEN }>(param.value)?;
    Some((param, id_len, Tag::parse(&text)?))
}

/// Where the request with this path (after the route's prefix) and query goes.
pub fn pin<'a>(sticky: Sticky, path_after_route: &'a str, query: Option<&'a str>) -> Pin<'a> {
    if sticky == Sticky::SockJs {
        return sockjs::session(path_after_route).map_or(Pin::Unpinned, Pin::Hashed);
    }
    match query.and_then(|q| tagged(sticky, q)) {
        Some((_, _, tag)) => Pin::Tagged(tag),
        None => Pin::Unpinned,
    }
}

/// The query the backend gets: the tag removed from the id parameter's value, every other
/// byte as it came (the id keeps the client's spelling, percent escapes included). `None`
/// when there is nothing to remove. Removed whether or not the tag is one of the route's:
/// the backend never issued a tagged id either way.
pub fn untag_query(sticky: Sticky, query: &str) -> Option<String> {
    let (param, id_len, _) = tagged(sticky, query)?;
    let cut = param.start + id_len..param.start + param.value.len();
    let mut out = String::with_capacity(query.len() - cut.len());
    out.push_str(&query[..cut.start]);
    out.push_str(&query[cut.end..]);
    Some(out)
}

/// Whether the backend's answer to this request is a new session's handshake, whose body
/// [`tag_answer`] tags: Engine.IO's polling `GET` with `EIO=3` or `4`,
/// `transport=polling` and no `sid` (JSONP polling, `j=`, wraps the payload in script and
/// is not tagged), SignalR's `POST …/negotiate`. A handshake over a WebSocket needs no
/// tag: its whole session is that connection.
pub fn tags_answer(
    sticky: Sticky,
    method: &http::Method,
    path_after_route: &str,
    query: Option<&str>,
) -> bool {
    match sticky {
        Sticky::EngineIo => {
            let q = query.unwrap_or("");
            let is = |name, want: &[&str]| match query::find(q, name, false) {
                Found::Once(p) => want.iter().any(|w| query::same(p.value, w, false)),
                _ => false,
            };
            method == http::Method::GET
                && is("EIO", &["3", "4"])
                && is("transport", &["polling"])
                && matches!(query::find(q, "sid", false), Found::Absent)
                && matches!(query::find(q, "j", false), Found::Absent)
        }
        Sticky::SignalR => {
            method == http::Method::POST && path_after_route.rsplit('/').next() == Some("negotiate")
        }
        Sticky::None | Sticky::SockJs => false,
    }
}

/// The handshake answer `body` with its session id tagged with `tag`, or `None` when it
/// is not the expected shape (the caller forwards it unchanged). The output is the input
/// with `.` and the tag inserted, plus Engine.IO v3's length prefix rewritten.
pub fn tag_answer(sticky: Sticky, body: &[u8], tag: &Tag) -> Option<Vec<u8>> {
    let suffix = format!(".{tag}");
    match sticky {
        Sticky::EngineIo => body::engine_io(body, &suffix),
        Sticky::SignalR => body::signalr(body, &suffix),
        Sticky::None | Sticky::SockJs => None,
    }
}
