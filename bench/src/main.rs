//! `wsguard-bench`: a WebSocket load generator for comparing wsguard with
//! nginx and HAProxy (see `scripts/bench.sh`).
//!
//! `run` drives one scenario against one URL with hand-built, masked,
//! pipelined client frames over ws:// or wss://, checks every echo (content
//! and order) and prints one JSON line. `report` turns those lines into the
//! markdown table and the latency plot. `handshakes` opens and closes connections from
//! many source addresses, for what a handshake costs.

mod bodies;
mod chat;
mod churn;
mod deflate;
mod handshakes;
mod http;
mod load;
mod plot;
mod procstat;
mod report;
mod soak;
mod ws;

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Smallest chat message: room for the envelope and a line of text.
const CHAT_MIN: usize = 512;

#[derive(Parser)]
#[command(name = "wsguard-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario and print its JSON result line.
    Run(Box<RunArgs>),
    /// Print the markdown comparison table from result lines; draw the plot.
    Report(ReportArgs),
    /// Open, upgrade and close connections from many source addresses; print one JSON line
    /// (with --hold: one when the connections are open, one when they are closed).
    Handshakes(HandshakesArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    /// C connections × W messages in flight, as fast as echoes come back.
    Throughput,
    /// R messages/s in total on a fixed schedule; RTT from the due time.
    Rate,
    /// N connections opened, one message each, held; RSS per connection.
    Idle,
    /// R new connections/s, open loop, each: TLS handshake, upgrade, one echo, close;
    /// proxy CPU per connection and connect → echo time.
    Churn,
    /// N connections, each one message a second (spread evenly) for the duration; lost,
    /// reordered and corrupt echoes counted, proxy RSS sampled every second.
    Soak,
    /// N Engine.IO v4 polling sessions (-c) over http://: a held GET each and a POST a
    /// second, delivered to the held GET; POST round trip, delivery, CPU per request, RSS
    /// per held GET.
    Longpoll,
    /// C HTTP/1.1 keep-alive connections (-c) sending GETs to the URL at --rate requests/s
    /// in all; CPU per request and round trip.
    Http,
}

#[derive(Clone, Copy, ValueEnum)]
enum KindArg {
    Binary,
    Text,
    /// JSON-like chat messages (text) that compress several times.
    Chat,
}

#[derive(clap::Args)]
struct RunArgs {
    /// ws://HOST:PORT/PATH or wss://HOST:PORT/PATH
    #[arg(long)]
    url: String,
    #[arg(long, value_enum, default_value_t = ModeArg::Throughput)]
    mode: ModeArg,
    /// Connections (churn mode: the most in flight at once; one due beyond them is not
    /// started and counts as failed).
    #[arg(long, short = 'c', default_value_t = 64)]
    conns: u32,
    /// Messages in flight per connection (throughput mode).
    #[arg(long, short = 'w', default_value_t = 16)]
    inflight: u32,
    /// Message size in bytes (at least 16: the tag that identifies each message).
    #[arg(long, short = 's', default_value_t = 64)]
    size: usize,
    #[arg(long, value_enum, default_value_t = KindArg::Binary)]
    kind: KindArg,
    /// Offer permessage-deflate; where it is accepted, messages go compressed
    /// (each on its own) and echoes are inflated to check them.
    #[arg(long)]
    deflate: bool,
    /// Messages per second over all connections (rate mode); new connections per
    /// second (churn mode).
    #[arg(long, default_value_t = 20_000.0)]
    rate: f64,
    /// Seconds of load before the measurement window.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Seconds to keep idle connections open after measuring (idle mode).
    #[arg(long, default_value_t = 2.0)]
    hold: f64,
    /// PEM CA to trust for wss://.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// TLS server name to verify.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// No TLS session store: every handshake is a full one. Otherwise one store serves
    /// every connection of the run, as a browser keeps one.
    #[arg(long)]
    no_resume: bool,
    #[arg(long, default_value = "http://localhost")]
    origin: String,
    /// Longpoll and http modes: connection i comes from this address + (i mod 256)·256 +
    /// i/256 (unset: 127.0.0.1); a session's two connections share one.
    #[arg(long)]
    source: Option<Ipv4Addr>,
    /// Process under test (repeat, or comma-separate): CPU and RSS are summed.
    #[arg(long = "pid", value_delimiter = ',')]
    pids: Vec<u32>,
    /// The echo backend's process, to show whether it was the bottleneck.
    #[arg(long = "backend-pid", value_delimiter = ',')]
    backend_pids: Vec<u32>,
    /// Name of the thing measured (direct, nginx, haproxy, wsguard, ...).
    #[arg(long, default_value = "direct")]
    label: String,
    /// Scenario name, for the report.
    #[arg(long, default_value = "")]
    scenario: String,
    /// Append the JSON line to this file too.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// JSON-lines files written by `run --out`.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Write the RTT-percentile plot of the fixed-rate scenarios here (PNG).
    #[arg(long)]
    plot: Option<PathBuf>,
}

#[derive(clap::Args)]
struct HandshakesArgs {
    /// ws://IPV4:PORT/PATH
    #[arg(long)]
    url: String,
    /// First client source address; the others follow it (127.0.0.0/8 is all loopback).
    #[arg(long, default_value = "127.1.0.1")]
    source: Ipv4Addr,
    /// Source addresses, taken in turn.
    #[arg(long, default_value_t = 1000)]
    sources: u32,
    /// Connections cycling at once.
    #[arg(long, short = 'c', default_value_t = 16)]
    conns: u32,
    /// Seconds of cycling before the measurement window.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, short = 'd', default_value_t = 5.0)]
    duration: f64,
    /// Instead of cycling: open this many connections (source i for the i-th) and hold
    /// them until stdin closes.
    #[arg(long)]
    hold: Option<u32>,
    /// Longest hold, in seconds, should stdin never close.
    #[arg(long, default_value_t = 60.0)]
    hold_max: f64,
    #[arg(long, default_value = "http://localhost")]
    origin: String,
    /// The proxies (repeat, or comma-separate), for their CPU time per handshake.
    #[arg(long = "pid", value_delimiter = ',')]
    pids: Vec<u32>,
    /// The limit store's process, for its CPU time per handshake.
    #[arg(long = "store-pid", value_delimiter = ',')]
    store_pids: Vec<u32>,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => run(*args),
        Command::Handshakes(args) => handshakes(args),
        Command::Report(args) => match report::report(&args.inputs, args.plot.as_deref()) {
            Ok(table) => {
                print!("{table}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wsguard-bench report: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Runs `f` on a current-thread runtime; connection tasks that did not finish are left
/// behind without waiting.
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let output = runtime.block_on(f);
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(output)
}

/// A command-line duration in seconds; negative is zero.
fn seconds(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn handshakes(args: HandshakesArgs) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("wsguard-bench handshakes: {msg}");
        ExitCode::from(2)
    };
    let target = match ws::Target::parse(&args.url) {
        Ok(t) if !t.tls => t,
        Ok(_) => return fail("only ws:// URLs".into()),
        Err(e) => return fail(e),
    };
    // The sources are IPv4, so the target must be an IPv4 address too.
    let addr = match format!("{}:{}", target.host, target.port).parse::<SocketAddr>() {
        Ok(a @ SocketAddr::V4(_)) => a,
        _ => return fail(format!("{}: the host must be an IPv4 address", args.url)),
    };
    let cfg = handshakes::Config {
        target,
        addr,
        origin: args.origin,
        first: args.source,
        count: args.sources.max(1),
        conns: args.conns.max(1),
        warmup: seconds(args.warmup),
        duration: seconds(args.duration),
        hold: args.hold,
        hold_max: seconds(args.hold_max),
        pids: args.pids,
        store_pids: args.store_pids,
    };
    let result = match block_on(handshakes::run(cfg)) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    println!("{result}");
    if result["errors"].as_u64().unwrap_or(1) > 0 {
        return fail(format!(
            "{} errors; first: {}",
            result["errors"], result["first_error"]
        ));
    }
    ExitCode::SUCCESS
}

fn run(args: RunArgs) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("wsguard-bench: {msg}");
        ExitCode::from(2)
    };
    if matches!(args.mode, ModeArg::Longpoll | ModeArg::Http) {
        return run_http(args);
    }
    let target = match ws::Target::parse(&args.url) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    if args.size < ws::TAG_LEN {
        return fail(format!("--size must be at least {}", ws::TAG_LEN));
    }
    if matches!(args.kind, KindArg::Chat) && args.size < CHAT_MIN {
        return fail(format!("--kind chat needs --size {CHAT_MIN} or more"));
    }
    let churn = matches!(args.mode, ModeArg::Churn);
    if args.deflate && (churn || matches!(args.mode, ModeArg::Soak)) {
        return fail("--deflate is for the throughput, rate and idle modes".into());
    }
    // Churn measures handshakes: TLS 1.3 only, so every peer does the same one.
    let tls = match (&args.ca, target.tls) {
        (Some(ca), true) => match ws::tls_config(ca, churn, !args.no_resume) {
            Ok(c) => Some(c),
            Err(e) => return fail(e),
        },
        (None, true) => return fail("wss:// needs --ca".into()),
        _ => None,
    };
    let target_tls = target.tls;
    let cfg = load::Config {
        mode: match args.mode {
            ModeArg::Throughput => load::Mode::Throughput,
            ModeArg::Rate => load::Mode::Rate,
            ModeArg::Idle => load::Mode::Idle,
            ModeArg::Churn => load::Mode::Churn,
            ModeArg::Soak => load::Mode::Soak,
            ModeArg::Longpoll | ModeArg::Http => unreachable!("run_http"),
        },
        target,
        tls,
        server_name: args.server_name.clone(),
        origin: args.origin.clone(),
        conns: args.conns.max(1),
        inflight: args.inflight.max(1),
        size: args.size,
        kind: match args.kind {
            KindArg::Binary => ws::Kind::Binary,
            KindArg::Text => ws::Kind::Text,
            KindArg::Chat => ws::Kind::Chat,
        },
        deflate: args.deflate,
        rate: args.rate.max(1.0),
        warmup: seconds(args.warmup),
        duration: seconds(args.duration),
        hold: seconds(args.hold),
        pids: args.pids.clone(),
        backend_pids: args.backend_pids.clone(),
    };
    let mut result = match block_on(load::run(cfg)) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    result["label"] = args.label.clone().into();
    result["scenario"] = args.scenario.clone().into();
    if target_tls {
        result["tls_resumption"] = (!args.no_resume).into();
    }
    emit(&args, result)
}

/// The longpoll and http modes.
fn run_http(args: RunArgs) -> ExitCode {
    let (addr, host, path) = match http::parse_url(&args.url) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("wsguard-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let cfg = http::Config {
        mode: if matches!(args.mode, ModeArg::Longpoll) {
            http::Mode::Longpoll
        } else {
            http::Mode::Http
        },
        addr,
        host,
        path,
        origin: args.origin.clone(),
        conns: args.conns.max(1),
        rate: args.rate.max(1.0),
        source: args.source,
        warmup: seconds(args.warmup),
        duration: seconds(args.duration),
        pids: args.pids.clone(),
        backend_pids: args.backend_pids.clone(),
    };
    let mut result = match block_on(http::run(cfg)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wsguard-bench: {e}");
            return ExitCode::from(2);
        }
    };
    result["label"] = args.label.clone().into();
    result["scenario"] = args.scenario.clone().into();
    emit(&args, result)
}

/// Prints the result line, appends it to --out; failure when it counted errors.
fn emit(args: &RunArgs, result: serde_json::Value) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("wsguard-bench: {msg}");
        ExitCode::from(2)
    };
    let line = result.to_string();
    println!("{line}");
    if let Some(path) = &args.out {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            return fail(format!("{}: {e}", path.display()));
        }
    }
    if result["errors"].as_u64().unwrap_or(1) > 0 {
        eprintln!(
            "wsguard-bench: {} errors; first: {}",
            result["errors"], result["first_error"]
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
