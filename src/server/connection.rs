//! A connection's stages before its request: the PROXY header of a trusted proxy (or a
//! check that an untrusted peer sends none), the client IP's admission when only that header
//! names it, TLS within the handshake timeout, then HTTP/1.1 (hyper) for the one upgrade
//! request, with what hyper refuses by itself accounted like wsguard's own refusals.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::conn::{Conn, Held};
use super::outcome::{self, Asked, Detail, Dropped, TlsFailure};
use super::proxy::Proxy;
use super::upgrade;
use crate::client_ip::client_at_accept;
use crate::limits::{ConnectionPermit, IpLimits, IpRefusal};
use crate::proxy_protocol::{self, Parsed, ProxyHeaderError};
use crate::refusal::Refusal;
use crate::relay;
use crate::state::{OpenConnection, State};

/// hyper refuses a read buffer below 8 KiB; smaller `max_request_head`
/// values are enforced by wsguard's own count at the upgrade.
const HYPER_MIN_BUF: usize = 8192;

/// The client IP as far as it is known before the request.
pub(super) enum Client {
    /// Named at accept (TCP peer or PROXY header): its connection slot is taken and one
    /// handshake charged to its quota, whose verdict is answered once the request is read.
    Admitted {
        ip: IpAddr,
        permit: ConnectionPermit,
        quota: Result<(), IpRefusal>,
    },
    /// Named by each request's `X-Forwarded-For` (a trusted proxy without a PROXY header):
    /// limited at the upgrade.
    Forwarded,
}

/// Takes `ip`'s connection slot and charges one handshake: at accept, so TLS handshakes
/// that never reach an upgrade count too.
pub(super) fn admit(limits: &IpLimits, ip: IpAddr) -> Result<Client, IpRefusal> {
    let permit = limits.connect(ip)?;
    Ok(Client::Admitted {
        ip,
        permit,
        quota: limits.handshake(ip),
    })
}

/// Runs a connection accepted at `accepted`; `client` is `None` while a PROXY header is
/// still to name it.
pub(super) async fn run(
    proxy: Arc<Proxy>,
    state: Arc<State>,
    mut stream: TcpStream,
    peer: SocketAddr,
    accepted: Instant,
    open: OpenConnection,
    client: Option<Client>,
) {
    let metrics = &state.metrics;
    let _ = stream.set_nodelay(true);
    let deadline = accepted + proxy.config.server.handshake_timeout;
    let client = match client {
        Some(client) => client,
        None => {
            let header = match timeout_at(deadline, read_proxy_header(&mut stream)).await {
                Ok(Ok(source)) => source.map(|a| a.ip()),
                Ok(Err(HeaderError::Invalid(e))) => {
                    return outcome::dropped(metrics, Dropped::ProxyHeaderInvalid, Some(&e))
                }
                Ok(Err(HeaderError::Closed(e))) => {
                    return outcome::dropped(metrics, Dropped::ProxyHeaderClosed, Some(&e))
                }
                Err(_) => return outcome::dropped(metrics, Dropped::ProxyHeaderTimeout, None),
            };
            if let Some(ip) = header {
                tracing::Span::current().record("client", tracing::field::display(ip));
            }
            match client_at_accept(&proxy.trusted, peer.ip(), header) {
                None => Client::Forwarded,
                Some(ip) => match admit(&state.ip_limits, ip) {
                    Ok(client) => client,
                    Err(r) => return outcome::dropped(metrics, Dropped::ClientIp(r), None),
                },
            }
        }
    };
    if proxy.refuses_proxy_header(peer.ip()) && sends_proxy_header(&stream, deadline).await {
        return outcome::dropped(metrics, Dropped::ProxyHeaderUntrusted, None);
    }
    let (admitted, permit) = match client {
        Client::Admitted { ip, permit, quota } => (Some((ip, quota)), Some(permit)),
        Client::Forwarded => (None, None),
    };
    let conn = Conn {
        proxy: proxy.clone(),
        state: state.clone(),
        peer,
        admitted,
        tls: proxy.tls.is_some(),
        accepted,
        held: Arc::new(Held::new(open, permit)),
    };
    match proxy.tls.clone() {
        Some(_) if sends_plain_http(&stream, deadline).await => {
            let what = "a plain HTTP request, answered 400: the client must use https:// or wss://";
            outcome::tls_failed(metrics, TlsFailure::NotTls, Some(&what));
            let most = usize::try_from(proxy.config.server.max_request_head).unwrap_or(usize::MAX);
            // Best-effort: a client gone meanwhile has nothing more to learn.
            let _ = timeout_at(deadline, answer_plain_http(stream, most)).await;
        }
        Some(config) => match timeout_at(deadline, crate::tls::accept(config, stream)).await {
            Ok(Ok(tls)) => serve_http(conn, tls, deadline).await,
            Ok(Err(e)) => outcome::tls_failed(metrics, tls_failure(&e), Some(&e)),
            Err(_) => outcome::tls_failed(metrics, TlsFailure::Timeout, None),
        },
        None => serve_http(conn, stream, deadline).await,
    }
}

/// The longest HTTP method token looked for (`VERSION-CONTROL`), and its space.
const METHOD_PEEK: usize = 16;

/// Whether the first bytes on the TLS port are an HTTP request line: a method token and a
/// space, where a TLS record starts with 0x16. A peek bounded by the deadline, which leaves
/// every byte for TLS; a request cut before its first space is TLS's to refuse.
async fn sends_plain_http(stream: &TcpStream, deadline: Instant) -> bool {
    let mut first = [0u8; METHOD_PEEK];
    match timeout_at(deadline, stream.peek(&mut first)).await {
        Ok(Ok(n)) => starts_with_method(&first[..n]),
        // Timed out or failed: the TLS stage meets the same and accounts for it.
        _ => false,
    }
}

fn starts_with_method(bytes: &[u8]) -> bool {
    let token = bytes
        .iter()
        .take_while(|b| b.is_ascii_uppercase() || **b == b'-')
        .count();
    bytes.first().is_some_and(u8::is_ascii_uppercase) && bytes.get(token) == Some(&b' ')
}

/// nginx's answer to the same mistake, so that the client's user reads what went wrong
/// rather than TLS records taken for HTTP/0.9.
const PLAIN_HTTP_BODY: &str = "The plain HTTP request was sent to HTTPS port\n";

/// Answers 400 and closes: sends the answer and FIN, then reads what the client sent, at
/// most `most` bytes, until it closes too, so that closing with its request unread does not
/// reset the connection before the client has read the answer. The caller bounds the time.
async fn answer_plain_http(mut stream: TcpStream, most: usize) -> std::io::Result<()> {
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{PLAIN_HTTP_BODY}",
        PLAIN_HTTP_BODY.len()
    );
    stream.write_all(answer.as_bytes()).await?;
    stream.shutdown().await?;
    let mut sink = [0u8; 4096];
    let mut read = 0;
    while read < most {
        match stream.read(&mut sink).await? {
            0 => break,
            n => read += n,
        }
    }
    Ok(())
}

/// Whether an untrusted peer's first bytes are a PROXY header: a peek bounded by the
/// deadline, which leaves the bytes for TLS or HTTP. A signature split across packets is
/// not seen here; TLS or HTTP then refuse what it looks like to them.
async fn sends_proxy_header(stream: &TcpStream, deadline: Instant) -> bool {
    let mut first = [0u8; proxy_protocol::V2_SIGNATURE.len()];
    match timeout_at(deadline, stream.peek(&mut first)).await {
        Ok(Ok(n)) => proxy_protocol::starts_with_signature(&first[..n]),
        // Timed out or failed: the TLS or HTTP stage meets the same and accounts for it.
        _ => false,
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

/// The reason of a failed TLS handshake, from rustls' error inside the I/O error.
fn tls_failure(e: &std::io::Error) -> TlsFailure {
    use rustls::AlertDescription as A;
    use std::io::ErrorKind as K;
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidMessage(_) | rustls::Error::PeerSentOversizedRecord) => {
            TlsFailure::NotTls
        }
        Some(
            rustls::Error::NoApplicationProtocol
            | rustls::Error::AlertReceived(A::NoApplicationProtocol),
        ) => TlsFailure::NoAlpn,
        Some(
            rustls::Error::PeerIncompatible(_)
            | rustls::Error::AlertReceived(
                A::ProtocolVersion | A::HandshakeFailure | A::InsufficientSecurity,
            ),
        ) => TlsFailure::Incompatible,
        Some(rustls::Error::AlertReceived(
            A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied,
        )) => TlsFailure::CertificateRejected,
        Some(_) => TlsFailure::Other,
        None => match e.kind() {
            K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
                TlsFailure::PeerClosed
            }
            _ => TlsFailure::Other,
        },
    }
}

async fn serve_http<S>(conn: Conn, io: S, deadline: Instant)
where
    S: AsyncRead + AsyncWrite + relay::Split + Unpin + Send + 'static,
{
    let max_head = usize::try_from(conn.proxy.config.server.max_request_head).unwrap_or(usize::MAX);
    let remaining = deadline.saturating_duration_since(Instant::now());
    let state = conn.state.clone();
    let service = service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(upgrade::dispatch::<S>(conn, req).await) }
    });
    let mut drain = state.drain_signal();
    let draining = async move {
        let _ = drain.wait_for(|d| *d).await;
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(remaining)
        .max_buf_size(max_head.max(HYPER_MIN_BUF))
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    // A kept-alive connection takes no new request once the drain begins; the one in
    // flight is answered first. (An upgraded one has left hyper for the relay by then.)
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = draining => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        hyper_ended(&state, &e);
    }
}

/// Accounts for a connection hyper ended with `e`: its own answers (431, 400) and its
/// header-read timeout are refusals; anything else is the client leaving.
fn hyper_ended(state: &State, e: &hyper::Error) {
    let metrics = &state.metrics;
    if e.is_timeout() {
        outcome::dropped(metrics, Dropped::HeaderTimeout, None);
    } else if e.is_parse_version_h2() {
        outcome::dropped(metrics, Dropped::Http2, None);
    } else if e.is_parse_too_large() {
        outcome::refused(
            metrics,
            Refusal::HeadTooLarge,
            &Asked::UNPARSED,
            &Detail::default(),
        );
    } else if e.is_parse() {
        outcome::refused(
            metrics,
            Refusal::MalformedRequest,
            &Asked::UNPARSED,
            &Detail::default(),
        );
    } else {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::starts_with_method;

    #[test]
    fn a_request_line_is_told_from_a_tls_record() {
        for http in [&b"GET / HTTP/1.1"[..], b"POST ", b"VERSION-CONTROL /"] {
            assert!(starts_with_method(http), "{http:?}");
        }
        let not_http = [
            &[0x16, 0x03, 0x01, 0x02, 0x00][..],
            b"GE",
            b"get / HTTP/1.1",
            b"-X /",
            b" GET",
            b"",
        ];
        for bytes in not_http {
            assert!(!starts_with_method(bytes), "{bytes:?}");
        }
    }
}
