//! `wsguard-page`: serve the demo chat page alone, from any address, against
//! any ws(s):// URL, optionally with a banner. The browser test uses it to
//! serve the same page from a second origin that is not in the allow-list,
//! and from a third that talks to the chat backend without wsguard between.
//!
//! ```sh
//! wsguard-page --listen 127.0.0.1:8081 --ws-url wss://localhost:8443/chat \
//!     --banner "evil.example — not in the allow-list"
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// Serve the wsguard demo chat page (no proxy, no backend).
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Address to serve the page on.
    #[arg(long)]
    listen: SocketAddr,
    /// WebSocket URL the page connects to (ws:// or wss://).
    #[arg(long)]
    ws_url: String,
    /// Text of a red banner above the chat (also the page title).
    #[arg(long)]
    banner: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let listener = match TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("wsguard-page: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let served = tokio::select! {
        r = wsguard::demo::run_labelled_page_server(listener, args.ws_url, args.banner) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsguard-page: {e}");
            ExitCode::from(64)
        }
    }
}
