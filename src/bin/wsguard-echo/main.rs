//! `wsguard-echo`: WebSocket echo backends for tests, conformance runs and benchmarks.
//! Both modes negotiate permessage-deflate (RFC 7692). `strict` is a correct
//! RFC 6455 + RFC 7692 echo server; `lenient` checks nothing and echoes every
//! frame as it came, compressed payloads included.

use std::io::Write as _;
use std::net::SocketAddr;

use clap::{Parser, ValueEnum};
use tokio::net::TcpListener;

use wsguard::demo::negotiate as deflate;
mod lenient;
mod strict;
#[cfg(test)]
mod wire;

/// Largest frame and message either mode accepts (Autobahn section 9 sends 16 MiB).
const MAX_SIZE: usize = 64 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Correct RFC 6455 + RFC 7692 echo server.
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
            Mode::Strict => tokio::spawn(strict::serve(tcp)),
            Mode::Lenient => tokio::spawn(lenient::serve(tcp)),
        };
    }
}

/// First subprotocol the client offered, if any (both modes select it).
fn first_protocol(value: &[u8]) -> Option<&[u8]> {
    value
        .split(|&b| b == b',')
        .map(|p| p.trim_ascii())
        .find(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_protocol_skips_empty_entries() {
        assert_eq!(first_protocol(b" , chat, v2"), Some(&b"chat"[..]));
        assert_eq!(first_protocol(b" , "), None);
    }
}
