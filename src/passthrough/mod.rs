//! HTTP pass-through on a route (`http = true`, or a `framework` preset): the requests that
//! are not WebSocket upgrades (Engine.IO and SockJS polling, SignalR's negotiate, SockJS's
//! `/info`) go to the route's backends over one pooled keep-alive client (hyper-util's),
//! their bodies streamed both ways frame by frame, so a held long-poll and an
//! `xhr-streaming` answer pass as the backend writes them. What the request may be and who
//! may send it is the server's to check first; this module carries it and its answer.

mod body;
mod placement;

use std::num::NonZeroU32;
use std::time::Duration;

use http::request::Parts;
use http::{Request, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::Backend;
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

/// `[http]`: the pass-through half of the routes that have one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// From the request's head to the backend's answer head: a held long-poll's answer
    /// comes at the end of its hold.
    pub response_head_timeout: Duration,
    /// Longest gap between two body bytes, either way.
    pub body_idle_timeout: Duration,
    /// Longest a request may take from its head to the end of its answer.
    pub max_duration: Duration,
    /// Largest upload, in bytes.
    pub max_request_body: u64,
    /// Largest backend answer head, in bytes.
    pub max_response_head: u64,
    /// One log line per request that passes too, not only per refusal.
    pub access_log: bool,
    /// Requests per minute from one client key; `None` = off.
    pub requests_per_ip: Option<NonZeroU32>,
    /// Requests that may arrive at once from one client key.
    pub request_burst: Option<NonZeroU32>,
    /// Requests one client key may have in flight (held long-polls, streams); `None` = off.
    pub held_requests_per_ip: Option<NonZeroU32>,
    /// Requests in flight in all.
    pub max_held_requests: u32,
}

/// `[[route]] framework`: the paths, stickiness and timeouts of a chat framework.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    SocketIo,
    SockJs,
    SignalR,
}

impl Framework {
    pub const ALL: [(&'static str, Framework); 3] = [
        ("socket.io", Framework::SocketIo),
        ("sockjs", Framework::SockJs),
        ("signalr", Framework::SignalR),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Framework::SocketIo => "socket.io",
            Framework::SockJs => "sockjs",
            Framework::SignalR => "signalr",
        }
    }

    /// The longest this framework's server holds a long-poll before its answer head, with
    /// room to spare: Engine.IO answers at its `pingInterval` (25 s), SockJS at its 25 s
    /// heartbeat, ASP.NET SignalR after its 90 s `PollTimeout`.
    pub fn poll_hold(self) -> Duration {
        match self {
            Framework::SocketIo | Framework::SockJs => Duration::from_secs(35),
            Framework::SignalR => Duration::from_secs(110),
        }
    }
}

impl std::fmt::Display for Framework {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A route's pass-through half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteHttp {
    /// The preset, if the route names one.
    pub framework: Option<Framework>,
}

impl RouteHttp {
    /// The answer-head timeout on this route: `[http]`'s, raised to the framework's hold.
    pub fn head_timeout(&self, http: &HttpConfig) -> Duration {
        let hold = self.framework.map_or(Duration::ZERO, Framework::poll_hold);
        http.response_head_timeout.max(hold)
    }
}

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
