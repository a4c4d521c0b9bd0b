//! The `wsguard` command: run the proxy, check a configuration, or run the
//! demo (proxy plus an embedded chat backend and page).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

use wsguard::config::Config;
#[cfg(feature = "demo")]
use wsguard::dev_certs::{DevCerts, TRUST_HINT};
use wsguard::server::{Proxy, ProxyHandle, Server};
use wsguard::state::State;

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
/// fragmentation, close codes, UTF-8, size caps) before relaying it.
///
/// Signals: SIGTERM or SIGINT stops accepting, sends close 1001 to every
/// client and backend and exits 0 once they are closed or
/// [server] shutdown_timeout has passed. SIGHUP re-reads the configuration
/// and certificates: a valid one applies to new connections (existing ones
/// go on untouched); an invalid one is logged and the old one stays.
///
/// Logs go to stderr, filtered by RUST_LOG (default "info"; e.g.
/// RUST_LOG=wsguard=debug).
///
/// Exit codes: 0 clean exit or valid configuration; 64 invalid configuration,
/// certificate or key (nothing was started); 1 runtime failure (e.g. the
/// listen address is taken).
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Configuration file (TOML); see config/example.toml for every key.
    #[arg(long, short, global = true, default_value = "config/wsguard.toml")]
    config: PathBuf,
    /// Log format; default: text on a terminal, JSON lines otherwise.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run,
    /// Validate the configuration and print the effective settings.
    Check,
    /// Run the proxy with the embedded chat backend and chat page; makes the
    /// configured TLS certificate first if it is missing (see dev-certs).
    #[cfg(feature = "demo")]
    Demo,
    /// Make a development CA, limited to localhost, 127.0.0.1 and ::1, and a
    /// localhost certificate signed by it: only the files that are missing.
    #[cfg(feature = "demo")]
    DevCerts {
        /// Directory for ca.crt, ca.key, localhost.crt and localhost.key.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Replace all four files with new ones, CA included.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    #[cfg(feature = "demo")]
    if let Some(Command::DevCerts { dir, force }) = &cli.command {
        return dev_certs(dir, *force);
    }

    let config = match Config::from_file(&cli.config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    #[cfg(feature = "demo")]
    if matches!(cli.command, Some(Command::Demo)) {
        if let Err(e) = demo_certs(&config) {
            eprintln!("wsguard demo: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    let effective = config.to_effective_toml();
    let warnings = config.warnings();
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
    // The shared tier and the [auth] sections start their background work on the runtime.
    let entered = runtime.enter();
    let started = State::new(&config.limits)
        .map_err(|e| e.to_string())
        .and_then(|state| {
            let proxy = Proxy::new(config, &state).map_err(|e| e.to_string())?;
            Ok((Arc::new(state), proxy))
        });
    drop(entered);
    let (state, proxy) = match started {
        Ok(started) => started,
        Err(e) => {
            eprintln!("{}: {e}", cli.config.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let command = cli.command.unwrap_or(Command::Run);
    if let Command::Check = command {
        print!("{effective}");
        for w in &warnings {
            eprintln!("{}: warning: {w}", cli.config.display());
        }
        eprintln!("{}: ok", cli.config.display());
        return ExitCode::SUCCESS;
    }

    for w in &warnings {
        tracing::warn!(config = %cli.config.display(), "{w}");
    }
    let served: Result<(), Box<dyn std::error::Error>> = runtime.block_on(async {
        #[cfg(feature = "demo")]
        if matches!(command, Command::Demo) {
            start_demo(&proxy).await?;
        }
        serve(proxy, state, &cli.config).await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsguard: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn init_logs(format: Option<LogFormat>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let format = format.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Text
    } else {
        LogFormat::Json
    });
    // Colours only for a person at a terminal (and never with NO_COLOR).
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(
    proxy: Proxy,
    state: Arc<State>,
    path: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(addr) = proxy.config().admin.listen {
        let listener = bind(addr).await?;
        tracing::info!(listen = %listener.local_addr()?, "admin listening (/metrics, /healthz)");
        tokio::spawn(wsguard::admin::serve(
            listener,
            state.metrics.clone(),
            state.drain_signal(),
        ));
    }
    let server = Server::bind(proxy, state).await?;
    tokio::spawn(reload_on_sighup(server.handle(), path.to_owned()));
    let mut term = signal(SignalKind::terminate())?;
    server
        .run(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            }
        })
        .await;
    Ok(())
}

/// SIGHUP: re-read the configuration and certificates; apply them to new
/// connections if valid, keep the old ones otherwise.
async fn reload_on_sighup(handle: ProxyHandle, path: PathBuf) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: reload disabled");
        return;
    };
    while hup.recv().await.is_some() {
        let config = match Config::from_file(&path) {
            Ok(c) => c,
            Err(errors) => {
                tracing::error!(problems = %errors, "reload refused: invalid configuration; keeping the old one");
                continue;
            }
        };
        let old = handle.current();
        let old = old.config();
        if config.server.listen != old.server.listen || config.admin.listen != old.admin.listen {
            tracing::warn!("reload: listen addresses change only on restart; the rest applies");
        }
        if config.limits.shared != old.limits.shared {
            tracing::warn!(
                "reload: [limits.shared] changes only on restart; the quotas it shares apply now"
            );
        }
        match handle.reload(config) {
            Ok(()) => {
                tracing::info!(config = %path.display(), "configuration reloaded; applies to new connections");
            }
            Err(e) => {
                tracing::error!(problem = %e, "reload refused; keeping the old configuration")
            }
        }
    }
}

/// `wsguard dev-certs`: makes the missing development certificates in `dir`
/// (all four anew with `force`) and says where the CA is.
#[cfg(feature = "demo")]
fn dev_certs(dir: &Path, force: bool) -> ExitCode {
    let certs = DevCerts::in_dir(dir);
    let made = if force {
        certs.regenerate()
    } else {
        certs.ensure()
    };
    match made {
        Ok(written) => {
            for path in &written {
                println!("wrote {}", path.display());
            }
            if written.is_empty() {
                println!("{} and its key exist; nothing to do", certs.cert.display());
            }
            if certs.ca_cert.exists() {
                println!("CA: {}: {TRUST_HINT}", certs.ca_cert.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wsguard dev-certs: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Before `wsguard demo` loads its TLS certificate: makes it, and its CA,
/// if missing, and logs where the CA is and how to trust it.
#[cfg(feature = "demo")]
fn demo_certs(config: &Config) -> Result<(), wsguard::tls::TlsError> {
    let (Some(cert), Some(key)) = (&config.server.tls_cert, &config.server.tls_key) else {
        return Ok(());
    };
    let certs = DevCerts::for_server(cert, key);
    let written = certs.ensure()?;
    if !written.is_empty() {
        let files: Vec<_> = written.iter().map(|p| p.display().to_string()).collect();
        tracing::info!(files = %files.join(", "), "demo: made development certificates (keys readable by you only)");
    }
    if certs.ca_cert.exists() {
        tracing::info!(ca = %certs.ca_cert.display(), "demo: the TLS certificate is signed by this development CA (valid for localhost, 127.0.0.1 and ::1 only); to trust it, {TRUST_HINT}");
    }
    Ok(())
}

/// Starts the embedded chat backend and page named in `[demo]`.
#[cfg(feature = "demo")]
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
