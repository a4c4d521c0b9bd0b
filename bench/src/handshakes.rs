//! Handshakes rather than messages: each connection comes from one of many client source
//! addresses (127.0.0.0/8 is all loopback on Linux), so per-IP limits keyed by the source
//! see many clients (scripts/fleet-test.sh).
//!
//! `loop`: C tasks open, upgrade and close one connection after another; the latency is TCP
//! connect → 101 head read, the rate counts whole cycles (close handshake included).
//! `hold`: N connections, one per source address, opened and held until stdin closes.

use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinSet;

use crate::load::percentiles;
use crate::procstat::{self, Sample, TICKS_PER_SEC};
use crate::ws::{self, Io, Keys, Target, OP_CLOSE};

/// One connect + upgrade, at most.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// The close handshake of one connection, at most.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Handshakes in flight at once while opening held connections.
const HOLD_CONCURRENCY: usize = 64;

pub struct Config {
    pub target: Target,
    pub addr: SocketAddr,
    pub origin: String,
    /// Source addresses: `first`, `first + 1`, … (`count` of them), taken in turn.
    pub first: Ipv4Addr,
    pub count: u32,
    pub conns: u32,
    pub warmup: Duration,
    pub duration: Duration,
    /// Hold mode: this many connections, until stdin closes or `hold_max` passes.
    pub hold: Option<u32>,
    pub hold_max: Duration,
    /// The proxies and the limit store, for their CPU time per handshake.
    pub pids: Vec<u32>,
    pub store_pids: Vec<u32>,
}

impl Config {
    fn source(&self, n: u64) -> Ipv4Addr {
        let offset = (n % u64::from(self.count.max(1))) as u32;
        Ipv4Addr::from(u32::from(self.first).wrapping_add(offset))
    }
}

/// Failures: how many, and the first one's message.
#[derive(Default)]
struct Errors {
    count: AtomicU64,
    first: Mutex<Option<String>>,
}

impl Errors {
    fn add(&self, msg: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first.lock() {
            first.get_or_insert(msg);
        }
    }

    fn write(&self, v: &mut Value) {
        v["errors"] = json!(self.count.load(Ordering::Relaxed));
        v["first_error"] = json!(self.first.lock().ok().and_then(|e| e.clone()));
    }
}

/// Counters shared by the tasks of a loop run.
#[derive(Default)]
struct Tally {
    next: AtomicU64,
    stop: AtomicBool,
    /// Cycles that ended while `counting`.
    done: AtomicU64,
    counting: AtomicBool,
    errors: Errors,
}

pub async fn run(cfg: Config) -> Value {
    let cfg = Arc::new(cfg);
    let mut v = match cfg.hold {
        Some(n) => hold(&cfg, n).await,
        None => cycle(&cfg).await,
    };
    v["sources"] = json!(cfg.count);
    v["first_source"] = json!(cfg.first.to_string());
    v
}

/// An upgraded connection from `src`, and the bytes that came after its 101.
async fn open(cfg: &Config, src: Ipv4Addr) -> std::io::Result<(Box<dyn Io>, Vec<u8>)> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
    let tcp = socket.connect(cfg.addr).await?;
    tcp.set_nodelay(true)?;
    let mut io: Box<dyn Io> = Box::new(tcp);
    let (early, _) = ws::handshake(&mut io, &cfg.target, &cfg.origin, None).await?;
    Ok((io, early))
}

/// Sends a close frame and waits for the peer's.
async fn close(mut io: Box<dyn Io>, mut buf: Vec<u8>, seed: u64) -> Result<(), String> {
    let mut out = Vec::new();
    ws::encode_close(Keys::new(seed).next_key(), &mut out);
    io.write_all(&out).await.map_err(|e| e.to_string())?;
    loop {
        if let Some(frame) = ws::parse(&buf, false)? {
            if frame.opcode == OP_CLOSE {
                return Ok(());
            }
            buf.drain(..frame.payload.end);
            continue;
        }
        match io.read_buf(&mut buf).await {
            Ok(0) => return Err("closed without a close frame".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

// === loop ===

async fn cycle(cfg: &Arc<Config>) -> Value {
    let tally = Arc::new(Tally::default());
    let mut tasks = JoinSet::new();
    for _ in 0..cfg.conns.max(1) {
        tasks.spawn(worker(cfg.clone(), tally.clone()));
    }
    tokio::time::sleep(cfg.warmup).await;
    let before = (
        sample(&cfg.pids, &tally.errors),
        sample(&cfg.store_pids, &tally.errors),
    );
    tally.counting.store(true, Ordering::Relaxed);
    let w0 = Instant::now();
    tokio::time::sleep(cfg.duration).await;
    tally.counting.store(false, Ordering::Relaxed);
    let secs = w0.elapsed().as_secs_f64();
    let done = tally.done.load(Ordering::Relaxed);
    let after = (
        sample(&cfg.pids, &tally.errors),
        sample(&cfg.store_pids, &tally.errors),
    );
    tally.stop.store(true, Ordering::Relaxed);

    let mut latencies = Vec::new();
    let deadline = tokio::time::Instant::now() + OPEN_TIMEOUT + CLOSE_TIMEOUT;
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
        match joined {
            Ok(lat) => latencies.extend(lat),
            Err(e) => tally.errors.add(format!("task: {e}")),
        }
    }
    if !tasks.is_empty() {
        tally
            .errors
            .add(format!("{} tasks did not finish", tasks.len()));
        tasks.abort_all();
    }
    let per_handshake = |a: Option<Sample>, b: Option<Sample>| match (a, b) {
        (Some(a), Some(b)) if done > 0 => json!(
            b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / TICKS_PER_SEC * 1e6 / done as f64
        ),
        _ => Value::Null,
    };
    let mut v = json!({
        "mode": "loop",
        "conns": cfg.conns,
        "duration_s": secs,
        "handshakes": done,
        "per_second": done as f64 / secs,
        "latency_us": percentiles(&mut latencies),
        "proxy_cpu_us_per_handshake": per_handshake(before.0, after.0),
        "store_cpu_us_per_handshake": per_handshake(before.1, after.1),
    });
    tally.errors.write(&mut v);
    v
}

/// One task: cycles until told to stop; returns the latencies (ns) of the cycles started
/// and ended inside the measurement window.
async fn worker(cfg: Arc<Config>, tally: Arc<Tally>) -> Vec<u64> {
    let mut latencies = Vec::new();
    while !tally.stop.load(Ordering::Relaxed) {
        let n = tally.next.fetch_add(1, Ordering::Relaxed);
        let counted = tally.counting.load(Ordering::Relaxed);
        let t0 = Instant::now();
        let (io, early) = match tokio::time::timeout(OPEN_TIMEOUT, open(&cfg, cfg.source(n))).await
        {
            Ok(Ok(opened)) => opened,
            Ok(Err(e)) => {
                tally
                    .errors
                    .add(format!("open from {}: {e}", cfg.source(n)));
                continue;
            }
            Err(_) => {
                tally
                    .errors
                    .add(format!("open from {}: timed out", cfg.source(n)));
                continue;
            }
        };
        let elapsed = t0.elapsed().as_nanos() as u64;
        match tokio::time::timeout(CLOSE_TIMEOUT, close(io, early, n)).await {
            Ok(Ok(())) if tally.counting.load(Ordering::Relaxed) => {
                tally.done.fetch_add(1, Ordering::Relaxed);
                if counted {
                    latencies.push(elapsed);
                }
            }
            Ok(Ok(())) => {}
            Ok(Err(e)) => tally.errors.add(format!("close: {e}")),
            Err(_) => tally.errors.add("close: no close frame in time".into()),
        }
    }
    latencies
}

fn sample(pids: &[u32], errors: &Errors) -> Option<Sample> {
    if pids.is_empty() {
        return None;
    }
    procstat::sample(pids).map_err(|e| errors.add(e)).ok()
}

// === hold ===

/// Opens `n` connections, source `i` for connection `i`; prints the result line; holds them
/// until stdin closes (or `hold_max`), then closes them.
async fn hold(cfg: &Arc<Config>, n: u32) -> Value {
    let errors = Errors::default();
    let gate = Arc::new(Semaphore::new(HOLD_CONCURRENCY));
    let mut set = JoinSet::new();
    let t0 = Instant::now();
    for i in 0..n {
        let (cfg, gate) = (cfg.clone(), gate.clone());
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let src = cfg.source(u64::from(i));
            let opened = tokio::time::timeout(OPEN_TIMEOUT, open(&cfg, src)).await;
            (i, src, opened)
        });
    }
    let mut held = Vec::with_capacity(n as usize);
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, _, Ok(Ok((io, early))))) => held.push((i, io, early)),
            Ok((_, src, Ok(Err(e)))) => errors.add(format!("open from {src}: {e}")),
            Ok((_, src, Err(_))) => errors.add(format!("open from {src}: timed out")),
            Err(e) => errors.add(format!("task: {e}")),
        }
    }
    let mut v = json!({
        "mode": "hold",
        "opened": held.len(),
        "open_s": t0.elapsed().as_secs_f64(),
    });
    errors.write(&mut v);
    println!("{v}");

    // stdin is read on a thread of its own: its end is the signal to let go.
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = tx.send(());
    });
    let _ = tokio::time::timeout(cfg.hold_max, rx).await;

    let mut set = JoinSet::new();
    for (i, io, early) in held {
        set.spawn(async move {
            tokio::time::timeout(CLOSE_TIMEOUT, close(io, early, u64::from(i))).await
        });
    }
    let mut closed = 0u64;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(Ok(()))) => closed += 1,
            Ok(Ok(Err(e))) => errors.add(format!("close: {e}")),
            Ok(Err(_)) => errors.add("close: no close frame in time".into()),
            Err(e) => errors.add(format!("task: {e}")),
        }
    }
    v["closed"] = json!(closed);
    errors.write(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use tokio::net::{TcpListener, TcpStream};

    fn config(addr: SocketAddr, first: Ipv4Addr, count: u32) -> Config {
        Config {
            target: Target::parse(&format!("ws://{addr}/")).unwrap(),
            addr,
            origin: "http://localhost".into(),
            first,
            count,
            conns: 2,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(300),
            hold: None,
            hold_max: Duration::from_secs(5),
            pids: Vec::new(),
            store_pids: Vec::new(),
        }
    }

    #[test]
    fn sources_wrap_around_the_range() {
        let cfg = config(
            "127.0.0.1:1".parse().unwrap(),
            Ipv4Addr::new(127, 1, 0, 254),
            3,
        );
        let got: Vec<String> = (0..4).map(|n| cfg.source(n).to_string()).collect();
        assert_eq!(
            got,
            ["127.1.0.254", "127.1.0.255", "127.1.1.0", "127.1.0.254"]
        );
    }

    /// Answers the upgrade, then the client's close with a close; says who connected.
    async fn server(mut s: TcpStream) -> std::io::Result<()> {
        let mut buf = Vec::new();
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            if s.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap_or_default();
        let reply = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            ws::accept_key(key)
        );
        s.write_all(reply.as_bytes()).await?;
        // The masked close frame with code 1000: 2 + 4 + 2 bytes.
        let mut close = [0u8; 8];
        s.read_exact(&mut close).await?;
        s.write_all(&[0x80 | OP_CLOSE, 2, 0x03, 0xE8]).await
    }

    async fn listen() -> (SocketAddr, Arc<Mutex<BTreeSet<IpAddr>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let peers = seen.clone();
        tokio::spawn(async move {
            while let Ok((s, peer)) = listener.accept().await {
                peers.lock().unwrap().insert(peer.ip());
                tokio::spawn(server(s));
            }
        });
        (addr, seen)
    }

    fn seen(set: &Mutex<BTreeSet<IpAddr>>) -> Vec<String> {
        set.lock()
            .unwrap()
            .iter()
            .map(|ip| ip.to_string())
            .collect()
    }

    #[tokio::test]
    async fn cycles_come_from_every_source_and_close_cleanly() {
        let (addr, peers) = listen().await;
        let cfg = config(addr, Ipv4Addr::new(127, 0, 0, 2), 3);
        let v = tokio::time::timeout(Duration::from_secs(10), run(cfg))
            .await
            .unwrap();
        assert_eq!(v["errors"], 0, "{v}");
        assert!(v["handshakes"].as_u64().unwrap() > 3, "{v}");
        assert!(v["latency_us"]["p50"].as_f64().unwrap() > 0.0, "{v}");
        assert_eq!(seen(&peers), ["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    }

    #[tokio::test]
    async fn hold_opens_one_connection_per_source() {
        let (addr, peers) = listen().await;
        let mut cfg = config(addr, Ipv4Addr::new(127, 0, 0, 5), 4);
        cfg.hold = Some(4);
        cfg.hold_max = Duration::from_millis(100);
        let v = tokio::time::timeout(Duration::from_secs(10), run(cfg))
            .await
            .unwrap();
        assert_eq!(v["errors"], 0, "{v}");
        assert_eq!(
            (v["opened"].as_u64(), v["closed"].as_u64()),
            (Some(4), Some(4)),
            "{v}"
        );
        assert_eq!(
            seen(&peers),
            ["127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8"]
        );
    }
}
