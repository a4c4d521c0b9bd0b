//! Which backend of a route a request goes to. A framework's session stays on the backend
//! that holds it (the tag in a backend-chosen id, or the rendezvous order of a SockJS
//! session); anything else starts where the route's round-robin cursor points and goes on
//! to the next backend when one does not take the connection.

use crate::config::{Framework, Route};
use crate::sticky::{self, Pin, Sticky, Tag};

/// Where a request goes, and the query its backend gets.
#[derive(Debug, PartialEq, Eq)]
pub struct Placement {
    /// Backend indices to try, in order.
    pub order: Vec<usize>,
    /// The query with a sticky id's tag removed; `None` = the client's as it came.
    pub query: Option<String>,
}

/// How a framework keeps its sessions on one backend.
pub fn sticky_of(route: &Route) -> Sticky {
    match route.http.and_then(|h| h.framework) {
        Some(Framework::SocketIo) => Sticky::EngineIo,
        Some(Framework::SockJs) => Sticky::SockJs,
        Some(Framework::SignalR) => Sticky::SignalR,
        None => Sticky::None,
    }
}

/// The path below the route's own (`/socket.io/?…` → `""`, `/sockjs/1/abc/xhr` →
/// `/1/abc/xhr`), what the framework's paths are read from.
pub fn below_route<'p>(route: &Route, path: &'p str) -> &'p str {
    path.strip_prefix(route.path.trim_end_matches('/'))
        .unwrap_or(path)
}

/// Places a request for `path` and `query` on `route`, whose backends have `tags`; `start`
/// is the round-robin cursor's pick.
pub fn place(
    route: &Route,
    tags: &[Tag],
    start: usize,
    path: &str,
    query: Option<&str>,
) -> Placement {
    let n = route.backends.len();
    let round_robin = || Placement {
        order: (0..n).map(|i| (start + i) % n).collect(),
        query: None,
    };
    let kind = sticky_of(route);
    if kind == Sticky::None {
        return round_robin();
    }
    let below = below_route(route, path);
    let query_untagged = query.and_then(|q| sticky::untag_query(kind, q));
    match sticky::pin(kind, below, query) {
        Pin::Unpinned => Placement {
            query: query_untagged,
            ..round_robin()
        },
        Pin::Tagged(tag) => match tags.iter().position(|t| *t == tag) {
            // Only there: another backend would not know the session.
            Some(i) => Placement {
                order: vec![i],
                query: query_untagged,
            },
            // A tag of no backend here (a backend since removed): the session is gone,
            // and any backend says so in the framework's own words.
            None => Placement {
                query: query_untagged,
                ..round_robin()
            },
        },
        Pin::Hashed(session) => {
            let names: Vec<String> = route.backends.iter().map(ToString::to_string).collect();
            Placement {
                order: sticky::rendezvous(session, &names),
                query: None,
            }
        }
    }
}

/// The tags of a route's backends, in their order.
pub fn tags(route: &Route) -> Vec<Tag> {
    route
        .backends
        .iter()
        .map(|b| sticky::tag(&b.to_string()))
        .collect()
}
