//! A real auth service for the forward-auth tests: hyper's HTTP/1.1 server on a loopback
//! port (over TLS with the test process's development certificate for localhost, if
//! asked), answering what the test sets and recording every request and connection. And a
//! raw one that answers fixed bytes, for hostile answers hyper's server would never send.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::{certs, within, Backend, Guard};

/// What the service answers.
#[derive(Clone)]
pub enum Reply {
    Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Never answers (the connection stays open).
    Hang,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply::Answer {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        if let Reply::Answer { headers, .. } = &mut self {
            headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    pub fn body(mut self, bytes: &[u8]) -> Reply {
        if let Reply::Answer { body, .. } = &mut self {
            *body = bytes.to_vec();
        }
        self
    }
}

/// One request as the service received it: the request target and the headers in order
/// (names lower-case).
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
}

#[derive(Default)]
struct Record {
    connections: AtomicUsize,
    requests: Mutex<Vec<Received>>,
}

/// A running auth service; stopped on drop.
pub struct AuthService {
    pub addr: SocketAddr,
    tls: bool,
    record: Arc<Record>,
    reply: Arc<Mutex<Reply>>,
    task: JoinHandle<()>,
}

impl Drop for AuthService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AuthService {
    /// Plain HTTP on 127.0.0.1.
    pub async fn start(reply: Reply) -> AuthService {
        AuthService::start_with(reply, false).await
    }

    /// HTTPS for `localhost`, with the development certificate.
    pub async fn start_https(reply: Reply) -> AuthService {
        AuthService::start_with(reply, true).await
    }

    async fn start_with(reply: Reply, tls: bool) -> AuthService {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tls.then(|| {
            let dir = certs();
            let config =
                wsguard::tls::server_config(&dir.join("localhost.crt"), &dir.join("localhost.key"))
                    .unwrap();
            tokio_rustls::TlsAcceptor::from(config)
        });
        let record = Arc::new(Record::default());
        let reply = Arc::new(Mutex::new(reply));
        let (rec, rep) = (record.clone(), reply.clone());
        // The connections live in the accept task's set, so they end with it.
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                rec.connections.fetch_add(1, Ordering::SeqCst);
                let (rec, rep, acceptor) = (rec.clone(), rep.clone(), acceptor.clone());
                conns.spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                serve(tls, rec, rep).await;
                            }
                        }
                        None => serve(stream, rec, rep).await,
                    }
                });
            }
        });
        AuthService {
            addr,
            tls,
            record,
            reply,
            task,
        }
    }

    /// The URL of its `/auth` endpoint.
    pub fn url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}/auth", self.addr.port())
        } else {
            format!("http://{}/auth", self.addr)
        }
    }

    pub fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    pub fn requests(&self) -> Vec<Received> {
        self.record.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.record.requests.lock().unwrap().len()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.record.connections.load(Ordering::SeqCst)
    }
}

async fn serve<S>(io: S, record: Arc<Record>, reply: Arc<Mutex<Reply>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let (record, reply) = (record.clone(), reply.clone());
        async move {
            record.requests.lock().unwrap().push(Received {
                method: req.method().to_string(),
                target: req.uri().to_string(),
                headers: req
                    .headers()
                    .iter()
                    .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                    .collect(),
            });
            let reply = reply.lock().unwrap().clone();
            match reply {
                Reply::Hang => std::future::pending().await,
                Reply::Answer {
                    status,
                    headers,
                    body,
                } => {
                    let mut res = Response::new(Full::new(Bytes::from(body)));
                    *res.status_mut() = StatusCode::from_u16(status).unwrap();
                    for (name, value) in headers {
                        res.headers_mut().append(
                            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                            http::HeaderValue::from_str(&value).unwrap(),
                        );
                    }
                    Ok::<_, Infallible>(res)
                }
            }
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// A service that reads one request head, writes `answer` and closes; on 127.0.0.1.
pub struct RawService {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for RawService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawService {
    pub async fn start(answer: Vec<u8>) -> RawService {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(answer);
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                let answer = answer.clone();
                conns.spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = stream.write_all(&answer).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        RawService { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/auth", self.addr)
    }
}

/// The Origin the auth end-to-end tests allow.
pub const ORIGIN: &str = "https://chat.example.com";

/// The answer head to an upgrade of `path` from [`ORIGIN`] with `headers` (lines ending in
/// \r\n), followed by the body when it is a refusal; the connection is dropped after that.
pub async fn ask(addr: SocketAddr, path: &str, headers: &str) -> String {
    let mut io = super::connect(addr, false).await;
    let req = super::upgrade_request(path, &format!("Origin: {ORIGIN}\r\n{headers}"));
    within("write upgrade", io.write_all(&req)).await.unwrap();
    let mut answer = super::read_head(&mut io, "read answer").await;
    if super::status_of(&answer) != 101 {
        let mut body = Vec::new();
        let _ = within("read body", io.read_to_end(&mut body)).await;
        answer.push_str(&String::from_utf8_lossy(&body));
    }
    answer
}

/// Asserts a refusal of route `/chat`: its status, its rule counted, and `backend` still at
/// the `connections` it had before.
pub fn assert_refused(
    guard: &Guard,
    backend: &Backend,
    connections: usize,
    answer: &str,
    (status, rule): (u16, &str),
) {
    assert_eq!(super::status_of(answer), status, "{answer}");
    let series = format!("wsguard_handshakes_refused_total{{reason=\"{rule}\",route=\"/chat\"}}");
    assert!(
        guard.metric(&series) >= 1.0,
        "{series}\n{}",
        guard.metrics()
    );
    assert_eq!(
        backend.seen.connections(),
        connections,
        "the backend was contacted"
    );
}
