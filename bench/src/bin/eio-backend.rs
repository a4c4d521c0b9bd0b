//! `eio-backend`: the HTTP backend of the bench's `longpoll` and `http-keepalive`
//! scenarios (scripts/bench.sh). Just enough of Engine.IO v4's polling transport:
//!
//! - `GET …?EIO=4&transport=polling` without `sid`: a new session, answered with the open
//!   packet `0{"sid":"…","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`
//!   (and `X-Backend: <port>`, so the load generator sees where each session went);
//! - `GET …&sid=S`: held until a message is queued for S (answered with the queued packets
//!   joined by `\x1e`), or a ping (`2`) after `pingInterval`;
//! - `POST …&sid=S`: its packets queued for S (`4…` messages; `1` closes S), answered `ok`;
//! - an unknown `sid`: 400 `{"code":1,"message":"Session ID unknown"}`, as Engine.IO does:
//!   what a request that reached the wrong backend gets.
//!
//! Every other request gets a 100-byte `text/plain` answer (`http-keepalive`). One
//! process, one thread; sessions live in this process only, so two of them make
//! stickiness matter.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Engine.IO's packet separator in a v4 polling payload.
const SEPARATOR: u8 = 0x1e;
const PING_INTERVAL: Duration = Duration::from_millis(25_000);
/// The `http-keepalive` answer.
const PLAIN: &[u8; 100] = b"wsguard bench: a 100-byte answer to a plain GET, the same for every request, padded................\n";

#[derive(Parser)]
#[command(
    name = "eio-backend",
    about = "Engine.IO v4 polling backend for scripts/bench.sh"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:19120")]
    listen: SocketAddr,
}

#[derive(Default)]
struct Session {
    queue: Vec<Bytes>,
    /// The held GET, if one is waiting.
    waiter: Option<oneshot::Sender<Vec<Bytes>>>,
}

struct State {
    port: HeaderValue,
    prefix: String,
    next: AtomicU64,
    sessions: Mutex<HashMap<String, Session>>,
}

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, body: impl Into<Bytes>) -> Answer {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    r
}

fn unknown() -> Answer {
    let mut r = answer(
        StatusCode::BAD_REQUEST,
        &b"{\"code\":1,\"message\":\"Session ID unknown\"}"[..],
    );
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn join(packets: &[Bytes]) -> Bytes {
    let mut out = Vec::with_capacity(packets.iter().map(|p| p.len() + 1).sum());
    for (i, p) in packets.iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        out.extend_from_slice(p);
    }
    out.into()
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Answer, Infallible> {
    let query = req.uri().query().unwrap_or("").to_owned();
    let polling =
        param(&query, "EIO") == Some("4") && param(&query, "transport") == Some("polling");
    if !polling {
        return Ok(answer(StatusCode::OK, &PLAIN[..]));
    }
    let sid = param(&query, "sid").map(str::to_owned);
    match (req.method(), sid) {
        (&Method::GET, None) => {
            let n = state.next.fetch_add(1, Ordering::Relaxed);
            let sid = format!("{}{n:012}", state.prefix);
            state
                .sessions
                .lock()
                .unwrap()
                .insert(sid.clone(), Session::default());
            let open = format!(
                "0{{\"sid\":\"{sid}\",\"upgrades\":[],\"pingInterval\":25000,\"pingTimeout\":20000,\"maxPayload\":1000000}}"
            );
            let mut r = answer(StatusCode::OK, open);
            r.headers_mut().insert("x-backend", state.port.clone());
            Ok(r)
        }
        (&Method::GET, Some(sid)) => {
            let rx = {
                let mut sessions = state.sessions.lock().unwrap();
                let Some(s) = sessions.get_mut(&sid) else {
                    return Ok(unknown());
                };
                if !s.queue.is_empty() {
                    let body = join(&s.queue);
                    s.queue.clear();
                    return Ok(answer(StatusCode::OK, body));
                }
                let (tx, rx) = oneshot::channel();
                s.waiter = Some(tx);
                rx
            };
            match tokio::time::timeout(PING_INTERVAL, rx).await {
                Ok(Ok(packets)) => Ok(answer(StatusCode::OK, join(&packets))),
                // Replaced by a newer GET, or the session closed.
                Ok(Err(_)) => Ok(unknown()),
                Err(_) => {
                    if let Some(s) = state.sessions.lock().unwrap().get_mut(&sid) {
                        s.waiter = None;
                    }
                    Ok(answer(StatusCode::OK, &b"2"[..]))
                }
            }
        }
        (&Method::POST, Some(sid)) => {
            if !state.sessions.lock().unwrap().contains_key(&sid) {
                return Ok(unknown());
            }
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return Ok(answer(StatusCode::BAD_REQUEST, "body")),
            };
            let mut sessions = state.sessions.lock().unwrap();
            let mut close = false;
            if let Some(s) = sessions.get_mut(&sid) {
                for packet in body.split(|b| *b == SEPARATOR) {
                    match packet.first() {
                        Some(b'4') => s.queue.push(body.slice_ref(packet)),
                        Some(b'1') => close = true,
                        _ => {}
                    }
                }
                if !s.queue.is_empty() {
                    if let Some(waiter) = s.waiter.take() {
                        let packets = std::mem::take(&mut s.queue);
                        // A GET that went away: keep the packets for the next one.
                        if let Err(packets) = waiter.send(packets) {
                            s.queue = packets;
                        }
                    }
                }
            } else {
                return Ok(unknown());
            }
            if close {
                sessions.remove(&sid);
            }
            Ok(answer(StatusCode::OK, &b"ok"[..]))
        }
        _ => Ok(answer(StatusCode::BAD_REQUEST, "method")),
    }
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = match TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("eio-backend: {}: {e}", args.listen);
                std::process::exit(1);
            }
        };
        let port = args.listen.port();
        let state = Arc::new(State {
            port: HeaderValue::from(port),
            // Engine.IO ids are base64url; digits are a subset.
            prefix: format!("{port}{:05}", std::process::id() % 100_000),
            next: AtomicU64::new(0),
            sessions: Mutex::new(HashMap::new()),
        });
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(state.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
