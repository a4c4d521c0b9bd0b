//! The handshake: rustls' unbuffered states driven over the socket, with
//! one growing buffer for what the client sends, until the client's Finished
//! (and the session tickets after it) are done.

use std::io;
use std::sync::{Arc, Mutex};

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, UnbufferedStatus};
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::stream::{
    alert, append, encode_room, tls_error, too_much, unexpected, Tls, TlsReadHalf, TlsStream,
    TlsWriteHalf, MAX_HELD,
};

/// Storage of the handshake's first read; it grows (up to [`MAX_HELD`]) only
/// for a handshake message that does not fit.
const HANDSHAKE_BUF: usize = 4096;

/// Runs the TLS handshake over `tcp` with `config`. Time-limiting it is the
/// caller's: every wait is a read or write of the socket.
pub async fn accept(config: Arc<ServerConfig>, mut tcp: TcpStream) -> io::Result<TlsStream> {
    let mut conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
    let mut incoming = vec![0; HANDSHAKE_BUF];
    let mut filled = 0;
    let mut outgoing = Vec::new();
    let mut plain = Vec::new();
    loop {
        // What to do once rustls' state, which borrows both buffers, is done.
        enum Next {
            Go,
            Send,
            Receive,
            Done,
        }
        let UnbufferedStatus { mut discard, state } =
            conn.process_tls_records(&mut incoming[..filled]);
        let next = match state {
            Ok(ConnectionState::EncodeTlsData(mut data)) => {
                append(&mut outgoing, |buf| data.encode(buf).map_err(encode_room))?;
                Next::Go
            }
            // The bytes are wsguard's to send from here.
            Ok(ConnectionState::TransmitTlsData(data)) => {
                data.done();
                Next::Send
            }
            Ok(ConnectionState::BlockedHandshake) => Next::Receive,
            // A client may send its first request with its Finished message.
            Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                while let Some(record) = traffic.next_record() {
                    let record = record.map_err(tls_error)?;
                    discard += record.discard;
                    if plain.len() + record.payload.len() > MAX_HELD {
                        return Err(too_much("early application data"));
                    }
                    plain.extend_from_slice(record.payload);
                }
                Next::Go
            }
            // Application data may be sent from the server's Finished on, but
            // the handshake is the client's Finished (and the tickets after).
            Ok(ConnectionState::WriteTraffic(_)) => Next::Done,
            Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed during the TLS handshake",
                ))
            }
            Ok(other) => return Err(unexpected(&other)),
            Err(e) => {
                outgoing.extend(alert(&mut conn, &mut incoming[..filled]));
                let _ = tcp.write_all(&outgoing).await;
                return Err(tls_error(e));
            }
        };
        incoming.copy_within(discard..filled, 0);
        filled -= discard;
        match next {
            Next::Go => {}
            Next::Send => {
                tcp.write_all(&outgoing).await?;
                outgoing.clear();
            }
            Next::Done if !conn.is_handshaking() => break,
            Next::Receive | Next::Done => {
                if filled == incoming.len() {
                    if filled >= MAX_HELD {
                        return Err(too_much("a handshake message"));
                    }
                    incoming.resize((filled * 2).min(MAX_HELD), 0);
                }
                match tcp.read(&mut incoming[filled..]).await? {
                    0 => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the peer closed during the TLS handshake",
                        ))
                    }
                    n => filled += n,
                }
            }
        }
    }
    incoming.truncate(filled);
    if incoming.is_empty() {
        incoming = Vec::new();
    }
    let (read, write) = tcp.into_split();
    let tls = Arc::new(Mutex::new(Tls {
        conn,
        held: incoming,
        unsent: Vec::new(),
    }));
    Ok(TlsStream {
        read: TlsReadHalf {
            tcp: read,
            tls: tls.clone(),
            plain,
            plain_at: 0,
            ended: false,
        },
        write: TlsWriteHalf {
            tcp: write,
            tls,
            closing: false,
        },
    })
}
