//! The `wsguard` command: run the proxy, check a configuration, or run the
//! demo (proxy plus an embedded chat backend and page).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use wsguard::config::Config;
use wsguard::server::{Proxy, Server, StartError};

/// sysexits.h EX_USAGE: the configuration (our usage) is wrong; nothing was
/// bound or started.
const EXIT_CONFIG: u8 = 64;
/// A runtime failure after a valid configuration (e.g. the port is taken).
const EXIT_RUNTIME: u8 = 1;

/// A TLS-terminating WebSocket security proxy.
///
/// wsguard checks the Origin of every upgrade request against an allow-list,
/// validates the handshake, forwards it to a backend, and inspects every
/// frame in both directions (masking, reserved bits, opcodes, control frames,
/// fragmentation, close codes, UTF-8, size caps). Log verbosity follows
/// RUST_LOG (default: info).
///
/// Exit codes: 0 ok, 64 invalid configuration, 1 runtime failure.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, short, global = true, default_value = "config/wsguard.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run,
    /// Validate the configuration and print the effective settings.
    Check,
    /// Run the proxy with the embedded chat backend and chat page.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let config = match Config::from_file(&cli.config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let effective = config.to_effective_toml();
    let lines = config.origin.allow_lines.clone();
    let proxy = match Proxy::new(config) {
        Ok(p) => p,
        Err(StartError::Origin(errors)) => {
            // Same shape as the config loader's messages: file:line: key: fix.
            for e in errors {
                let line = lines
                    .get(e.index)
                    .map_or(String::new(), |l| format!("{l}:"));
                eprintln!(
                    "{}:{line} origin.allow[{}]: {:?}: {}",
                    cli.config.display(),
                    e.index,
                    e.entry,
                    e.message
                );
            }
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => {
            eprintln!("{}: {e}", cli.config.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let command = cli.command.unwrap_or(Command::Run);
    if let Command::Check = command {
        print!("{effective}");
        eprintln!("{}: ok", cli.config.display());
        return ExitCode::SUCCESS;
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    match runtime.block_on(serve(proxy, matches!(command, Command::Demo))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsguard: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

async fn serve(proxy: Proxy, demo: bool) -> Result<(), Box<dyn std::error::Error>> {
    if demo {
        start_demo(&proxy).await?;
    }
    let server = Server::bind(proxy).await?;
    server
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}

/// Starts the embedded chat backend and page named in `[demo]`.
async fn start_demo(proxy: &Proxy) -> Result<(), Box<dyn std::error::Error>> {
    let config = proxy.config();
    let backend = bind(config.demo.backend_listen).await?;
    let page = bind(config.demo.page_listen).await?;
    let scheme = if config.server.tls_cert.is_some() {
        "wss"
    } else {
        "ws"
    };
    let path = config.routes.first().map_or("/", |r| r.path.as_str());
    let ws_url = format!("{scheme}://localhost:{}{path}", config.server.listen.port());
    tracing::info!(
        page = %format!("http://localhost:{}/", config.demo.page_listen.port()),
        ws = %ws_url,
        backend = %config.demo.backend_listen,
        "demo: open the page in two browser tabs and chat"
    );
    tokio::spawn(async move {
        if let Err(e) = wsguard::demo::run_chat_backend(backend).await {
            tracing::error!(error = %e, "demo chat backend stopped");
        }
    });
    tokio::spawn(async move {
        if let Err(e) = wsguard::demo::run_page_server(page, ws_url).await {
            tracing::error!(error = %e, "demo page server stopped");
        }
    });
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}
