//! The per-IP limits shared through Redis (`[limits.shared]`) end to end: two
//! wsguard instances in-process stand for a fleet, against a real
//! redis-server per test (tests/common/redis.rs) that the tests inspect, stop,
//! start again, pause and flush. Every client is 127.0.0.1.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ::redis::cmd;
use common::redis::{RedisOptions, RedisServer};
use common::*;

/// The keys of the client 127.0.0.1 under the default prefix.
const CONN_KEY: &str = "wsguard:{127.0.0.1}:c";
const RATE_KEY: &str = "wsguard:{127.0.0.1}:h";

/// `timeout` of the tests that measure how long a sick store costs a handshake:
/// short, yet rarely missed by a healthy store on a loaded machine.
const STORE_TIMEOUT: Duration = Duration::from_millis(250);
/// What a handshake may take beyond the store's `timeout` on a loaded machine:
/// well under the client's 1 s connection timeout, which would show here if a
/// handshake waited for a reconnection.
const MARGIN: Duration = Duration::from_millis(500);

const UP: &str = "wsguard_shared_store_up";
const LEASES: &str = "wsguard_shared_leases";

/// A route to `backend`, `[limits]` with `limits` and `[limits.shared]` on
/// `redis` with `shared` keys. `timeout` is 2 s unless `shared` sets it: a
/// debug build on a loaded machine sometimes misses the default 100 ms, and
/// then on_error would decide what the test means the store to.
fn fleet(backend: &Backend, redis: &RedisServer, limits: &str, shared: &str) -> String {
    let timeout = if shared.contains("timeout") {
        ""
    } else {
        "timeout = \"2s\"\n"
    };
    format!(
        "{}\n[limits]\n{limits}\n\n[limits.shared]\nredis = \"{}\"\n{timeout}{shared}",
        chat_route(backend.addr),
        redis.url()
    )
}

/// Two instances with the same configuration: a fleet.
async fn pair(cfg: &str) -> (Guard, Guard) {
    (start_guard(false, cfg).await, start_guard(false, cfg).await)
}

/// `timeout` = [`STORE_TIMEOUT`] and `on_error` = `policy`.
fn sick_store(policy: &str) -> String {
    let ms = STORE_TIMEOUT.as_millis();
    format!("timeout = \"{ms}ms\"\non_error = \"{policy}\"\n")
}

/// Connection cap `cap`, handshake quota off: only the cap can refuse.
fn cap(n: u32) -> String {
    format!("connections_per_ip = {n}\nhandshakes_per_ip = \"off\"")
}

fn request() -> Vec<u8> {
    upgrade_request("/chat", "Origin: https://chat.example.com\r\n")
}

/// An upgraded connection, held until dropped.
async fn upgraded(guard: &Guard) -> Box<dyn Io> {
    upgrade_raw(guard.addr, false, &request()).await
}

/// A refused upgrade's status and Retry-After.
async fn refused(guard: &Guard) -> (u16, Option<u64>) {
    let answer = raw_request(guard.addr, false, &request()).await;
    let retry_after = header_of(&answer, "retry-after").map(|v| v.parse().unwrap());
    (status_of(&answer), retry_after)
}

/// Asserts that `f` (a handshake) answers within the store's timeout plus the margin.
async fn timed<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let out = f.await;
    let took = started.elapsed();
    assert!(took < STORE_TIMEOUT + MARGIN, "{what} took {took:?}");
    out
}

fn refusals(guard: &Guard, reason: &str) -> f64 {
    guard.metric(&format!(
        "wsguard_handshakes_refused_total{{reason=\"{reason}\",route=\"/chat\"}}"
    ))
}

fn decisions(guard: &Guard, outcome: &str) -> f64 {
    guard.metric(&format!(
        "wsguard_shared_decisions_total{{outcome=\"{outcome}\"}}"
    ))
}

fn store_errors(guard: &Guard, kind: &str) -> f64 {
    guard.metric(&format!(
        "wsguard_shared_store_errors_total{{kind=\"{kind}\"}}"
    ))
}

/// Every store error, whatever its kind.
fn all_store_errors(guard: &Guard) -> f64 {
    guard
        .metrics()
        .lines()
        .filter(|l| l.starts_with("wsguard_shared_store_errors_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The captured lines whose message starts with `message`.
fn lines(logs: &Logs, message: &str) -> Vec<serde_json::Value> {
    logs.lines()
        .into_iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message))
        })
        .collect()
}

/// Waits (bounded) until every guard's store is up again; returns how long it took.
async fn all_up(guards: &[&Guard]) -> Duration {
    let started = Instant::now();
    let up = wait_until(|| guards.iter().all(|g| g.metric(UP) == 1.0)).await;
    assert!(up, "the store is still down for an instance");
    started.elapsed()
}

/// Polls the store's clock until it reaches `us`.
async fn until_store_time(redis: &RedisServer, us: u64) {
    let deadline = Instant::now() + STEP;
    while redis.time_us().await < us {
        assert!(Instant::now() < deadline, "the store's clock stands still");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_connection_cap_counts_the_whole_fleet() {
    let logs = Logs::capture();
    let redis = RedisServer::start().await;
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let cfg = fleet(&backend, &redis, &cap(2), "");
    let (a, b) = pair(&cfg).await;
    let on_a = upgraded(&a).await;
    let _on_b = upgraded(&b).await;
    // Each instance holds one connection of this client: only the fleet's count is at the cap.
    for guard in [&a, &b] {
        assert_eq!(refused(guard).await, (429, None));
        assert_eq!(refusals(guard, "shared_ip_connections"), 1.0);
        let limited = r#"wsguard_rate_limited_total{reason="shared_ip_connections"}"#;
        assert_eq!(guard.metric(limited), 1.0);
        assert_eq!(decisions(guard, "ip_connections"), 1.0);
        assert_eq!(decisions(guard, "allowed"), 1.0);
        assert_eq!(guard.metric(LEASES), 1.0);
    }
    assert_eq!(
        backend.seen.connections(),
        2,
        "a refused handshake never reaches it"
    );
    let refused_lines = lines(&logs, "handshake refused");
    assert_eq!(refused_lines.len(), 2, "{refused_lines:#?}");
    for line in &refused_lines {
        assert_eq!(line["rule"], "shared_ip_connections");
        assert_eq!(line["status"], 429);
        assert_eq!(line["client"], "127.0.0.1");
    }
    // The closed connection's lease leaves the store: its slot is free on the other instance.
    drop(on_a);
    redis.wait_members(CONN_KEY, 1).await;
    assert_eq!(a.metric(LEASES), 0.0);
    let _again = upgraded(&b).await;
    assert_eq!(backend.seen.connections(), 3);
}

#[tokio::test]
async fn the_handshake_quota_counts_the_whole_fleet() {
    let redis = RedisServer::start().await;
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    // One handshake per 10 s after a burst of 3, locally and fleet-wide.
    let limits = "connections_per_ip = \"off\"\nhandshakes_per_ip = 6\nhandshake_burst = 3";
    let cfg = fleet(&backend, &redis, limits, "");
    let (a, b) = pair(&cfg).await;
    // A, B, A: each instance saw at most 2 of this client's handshakes, under its own burst.
    for guard in [&a, &b, &a] {
        upgraded(guard).await;
    }
    let (status, retry_after) = refused(&b).await;
    assert_eq!(status, 429);
    let retry_after = retry_after.expect("Retry-After");
    assert!(
        (1..=10).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    assert_eq!(refusals(&b, "shared_ip_handshake_rate"), 1.0);
    assert_eq!(refusals(&b, "ip_handshake_rate"), 0.0, "not the local tier");
    let limited = r#"wsguard_rate_limited_total{reason="shared_ip_handshake_rate"}"#;
    assert_eq!(b.metric(limited), 1.0);
    assert_eq!(decisions(&b, "ip_handshake_rate"), 1.0);
    assert_eq!(decisions(&a, "allowed") + decisions(&b, "allowed"), 3.0);
    assert_eq!(backend.seen.connections(), 3);
    // The bucket's arrival time, kept no longer than it matters: 3 handshakes of 10 s.
    let ttl: i64 = redis.query(cmd("PTTL").arg(RATE_KEY)).await;
    assert!((1..=30_001).contains(&ttl), "PTTL {ttl}");
    // No connection cap: no leases.
    let exists: u32 = redis.query(cmd("EXISTS").arg(CONN_KEY)).await;
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn leases_and_the_bucket_are_kept_in_redis_with_bounded_ttls() {
    let redis = RedisServer::start().await;
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let limits = "connections_per_ip = 4\nhandshakes_per_ip = 60\nhandshake_burst = 10";
    let cfg = fleet(
        &backend,
        &redis,
        limits,
        "lease = \"10s\"\nkey_prefix = \"fleet7:\"\n",
    );
    let (a, b) = pair(&cfg).await;
    let on_a = upgraded(&a).await;
    let on_b = upgraded(&b).await;
    let (conn_key, rate_key) = ("fleet7:{127.0.0.1}:c", "fleet7:{127.0.0.1}:h");
    let mut keys: Vec<String> = redis.query(cmd("KEYS").arg("*")).await;
    keys.sort();
    assert_eq!(keys, [conn_key, rate_key], "only the configured prefix");

    let lease_us = 10_000_000;
    let now = redis.time_us().await;
    let members = redis.members(conn_key).await;
    assert_eq!(
        members.len(),
        2,
        "one member per live connection: {members:?}"
    );
    let mut instances = Vec::new();
    for (member, expiry) in &members {
        let (instance, n) = member.split_once(':').expect("instance:n");
        assert!(
            instance.len() == 16 && instance.bytes().all(|c| c.is_ascii_hexdigit()),
            "{member}"
        );
        assert!(n.parse::<u64>().is_ok(), "{member}");
        instances.push(instance.to_owned());
        // Admitted a moment ago on the store's clock, for one lease.
        assert!(
            (now + lease_us - 2_000_000..=now + lease_us).contains(expiry),
            "{member} expires at {expiry}, now {now}"
        );
    }
    assert_ne!(instances[0], instances[1], "each instance has its own id");
    for key in [conn_key, rate_key] {
        let ttl: i64 = redis.query(cmd("PTTL").arg(key)).await;
        assert!((1..=10_000).contains(&ttl), "{key}: PTTL {ttl}");
    }

    drop((on_a, on_b));
    redis.wait_members(conn_key, 0).await;
    let exists: u32 = redis.query(cmd("EXISTS").arg(conn_key)).await;
    assert_eq!(exists, 0, "the set of a client without connections is gone");
}

#[tokio::test]
async fn a_dead_instances_lease_counts_until_it_expires() {
    let redis = RedisServer::start().await;
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let a = start_guard(false, &fleet(&backend, &redis, &cap(1), "")).await;
    // What an instance that died without removing its lease leaves behind.
    let expiry = redis.time_us().await + 2_000_000;
    let _: u32 = redis
        .query(cmd("ZADD").arg(CONN_KEY).arg(expiry).arg("dead:1"))
        .await;
    assert_eq!(refused(&a).await, (429, None));
    assert_eq!(refusals(&a, "shared_ip_connections"), 1.0);
    until_store_time(&redis, expiry).await;
    let _held = upgraded(&a).await;
    let members = redis.members(CONN_KEY).await;
    assert_eq!(members.len(), 1, "{members:?}");
    assert_ne!(members[0].0, "dead:1", "the expired lease was dropped");
    assert_eq!(backend.seen.connections(), 1);
}

#[tokio::test]
async fn a_held_connection_is_renewed_past_its_lease() {
    let redis = RedisServer::start().await;
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let cfg = fleet(&backend, &redis, &cap(1), "lease = \"3s\"\n");
    let (a, b) = pair(&cfg).await;
    let _held = upgraded(&a).await;
    let admitted = redis.time_us().await;
    let [(member, first)] = redis.members(CONN_KEY).await.try_into().unwrap();
    until_store_time(&redis, admitted + 4_000_000).await;
    // Past its first expiry the lease still counts: B (which holds nothing itself) refuses.
    assert_eq!(refused(&b).await, (429, None));
    assert_eq!(refusals(&b, "shared_ip_connections"), 1.0);
    let [(renewed, later)] = redis.members(CONN_KEY).await.try_into().unwrap();
    assert_eq!(renewed, member);
    assert!(
        later >= first + 2_000_000,
        "renewed at a third of the lease: {first} → {later}"
    );
    assert_eq!(backend.seen.connections(), 1);
}

#[tokio::test]
async fn a_stopped_store_with_on_error_open_lets_handshakes_through_and_recovers() {
    let logs = Logs::capture();
    let mut redis = RedisServer::start().await;
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let cfg = fleet(&backend, &redis, &cap(2), &sick_store("open"));
    let (a, b) = pair(&cfg).await;
    let _first = upgraded(&a).await;

    redis.stop().await;
    let _second = timed("a handshake on A", upgraded(&a)).await;
    let _third = timed("a handshake on B", upgraded(&b)).await;
    for guard in [&a, &b] {
        assert_eq!(guard.metric(UP), 0.0);
        assert_eq!(decisions(guard, "error_open"), 1.0);
        assert!(all_store_errors(guard) > 0.0, "{}", guard.metrics());
    }
    assert_eq!(a.metric(LEASES), 2.0, "admitted while down, still leased");
    assert_eq!(backend.seen.connections(), 3);
    assert_eq!(
        lines(&logs, "shared store unavailable").len(),
        2,
        "one per instance"
    );

    // An empty Redis on the same port: both instances find it, and write their leases back.
    redis.start_again().await;
    let took = all_up(&[&a, &b]).await;
    assert!(took < Duration::from_secs(3), "up again after {took:?}");
    redis.wait_members(CONN_KEY, 3).await;
    // Three connections held across the fleet, over the cap of 2: counted again.
    assert_eq!(refused(&b).await, (429, None));
    assert_eq!(refusals(&b, "shared_ip_connections"), 1.0);
    assert_eq!(backend.seen.connections(), 3);
    let again = lines(&logs, "shared store answers again");
    assert_eq!(again.len(), 2, "{again:#?}");
    assert_eq!(lines(&logs, "shared store unavailable").len(), 2);
}

#[tokio::test]
async fn a_stopped_store_with_on_error_closed_answers_503_and_recovers() {
    let logs = Logs::capture();
    let mut redis = RedisServer::start().await;
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let a = start_guard(
        false,
        &fleet(&backend, &redis, &cap(2), &sick_store("closed")),
    )
    .await;

    redis.stop().await;
    // Whether this handshake or the lease task finds the store gone, neither waits long.
    for _ in 0..2 {
        assert_eq!(timed("a refusal", refused(&a)).await, (503, Some(1)));
    }
    assert_eq!(
        backend.seen.connections(),
        0,
        "the backend was never contacted"
    );
    assert_eq!(refusals(&a, "shared_store_unavailable"), 2.0);
    assert_eq!(decisions(&a, "error_closed"), 2.0);
    assert_eq!(a.metric(UP), 0.0);
    assert!(all_store_errors(&a) > 0.0, "{}", a.metrics());
    let refused_lines = lines(&logs, "handshake refused");
    assert_eq!(refused_lines.len(), 2, "{refused_lines:#?}");
    assert!(refused_lines
        .iter()
        .all(|l| l["rule"] == "shared_store_unavailable" && l["status"] == 503));
    let down = lines(&logs, "shared store unavailable");
    assert_eq!(down.len(), 1, "{down:#?}");
    assert_eq!(down[0]["level"], "WARN");

    redis.start_again().await;
    let took = all_up(&[&a]).await;
    assert!(took < Duration::from_secs(3), "up again after {took:?}");
    let _held = upgraded(&a).await;
    assert_eq!(decisions(&a, "allowed"), 1.0);
    redis.wait_members(CONN_KEY, 1).await;
    assert_eq!(backend.seen.connections(), 1);
}

#[tokio::test]
async fn a_store_restarted_while_the_instance_was_idle_costs_no_handshake() {
    let mut redis = RedisServer::start().await;
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    // The lease task renews only every 10 s: the handshake is the first to meet the
    // connection the restart closed.
    let a = start_guard(
        false,
        &fleet(&backend, &redis, &cap(2), "on_error = \"closed\"\n"),
    )
    .await;
    drop(upgraded(&a).await);
    redis.wait_members(CONN_KEY, 0).await;
    redis.stop().await;
    redis.start_again().await;
    let _held = upgraded(&a).await;
    assert_eq!(decisions(&a, "error_closed"), 0.0, "{}", a.metrics());
    assert_eq!(decisions(&a, "allowed"), 2.0);
    assert_eq!(a.metric(UP), 1.0);
    redis.wait_members(CONN_KEY, 1).await;
}

#[tokio::test]
async fn a_hanging_store_costs_a_handshake_at_most_the_timeout() {
    let redis = RedisServer::start().await;
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let cfg = |on_error| fleet(&backend, &redis, &cap(4), &sick_store(on_error));
    let open = start_guard(false, &cfg("open")).await;
    let closed = start_guard(false, &cfg("closed")).await;
    // Both connected, the admission script known to the store.
    let _before = upgraded(&open).await;
    let _before_too = upgraded(&closed).await;

    redis.pause();
    let _during = timed("open, store hanging", upgraded(&open)).await;
    assert_eq!(
        timed("closed, store hanging", refused(&closed)).await,
        (503, Some(1))
    );
    for (guard, outcome) in [(&open, "error_open"), (&closed, "error_closed")] {
        assert!(store_errors(guard, "timeout") >= 1.0, "{}", guard.metrics());
        assert_eq!(guard.metric(UP), 0.0);
        assert_eq!(decisions(guard, outcome), 1.0);
    }

    redis.resume();
    let took = all_up(&[&open, &closed]).await;
    assert!(took < Duration::from_secs(3), "up again after {took:?}");
    // Resumed, the store ran the refused handshake's script too: its member is removed, so
    // the three connections held count as three.
    redis.wait_members(CONN_KEY, 3).await;
    let _after = upgraded(&closed).await;
    assert_eq!(decisions(&closed, "allowed"), 2.0);
    assert_eq!(backend.seen.connections(), 4);
    redis.wait_members(CONN_KEY, 4).await;
}

#[tokio::test]
async fn a_flushed_script_is_loaded_again() {
    let redis = RedisServer::start().await;
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let cfg = fleet(&backend, &redis, &cap(5), "lease = \"3s\"\n");
    let a = start_guard(false, &cfg).await;
    let _first = upgraded(&a).await;
    let [(member, admitted)] = redis.members(CONN_KEY).await.try_into().unwrap();

    let _: () = redis.query(cmd("SCRIPT").arg("FLUSH")).await;
    let _second = upgraded(&a).await;
    assert_eq!(decisions(&a, "allowed"), 2.0);
    // The renewal script was flushed too: the next renewal loads it again.
    let deadline = Instant::now() + STEP;
    loop {
        let members = redis.members(CONN_KEY).await;
        let renewed = members.iter().any(|(m, at)| *m == member && *at > admitted);
        if renewed {
            break;
        }
        assert!(Instant::now() < deadline, "never renewed: {members:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(all_store_errors(&a), 0.0, "{}", a.metrics());
    assert_eq!(a.metric(UP), 1.0);
}

#[tokio::test]
async fn a_password_is_read_from_its_file_and_never_shown() {
    const PASSWORD: &str = "correct-horse-7c1e";
    const WRONG: &str = "wrong-battery-93f2";
    let logs = Logs::capture();
    let redis = RedisServer::start_with(RedisOptions {
        password: Some(PASSWORD),
        ..RedisOptions::default()
    })
    .await;
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let dir = TempDir::new("redis-password");
    let guard_with = |password: &str, name: &str| {
        let file = dir.0.join(name);
        std::fs::write(&file, format!("{password}\n")).unwrap();
        let shared = format!("password_file = {file:?}\non_error = \"open\"\n");
        fleet(&backend, &redis, &cap(2), &shared)
    };
    let right = start_guard(false, &guard_with(PASSWORD, "right")).await;
    let wrong = start_guard(false, &guard_with(WRONG, "wrong")).await;
    let without = fleet(&backend, &redis, &cap(2), "on_error = \"open\"\n");
    let without = start_guard(false, &without).await;

    let _held = upgraded(&right).await;
    assert_eq!(decisions(&right, "allowed"), 1.0);
    redis.wait_members(CONN_KEY, 1).await;
    assert_eq!(right.metric(UP), 1.0);
    // Refused at AUTH, or asked for it: the store is down for these two, on_error decides.
    for guard in [&wrong, &without] {
        let _let_through = upgraded(guard).await;
        assert_eq!(decisions(guard, "error_open"), 1.0);
        let auth = wait_until(|| store_errors(guard, "auth") > 0.0).await;
        assert!(auth, "{}", guard.metrics());
        assert_eq!(guard.metric(UP), 0.0);
    }

    let started = lines(&logs, "shared limits: per-IP quotas are fleet-wide");
    assert_eq!(started.len(), 3, "{started:#?}");
    for line in &started {
        assert_eq!(line["store"].as_str(), Some(redis.url().as_str()));
        assert_eq!(line["lease_ms"], 30_000);
        assert_eq!(line["on_error"], "open");
        let instance = line["instance"].as_str().unwrap();
        assert!(instance.len() == 16 && instance.bytes().all(|c| c.is_ascii_hexdigit()));
    }
    let logged = serde_json::to_string(&logs.lines()).unwrap();
    let metrics = right.metrics() + &wrong.metrics() + &without.metrics();
    for secret in [PASSWORD, WRONG] {
        assert!(!logged.contains(secret), "{logged}");
        assert!(!metrics.contains(secret), "{metrics}");
    }
}

#[tokio::test]
async fn rediss_with_the_configured_ca_works() {
    let redis = RedisServer::start_with(RedisOptions {
        tls: true,
        ..RedisOptions::default()
    })
    .await;
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let ca = certs().join("ca.crt");
    let trusting = format!("ca_file = {ca:?}\non_error = \"closed\"\n");
    let a = start_guard(false, &fleet(&backend, &redis, &cap(2), &trusting)).await;
    // The system's roots do not know the test's CA.
    let b = start_guard(
        false,
        &fleet(&backend, &redis, &cap(2), "on_error = \"closed\"\n"),
    )
    .await;
    let _held = upgraded(&a).await;
    assert_eq!(decisions(&a, "allowed"), 1.0);
    redis.wait_members(CONN_KEY, 1).await;
    assert_eq!(refused(&b).await, (503, Some(1)));
    assert_eq!(b.metric(UP), 0.0);
    assert!(all_store_errors(&b) > 0.0);
    assert_eq!(a.metric(UP), 1.0);
}

#[tokio::test]
async fn a_drained_instance_removes_its_leases_even_of_connections_still_open() {
    let redis = RedisServer::start().await;
    let backend = start_backend(Answer::Echo { protocol: None }).await;
    let cfg = fleet(&backend, &redis, &cap(2), "");
    // The drain gives up long before a connection that ignores its close frame ends.
    let server = "shutdown_timeout = \"100ms\"\nclose_timeout = \"5s\"\n";
    let mut a = start_guard_with(false, server, &cfg).await;
    let b = start_guard(false, &cfg).await;
    let mut on_a = upgraded(&a).await;
    let [(a_member, _)] = redis.wait_members(CONN_KEY, 1).await.try_into().unwrap();
    let _on_b = upgraded(&b).await;
    redis.wait_members(CONN_KEY, 2).await;
    a.shutdown();
    assert_eq!(read_close(&mut on_a).await.0, Some(1001));
    a.stopped().await;
    // Right after the drain, while A's connection is still open: B's lease alone is left.
    let left = redis.members(CONN_KEY).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_ne!(left[0].0, a_member);
    drop(on_a);
}

#[tokio::test]
async fn a_missing_secret_file_stops_the_start_and_is_named() {
    let dir = TempDir::new("redis-missing");
    let missing = dir.0.join("absent");
    let route = chat_route(SocketAddr::from(([127, 0, 0, 1], 9)));
    for shared in [
        format!("redis = \"redis://127.0.0.1:1/0\"\npassword_file = {missing:?}\n"),
        format!("redis = \"rediss://localhost:1/0\"\nca_file = {missing:?}\n"),
    ] {
        let src = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{route}\n[limits]\nconnections_per_ip = 2\n\n[limits.shared]\n{shared}"
        );
        let config = wsguard::config::Config::from_str(&src, "test.toml").unwrap();
        let error = wsguard::state::State::new(&config.limits)
            .err()
            .expect("the start fails");
        let text = error.to_string();
        assert!(text.contains(&missing.display().to_string()), "{text}");
    }
}
