//! The client side of RFC 6455, by hand: connect (TCP or TLS), the upgrade
//! request and its 101, masked client frames, unmasked server frames, and the
//! payloads whose echoes are checked byte for byte.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::chat;

/// Either a plain or a TLS stream.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub const OP_TEXT: u8 = 1;
pub const OP_BINARY: u8 = 2;
pub const OP_CLOSE: u8 = 8;
/// The first-byte bit of a compressed message (permessage-deflate).
pub const RSV1: u8 = 0x40;

/// Bytes of every payload that carry its connection and sequence number.
pub const TAG_LEN: usize = 16;

/// Longest upgrade response we read.
const MAX_RESPONSE: usize = 16 << 10;

#[derive(Clone, Debug)]
pub struct Target {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Target {
    /// `ws://host:port/path` or `wss://host:port/path`.
    pub fn parse(url: &str) -> Result<Target, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("ws://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("wss://") {
            (true, r)
        } else {
            return Err(format!("{url}: expected ws:// or wss://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| format!("{url}: the port is required"))?;
        let port = port
            .parse()
            .map_err(|_| format!("{url}: bad port {port:?}"))?;
        Ok(Target {
            tls,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }
}

/// A rustls client config trusting only the PEM certificates in `ca`.
/// `tls13_only`: offer nothing older. `resume`: keep rustls' default session store, one
/// for every connection made with this config, as a browser keeps one; without it every
/// handshake is a full one.
pub fn tls_config(
    ca: &std::path::Path,
    tls13_only: bool,
    resume: bool,
) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider);
    let builder = if tls13_only {
        builder.with_protocol_versions(&[&rustls::version::TLS13])
    } else {
        builder.with_safe_default_protocol_versions()
    };
    let mut config = builder
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// What a TLS handshake settled on.
pub struct TlsInfo {
    pub cipher: Option<String>,
    /// The server took a session ticket from an earlier connection.
    pub resumed: bool,
}

/// TCP connect, then `start`.
pub async fn connect(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    server_name: &str,
) -> io::Result<(Box<dyn Io>, Option<TlsInfo>)> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
    start(tcp, target, tls, server_name).await
}

/// No Nagle on a connected socket, then the TLS handshake when the target asks for it.
pub async fn start(
    tcp: TcpStream,
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    server_name: &str,
) -> io::Result<(Box<dyn Io>, Option<TlsInfo>)> {
    tcp.set_nodelay(true)?;
    match (target.tls, tls) {
        (false, _) => Ok((Box::new(tcp), None)),
        (true, Some(config)) => {
            let name = rustls_pki_types::ServerName::try_from(server_name.to_owned())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let stream = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await?;
            let session = stream.get_ref().1;
            let info = TlsInfo {
                cipher: session
                    .negotiated_cipher_suite()
                    .map(|s| format!("{:?}", s.suite())),
                resumed: session.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
            };
            Ok((Box::new(stream), Some(info)))
        }
        (true, None) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "wss:// needs --ca",
        )),
    }
}

/// Sends the upgrade request (with `extensions` offered, if any) and checks
/// the 101 and its accept key. Returns the bytes that arrived after the
/// response head (the first frames) and the `Sec-WebSocket-Extensions` answer.
pub async fn handshake(
    io: &mut Box<dyn Io>,
    target: &Target,
    origin: &str,
    extensions: Option<&str>,
) -> io::Result<(Vec<u8>, Option<String>)> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|e| io::Error::other(e.to_string()))?;
    let key = b64(&raw);
    let offer = extensions
        .map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n{offer}\r\n",
        target.path, target.host, target.port
    );
    io.write_all(request.as_bytes()).await?;
    io.flush().await?;
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_RESPONSE {
            return Err(bad("upgrade response head too long"));
        }
        if io.read_buf(&mut buf).await? == 0 {
            return Err(bad("connection closed during the upgrade"));
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 101") {
        return Err(bad(&format!("upgrade refused: {status}")));
    }
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    if header("sec-websocket-accept") != Some(accept_key(&key)) {
        return Err(bad("wrong Sec-WebSocket-Accept"));
    }
    Ok((buf.split_off(end), header("sec-websocket-extensions")))
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn accept_key(key: &str) -> String {
    use sha1::{Digest as _, Sha1};
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    b64(&h.finalize())
}

pub fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

/// Mask keys that are never zero and never repeat back to back, so the
/// proxy's strict mask-key policy stays on (xorshift32 per connection).
pub struct Keys(u32);

impl Keys {
    pub fn new(seed: u64) -> Keys {
        Keys((seed as u32).wrapping_mul(0x9E37_79B9) | 1)
    }

    pub fn next_key(&mut self) -> [u8; 4] {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x.to_le_bytes()
    }
}

/// XOR with the key, a `u64` at a time.
fn mask(buf: &mut [u8], key: [u8; 4]) {
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

/// Appends a masked client frame (FIN set) whose payload is `tag` then `body`;
/// `opcode` may carry `RSV1`.
pub fn encode(opcode: u8, tag: &[u8], body: &[u8], key: [u8; 4], out: &mut Vec<u8>) {
    let len = tag.len() + body.len();
    out.push(0x80 | opcode);
    match len {
        0..=125 => out.push(0x80 | len as u8),
        126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(tag);
    out.extend_from_slice(body);
    mask(&mut out[start..], key);
}

/// Appends a masked close frame with code 1000.
pub fn encode_close(key: [u8; 4], out: &mut Vec<u8>) {
    encode(OP_CLOSE, &1000u16.to_be_bytes(), &[], key, out);
}

/// A complete server frame at the start of a buffer.
pub struct ServerFrame {
    pub fin: bool,
    pub opcode: u8,
    /// RSV1: the message is compressed.
    pub compressed: bool,
    /// Payload range in the buffer.
    pub payload: std::ops::Range<usize>,
}

/// Parses one unmasked server frame; `Ok(None)` until it is complete. RSV1
/// is allowed only if permessage-deflate was `negotiated`.
pub fn parse(buf: &[u8], negotiated: bool) -> Result<Option<ServerFrame>, String> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b1 & 0x80 != 0 {
        return Err("masked frame from the server".into());
    }
    let allowed = if negotiated { RSV1 } else { 0 };
    if b0 & 0x70 & !allowed != 0 {
        return Err("reserved bits set by the server".into());
    }
    let (len, start) = match b1 & 0x7F {
        126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        126 | 127 => return Ok(None),
        n => (u64::from(n), 2),
    };
    let len = usize::try_from(len).map_err(|_| "frame length overflows".to_owned())?;
    if len > 64 << 20 {
        return Err(format!("server frame of {len} bytes"));
    }
    if buf.len() < start + len {
        return Ok(None);
    }
    Ok(Some(ServerFrame {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0F,
        compressed: b0 & RSV1 != 0,
        payload: start..start + len,
    }))
}

/// What the messages of a run look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Binary,
    Text,
    /// Text: JSON-like chat messages that compress several times.
    Chat,
}

impl Kind {
    pub fn opcode(self) -> u8 {
        match self {
            Kind::Binary => OP_BINARY,
            Kind::Text | Kind::Chat => OP_TEXT,
        }
    }
}

/// Distinct chat messages a run cycles through.
const CHAT_BODIES: u64 = 64;

/// The payloads but for the tag, message `seq` sending number `seq % len`:
/// for text, one valid UTF-8 body that is mostly ASCII with a 2-, 3- and
/// 4-byte code point every ~60 bytes; for binary, one with every byte value;
/// for chat, `CHAT_BODIES` different JSON messages.
pub fn bodies(kind: Kind, size: usize) -> Vec<Vec<u8>> {
    let len = size.saturating_sub(TAG_LEN);
    match kind {
        Kind::Binary => vec![(0..len).map(|i| (i * 7 + 13) as u8).collect()],
        Kind::Chat => (0..CHAT_BODIES).map(|i| chat::message(i, len)).collect(),
        Kind::Text => {
            let unit = " é€𝄞 hello, this is a chat message with some words in it.";
            let mut out = Vec::with_capacity(len + unit.len());
            while out.len() < len {
                out.extend_from_slice(unit.as_bytes());
            }
            out.truncate(len);
            while std::str::from_utf8(&out).is_err() {
                out.pop();
            }
            out.resize(len, b'.');
            vec![out]
        }
    }
}

/// The tag of message `seq` on connection `conn`: 16 ASCII hex digits.
pub fn tag(conn: u32, seq: u64) -> [u8; TAG_LEN] {
    let v = (u64::from(conn) << 40) | (seq & ((1 << 40) - 1));
    let mut out = [0u8; TAG_LEN];
    for (i, b) in out.iter_mut().enumerate() {
        let nibble = (v >> (60 - 4 * i)) & 0xF;
        *b = b"0123456789abcdef"[nibble as usize];
    }
    out
}

/// The connection and sequence number in the tag at the start of `payload`.
pub fn parse_tag(payload: &[u8]) -> Option<(u32, u64)> {
    let mut v = 0u64;
    for &b in payload.get(..TAG_LEN)? {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        v = v << 4 | u64::from(digit);
    }
    Some(((v >> 40) as u32, v & ((1 << 40) - 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_parse_after_unmasking() {
        for size in [16usize, 64, 125, 126, 1000, 70_000] {
            for kind in [Kind::Binary, Kind::Text] {
                let body = bodies(kind, size).remove(0);
                let tag = tag(7, 42);
                let key = [9, 8, 7, 6];
                let mut out = Vec::new();
                encode(kind.opcode(), &tag, &body, key, &mut out);
                // Unmask as a server would, and drop the mask bit.
                let hdr = out.len() - size - 4;
                let mut frame = out[..hdr].to_vec();
                frame[1] &= 0x7F;
                let mut payload = out[hdr + 4..].to_vec();
                mask(&mut payload, key);
                frame.extend_from_slice(&payload);
                let f = parse(&frame, false).unwrap().unwrap();
                assert!(f.fin);
                assert_eq!(f.opcode, kind.opcode());
                assert_eq!(&frame[f.payload.clone()][..TAG_LEN], &tag);
                assert_eq!(&frame[f.payload][TAG_LEN..], &body[..]);
                assert!(parse(&frame[..frame.len() - 1], false).unwrap().is_none());
                frame[0] |= RSV1;
                assert!(parse(&frame, false).is_err());
                assert!(parse(&frame, true).unwrap().unwrap().compressed);
                if kind == Kind::Text {
                    assert!(std::str::from_utf8(&payload).is_ok());
                }
            }
        }
    }

    #[test]
    fn tags_parse_back() {
        assert_eq!(parse_tag(&tag(7999, 59)), Some((7999, 59)));
        assert_eq!(parse_tag(b"000000000000000z"), None);
        assert_eq!(parse_tag(b"+00000000000000a"), None);
        assert_eq!(parse_tag(b"0000"), None);
    }

    #[test]
    fn keys_never_zero_or_repeated() {
        let mut k = Keys::new(3);
        let mut last = [0u8; 4];
        for _ in 0..100_000 {
            let key = k.next_key();
            assert_ne!(key, [0; 4]);
            assert_ne!(key, last);
            last = key;
        }
    }

    #[test]
    fn target_parses() {
        let t = Target::parse("wss://localhost:8443/chat").unwrap();
        assert!(t.tls);
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("localhost", 8443, "/chat")
        );
        assert!(Target::parse("http://x:1/").is_err());
    }
}
