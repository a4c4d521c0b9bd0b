//! The load modes but churn (`churn.rs`). Every echo is checked (content and
//! order); CPU and memory of the processes under test are sampled at the edges
//! of the measurement window only, so connection setup and TLS handshakes are
//! not counted as per-message cost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::bodies::Bodies;
use crate::deflate::{self, Inflater};
use crate::procstat::{self, Sample, TICKS_PER_SEC};
use crate::soak::{self, Echo, Sequence};
use crate::ws::{self, Io, Keys, Kind, Target, OP_CLOSE, TAG_LEN};

/// Handshakes in flight at once while opening connections.
const OPEN_CONCURRENCY: usize = 64;
/// How long the end of a run may take (drain in-flight echoes, close handshake).
const DRAIN: Duration = Duration::from_secs(10);
/// Pause before reading RSS, so the processes settle.
const SETTLE: Duration = Duration::from_secs(2);
/// Percentiles kept for the latency plot.
const SPECTRUM: [f64; 12] = [
    50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999, 100.0,
];
/// Soak: seconds between two messages of one connection.
const SOAK_INTERVAL_S: f64 = 1.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Throughput,
    Rate,
    Idle,
    /// New connections at `rate` per second, each for one echo (`churn.rs`).
    Churn,
    /// Every connection one message a second, spread evenly; anomalies counted.
    Soak,
}

pub struct Config {
    pub mode: Mode,
    pub target: Target,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub server_name: String,
    pub origin: String,
    pub conns: u32,
    pub inflight: u32,
    pub size: usize,
    pub kind: Kind,
    /// Offer permessage-deflate.
    pub deflate: bool,
    pub rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
    pub hold: Duration,
    /// Processes under test (the proxy: all its processes).
    pub pids: Vec<u32>,
    /// The echo backend, to tell whether it was the bottleneck.
    pub backend_pids: Vec<u32>,
}

/// Counters shared by every connection task.
pub(crate) struct Shared {
    t0: Instant,
    stop: AtomicBool,
    echoed: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Measurement window in ns since `t0`; latencies are kept for messages
    /// scheduled inside it.
    win_start: AtomicU64,
    win_end: AtomicU64,
    /// Data messages sent and their frames' bytes (header and mask included),
    /// and the same for the echoes: what compression saves on the wire.
    sent: AtomicU64,
    sent_bytes: AtomicU64,
    echo_bytes: AtomicU64,
    /// Echoes never received, received after a later one, and wrong or twice
    /// (soak counts them; the other modes stop a connection at the first).
    lost: AtomicU64,
    reordered: AtomicU64,
    corrupt: AtomicU64,
}

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared {
            t0: Instant::now(),
            stop: AtomicBool::new(false),
            echoed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            win_start: AtomicU64::new(u64::MAX),
            win_end: AtomicU64::new(u64::MAX),
            sent: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            echo_bytes: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            reordered: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
        }
    }

    pub(crate) fn error(&self, msg: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(msg);
        }
    }

    fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }
}

/// What one connection needs to build and check its messages.
struct Plan {
    kind: Kind,
    bodies: Bodies,
    conns: u32,
    inflight: u32,
    /// Rate and soak modes: ns between two messages of the whole run.
    period_ns: Option<u64>,
    /// Count lost, reordered and corrupt echoes instead of ending the connection.
    soak: bool,
}

pub async fn run(cfg: Config) -> Value {
    let started = now_rfc3339();
    let mut out = json!({
        "mode": format!("{:?}", cfg.mode).to_lowercase(),
        "url": format!("{}://{}:{}{}", if cfg.target.tls { "wss" } else { "ws" },
                       cfg.target.host, cfg.target.port, cfg.target.path),
        "tls": cfg.target.tls,
        "conns": cfg.conns,
        "size": cfg.size,
        "kind": format!("{:?}", cfg.kind).to_lowercase(),
        "deflate_offered": cfg.deflate,
        "date": started,
    });
    let result = match cfg.mode {
        Mode::Throughput | Mode::Rate | Mode::Soak => load(&cfg).await,
        Mode::Idle => idle(&cfg).await,
        Mode::Churn => crate::churn::run(&cfg).await,
    };
    // How busy the machine was (others' work makes numbers noisy).
    out["loadavg"] = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|x| x.parse::<f64>().ok())
        })
        .map_or(Value::Null, |x| json!(x));
    if let (Some(o), Some(r)) = (out.as_object_mut(), result.as_object()) {
        for (k, v) in r {
            o.insert(k.clone(), v.clone());
        }
    }
    out
}

// === throughput and fixed rate ===

async fn load(cfg: &Config) -> Value {
    let opening = Arc::new(Shared::new());
    let (opened, cipher) = open_all(cfg, &opening).await;
    if opened.len() < cfg.conns as usize {
        return failed(&opening, "could not open every connection");
    }
    // Messages per second over all connections, on a fixed schedule.
    let rate = match cfg.mode {
        Mode::Rate => Some(cfg.rate),
        // Message k goes to connection k mod C, so connection i sends at i/C of each
        // second: an even load, not a burst a second.
        Mode::Soak => Some(f64::from(cfg.conns) / SOAK_INTERVAL_S),
        _ => None,
    };
    let period_ns = rate.map(|r| (1e9 / r).round().max(1.0) as u64);
    let deflated = opened.iter().filter(|c| c.deflate).count();
    let plan = Arc::new(Plan {
        kind: cfg.kind,
        bodies: Bodies::new(cfg.kind, cfg.size, cfg.deflate),
        conns: cfg.conns,
        inflight: cfg.inflight,
        period_ns,
        soak: cfg.mode == Mode::Soak,
    });
    // The schedule starts now; t0 is reset so message k is due at t0 + k·period.
    let shared = Arc::new(Shared::new());
    let mut tasks = JoinSet::new();
    let mut senders = Vec::new();
    for (id, conn) in opened.into_iter().enumerate() {
        let (tx, rx) = mpsc::unbounded_channel();
        senders.push(tx);
        let rx = period_ns.map(|_| rx);
        tasks.spawn(connection(
            id as u32,
            conn,
            plan.clone(),
            shared.clone(),
            rx,
        ));
    }
    let pacer = period_ns.map(|p| {
        let shared = shared.clone();
        std::thread::spawn(move || pace(&shared, p, senders))
    });

    tokio::time::sleep(cfg.warmup).await;
    let before = sample_all(cfg, &shared);
    let echoed0 = shared.echoed.load(Ordering::Relaxed);
    let w0 = Instant::now();
    shared.win_start.store(shared.now_ns(), Ordering::Relaxed);
    let rss_series = if cfg.mode == Mode::Soak {
        rss_every_second(cfg, &shared).await
    } else {
        tokio::time::sleep(cfg.duration).await;
        Vec::new()
    };
    shared.win_end.store(shared.now_ns(), Ordering::Relaxed);
    let echoed1 = shared.echoed.load(Ordering::Relaxed);
    let secs = w0.elapsed().as_secs_f64();
    let after = sample_all(cfg, &shared);
    shared.stop.store(true, Ordering::Relaxed);

    let mut latencies = Vec::new();
    let deadline = tokio::time::Instant::now() + DRAIN * 2;
    while let Ok(Some(done)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
        match done {
            Ok(lat) => latencies.extend(lat),
            Err(e) => shared.error(format!("connection task: {e}")),
        }
    }
    if !tasks.is_empty() {
        shared.error(format!("{} connections did not finish", tasks.len()));
        tasks.abort_all();
    }
    if let Some(p) = pacer {
        let _ = p.join();
    }

    let messages = echoed1 - echoed0;
    let mut v = json!({
        "inflight": if period_ns.is_some() { Value::Null } else { json!(cfg.inflight) },
        "rate_target": rate,
        "cipher": cipher,
        "warmup_s": cfg.warmup.as_secs_f64(),
        "duration_s": secs,
        "messages": messages,
        "msgs_per_s": messages as f64 / secs,
        "mb_per_s": messages as f64 * cfg.size as f64 / secs / 1e6,
    });
    wire(&mut v, &shared, deflated);
    cost(&mut v, before, after, secs, messages, cfg.size);
    if period_ns.is_some() {
        v["latency_us"] = percentiles(&mut latencies);
    }
    if cfg.mode == Mode::Soak {
        for (key, count) in [
            ("lost", &shared.lost),
            ("reordered", &shared.reordered),
            ("corrupt", &shared.corrupt),
        ] {
            v[key] = json!(count.load(Ordering::Relaxed));
        }
        soak::rss_summary(&mut v, &rss_series);
    }
    finish(&mut v, &shared);
    v
}

/// Soak: the proxy's RSS (KiB) at each whole second of the measurement
/// window and at its end, as (seconds into the window, KiB).
async fn rss_every_second(cfg: &Config, shared: &Shared) -> Vec<(f64, u64)> {
    let start = tokio::time::Instant::now();
    let end = start + cfg.duration;
    let mut series = Vec::new();
    for second in 0.. {
        let at = (start + Duration::from_secs(second)).min(end);
        tokio::time::sleep_until(at).await;
        if let (Some(s), _, _) = sample_all(cfg, shared) {
            series.push((at.duration_since(start).as_secs_f64(), s.rss_kib));
        }
        if at == end {
            break;
        }
    }
    series
}

/// Processes sampled at one instant: the proxy, the backend, this process.
pub(crate) type Samples = (Option<Sample>, Option<Sample>, Option<Sample>);

pub(crate) fn sample_all(cfg: &Config, shared: &Shared) -> Samples {
    let get = |pids: &[u32]| {
        if pids.is_empty() {
            return None;
        }
        procstat::sample(pids).map_err(|e| shared.error(e)).ok()
    };
    (
        get(&cfg.pids),
        get(&cfg.backend_pids),
        get(&[std::process::id()]),
    )
}

/// CPU per message and per MB (10^6 bytes of messages echoed; each message
/// crosses the proxy twice), and each process's CPU use in the window.
pub(crate) fn cost(
    v: &mut Value,
    before: Samples,
    after: Samples,
    secs: f64,
    messages: u64,
    size: usize,
) {
    let util = |a: Option<Sample>, b: Option<Sample>| match (a, b) {
        (Some(a), Some(b)) => {
            json!((b.cpu_ticks.saturating_sub(a.cpu_ticks)) as f64 / TICKS_PER_SEC / secs)
        }
        _ => Value::Null,
    };
    v["backend_cpu_util"] = util(before.1, after.1);
    v["loadgen_cpu_util"] = util(before.2, after.2);
    if let (Some(a), Some(b)) = (before.0, after.0) {
        let cpu_s = b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / TICKS_PER_SEC;
        v["proxy_cpu_s"] = json!(cpu_s);
        v["proxy_cpu_util"] = json!(cpu_s / secs);
        v["proxy_rss_kib"] = json!(b.rss_kib);
        if messages > 0 {
            v["cpu_us_per_msg"] = json!(cpu_s * 1e6 / messages as f64);
            v["cpu_ms_per_mb"] = json!(cpu_s * 1e3 / (messages as f64 * size as f64 / 1e6));
        }
    }
}

/// Wire bytes per message each way (frames, over the whole run) and how
/// many connections negotiated permessage-deflate.
fn wire(v: &mut Value, shared: &Shared, deflated: usize) {
    v["deflate_conns"] = json!(deflated);
    let sent = shared.sent.load(Ordering::Relaxed);
    if sent > 0 {
        let per = |bytes: &AtomicU64| bytes.load(Ordering::Relaxed) as f64 / sent as f64;
        v["wire_out_bytes_per_msg"] = json!(per(&shared.sent_bytes));
        v["wire_in_bytes_per_msg"] = json!(per(&shared.echo_bytes));
    }
}

pub(crate) fn finish(v: &mut Value, shared: &Shared) {
    v["errors"] = json!(shared.errors.load(Ordering::Relaxed));
    v["first_error"] = json!(shared.first_error.lock().ok().and_then(|e| e.clone()));
}

pub(crate) fn failed(shared: &Shared, msg: &str) -> Value {
    shared.error(msg.to_owned());
    let mut v = json!({});
    finish(&mut v, shared);
    v
}

/// Sends on the global schedule: message k is due at t0 + k·period and goes
/// to connection k mod C. Latency is measured from that due time, so a slow
/// proxy cannot hide its stalls by slowing the sender (no coordinated omission).
fn pace(shared: &Shared, period_ns: u64, senders: Vec<mpsc::UnboundedSender<u64>>) {
    let c = senders.len() as u64;
    let mut due = vec![0u64; senders.len()];
    // The connections owed messages since the last wake-up: a wake-up costs what
    // it sends, not a pass over every connection (8,000 of them in the soak).
    let mut owed = Vec::new();
    let mut k = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let now = shared.now_ns();
        let upto = now / period_ns + 1;
        while k < upto {
            let i = (k % c) as usize;
            if due[i] == 0 {
                owed.push(i);
            }
            due[i] += 1;
            k += 1;
        }
        for i in owed.drain(..) {
            let _ = senders[i].send(due[i]);
            due[i] = 0;
        }
        let next = k * period_ns;
        let now = shared.now_ns();
        if next > now {
            std::thread::sleep(Duration::from_nanos(next - now));
        }
    }
    // Dropping the senders tells the writers to stop.
}

/// One connection: a writer here, a reader task that checks the echoes.
/// Returns the latencies (ns) of messages scheduled in the window.
async fn connection(
    id: u32,
    conn: Conn,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    mut pace: Option<mpsc::UnboundedReceiver<u64>>,
) -> Vec<u64> {
    let Conn { io, early, deflate } = conn;
    let (r, mut w) = tokio::io::split(io);
    let acks = Arc::new(Acks {
        count: AtomicU64::new(0),
        notify: Notify::new(),
    });
    let reader = tokio::spawn(read_echoes(
        id,
        r,
        early,
        deflate,
        plan.clone(),
        shared.clone(),
        acks.clone(),
    ));
    let mut keys = Keys::new(u64::from(id) + 1);
    let mut sent = 0u64;
    let mut batch = Vec::with_capacity(64 << 10);
    loop {
        let n = match pace.as_mut() {
            Some(rx) => match rx.recv().await {
                Some(mut n) => {
                    while let Ok(more) = rx.try_recv() {
                        n += more;
                    }
                    n
                }
                None => break,
            },
            None => {
                if shared.stop.load(Ordering::Relaxed) {
                    break;
                }
                let room = u64::from(plan.inflight) - (sent - acks.count.load(Ordering::Acquire));
                if room == 0 {
                    let _ =
                        tokio::time::timeout(Duration::from_millis(100), acks.notify.notified())
                            .await;
                    continue;
                }
                room
            }
        };
        batch.clear();
        for _ in 0..n {
            let key = keys.next_key();
            plan.bodies
                .encode(plan.kind, deflate, id, sent, key, &mut batch);
            sent += 1;
        }
        shared.sent.fetch_add(n, Ordering::Relaxed);
        shared
            .sent_bytes
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        if let Err(e) = write(&mut w, &batch).await {
            shared.error(format!("conn {id}: write: {e}"));
            reader.abort();
            return Vec::new();
        }
    }
    // Drain: wait for the echoes still owed, then the close handshake.
    let deadline = Instant::now() + DRAIN;
    while acks.count.load(Ordering::Acquire) < sent && Instant::now() < deadline {
        let _ = tokio::time::timeout(Duration::from_millis(100), acks.notify.notified()).await;
    }
    let owed = sent - acks.count.load(Ordering::Acquire).min(sent);
    if owed > 0 {
        shared.error(format!("conn {id}: {owed} echoes missing at the end"));
        shared.lost.fetch_add(owed, Ordering::Relaxed);
    }
    batch.clear();
    ws::encode_close(keys.next_key(), &mut batch);
    if let Err(e) = write(&mut w, &batch).await {
        shared.error(format!("conn {id}: close: {e}"));
    }
    let latencies = match tokio::time::timeout(DRAIN, reader).await {
        Ok(Ok(lat)) => lat,
        Ok(Err(e)) => {
            shared.error(format!("conn {id}: reader: {e}"));
            Vec::new()
        }
        Err(_) => {
            shared.error(format!("conn {id}: no close reply"));
            Vec::new()
        }
    };
    let _ = w.shutdown().await;
    latencies
}

/// Echoes received so far on one connection (each message once), and the
/// wake-up for its writer.
struct Acks {
    count: AtomicU64,
    notify: Notify,
}

async fn write<W: tokio::io::AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

/// Reads and checks echoes in order until the close reply.
async fn read_echoes(
    id: u32,
    mut r: ReadHalf<Box<dyn Io>>,
    mut buf: Vec<u8>,
    deflate: bool,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    acks: Arc<Acks>,
) -> Vec<u64> {
    let mut latencies = Vec::new();
    // Distinct echoes received; outside the soak, also the next one expected.
    let mut received = 0u64;
    let mut order = plan.soak.then(Sequence::default);
    let mut inflater = Inflater::new();
    buf.reserve(256 << 10);
    let mut now_ns = shared.now_ns();
    loop {
        let mut pos = 0;
        let mut got = 0;
        loop {
            let frame = match ws::parse(&buf[pos..], deflate) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    shared.error(format!("conn {id}: {e}"));
                    return latencies;
                }
            };
            if frame.opcode == OP_CLOSE {
                let payload = &buf[pos..][frame.payload.clone()];
                if payload.get(..2) != Some(&1000u16.to_be_bytes()[..]) {
                    shared.error(format!("conn {id}: close reply {payload:?}"));
                }
                return latencies;
            }
            shared
                .echo_bytes
                .fetch_add(frame.payload.end as u64, Ordering::Relaxed);
            let seq = match order.as_mut() {
                Some(order) => {
                    let echo = (&frame, &buf[pos..]);
                    soak_echo(id, echo, &plan, &mut inflater, order, &shared)
                }
                None => {
                    let checked = plan.bodies.check(
                        plan.kind,
                        &frame,
                        &buf[pos..],
                        &mut inflater,
                        id,
                        received,
                    );
                    if let Err(e) = checked {
                        shared.error(format!("conn {id}: {e}"));
                        return latencies;
                    }
                    Some(received)
                }
            };
            pos += frame.payload.end;
            let Some(seq) = seq else { continue };
            if let Some(period) = plan.period_ns {
                let due = (seq * u64::from(plan.conns) + u64::from(id)) * period;
                if due >= shared.win_start.load(Ordering::Relaxed)
                    && due < shared.win_end.load(Ordering::Relaxed)
                {
                    latencies.push(now_ns.saturating_sub(due));
                }
            }
            received += 1;
            got += 1;
        }
        if got > 0 {
            acks.count.store(received, Ordering::Release);
            shared.echoed.fetch_add(got, Ordering::Relaxed);
            acks.notify.notify_one();
        }
        buf.drain(..pos);
        if buf.capacity() - buf.len() < 64 << 10 {
            buf.reserve(64 << 10);
        }
        match r.read_buf(&mut buf).await {
            Ok(0) => {
                shared.error(format!("conn {id}: closed without a close frame"));
                return latencies;
            }
            Ok(_) => now_ns = shared.now_ns(),
            Err(e) => {
                shared.error(format!("conn {id}: read: {e}"));
                return latencies;
            }
        }
    }
}

/// Soak: which message an echo is (from its tag), counting what is wrong with
/// it; `None` for one that is corrupt or came twice. A corrupt echo whose tag
/// is unreadable also leaves its message missing, so it counts as lost too.
fn soak_echo(
    id: u32,
    (frame, buf): (&ws::ServerFrame, &[u8]),
    plan: &Plan,
    inflater: &mut Inflater,
    order: &mut Sequence,
    shared: &Shared,
) -> Option<u64> {
    // The tag is read as sent: the soak does not offer permessage-deflate.
    let payload = &buf[frame.payload.clone()];
    let identified = match ws::parse_tag(payload) {
        Some((conn, seq)) if conn == id => plan
            .bodies
            .check(plan.kind, frame, buf, inflater, id, seq)
            .map(|()| seq),
        _ => Err(format!(
            "echo tagged {:?}",
            String::from_utf8_lossy(&payload[..payload.len().min(TAG_LEN)])
        )),
    };
    let seq = match identified {
        Ok(seq) => seq,
        Err(e) => {
            shared.corrupt.fetch_add(1, Ordering::Relaxed);
            shared.error(format!("conn {id}: corrupt: {e}"));
            return None;
        }
    };
    match order.echo(seq) {
        Echo::InOrder => Some(seq),
        Echo::Late => {
            shared.reordered.fetch_add(1, Ordering::Relaxed);
            shared.error(format!("conn {id}: echo {seq} after a later one"));
            Some(seq)
        }
        Echo::Again | Echo::Beyond => {
            shared.corrupt.fetch_add(1, Ordering::Relaxed);
            shared.error(format!("conn {id}: echo {seq} twice or never sent"));
            None
        }
    }
}

pub(crate) fn percentiles(lat: &mut [u64]) -> Value {
    if lat.is_empty() {
        return Value::Null;
    }
    lat.sort_unstable();
    let at = |p: f64| {
        // The epsilon keeps 99.9% of 1000 at rank 999 despite float rounding.
        let rank = ((p / 100.0) * lat.len() as f64 - 1e-9).ceil() as usize;
        lat[rank.clamp(1, lat.len()) - 1] as f64 / 1e3
    };
    json!({
        "samples": lat.len(),
        "p50": at(50.0),
        "p90": at(90.0),
        "p99": at(99.0),
        "p999": at(99.9),
        "max": at(100.0),
        "spectrum": SPECTRUM.iter().map(|&p| json!([p, at(p)])).collect::<Vec<_>>(),
    })
}

// === opening connections ===

/// An open connection, the bytes that came after its 101, and whether it
/// negotiated permessage-deflate.
pub(crate) struct Conn {
    pub(crate) io: Box<dyn Io>,
    pub(crate) early: Vec<u8>,
    pub(crate) deflate: bool,
}
type Opened = Vec<Conn>;

/// Opens `cfg.conns` connections, `OPEN_CONCURRENCY` handshakes at a time.
/// Returns the ones that worked (in order) and the TLS cipher suite.
async fn open_all(cfg: &Config, shared: &Arc<Shared>) -> (Opened, Option<String>) {
    let gate = Arc::new(Semaphore::new(OPEN_CONCURRENCY));
    let mut set = JoinSet::new();
    for i in 0..cfg.conns {
        let gate = gate.clone();
        let target = cfg.target.clone();
        let tls = cfg.tls.clone();
        let name = cfg.server_name.clone();
        let origin = cfg.origin.clone();
        let offer = cfg.deflate.then_some(deflate::OFFER);
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let open = async {
                let (mut io, info) = ws::connect(&target, tls.as_ref(), &name).await?;
                let cipher = info.and_then(|i| i.cipher);
                let (early, answer) = ws::handshake(&mut io, &target, &origin, offer).await?;
                let deflate = deflate::accepted(answer.as_deref()).map_err(|e| ws::bad(&e))?;
                Ok::<_, std::io::Error>((Conn { io, early, deflate }, cipher))
            };
            (i, tokio::time::timeout(Duration::from_secs(10), open).await)
        });
    }
    let mut slots: Vec<Option<Conn>> = (0..cfg.conns).map(|_| None).collect();
    let mut cipher = None;
    while let Some(done) = set.join_next().await {
        match done {
            Ok((i, Ok(Ok((conn, c))))) => {
                slots[i as usize] = Some(conn);
                cipher = cipher.or(c);
            }
            Ok((i, Ok(Err(e)))) => shared.error(format!("conn {i}: open: {e}")),
            Ok((i, Err(_))) => shared.error(format!("conn {i}: open timed out")),
            Err(e) => shared.error(format!("open task: {e}")),
        }
    }
    (slots.into_iter().flatten().collect(), cipher)
}

// === idle ===

/// Opens N connections, reads RSS; one message each, RSS again; holds them;
/// then closes every one cleanly.
async fn idle(cfg: &Config) -> Value {
    let shared = Arc::new(Shared::new());
    let before = sample_all(cfg, &shared).0;
    let (opened, cipher) = open_all(cfg, &shared).await;
    let n = opened.len();
    let deflated = opened.iter().filter(|c| c.deflate).count();
    tokio::time::sleep(SETTLE).await;
    let open = sample_all(cfg, &shared).0;

    let bodies = Arc::new(Bodies::new(cfg.kind, cfg.size, cfg.deflate));
    let mut set = JoinSet::new();
    for (id, conn) in opened.into_iter().enumerate() {
        let bodies = bodies.clone();
        let (kind, shared) = (cfg.kind, shared.clone());
        set.spawn(async move {
            let r = echo_once(id as u32, conn, kind, &bodies, &shared).await;
            (id, r)
        });
    }
    let mut alive = Vec::with_capacity(n);
    while let Some(done) = set.join_next().await {
        match done {
            Ok((_, Ok(conn))) => alive.push(conn),
            Ok((id, Err(e))) => shared.error(format!("conn {id}: {e}")),
            Err(e) => shared.error(format!("task: {e}")),
        }
    }
    tokio::time::sleep(SETTLE).await;
    let after_msg = sample_all(cfg, &shared).0;
    tokio::time::sleep(cfg.hold).await;

    let (tx, rx) = std_mpsc::channel();
    let mut set = JoinSet::new();
    for (id, mut conn) in alive.into_iter().enumerate() {
        let tx = tx.clone();
        set.spawn(async move {
            if let Err(e) = close(id as u32, &mut conn).await {
                let _ = tx.send(format!("conn {id}: close: {e}"));
            }
        });
    }
    drop(tx);
    let _ = tokio::time::timeout(DRAIN, async { while set.join_next().await.is_some() {} }).await;
    for e in rx.try_iter() {
        shared.error(e);
    }

    let mut v = json!({ "opened": n, "cipher": cipher });
    wire(&mut v, &shared, deflated);
    if let (Some(b), Some(o), Some(m)) = (before, open, after_msg) {
        let per = |x: Sample| (x.rss_kib as f64 - b.rss_kib as f64) / n.max(1) as f64;
        v["rss_before_kib"] = json!(b.rss_kib);
        v["rss_open_kib"] = json!(o.rss_kib);
        v["rss_after_msg_kib"] = json!(m.rss_kib);
        v["kib_per_conn_open"] = json!(per(o));
        v["kib_per_conn_after_msg"] = json!(per(m));
    }
    finish(&mut v, &shared);
    v
}

pub(crate) struct Held {
    pub(crate) conn: Conn,
    keys: Keys,
}

/// Sends message 0 of connection `id` and checks its echo.
pub(crate) async fn echo_once(
    id: u32,
    mut conn: Conn,
    kind: Kind,
    bodies: &Bodies,
    shared: &Shared,
) -> Result<Held, String> {
    let mut keys = Keys::new(u64::from(id) + 1);
    let mut out = Vec::new();
    bodies.encode(kind, conn.deflate, id, 0, keys.next_key(), &mut out);
    write(&mut conn.io, &out).await.map_err(|e| e.to_string())?;
    shared.sent.fetch_add(1, Ordering::Relaxed);
    shared
        .sent_bytes
        .fetch_add(out.len() as u64, Ordering::Relaxed);
    let frame = read_frame(&mut conn).await?;
    bodies.check(kind, &frame, &conn.early, &mut Inflater::new(), id, 0)?;
    shared
        .echo_bytes
        .fetch_add(frame.payload.end as u64, Ordering::Relaxed);
    conn.early.drain(..frame.payload.end);
    conn.early.shrink_to_fit();
    Ok(Held { conn, keys })
}

/// The close handshake (code 1000 both ways), then our side of the TCP close
/// (TLS close_notify first).
pub(crate) async fn close(id: u32, held: &mut Held) -> Result<(), String> {
    let mut out = Vec::new();
    ws::encode_close(held.keys.next_key(), &mut out);
    write(&mut held.conn.io, &out)
        .await
        .map_err(|e| e.to_string())?;
    let frame = tokio::time::timeout(DRAIN, read_frame(&mut held.conn))
        .await
        .map_err(|_| format!("conn {id}: no close reply"))??;
    if frame.opcode != OP_CLOSE {
        return Err(format!(
            "expected a close reply, got opcode {}",
            frame.opcode
        ));
    }
    let _ = held.conn.io.shutdown().await;
    Ok(())
}

/// Reads until `conn.early` starts with a whole frame.
async fn read_frame(conn: &mut Conn) -> Result<ws::ServerFrame, String> {
    loop {
        if let Some(f) = ws::parse(&conn.early, conn.deflate)? {
            return Ok(f);
        }
        conn.early.reserve(4096);
        match conn.io.read_buf(&mut conn.early).await {
            Ok(0) => return Err("closed".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// UTC time of day, seconds precision, without a date library.
pub(crate) fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }

    #[test]
    fn percentile_ranks() {
        let mut v: Vec<u64> = (1..=1000).map(|x| x * 1000).collect();
        let p = percentiles(&mut v);
        assert_eq!(p["p50"], json!(500.0));
        assert_eq!(p["p90"], json!(900.0));
        assert_eq!(p["p99"], json!(990.0));
        assert_eq!(p["p999"], json!(999.0));
        assert_eq!(p["max"], json!(1000.0));
    }
}

/// Whole runs against an echo backend in the test.
#[cfg(test)]
mod backend_tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    /// Reads until `buf` holds `n` bytes.
    async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> std::io::Result<()> {
        while buf.len() < n {
            if s.read_buf(buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }

    /// A backend that accepts permessage-deflate without context takeover
    /// and echoes every frame as it came (RSV1 included), like
    /// `wsguard-echo --mode lenient` behind a blind proxy; a close ends it.
    async fn echo(mut s: TcpStream) -> std::io::Result<()> {
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if s.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap_or_default();
        let offered = head.contains(deflate::OFFER);
        let reply = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n{}\r\n",
            ws::accept_key(key),
            if offered {
                "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
                 client_no_context_takeover\r\n"
            } else {
                ""
            }
        );
        s.write_all(reply.as_bytes()).await?;
        buf.drain(..end);
        loop {
            fill(&mut s, &mut buf, 2).await?;
            let (len, start) = match buf[1] & 0x7F {
                126 => {
                    fill(&mut s, &mut buf, 4).await?;
                    (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
                }
                n => (usize::from(n), 2),
            };
            fill(&mut s, &mut buf, start + 4 + len).await?;
            let key: [u8; 4] = buf[start..start + 4].try_into().unwrap();
            let mut frame = vec![buf[0]];
            if len < 126 {
                frame.push(len as u8);
            } else {
                frame.push(126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            let payload = &buf[start + 4..start + 4 + len];
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            s.write_all(&frame).await?;
            let close = buf[0] & 0x0F == OP_CLOSE;
            buf.drain(..start + 4 + len);
            if close {
                return Ok(());
            }
        }
    }

    async fn backend() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(echo(s));
            }
        });
        Target::parse(&format!("ws://127.0.0.1:{port}/")).unwrap()
    }

    fn config(target: Target, mode: Mode, deflate: bool) -> Config {
        Config {
            mode,
            target,
            tls: None,
            server_name: "localhost".into(),
            origin: "http://localhost".into(),
            conns: 3,
            inflight: 4,
            size: 1024,
            kind: Kind::Chat,
            deflate,
            rate: 1000.0,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(300),
            hold: Duration::ZERO,
            pids: Vec::new(),
            backend_pids: Vec::new(),
        }
    }

    #[tokio::test]
    async fn chat_goes_compressed_where_negotiated_and_echoes_check_out() {
        let target = backend().await;
        for mode in [Mode::Throughput, Mode::Idle] {
            let cfg = config(target.clone(), mode, true);
            let v = tokio::time::timeout(Duration::from_secs(30), run(cfg))
                .await
                .unwrap();
            assert_eq!(v["errors"], 0, "{v}");
            assert_eq!(v["deflate_conns"], 3, "{v}");
            // Frame header, mask, stored tag block and ~290 deflated bytes.
            let out = v["wire_out_bytes_per_msg"].as_f64().unwrap();
            assert!((250.0..400.0).contains(&out), "{v}");
            assert_eq!(v["wire_in_bytes_per_msg"].as_f64(), Some(out - 4.0), "{v}");
        }
        let v = tokio::time::timeout(
            Duration::from_secs(30),
            run(config(target, Mode::Throughput, false)),
        )
        .await
        .unwrap();
        assert_eq!(v["errors"], 0, "{v}");
        assert_eq!(v["deflate_conns"], 0, "{v}");
        assert_eq!(v["wire_out_bytes_per_msg"].as_f64(), Some(1032.0), "{v}");
    }

    #[tokio::test]
    async fn soak_counts_every_echo_and_samples_rss() {
        let mut cfg = config(backend().await, Mode::Soak, false);
        cfg.kind = Kind::Text;
        cfg.size = 128;
        cfg.duration = Duration::from_millis(2500);
        cfg.pids = vec![std::process::id()];
        let v = tokio::time::timeout(Duration::from_secs(30), run(cfg))
            .await
            .unwrap();
        assert_eq!(v["errors"], 0, "{v}");
        assert_eq!(
            (
                v["lost"].as_u64(),
                v["reordered"].as_u64(),
                v["corrupt"].as_u64()
            ),
            (Some(0), Some(0), Some(0)),
            "{v}"
        );
        // 3 connections × one a second × 2.5 s.
        assert!((6..=9).contains(&v["messages"].as_u64().unwrap()), "{v}");
        assert_eq!(v["rate_target"], 3.0, "{v}");
        assert_eq!(v["rss_kib_series"].as_array().unwrap().len(), 4, "{v}");
        assert!(v["rss_ratio"].as_f64().unwrap() > 0.5, "{v}");
    }

    #[tokio::test]
    async fn churn_opens_on_schedule_and_closes_every_connection() {
        let mut cfg = config(backend().await, Mode::Churn, false);
        cfg.kind = Kind::Text;
        cfg.size = 128;
        cfg.rate = 100.0;
        cfg.conns = 50;
        cfg.warmup = Duration::from_millis(100);
        cfg.duration = Duration::from_millis(500);
        let v = tokio::time::timeout(Duration::from_secs(30), run(cfg))
            .await
            .unwrap();
        assert_eq!(v["errors"], 0, "{v}");
        assert_eq!(v["connections"], 50, "{v}");
        assert_eq!(v["completed"], 50, "{v}");
        assert_eq!(
            (v["failed"].as_u64(), v["overflow"].as_u64()),
            (Some(0), Some(0)),
            "{v}"
        );
        assert!(
            v["connect_to_echo_us"]["p50"].as_f64().unwrap() > 0.0,
            "{v}"
        );
    }
}
