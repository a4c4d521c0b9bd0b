//! The HTTP(S) client of authentication: JWKS fetches and forward-auth requests. One pooled
//! hyper client per `[auth.NAME]` (keep-alive connections are reused across handshakes),
//! TLS by rustls with the system's roots or a configured CA, and every answer read with a
//! bound on its size and time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Idle pooled connections are closed after this: an auth service's keep-alive timeout is
/// usually 60–75 s, so closing first avoids sending on a connection it is closing.
const POOL_IDLE: Duration = Duration::from_secs(50);
/// Idle connections kept per host.
const POOL_MAX_IDLE: usize = 32;

/// Why a client could not be built.
#[derive(Debug)]
pub enum ClientError {
    /// The CA file could not be read or holds no certificate.
    Ca(PathBuf, String),
    /// The system's roots could not be loaded.
    Roots(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Ca(path, why) => write!(f, "{}: {why}", path.display()),
            ClientError::Roots(why) => write!(f, "cannot load the system's CA roots: {why}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Why a request got no usable answer.
#[derive(Debug)]
pub enum FetchError {
    /// No answer within the timeout.
    Timeout,
    /// Connect, TLS or HTTP failed.
    Transport(String),
    /// The body was longer than allowed.
    TooLarge,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Timeout => f.write_str("no answer in time"),
            FetchError::Transport(why) => f.write_str(why),
            FetchError::TooLarge => f.write_str("answer body too large"),
        }
    }
}

/// A pooled HTTP/1.1 client for `http://` and `https://` URLs.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl HttpClient {
    /// A client trusting `ca_file` (PEM) or, without one, the system's roots.
    pub fn new(ca_file: Option<&Path>) -> Result<HttpClient, ClientError> {
        let roots = match ca_file {
            Some(path) => roots_from(path)?,
            None => system_roots()?,
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Roots(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(POOL_MAX_IDLE)
            .build(connector);
        Ok(HttpClient { client })
    }

    /// Sends `req` and returns the answer with its body unread, for a caller whose bound on
    /// the body depends on the status. No timeout: the caller bounds the whole exchange.
    pub async fn send(&self, req: Request<Empty<Bytes>>) -> Result<Response<Incoming>, FetchError> {
        self.client
            .request(req)
            .await
            .map_err(|e| FetchError::Transport(error_chain(&e)))
    }

    /// Sends `req` and reads the whole answer, at most `max_body` bytes of body, all within
    /// `timeout`.
    pub async fn fetch(
        &self,
        req: Request<Empty<Bytes>>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Response<Bytes>, FetchError> {
        let exchange = async {
            let (parts, body) = self.send(req).await?.into_parts();
            let body = Limited::new(body, max_body)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        FetchError::TooLarge
                    } else {
                        FetchError::Transport(e.to_string())
                    }
                })?
                .to_bytes();
            Ok(Response::from_parts(parts, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(FetchError::Timeout))
    }
}

/// An error and its sources on one line: hyper's outer errors say little ("client error
/// (Connect)") without them.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn roots_from(path: &Path) -> Result<RootCertStore, ClientError> {
    let fail = |why: String| ClientError::Ca(path.to_owned(), why);
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| fail(e.to_string()))? {
        let cert = cert.map_err(|e| fail(e.to_string()))?;
        roots.add(cert).map_err(|e| fail(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(fail("holds no PEM certificate".to_owned()));
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, ClientError> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        let why = loaded
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), ToString::to_string);
        return Err(ClientError::Roots(why));
    }
    Ok(roots)
}
