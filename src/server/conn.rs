//! What every request handler of a connection shares: the connection it came on (with the
//! counts it holds while it lives) and the answer to a refused request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Response};
use http_body_util::Full;
use tokio::time::Instant;

use super::proxy::Proxy;
use crate::auth::Passed;
use crate::client_ip::forwarded_client;
use crate::limits::{ConnectionPermit, IpRefusal};
use crate::refusal::Refusal;
use crate::state::{OpenConnection, State};

/// What a request handler knows about its connection.
#[derive(Clone)]
pub(super) struct Conn {
    pub proxy: Arc<Proxy>,
    pub state: Arc<State>,
    pub peer: SocketAddr,
    /// The client IP and its handshake verdict when known at accept; `None` for
    /// X-Forwarded-For.
    pub admitted: Option<(IpAddr, Result<(), IpRefusal>)>,
    pub tls: bool,
    pub accepted: Instant,
    /// Held by the relay too, so the connection counts until it ends.
    pub held: Arc<Held>,
}

impl Conn {
    /// The client IP of a request: the one known at accept, else the one a trusted proxy's
    /// `X-Forwarded-For` in `headers` names.
    pub(super) fn client_ip(&self, headers: &http::HeaderMap) -> IpAddr {
        match self.admitted {
            Some((ip, _)) => ip,
            None => forwarded_client(&self.proxy.trusted, self.peer.ip(), headers),
        }
    }
}

/// The counts a connection holds while it lives.
pub(super) struct Held {
    _open: OpenConnection,
    _permit: Option<ConnectionPermit>,
}

impl Held {
    pub(super) fn new(open: OpenConnection, permit: Option<ConnectionPermit>) -> Held {
        Held {
            _open: open,
            _permit: permit,
        }
    }
}

/// The answer to a refused request; an auth service's 401/403 goes to the client as it
/// answered (its body and challenge).
/// With `keep`, the connection stays open for the next request where the refusal allows it
/// (pass-through routes, whose clients send many); otherwise a refused client gets no second
/// try on the same socket. (Not `keep_alive(false)`: hyper would then overwrite the 101's
/// `Connection: Upgrade`.)
pub(super) fn answer(
    refusal: Refusal,
    passed: Option<Passed>,
    keep: bool,
) -> Response<Full<Bytes>> {
    let mut response = Response::builder()
        .status(refusal.status())
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
    if !(keep && refusal.keeps_connection()) {
        response = response.header(header::CONNECTION, "close");
    }
    for (name, value) in refusal.headers() {
        response = response.header(*name, *value);
    }
    if let Some(seconds) = refusal.retry_after() {
        response = response.header(header::RETRY_AFTER, seconds);
    }
    let body = match passed {
        Some(Passed {
            body,
            www_authenticate,
        }) => {
            if let Some(challenge) = www_authenticate {
                response = response.header(header::WWW_AUTHENTICATE, challenge);
            }
            body
        }
        None => Bytes::from(format!("{}\n", refusal.message())),
    };
    response
        .body(Full::new(body))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
