//! The real Socket.IO through wsguard: the npm `socket.io` server as the
//! backend and `socket.io-client` as the client (both on the machine's
//! Node.js, pinned by tests/frameworks/package-lock.json and installed into
//! target/frameworks by scripts/test.sh), wsguard in between with its shipped
//! defaults, only the Origin and the route set. The client speaks WebSocket
//! only: wsguard does not proxy HTTP long-polling.
//!
//! Skipped when `node` is not installed; with node and without the installed
//! dependencies, the tests fail and say to run scripts/test.sh.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::time::{sleep, Instant};

const ORIGIN: &str = "https://chat.example.com";

/// Where scripts/test.sh installs the dependencies: `target/frameworks`.
fn frameworks() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is target/tmp")
        .join("frameworks")
}

/// The installed node_modules; `None` (test skipped) without node.
fn node_modules() -> Option<PathBuf> {
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("SKIPPED: node is not installed; the Socket.IO tests need Node.js and npm");
        return None;
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/frameworks/package-lock.json");
    let installed = frameworks().join("installed.lock");
    // Older versions installed than the lock file names would test the wrong Socket.IO.
    assert!(
        std::fs::read(&installed).ok() == std::fs::read(&source).ok(),
        "the Socket.IO test dependencies are missing or out of date in {}: run scripts/test.sh",
        frameworks().display()
    );
    Some(frameworks().join("node_modules"))
}

/// A node script from tests/frameworks as a child process: its stdout lines
/// (JSON) and stderr are collected; killed on drop, and its stdin (kept open)
/// closes then too.
struct Script {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Script {
    fn start(name: &str, modules: &Path, env: &[(&str, String)]) -> Script {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/frameworks")
            .join(name);
        let mut child = Command::new("node")
            .arg(path)
            .env("SIO_NODE_MODULES", modules)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node starts");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "unparsed": line }));
                sink.lock().unwrap().push(value);
            }
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut chunk) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        Script {
            name: name.to_owned(),
            child,
            lines,
            stderr,
        }
    }

    fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// What it printed, for failure messages.
    fn output(&self) -> String {
        format!(
            "stdout: {:?}\nstderr: {}",
            self.lines(),
            self.stderr.lock().unwrap()
        )
    }

    /// The first stdout line matching `pred`, waiting up to `limit`.
    async fn wait_line(&self, what: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = self.lines().into_iter().find(&pred) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} from {} within {limit:?}\n{}",
                self.name,
                self.output()
            );
            sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The Socket.IO echo server, listening; `env` adds its settings.
async fn sio_server(modules: &Path, env: &[(&str, String)]) -> (Script, u16) {
    let server = Script::start("server.mjs", modules, env);
    let listening = server
        .wait_line("listening line", STEP, |v| v["event"] == "listening")
        .await;
    let port = listening["port"].as_u64().expect("a port") as u16;
    (server, port)
}

/// wsguard over TLS with its defaults, `rate` TOML added: the client's Origin
/// allowed and Socket.IO's path routed to the server on `port`.
async fn guard_for(port: u16, rate: &str) -> Guard {
    let body = format!(
        "[origin]\nallow = [\"{ORIGIN}\"]\n\n[[route]]\npath = \"/socket.io/\"\nbackends = [\"127.0.0.1:{port}\"]\n{rate}"
    );
    start_guard(true, &body).await
}

/// What client.mjs reports.
struct Outcome {
    received: u64,
    intact: bool,
    disconnects: Vec<Value>,
    errors: Vec<Value>,
    ms: u64,
}

/// Runs the client against `guard`: `count` messages of `size` characters at
/// once, waiting at most `limit` for all their echoes.
async fn sio_client(
    modules: &Path,
    guard: &Guard,
    count: usize,
    size: usize,
    limit: Duration,
) -> Outcome {
    let env = [
        (
            "SIO_URL",
            format!("https://127.0.0.1:{}", guard.addr.port()),
        ),
        ("SIO_CA", certs().join("ca.crt").display().to_string()),
        ("SIO_ORIGIN", ORIGIN.to_owned()),
        ("SIO_COUNT", count.to_string()),
        ("SIO_SIZE", size.to_string()),
        ("SIO_TIMEOUT_MS", limit.as_millis().to_string()),
    ];
    let client = Script::start("client.mjs", modules, &env);
    // The client gives up by itself after `limit`; node's own start-up is the margin.
    let result = client
        .wait_line("result line", limit + STEP, |v| v.get("received").is_some())
        .await;
    let list = |key: &str| result[key].as_array().cloned().unwrap_or_default();
    Outcome {
        received: result["received"].as_u64().expect("received"),
        intact: result["intact"].as_bool().expect("intact"),
        disconnects: list("disconnects"),
        errors: list("errors"),
        ms: result["ms"].as_u64().expect("ms"),
    }
}

/// Asserts every echo came back, in order and unchanged, on one connection.
fn assert_all_echoed(outcome: &Outcome, count: u64, server: &Script) {
    assert!(
        outcome.received == count
            && outcome.intact
            && outcome.errors.is_empty()
            && outcome.disconnects.is_empty(),
        "{} of {count} echoes in {} ms (intact: {}), client disconnects {:?}, errors {:?}\nserver {}",
        outcome.received,
        outcome.ms,
        outcome.intact,
        outcome.disconnects,
        outcome.errors,
        server.output()
    );
}

/// One 1,000,000-character message, as one WebSocket frame of about 1 MB,
/// passes the default frame and message limits and comes back.
#[tokio::test]
async fn one_megabyte_message_is_echoed_through_the_defaults() {
    let Some(modules) = node_modules() else {
        return;
    };
    let (server, port) = sio_server(&modules, &[]).await;
    let guard = guard_for(port, "").await;
    let outcome = sio_client(&modules, &guard, 1, 1_000_000, STEP).await;
    assert_all_echoed(&outcome, 1, &server);
}

/// A client that queued messages while offline flushes them all at once on
/// connect: 500 of them pass the default rate limit's burst.
#[tokio::test]
async fn burst_of_500_messages_is_echoed_through_the_defaults() {
    let Some(modules) = node_modules() else {
        return;
    };
    let (server, port) = sio_server(&modules, &[]).await;
    let guard = guard_for(port, "").await;
    let outcome = sio_client(&modules, &guard, 500, 32, STEP).await;
    assert_all_echoed(&outcome, 500, &server);
}

/// With `on_limit = "delay"` and a rate far under the burst, the client's
/// messages wait in wsguard for about 10 s; Engine.IO's heartbeat (the
/// server's "2", the client's "3", data frames to wsguard) must not wait with
/// them, or the server drops the client for a ping timeout after 2 s.
#[tokio::test]
async fn delayed_burst_keeps_the_socketio_heartbeat() {
    let Some(modules) = node_modules() else {
        return;
    };
    let heartbeat = [
        ("SIO_PING_INTERVAL", "1000".to_owned()),
        ("SIO_PING_TIMEOUT", "1000".to_owned()),
    ];
    let (server, port) = sio_server(&modules, &heartbeat).await;
    let rate = "\n[rate]\nmessages_per_second = 50\nburst = 50\non_limit = \"delay\"\n";
    let guard = guard_for(port, rate).await;
    // 450 messages over the burst at 50 a second: 9 s, and the slack of a loaded machine.
    let outcome = sio_client(&modules, &guard, 500, 32, Duration::from_secs(18)).await;
    let timeouts: Vec<Value> = server
        .lines()
        .into_iter()
        .filter(|v| v["reason"] == "ping timeout")
        .collect();
    assert!(
        timeouts.is_empty(),
        "the server timed the client out after {} of 500 echoes:\n{}",
        outcome.received,
        server.output()
    );
    assert_all_echoed(&outcome, 500, &server);
}
