//! `--mode lenient`: hand-written, validates nothing, echoes every frame as it
//! came (RSV1 and compressed payload verbatim, pings answered with pongs). Of
//! permessage-deflate it only picks an offer under which that verbatim echo
//! inflates at the client.

use std::io::ErrorKind;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::io::{BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use wsguard::handshake::accept_key;

use crate::deflate;
use crate::{first_protocol, MAX_SIZE};

/// Largest upgrade request read before giving up.
const MAX_REQUEST: usize = 64 << 10;
/// Chunk size for passing payloads on.
const CHUNK: usize = 64 << 10;

/// Values of every header named `name` (ASCII case-insensitive), trimmed, in order.
fn headers<'a>(head: &'a [u8], name: &'a str) -> impl Iterator<Item = &'a [u8]> {
    head.split(|&b| b == b'\n').skip(1).filter_map(move |line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let (k, v) = line.split_at(colon);
        k.trim_ascii()
            .eq_ignore_ascii_case(name.as_bytes())
            .then(|| v[1..].trim_ascii())
    })
}

fn header<'a>(head: &'a [u8], name: &'a str) -> Option<&'a [u8]> {
    headers(head, name).next()
}

fn find_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

pub async fn serve(tcp: TcpStream) {
    let _ = conn(tcp).await;
}

async fn conn(mut tcp: TcpStream) -> std::io::Result<()> {
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
    let offers = deflate::offers(headers(head, "sec-websocket-extensions"));
    if let Some(agreed) = deflate::lenient_response(&offers) {
        resp.push_str(&format!("Sec-WebSocket-Extensions: {agreed}\r\n"));
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
    use crate::wire;

    #[test]
    fn header_lookup() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Key:  abc \r\nsec-websocket-key: d\r\n\r\n";
        assert_eq!(header(head, "sec-websocket-key"), Some(&b"abc"[..]));
        let all: Vec<_> = headers(head, "Sec-WebSocket-Key").collect();
        assert_eq!(all, [&b"abc"[..], b"d"]);
    }

    #[tokio::test]
    async fn answers_an_offer_its_verbatim_echo_fits_and_echoes_rsv1() {
        let offer = "permessage-deflate; server_max_window_bits=9; client_max_window_bits";
        let (mut tcp, head) = wire::connect(serve, Some(offer)).await;
        assert_eq!(
            wire::extensions(&head),
            Some("permessage-deflate; server_max_window_bits=9; client_max_window_bits=9")
        );
        // Not even deflate: the lenient mode passes it on as it came.
        wire::send(&mut tcp, 0xc2, b"\x01\x02\x03").await;
        assert_eq!(wire::recv(&mut tcp).await, (0xc2, b"\x01\x02\x03".to_vec()));
    }
}
