//! Churn: new connections at a fixed offered rate, each a whole short life:
//! TCP connect, TLS handshake, upgrade, one checked echo, the close handshake,
//! then the TCP close both ways. Open loop: connection k starts at
//! t0 + k / rate whether or not the earlier ones are done, so a slow proxy
//! meets the same load instead of slowing it down; at most `conns` are in
//! flight, and one due beyond that is not started and counts as failed.
//!
//! Whether handshakes resume sessions is the TLS config's: one session store
//! for the whole run, as a browser keeps one, or none (`--no-resume`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::error::Elapsed;
use tokio::time::Instant as Deadline;

use crate::bodies::Bodies;
use crate::load::{self, percentiles, Config, Conn, Shared};
use crate::ws::{self, Kind, Target};

/// One connection's whole life, at most.
const LIFE: Duration = Duration::from_secs(10);

/// What every connection task needs.
struct Run {
    addr: SocketAddr,
    target: Target,
    tls: Option<Arc<rustls::ClientConfig>>,
    server_name: String,
    origin: String,
    kind: Kind,
    bodies: Bodies,
    shared: Arc<Shared>,
    tally: Tally,
    start: Deadline,
    /// The measurement window: connections due in it are counted.
    window: (Deadline, Deadline),
}

/// The connections due in the measurement window.
#[derive(Default)]
struct Tally {
    due: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    /// Not started: the in-flight bound was reached (also in `failed`).
    overflow: AtomicU64,
    /// Completed with a resumed TLS session.
    resumed: AtomicU64,
    /// TCP connect start → first echo checked, ns, of the completed ones.
    to_echo: Mutex<Vec<u64>>,
    /// How late each one started, ns.
    lag: Mutex<Vec<u64>>,
    cipher: Mutex<Option<String>>,
}

pub async fn run(cfg: &Config) -> Value {
    let shared = Arc::new(Shared::new());
    let addr = match resolve(&cfg.target).await {
        Ok(a) => a,
        Err(e) => return load::failed(&shared, &e),
    };
    let start = Deadline::now();
    let window = (start + cfg.warmup, start + cfg.warmup + cfg.duration);
    let run = Arc::new(Run {
        addr,
        target: cfg.target.clone(),
        tls: cfg.tls.clone(),
        server_name: cfg.server_name.clone(),
        origin: cfg.origin.clone(),
        kind: cfg.kind,
        bodies: Bodies::new(cfg.kind, cfg.size, false),
        shared: shared.clone(),
        tally: Tally::default(),
        start,
        window,
    });
    let scheduler = tokio::spawn(schedule(run.clone(), cfg.rate, cfg.conns as usize));

    tokio::time::sleep_until(window.0).await;
    let before = load::sample_all(cfg, &shared);
    let w0 = Instant::now();
    tokio::time::sleep_until(window.1).await;
    let after = load::sample_all(cfg, &shared);
    let secs = w0.elapsed().as_secs_f64();
    // The connections still going end within their LIFE.
    match tokio::time::timeout(LIFE * 2, scheduler).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => shared.error(format!("scheduler: {e}")),
        Err(_) => shared.error("connections still open long after their time".into()),
    }

    let t = &run.tally;
    let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let completed = count(&t.completed);
    let mut to_echo = take(&t.to_echo);
    let mut lag = take(&t.lag);
    let mut v = json!({
        "rate_target": cfg.rate,
        "inflight_max": cfg.conns,
        "cipher": t.cipher.lock().ok().and_then(|c| c.clone()),
        "warmup_s": cfg.warmup.as_secs_f64(),
        "duration_s": secs,
        "connections": count(&t.due),
        "offered_per_s": count(&t.due) as f64 / secs,
        "completed": completed,
        "failed": count(&t.failed),
        "overflow": count(&t.overflow),
        "resumed": count(&t.resumed),
        "connect_to_echo_us": percentiles(&mut to_echo),
        "start_lag_us": percentiles(&mut lag),
    });
    // One message per connection: no per-message figures.
    load::cost(&mut v, before, after, secs, 0, cfg.size);
    if let Some(cpu_s) = v["proxy_cpu_s"].as_f64().filter(|_| completed > 0) {
        v["cpu_us_per_conn"] = json!(cpu_s * 1e6 / completed as f64);
    }
    load::finish(&mut v, &shared);
    v
}

/// The first of the host's addresses that takes a TCP connection, found once,
/// so that each connection of the run starts with its connect: no name lookup
/// and no refused address (`localhost` may be `::1` first) in its time.
async fn resolve(target: &Target) -> Result<SocketAddr, String> {
    let name = format!("{}:{}", target.host, target.port);
    let addrs = tokio::net::lookup_host(&name)
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    let mut last = format!("{name}: no address");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(_) => return Ok(addr),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

/// Starts connection k at start + k / rate until the window ends, unless
/// `inflight` are still going; returns when the last one has ended.
async fn schedule(run: Arc<Run>, rate: f64, inflight: usize) {
    let gate = Arc::new(Semaphore::new(inflight));
    let mut lives = JoinSet::new();
    let t = &run.tally;
    for k in 0u64.. {
        let due = run.start + Duration::from_secs_f64(k as f64 / rate);
        if due >= run.window.1 {
            break;
        }
        // Late (the runtime was busy), this returns at once: the ones owed start back to back.
        tokio::time::sleep_until(due).await;
        let counted = due >= run.window.0;
        if counted {
            t.due.fetch_add(1, Ordering::Relaxed);
            let lag = Deadline::now().saturating_duration_since(due);
            push(&t.lag, lag.as_nanos() as u64);
        }
        let id = k as u32;
        match gate.clone().try_acquire_owned() {
            Ok(permit) => {
                let run = run.clone();
                lives.spawn(async move {
                    let outcome = tokio::time::timeout(LIFE, life(&run, id)).await;
                    drop(permit);
                    record(&run, id, counted, outcome);
                });
            }
            Err(_) => {
                run.shared
                    .error(format!("conn {id}: not started, {inflight} in flight"));
                if counted {
                    t.overflow.fetch_add(1, Ordering::Relaxed);
                    t.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        while let Some(ended) = lives.try_join_next() {
            if let Err(e) = ended {
                run.shared.error(format!("connection task: {e}"));
            }
        }
    }
    while let Some(ended) = lives.join_next().await {
        if let Err(e) = ended {
            run.shared.error(format!("connection task: {e}"));
        }
    }
}

/// What a completed life measured.
struct Lived {
    to_echo: Duration,
    tls: Option<ws::TlsInfo>,
}

fn record(run: &Run, id: u32, counted: bool, outcome: Result<Result<Lived, String>, Elapsed>) {
    let t = &run.tally;
    let lived = match outcome {
        Ok(Ok(lived)) => lived,
        Ok(Err(e)) => {
            run.shared.error(format!("conn {id}: {e}"));
            if counted {
                t.failed.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        Err(_) => {
            run.shared
                .error(format!("conn {id}: not done in {} s", LIFE.as_secs()));
            if counted {
                t.failed.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
    };
    if !counted {
        return;
    }
    t.completed.fetch_add(1, Ordering::Relaxed);
    push(&t.to_echo, lived.to_echo.as_nanos() as u64);
    if let Some(tls) = lived.tls {
        if tls.resumed {
            t.resumed.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut cipher) = t.cipher.lock() {
            if cipher.is_none() {
                *cipher = tls.cipher;
            }
        }
    }
}

fn take(v: &Mutex<Vec<u64>>) -> Vec<u64> {
    v.lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default()
}

fn push(v: &Mutex<Vec<u64>>, x: u64) {
    if let Ok(mut v) = v.lock() {
        v.push(x);
    }
}

/// One connection, connect to TCP close.
async fn life(run: &Run, id: u32) -> Result<Lived, String> {
    let t0 = Instant::now();
    let tcp = TcpStream::connect(run.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut io, tls) = ws::start(tcp, &run.target, run.tls.as_ref(), &run.server_name)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (early, _) = ws::handshake(&mut io, &run.target, &run.origin, None)
        .await
        .map_err(|e| format!("upgrade: {e}"))?;
    let conn = Conn {
        io,
        early,
        deflate: false,
    };
    let mut held = load::echo_once(id, conn, run.kind, &run.bodies, &run.shared).await?;
    let to_echo = t0.elapsed();
    load::close(id, &mut held).await?;
    // The server's side of the TCP close. Without its close_notify, rustls
    // reports the bare FIN as an unexpected end: the TCP close all the same.
    let mut rest = [0u8; 256];
    match held.conn.io.read(&mut rest).await {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Ok(_) => return Err("data after the close frame".into()),
        Err(e) => return Err(format!("waiting for the TCP close: {e}")),
    }
    Ok(Lived { to_echo, tls })
}
