//! JWT test keys and a real HTTPS server for JWK sets.
//!
//! The keys are fixtures under tests/data/jwt/ (made once with `openssl genpkey`): for each,
//! `NAME.pem` (PKCS#8 private key) and `NAME.pub.pem` (SPKI public key). [`TestKey::jwk`] gives
//! a key's public JWK and [`jwk_set`] a set's JSON, so any test can serve them.
//!
//! [`JwksServer`] answers every request with the [`Reply`] a test sets, over TLS with the
//! development certificate for localhost and 127.0.0.1; its `ca.crt` is the `jwks_ca_file`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::certs;

/// The fixture keys under tests/data/jwt/.
#[derive(Clone, Copy, Debug)]
pub enum TestKey {
    /// rs256.pem: RSA 2048, for RS256.
    Rs256,
    /// rs256-b.pem: another RSA 2048, for rotations and wrong-key cases.
    Rs256B,
    /// es256.pem: EC P-256, for ES256.
    Es256,
    /// es384.pem: EC P-384, for ES384.
    Es384,
    /// ed25519.pem: Ed25519, for EdDSA.
    Ed25519,
}

impl TestKey {
    /// The file name stem under tests/data/jwt/.
    pub fn stem(self) -> &'static str {
        match self {
            TestKey::Rs256 => "rs256",
            TestKey::Rs256B => "rs256-b",
            TestKey::Es256 => "es256",
            TestKey::Es384 => "es384",
            TestKey::Ed25519 => "ed25519",
        }
    }

    /// The algorithm tokens signed with this key use.
    pub fn alg(self) -> Algorithm {
        match self {
            TestKey::Rs256 | TestKey::Rs256B => Algorithm::RS256,
            TestKey::Es256 => Algorithm::ES256,
            TestKey::Es384 => Algorithm::ES384,
            TestKey::Ed25519 => Algorithm::EdDSA,
        }
    }

    /// The private key (PEM, PKCS#8).
    pub fn private_pem(self) -> PathBuf {
        data_dir().join(format!("{}.pem", self.stem()))
    }

    /// The public key (PEM, SPKI), as `public_keys` takes it.
    pub fn public_pem(self) -> PathBuf {
        data_dir().join(format!("{}.pub.pem", self.stem()))
    }

    pub fn encoding_key(self) -> EncodingKey {
        let pem = std::fs::read(self.private_pem()).expect("fixture key");
        match self.alg() {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
            _ => EncodingKey::from_ec_pem(&pem),
        }
        .expect("fixture key parses")
    }

    /// The public JWK with `kid` and this key's `alg`; edit the JSON for other members.
    pub fn jwk(self, kid: &str) -> Value {
        let jwk = Jwk::from_encoding_key(&self.encoding_key(), self.alg()).expect("public JWK");
        let mut value = serde_json::to_value(jwk).unwrap();
        value["kid"] = json!(kid);
        value
    }

    /// A token signed with this key, header `kid` when given, expiring in 10 minutes.
    pub fn token(self, kid: Option<&str>, sub: &str) -> String {
        self.token_with(self.alg(), kid, sub)
    }

    /// As [`TestKey::token`], signed with `alg` (of this key's family).
    pub fn token_with(self, alg: Algorithm, kid: Option<&str>, sub: &str) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        let exp = jsonwebtoken::get_current_timestamp() + 600;
        jsonwebtoken::encode(
            &header,
            &json!({ "sub": sub, "exp": exp }),
            &self.encoding_key(),
        )
        .expect("token signs")
    }
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/jwt")
}

/// `{"keys": [...]}`.
pub fn jwk_set(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// How the server answers.
#[derive(Clone)]
pub enum Reply {
    /// `status` with `body` (as JSON), after `delay`.
    Answer {
        status: u16,
        body: String,
        delay: Duration,
    },
    /// The connection is closed without an answer (before TLS on a new connection).
    HangUp,
}

impl Reply {
    pub fn ok(body: impl Into<String>) -> Reply {
        Reply::status(200, body)
    }

    pub fn status(status: u16, body: impl Into<String>) -> Reply {
        Reply::Answer {
            status,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    /// 200 with `body`, after `delay`.
    pub fn slow(delay: Duration, body: impl Into<String>) -> Reply {
        Reply::Answer {
            status: 200,
            body: body.into(),
            delay,
        }
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub accept: Option<String>,
}

/// An HTTPS server on 127.0.0.1:0 (HTTP/1.1, keep-alive).
pub struct JwksServer {
    pub port: u16,
    reply: Arc<Mutex<Reply>>,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    hang_ups: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    pub async fn start(reply: Reply) -> JwksServer {
        let certs = certs();
        let tls =
            wsguard::tls::server_config(&certs.join("localhost.crt"), &certs.join("localhost.key"))
                .expect("server TLS config");
        let acceptor = TlsAcceptor::from(tls);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let reply = Arc::new(Mutex::new(reply));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hang_ups = Arc::new(AtomicUsize::new(0));
        let (reply2, seen2, hang_ups2) = (reply.clone(), seen.clone(), hang_ups.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if matches!(*reply2.lock().unwrap(), Reply::HangUp) {
                    hang_ups2.fetch_add(1, Ordering::SeqCst);
                    drop(tcp);
                    continue;
                }
                let (acceptor, reply, seen) = (acceptor.clone(), reply2.clone(), seen2.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req: hyper::Request<Incoming>| {
                        answer(req, reply.clone(), seen.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        JwksServer {
            port,
            reply,
            seen,
            hang_ups,
            task,
        }
    }

    /// The URL of the set.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/jwks.json", self.port)
    }

    /// The CA that signed the server's certificate, for `jwks_ca_file`.
    pub fn ca_file(&self) -> PathBuf {
        certs().join("ca.crt")
    }

    /// Answers from now on with `reply`.
    pub fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    /// Requests seen, hung-up connections included.
    pub fn requests(&self) -> usize {
        self.seen.lock().unwrap().len() + self.hang_ups.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer(
    req: hyper::Request<Incoming>,
    reply: Arc<Mutex<Reply>>,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
) -> Result<hyper::Response<Full<Bytes>>, std::io::Error> {
    seen.lock().unwrap().push(SeenRequest {
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
        accept: req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    let reply = reply.lock().unwrap().clone();
    match reply {
        Reply::Answer {
            status,
            body,
            delay,
        } => {
            tokio::time::sleep(delay).await;
            Ok(hyper::Response::builder()
                .status(status)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap())
        }
        // An error from the service makes hyper close the connection without an answer.
        Reply::HangUp => Err(std::io::Error::other("hang up")),
    }
}
