//! A connection's stages before its request: the PROXY header of a trusted proxy, TLS
//! within the handshake timeout, then HTTP/1.1 (hyper) for the one upgrade request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::proxy::Proxy;
use super::upgrade::{self, Conn, Held};
use crate::proxy_protocol::{self, Parsed, ProxyHeaderError};
use crate::relay;
use crate::state::{OpenConnection, State};

/// hyper refuses a read buffer below 8 KiB; smaller `max_request_head`
/// values are enforced by wsguard's own count at the upgrade.
const HYPER_MIN_BUF: usize = 8192;

/// Runs a connection accepted at `accepted`.
pub(super) async fn run(
    proxy: Arc<Proxy>,
    state: Arc<State>,
    mut stream: TcpStream,
    peer: SocketAddr,
    accepted: Instant,
    open: OpenConnection,
) {
    let _ = stream.set_nodelay(true);
    let deadline = accepted + proxy.config.server.handshake_timeout;
    // A PROXY header is read only from trusted proxies; anyone else's would
    // fail as a malformed TLS or HTTP start.
    let mut proxy_header = None;
    if proxy.reads_proxy_header(peer.ip()) {
        match timeout_at(deadline, read_proxy_header(&mut stream)).await {
            Ok(Ok(source)) => proxy_header = source.map(|a| a.ip()),
            Ok(Err(HeaderError::Invalid(e))) => {
                tracing::info!(error = %e, "PROXY header refused; connection closed");
                return;
            }
            Ok(Err(HeaderError::Closed(e))) => {
                tracing::info!(error = %e, "PROXY header refused; connection closed");
                return;
            }
            Err(_) => {
                tracing::debug!("PROXY header timed out");
                return;
            }
        }
    }
    let conn = Conn {
        proxy: proxy.clone(),
        state: state.clone(),
        peer,
        proxy_header,
        tls: proxy.tls.is_some(),
        accepted,
        held: Arc::new(Held::new(open)),
    };
    match proxy.tls.clone() {
        Some(acceptor) => match timeout_at(deadline, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => serve_http(conn, tls, deadline).await,
            Ok(Err(e)) => {
                state.metrics.tls_handshake_failures.inc();
                tracing::debug!(error = %e, "TLS handshake failed");
            }
            Err(_) => {
                state.metrics.tls_handshake_failures.inc();
                tracing::debug!("TLS handshake timed out");
            }
        },
        None => serve_http(conn, stream, deadline).await,
    }
}

enum HeaderError {
    Invalid(ProxyHeaderError),
    Closed(std::io::Error),
}

/// Reads a PROXY protocol v1/v2 header, no further than its end (the parser says how many
/// bytes it still needs), and returns the client address it names (`None` for
/// LOCAL/UNKNOWN).
async fn read_proxy_header(stream: &mut TcpStream) -> Result<Option<SocketAddr>, HeaderError> {
    let mut buf = Vec::with_capacity(proxy_protocol::V1_MAX_LEN);
    loop {
        match proxy_protocol::parse(&buf).map_err(HeaderError::Invalid)? {
            Parsed::Done { source, .. } => return Ok(source),
            Parsed::Incomplete { need } => {
                let have = buf.len();
                buf.resize(have + need, 0);
                stream
                    .read_exact(&mut buf[have..])
                    .await
                    .map_err(HeaderError::Closed)?;
            }
        }
    }
}

async fn serve_http<S>(conn: Conn, io: S, deadline: Instant)
where
    S: AsyncRead + AsyncWrite + relay::Split + Unpin + Send + 'static,
{
    let max_head = usize::try_from(conn.proxy.config.server.max_request_head).unwrap_or(usize::MAX);
    let remaining = deadline.saturating_duration_since(Instant::now());
    let service = service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(upgrade::upgrade::<S>(conn, req).await) }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(remaining)
        .max_buf_size(max_head.max(HYPER_MIN_BUF))
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}
