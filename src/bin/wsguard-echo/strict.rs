//! `--mode strict`: a correct RFC 6455 + RFC 7692 echo server. hyper reads the
//! upgrade request; the handshake is checked and permessage-deflate negotiated
//! here (yawc's own negotiation ignores unknown parameters and all offers but
//! one). The library is picked per connection from the outcome:
//! - deflate agreed: yawc, with the agreed parameters. It inflates and checks
//!   what it reads and compresses what it echoes.
//! - otherwise: tungstenite, as before. yawc alone would change the verdicts
//!   of the plain RFC 6455 suite: it closes with 1003 instead of 1002 on a
//!   reserved opcode, accepts a close reason too long for a control frame, and
//!   sends no close frame for invalid UTF-8 or a broken fragment sequence.
//!   On deflate connections `Assembler` checks UTF-8 and fragment order and
//!   sends those close frames; the rest stays yawc's there: reserved opcodes
//!   get 1003, and unmasked frames, RSV1 on control frames and over-long close
//!   or pong payloads are not refused.

use std::convert::Infallible;

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use wsguard::handshake::{accept_key, has_token};
use yawc::close::CloseCode;
use yawc::{Frame, OpCode, Options, WebSocket, WebSocketError};

use crate::deflate;
use crate::{first_protocol, MAX_SIZE};

pub async fn serve(tcp: TcpStream) {
    let service = service_fn(|mut req| async move { Ok::<_, Infallible>(upgrade(&mut req)) });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades()
        .await;
}

/// Answers the upgrade request and, on 101, starts the echo once hyper hands
/// the connection over.
fn upgrade(req: &mut Request<Incoming>) -> Response<Empty<Bytes>> {
    let h = req.headers();
    let key = h.get(header::SEC_WEBSOCKET_KEY);
    let valid = req.method() == Method::GET
        && req.version() == Version::HTTP_11
        && has_token(h, header::UPGRADE, "websocket")
        && has_token(h, header::CONNECTION, "upgrade")
        && h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) == Some(b"13");
    let (Some(key), true) = (key, valid) else {
        return status(StatusCode::BAD_REQUEST);
    };

    let mut resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept_key(key.as_bytes()));
    let protocol = h
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| first_protocol(v.as_bytes()))
        .and_then(|p| HeaderValue::from_bytes(p).ok());
    if let Some(p) = protocol {
        resp = resp.header(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    let offers = deflate::offers(
        h.get_all(header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .map(HeaderValue::as_bytes),
    );
    let agreed = deflate::strict_response(&offers).map(|r| r.to_string());
    if let Some(ext) = &agreed {
        resp = resp.header(header::SEC_WEBSOCKET_EXTENSIONS, ext.as_str());
    }

    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(io) = on_upgrade.await else { return };
        match agreed {
            Some(ext) => echo_deflate(TokioIo::new(io), &ext).await,
            None => echo_plain(TokioIo::new(io)).await,
        }
    });
    resp.body(Empty::new())
        .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR))
}

fn status(code: StatusCode) -> Response<Empty<Bytes>> {
    let mut resp = Response::new(Empty::new());
    *resp.status_mut() = code;
    resp
}

/// The echo loop without extensions: tungstenite.
async fn echo_plain<S: AsyncRead + AsyncWrite + Unpin>(io: S) {
    // tungstenite zeroes the free part of its read buffer (up to this size) before
    // every read: at the 128 KiB default that memset was a tenth of the benchmark's
    // load CPU at 20k small messages a second.
    let config = WebSocketConfig::default()
        .read_buffer_size(16 << 10)
        .max_message_size(Some(MAX_SIZE))
        .max_frame_size(Some(MAX_SIZE));
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    // Read a burst: wait for one message, then take whatever else is already
    // decoded or readable without blocking, and flush once per burst. tungstenite
    // queues pongs and the close reply itself; the flush sends them.
    'conn: while let Some(first) = ws.next().await {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                    if ws.feed(msg).await.is_err() {
                        break 'conn;
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    // Echoes of the messages before the bad frame go out first.
                    let _ = ws.flush().await;
                    break 'conn;
                }
            }
            next = ws.next().now_or_never().flatten();
        }
        if ws.flush().await.is_err() {
            break;
        }
    }
}

/// The echo loop with permessage-deflate agreed as `extensions`: yawc's frame
/// layer, which inflates each frame, with the messages assembled here.
async fn echo_deflate<S: AsyncRead + AsyncWrite + Unpin>(io: S, extensions: &str) {
    // yawc's limit is an exclusive bound. Fast deflate: this is the benchmark
    // backend, and the suites check what comes back, not the ratio.
    let options = Options::default()
        .with_limits(MAX_SIZE + 1, MAX_SIZE + 1)
        .with_low_latency_compression();
    let role = yawc::Role::Server;
    let Ok(ws) = WebSocket::from_stream_with_extensions(io, role, Some(extensions), options) else {
        return;
    };
    let mut ws = ws.into_streaming();
    let mut message = Assembler::default();
    // Bursts as in `echo_plain`. yawc queues pongs, close replies and the close
    // frame for an error it finds; the next read sends them.
    let mut next = ws.next_frame().await;
    loop {
        loop {
            let reply = match next {
                Ok(frame) => match message.push(frame) {
                    Ok(reply) => reply,
                    Err(code) => Some(Frame::close(code, "")),
                },
                Err(WebSocketError::ConnectionClosed) => return,
                Err(_) => {
                    let _ = ws.next_frame().await;
                    return;
                }
            };
            if let Some(reply) = reply {
                let close = reply.opcode() == OpCode::Close;
                if ws.feed(reply).await.is_err() || close {
                    let _ = ws.flush().await;
                    return;
                }
            }
            match ws.next_frame().now_or_never() {
                Some(more) => next = more,
                None => break,
            }
        }
        if ws.flush().await.is_err() {
            return;
        }
        next = ws.next_frame().await;
    }
}

/// Reassembles fragmented messages and checks what yawc's message layer would
/// check without sending a close frame: fragment order, size, UTF-8.
#[derive(Default)]
struct Assembler {
    partial: Option<(OpCode, BytesMut)>,
}

impl Assembler {
    /// The message to echo once `frame` completes one; the close code to fail
    /// the connection with on a violation. Control frames are yawc's.
    fn push(&mut self, frame: Frame) -> Result<Option<Frame>, CloseCode> {
        let (opcode, fin, payload) = frame.into_parts();
        let (opcode, payload) = match (opcode, self.partial.take()) {
            (OpCode::Text | OpCode::Binary, None) if fin => (opcode, payload),
            (OpCode::Text | OpCode::Binary, None) => {
                self.partial = Some((opcode, BytesMut::from(payload)));
                return Ok(None);
            }
            (OpCode::Continuation, Some((opcode, mut buf))) => {
                if buf.len() + payload.len() > MAX_SIZE {
                    return Err(CloseCode::Size);
                }
                buf.extend_from_slice(&payload);
                if !fin {
                    self.partial = Some((opcode, buf));
                    return Ok(None);
                }
                (opcode, buf.freeze())
            }
            (OpCode::Text | OpCode::Binary | OpCode::Continuation, _) => {
                return Err(CloseCode::Protocol)
            }
            (_, partial) => {
                self.partial = partial;
                return Ok(None);
            }
        };
        if opcode == OpCode::Text {
            if std::str::from_utf8(&payload).is_err() {
                return Err(CloseCode::Invalid);
            }
            return Ok(Some(Frame::text(payload)));
        }
        Ok(Some(Frame::binary(payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;
    use tokio::io::AsyncReadExt as _;

    /// What `push` returned, in a form tests can compare.
    fn push(m: &mut Assembler, frame: Frame) -> Result<Option<(OpCode, Vec<u8>)>, CloseCode> {
        m.push(frame)
            .map(|r| r.map(|f| (f.opcode(), f.payload().to_vec())))
    }

    #[test]
    fn assembler_joins_fragments_and_refuses_what_breaks_the_rules() {
        let mut m = Assembler::default();
        assert_eq!(
            push(&mut m, Frame::text(&b"h\xc3"[..]).with_fin(false)),
            Ok(None)
        );
        assert_eq!(push(&mut m, Frame::ping("p")), Ok(None));
        let whole = push(&mut m, Frame::continuation(&b"\xa9"[..]));
        assert_eq!(whole, Ok(Some((OpCode::Text, "hé".into()))));

        assert_eq!(
            push(&mut m, Frame::continuation("x")),
            Err(CloseCode::Protocol)
        );
        let mut m = Assembler::default();
        assert_eq!(push(&mut m, Frame::binary("a").with_fin(false)), Ok(None));
        assert_eq!(push(&mut m, Frame::binary("b")), Err(CloseCode::Protocol));
        let mut m = Assembler::default();
        assert_eq!(
            push(&mut m, Frame::text(&b"\xff"[..])),
            Err(CloseCode::Invalid)
        );
    }

    #[tokio::test]
    async fn honours_the_first_offer_and_echoes_compressed() {
        let offer = "permessage-deflate; server_max_window_bits=10; client_max_window_bits, \
                     permessage-deflate";
        let (mut tcp, head) = wire::connect(serve, Some(offer)).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert_eq!(
            wire::extensions(&head),
            Some("permessage-deflate; server_max_window_bits=10")
        );
        let text = b"echo, echo, echo, echo";
        wire::send(&mut tcp, 0xc1, &wire::deflate(text)).await;
        let (b0, payload) = wire::recv(&mut tcp).await;
        assert_eq!(b0, 0xc1, "FIN, RSV1, text");
        assert_eq!(wire::inflate(&payload), text);

        // Inflates, but not to UTF-8: 1007.
        wire::send(&mut tcp, 0xc1, &wire::deflate(b"\xff")).await;
        let (b0, payload) = wire::recv(&mut tcp).await;
        assert_eq!((b0, &payload[..2]), (0x88, &1007u16.to_be_bytes()[..]));
    }

    #[tokio::test]
    async fn declines_a_malformed_offer_and_echoes_plain() {
        let offer = "permessage-deflate; server_max_window_bits=16";
        let (mut tcp, head) = wire::connect(serve, Some(offer)).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert_eq!(wire::extensions(&head), None);
        wire::send(&mut tcp, 0x81, b"plain").await;
        assert_eq!(wire::recv(&mut tcp).await, (0x81, b"plain".to_vec()));
        // RSV1 without the extension: a protocol error, the connection ends.
        wire::send(&mut tcp, 0xc1, &wire::deflate(b"x")).await;
        let mut rest = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tcp.read_to_end(&mut rest),
        );
        assert!(read.await.is_ok());
        assert!(rest.is_empty() || rest[0] == 0x88, "{rest:?}");
    }
}
