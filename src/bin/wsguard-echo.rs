//! `wsguard-echo`: WebSocket echo backends for tests, conformance runs and benchmarks.
//! `strict` is a correct RFC 6455 echo server (tokio-tungstenite); `lenient` checks nothing.

use std::io::ErrorKind;
use std::io::Write as _;
use std::net::SocketAddr;

use clap::{Parser, ValueEnum};
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::io::{BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use wsguard::handshake::accept_key;

/// Largest frame and message either mode accepts (Autobahn section 9 sends 16 MiB).
const MAX_SIZE: usize = 64 << 20;
/// Largest upgrade request the lenient mode reads before giving up.
const MAX_REQUEST: usize = 64 << 10;
/// Chunk size for passing payloads on in lenient mode.
const CHUNK: usize = 64 << 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Correct RFC 6455 echo server (tokio-tungstenite).
    Strict,
    /// Hand-written, validates nothing, echoes every frame as it came.
    Lenient,
}

/// WebSocket echo backend for wsguard tests and benchmarks.
#[derive(Parser, Debug)]
#[command(name = "wsguard-echo", version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the real one is printed).
    #[arg(long, default_value = "127.0.0.1:9002")]
    listen: SocketAddr,
    /// Which backend to run.
    #[arg(long, value_enum, default_value_t = Mode::Strict)]
    mode: Mode,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.listen).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", listener.local_addr()?)?;
        out.flush()?;
    }
    loop {
        let (tcp, _peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        match args.mode {
            Mode::Strict => tokio::spawn(strict(tcp)),
            Mode::Lenient => tokio::spawn(lenient(tcp)),
        };
    }
}

// ---------------------------------------------------------------- strict ---

/// First subprotocol the client offered, if any (both modes select it).
fn first_protocol(value: &[u8]) -> Option<&[u8]> {
    value
        .split(|&b| b == b',')
        .map(|p| p.trim_ascii())
        .find(|p| !p.is_empty())
}

// The callback's error type is tungstenite's `ErrorResponse`; its size is not ours.
#[allow(clippy::result_large_err)]
async fn strict(tcp: TcpStream) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_SIZE))
        .max_frame_size(Some(MAX_SIZE));
    let select_protocol = |req: &Request, mut resp: Response| {
        let offered = req.headers().get("sec-websocket-protocol");
        if let Some(p) = offered.and_then(|v| first_protocol(v.as_bytes())) {
            if let Ok(v) = HeaderValue::from_bytes(p) {
                resp.headers_mut().insert("sec-websocket-protocol", v);
            }
        }
        Ok(resp)
    };
    let Ok(mut ws) =
        tokio_tungstenite::accept_hdr_async_with_config(tcp, select_protocol, Some(config)).await
    else {
        return;
    };
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
                Err(_) => break 'conn,
            }
            next = ws.next().now_or_never().flatten();
        }
        if ws.flush().await.is_err() {
            break;
        }
    }
}

// --------------------------------------------------------------- lenient ---

/// Value of the first header named `name` (ASCII case-insensitive), trimmed.
fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a [u8]> {
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let (k, v) = line.split_at(colon);
        k.trim_ascii()
            .eq_ignore_ascii_case(name.as_bytes())
            .then(|| v[1..].trim_ascii())
    })
}

fn find_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

async fn lenient(tcp: TcpStream) {
    let _ = lenient_conn(tcp).await;
}

async fn lenient_conn(mut tcp: TcpStream) -> std::io::Result<()> {
    // Read the upgrade request, whatever it says.
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(end) = find_end(&buf) {
            break end;
        }
        if buf.len() > MAX_REQUEST || tcp.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    };
    let head = &buf[..end];
    let key = header(head, "sec-websocket-key").unwrap_or_default();
    let mut resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        accept_key(key)
    );
    if let Some(p) = header(head, "sec-websocket-protocol").and_then(first_protocol) {
        resp.push_str(&format!(
            "Sec-WebSocket-Protocol: {}\r\n",
            String::from_utf8_lossy(p)
        ));
    }
    resp.push_str("\r\n");
    tcp.write_all(resp.as_bytes()).await?;

    // Reading never waits for writing: some clients (kosoku among them) send a
    // whole large message before reading anything, so a reader that blocks on a
    // full send buffer would deadlock. The queue between the halves is unbounded.
    let leftover = std::io::Cursor::new(buf.split_off(end));
    let (r, w) = tcp.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        let mut w = BufWriter::with_capacity(CHUNK, w);
        while let Some(first) = rx.recv().await {
            w.write_all(&first).await?;
            while let Ok(more) = rx.try_recv() {
                w.write_all(&more).await?;
            }
            w.flush().await?;
        }
        w.shutdown().await
    });
    let mut r = BufReader::with_capacity(CHUNK, leftover.chain(r));
    let result = echo_frames(&mut r, &tx).await;
    drop(tx);
    let _ = writer.await;
    result
}

async fn echo_frames<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    tx: &mpsc::UnboundedSender<Vec<u8>>,
) -> std::io::Result<()> {
    let send = |v: Vec<u8>| {
        tx.send(v)
            .map_err(|_| std::io::Error::from(ErrorKind::BrokenPipe))
    };
    loop {
        let mut hdr = [0u8; 2];
        match r.read_exact(&mut hdr).await {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = match hdr[1] & 0x7f {
            126 => u64::from(r.read_u16().await?),
            127 => r.read_u64().await?,
            n => u64::from(n),
        };
        if len > MAX_SIZE as u64 {
            return Err(ErrorKind::InvalidData.into());
        }
        let mut mask = [0u8; 4];
        let masked = hdr[1] & 0x80 != 0;
        if masked {
            r.read_exact(&mut mask).await?;
        }
        // Same FIN/RSV/opcode, never masked, minimal length; a ping becomes a pong.
        let opcode = hdr[0] & 0x0f;
        let b0 = if opcode == 0x9 {
            (hdr[0] & 0xf0) | 0xa
        } else {
            hdr[0]
        };
        let mut out = Vec::with_capacity(10);
        out.push(b0);
        match len {
            0..=125 => out.push(len as u8),
            126..=0xffff => {
                out.push(126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(127);
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
        send(out)?;

        // Pass the payload on in chunks, unmasking at the running offset.
        let len = len as usize;
        let mut done = 0usize;
        while done < len {
            let mut part = vec![0u8; (len - done).min(CHUNK)];
            r.read_exact(&mut part).await?;
            if masked {
                for (i, b) in part.iter_mut().enumerate() {
                    *b ^= mask[(done + i) & 3];
                }
            }
            done += part.len();
            send(part)?;
        }
        if opcode == 0x8 {
            // Close: echo it, then the caller closes the TCP connection.
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lookup() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Key:  abc \r\n\r\n";
        assert_eq!(header(head, "sec-websocket-key"), Some(&b"abc"[..]));
        assert_eq!(first_protocol(b" , chat, v2"), Some(&b"chat"[..]));
    }
}
