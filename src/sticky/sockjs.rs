//! SockJS: the session id is the client's, read from the path, and the backend is chosen by
//! rendezvous hashing over the route's backend addresses.

use sha2::{Digest, Sha256};

/// The transports whose URLs carry a session: `<server_id>/<session_id>/<transport>`.
const TRANSPORTS: [&str; 8] = [
    "websocket",
    "xhr",
    "xhr_send",
    "xhr_streaming",
    "eventsource",
    "htmlfile",
    "jsonp",
    "jsonp_send",
];

/// What the rendezvous hash covers before the session and the address.
const DOMAIN: &[u8] = b"wsguard sockjs rendezvous v1\0";

/// The session id of a SockJS session URL's path after the route's prefix (one leading
/// `/` or none). Server and session ids are non-empty and hold no `.` or `/`, as the
/// protocol says; `/info`, `/iframe*.html` and the raw `/websocket` are no session's.
pub(crate) fn session(path: &str) -> Option<&str> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let mut parts = path.split('/');
    let (server, session, transport) = (parts.next()?, parts.next()?, parts.next()?);
    let id = |s: &str| !s.is_empty() && !s.contains('.');
    (parts.next().is_none() && id(server) && id(session) && TRANSPORTS.contains(&transport))
        .then_some(session)
}

/// The backends in the order a session tries them: by highest random weight, the weight
/// of each a hash of the session and that backend's address alone. So every instance
/// agrees without sharing state, the order of the list does not matter, and removing a
/// backend moves only the sessions that had it first (they go to their second).
pub fn rendezvous<S: AsRef<str>>(session: &str, backends: &[S]) -> Vec<usize> {
    let mut weighted: Vec<(u64, usize)> = backends
        .iter()
        .enumerate()
        .map(|(i, addr)| (weight(session, addr.as_ref()), i))
        .collect();
    // Heaviest first; equal weights (two identical addresses) by list order.
    weighted.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    weighted.into_iter().map(|(_, i)| i).collect()
}

fn weight(session: &str, addr: &str) -> u64 {
    let mut hash = Sha256::new();
    hash.update(DOMAIN);
    // Length-prefixed, so no session and address run together into another pair's bytes.
    hash.update((session.len() as u64).to_le_bytes());
    hash.update(session.as_bytes());
    hash.update(addr.as_bytes());
    let digest = hash.finalize();
    let mut first = [0; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}
