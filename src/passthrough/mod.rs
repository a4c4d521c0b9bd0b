//! HTTP pass-through on a route (`http = true`, or a `framework` preset): the requests that
//! are not WebSocket upgrades (Engine.IO and SockJS polling, SignalR's negotiate, SockJS's
//! `/info`) go to the route's backends over one pooled keep-alive client (hyper-util's),
//! their bodies streamed both ways frame by frame, so a held long-poll and an
//! `xhr-streaming` answer pass as the backend writes them. What the request may be and who
//! may send it is the server's to check first; this module carries it and its answer.

mod body;
mod placement;

use std::time::Duration;

use http::request::Parts;
use http::{Request, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::{Backend, HttpConfig};
use crate::upstream::Sender;

pub use body::{
    read_whole, stop_at, Cut, CutError, Ending, RequestBody, ResponseBody, Source, Stop,
};
pub use placement::{below_route, place, sticky_of, tags, Placement};

/// hyper's smallest read buffer: a `max_response_head` below it still reads 8 KiB heads.
const HYPER_MIN_BUF: usize = 8192;

/// How long a pooled backend connection may sit idle: under the 120 s or more that Node's
/// and ASP.NET's servers keep one open, so wsguard never sends on one the backend just closed.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// The pooled client every pass-through request goes out on.
pub type Client = hyper_util::client::legacy::Client<HttpConnector, RequestBody>;

/// A client for `http`, connecting within `connect_timeout`.
pub fn client(http: &HttpConfig, connect_timeout: Duration) -> Client {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    // Polling answers are small and latency matters more than packet count.
    connector.set_nodelay(true);
    let head = usize::try_from(http.max_response_head).unwrap_or(usize::MAX);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE)
        .http1_max_buf_size(head.max(HYPER_MIN_BUF))
        // The client's Host goes to the backend, as for upgrades.
        .set_host(false)
        .build(connector)
}

/// The request for `backend`: the client's method, target and end-to-end headers, the
/// forwarding headers wsguard sets, and the identity authentication established. `query`
/// replaces the client's query (a sticky id with its tag taken off).
pub fn backend_request(
    parts: &Parts,
    query: Option<&str>,
    backend: &Backend,
    sender: &Sender<'_>,
    body: RequestBody,
) -> Result<Request<RequestBody>, http::Error> {
    let path = parts.uri.path();
    let query = query.or(parts.uri.query());
    let host = if backend.host.contains(':') {
        format!("[{}]", backend.host)
    } else {
        backend.host.clone()
    };
    let target = match query {
        Some(q) => format!("http://{host}:{}{path}?{q}", backend.port),
        None => format!("http://{host}:{}{path}", backend.port),
    };
    let mut request = Request::builder()
        .method(parts.method.clone())
        .uri(target.parse::<Uri>()?)
        .version(Version::HTTP_11);
    let named = crate::hop::named_in_connection(&parts.headers);
    let identity = &sender.identity;
    for (name, value) in &parts.headers {
        if crate::hop::forwards(name, value, identity.reserved, &named) {
            request = request.header(name, value);
        }
    }
    let client = sender.client;
    for (name, value) in crate::hop::forwarding(client.peer, client.tls, &parts.headers) {
        request = request.header(name, value);
    }
    for (name, value) in identity.headers {
        request = request.header(name, value);
    }
    request.body(body)
}

/// The backend's answer head as the client gets it: its hop-by-hop headers dropped.
pub fn client_head(head: &mut http::response::Parts) {
    let named = crate::hop::named_in_connection(&head.headers);
    let headers = std::mem::take(&mut head.headers);
    let mut last = None;
    for (name, value) in headers {
        // `into_iter` names a header once, then gives its further values without it.
        let name = match name {
            Some(n) => {
                last = Some(n.clone());
                n
            }
            None => match &last {
                Some(n) => n.clone(),
                None => continue,
            },
        };
        if crate::hop::returns(&name, &value, &named) {
            head.headers.append(name, value);
        }
    }
    head.version = Version::HTTP_11;
}
