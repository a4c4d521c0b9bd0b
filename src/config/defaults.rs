//! Every limit and default of the configuration, in one place: the validator, the effective
//! settings and the docs read them from here.

use std::time::Duration;

/// Default listen address: all interfaces, the usual alternate HTTPS port.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8443";
/// Default 10s from TCP accept to a complete upgrade request (TLS included): bounds slowloris
/// while leaving room for a TLS handshake over a slow mobile link.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default 3s per backend connect attempt: a local backend answers in milliseconds; waiting
/// longer only holds the client's handshake open.
pub const DEFAULT_BACKEND_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default 5s to wait for the peer's close frame (or TCP close) after sending one (RFC 6455 §7.1.1).
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Shortest timeout accepted (1ms): zero would refuse every connection.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);
/// Longest timeout accepted (5m): longer only keeps dead or hostile connections alive.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// Default 16 KiB for the request line + headers: browsers send 1–4 KiB with cookies; 16 KiB
/// matches common servers and bounds the per-connection header buffer.
pub const DEFAULT_MAX_REQUEST_HEAD: u64 = 16 << 10;
/// Smallest request head limit (1 KiB): below that, ordinary browser upgrades are refused.
pub const MIN_MAX_REQUEST_HEAD: u64 = 1 << 10;
/// Largest request head limit (1 MiB): more is never needed and is a memory lever for attackers.
pub const MAX_MAX_REQUEST_HEAD: u64 = 1 << 20;
/// Default 1 MiB per client frame, the real message cap (clients send each message as one
/// frame): python websockets' `max_size`, above Socket.IO's `maxHttpBufferSize` (1 MB).
pub const DEFAULT_MAX_FRAME_SIZE: u64 = 1 << 20;
/// Default 1 MiB per client message (all fragments together), as `max_frame_size`.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1 << 20;
/// Largest size limit (2^63-1): RFC 6455 §5.2 caps the 64-bit payload length there.
pub const MAX_SIZE_LIMIT: u64 = i64::MAX as u64;
/// Default 128 fragments per client message: browsers never fragment; bounds per-frame overhead.
pub const DEFAULT_MAX_FRAGMENTS: u64 = 128;
/// Largest fragment limit (1,000,000): enough for the conformance suite's many-fragment cases.
pub const MAX_MAX_FRAGMENTS: u64 = 1_000_000;
/// Default 30s after SIGTERM for open connections to finish their close handshakes.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest shutdown wait (10m): beyond that, orchestrators kill the process anyway.
pub const MAX_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(600);
/// Default 5m without a frame in either direction before both sides are closed with 1001.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Shortest idle timeout (1s): less closes connections between ordinary keystrokes.
pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest idle timeout (24h): a bound on how long silent connections may hold resources.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Shortest proxy ping interval (1s): more often is only load.
pub const MIN_PING_INTERVAL: Duration = Duration::from_secs(1);
/// Longest proxy ping interval (1h).
pub const MAX_PING_INTERVAL: Duration = Duration::from_secs(3600);
/// Default 10s for a client to answer a proxy ping before it is closed with 1001.
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `[rate] messages_per_second` (100): far above a person typing, far below a flood.
pub const DEFAULT_RATE_MESSAGES: u32 = 100;
/// Default `[rate] bytes_per_second` (1 MiB).
pub const DEFAULT_RATE_BYTES: u32 = 1 << 20;
/// Default `[rate] control_per_second` (20): browsers send control frames rarely.
pub const DEFAULT_RATE_CONTROL: u32 = 20;
/// Default `burst`: this many times `messages_per_second` (1,000): twice a reconnecting
/// Socket.IO client's 500-message flush; a flood runs dry within ten seconds' worth.
pub const DEFAULT_MESSAGE_BURST_FACTOR: u32 = 10;
/// Default `control_burst`: this many times `control_per_second`.
pub const DEFAULT_BURST_FACTOR: u32 = 2;
/// Default `burst_bytes`: this many times `bytes_per_second` (at most 4 GiB-1).
pub const DEFAULT_BURST_BYTES_FACTOR: u32 = 4;
/// Most entries in `heartbeats` (32): a list to compare small frames with, not a content filter.
pub const MAX_HEARTBEATS: usize = 32;
/// Largest rate, burst or byte rate accepted (4,294,967,295; for bytes 4 GiB-1).
pub const MAX_RATE: u32 = u32::MAX;
/// Default most concurrent connections (10,000); more get 503.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;
/// Largest `max_connections`, `connections_per_ip`, `handshakes_per_ip`,
/// `handshake_burst`, `auth_failures_per_ip` and `auth_failure_burst` (1,000,000).
pub const MAX_MAX_CONNECTIONS: u32 = 1_000_000;
/// Default concurrent connections per client IP (256); more get 429.
pub const DEFAULT_CONNECTIONS_PER_IP: u32 = 256;
/// Default handshakes per client IP per minute (600); more get 429 with Retry-After.
pub const DEFAULT_HANDSHAKES_PER_IP: u32 = 600;
/// Default handshakes one client IP may make at once before `handshakes_per_ip` applies (200):
/// twice the 100 tabs an office behind NAT opens at once after a deploy.
pub const DEFAULT_HANDSHAKE_BURST: u32 = 200;
/// Default failed authentications per client IP per minute (30): room for a user who
/// mistypes, too few to guess credentials.
pub const DEFAULT_AUTH_FAILURES_PER_IP: u32 = 30;
/// Default failed authentications one client IP may make at once before
/// `auth_failures_per_ip` applies (10).
pub const DEFAULT_AUTH_FAILURE_BURST: u32 = 10;
/// Default bound on client IPs with per-IP state (100,000).
pub use crate::limits::DEFAULT_MAX_TRACKED_IPS;
/// Smallest `max_tracked_ips` (1,000): fewer lets a handful of addresses evict everyone's state.
pub const MIN_MAX_TRACKED_IPS: u32 = 1_000;
/// Largest `max_tracked_ips` (10,000,000): a bound on per-IP memory.
pub const MAX_MAX_TRACKED_IPS: u32 = 10_000_000;
/// Default `[deflate] max_window_bits` (15, the most RFC 7692 allows).
pub const DEFAULT_DEFLATE_MAX_WINDOW_BITS: u8 = crate::deflate::negotiate::MAX_WINDOW_BITS;
/// Default demo backend address (`wsguard demo` only).
pub const DEFAULT_DEMO_BACKEND_LISTEN: &str = "127.0.0.1:9000";
/// Default demo page address (`wsguard demo` only).
pub const DEFAULT_DEMO_PAGE_LISTEN: &str = "127.0.0.1:8080";

/// Default `[http] response_head_timeout` (60 s): above the 25 s that Engine.IO
/// (`pingInterval`) and SockJS (heartbeat) hold a long-poll before answering.
pub const DEFAULT_RESPONSE_HEAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `[http] body_idle_timeout` (60 s): above the 25 s between an `xhr-streaming`
/// answer's heartbeats.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `[http] max_duration` (10 min): a streaming answer is ended there, cleanly, and
/// its client asks again.
pub const DEFAULT_MAX_HTTP_DURATION: Duration = Duration::from_secs(600);
/// Longest `[http]` timeout accepted (1 h).
pub const MAX_HTTP_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default `[http] max_request_body` (1,000,000 bytes): Socket.IO's `maxHttpBufferSize`.
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 1_000_000;
/// Default `[http] max_response_head` (64 KiB): room for a backend's cookies.
pub const DEFAULT_MAX_RESPONSE_HEAD: u64 = 64 << 10;
/// Largest `[http] max_response_head` accepted (1 MiB).
pub const MAX_MAX_RESPONSE_HEAD: u64 = 1 << 20;
/// Default `[http] requests_per_ip` (12,000 a minute, 200 a second): 200 polling users
/// behind one NAT address, each polling and posting about once a second.
pub const DEFAULT_REQUESTS_PER_IP: u32 = 12_000;
/// Default `[http] request_burst` (2,000): a reconnect wave of that office at once.
pub const DEFAULT_REQUEST_BURST: u32 = 2_000;
/// Default `[http] held_requests_per_ip` (256): one held long-poll per user, as many users
/// as `connections_per_ip` lets connect.
pub const DEFAULT_HELD_REQUESTS_PER_IP: u32 = 256;
