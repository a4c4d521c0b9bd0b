//! The chat frameworks a route can name (`framework`), what each implies, and the settings
//! of every route's HTTP half (`[http]`). Plain data: the validator fills them in, the
//! pass-through path reads them.

use std::num::NonZeroU32;
use std::time::Duration;

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
