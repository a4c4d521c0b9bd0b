//! A real redis-server for the shared-limit tests: a child process on a free
//! loopback port with its own directory, optionally with a password and TLS,
//! that a test can stop, start again on the same port, pause and resume.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{Client, TlsCertificates};
use tokio::time::{sleep, timeout, Instant};

use super::{certs, within, TempDir, STEP};

/// How a test's redis-server is set up.
#[derive(Clone, Copy, Default)]
pub struct RedisOptions {
    /// `--requirepass`.
    pub password: Option<&'static str>,
    /// TLS only, with the test process's development certificate for localhost.
    pub tls: bool,
}

/// A redis-server child process; killed on drop.
pub struct RedisServer {
    pub port: u16,
    options: RedisOptions,
    dir: TempDir,
    child: Option<Child>,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // SIGKILL also ends a paused (SIGSTOPped) process.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        RedisServer::start_with(RedisOptions::default()).await
    }

    pub async fn start_with(options: RedisOptions) -> RedisServer {
        let mut server = RedisServer {
            port: 0,
            options,
            dir: TempDir::new("redis"),
            child: None,
        };
        // The port is free when probed but another process may bind it before
        // redis-server does: then try another one.
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn().await {
                return server;
            }
        }
        panic!(
            "redis-server found no free port in 5 tries:\n{}",
            server.log()
        );
    }

    /// Starts it again on the same port, empty (nothing is persisted), as a
    /// restarted Redis without persistence.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "stop redis-server first");
        assert!(
            self.spawn().await,
            "port {} was taken while redis-server was stopped",
            self.port
        );
    }

    /// SIGTERM, and waits for the process to end.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("redis-server is running");
        signal(&child, "TERM");
        let deadline = Instant::now() + STEP;
        while child.try_wait().expect("redis-server status").is_none() {
            assert!(Instant::now() < deadline, "redis-server ignored SIGTERM");
            sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGSTOP: the port stays open but nothing is answered.
    pub fn pause(&self) {
        signal(self.child.as_ref().expect("running"), "STOP");
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub fn resume(&self) {
        signal(self.child.as_ref().expect("running"), "CONT");
    }

    /// The URL wsguard is configured with: never with the password.
    pub fn url(&self) -> String {
        if self.options.tls {
            format!("rediss://localhost:{}/0", self.port)
        } else {
            format!("redis://127.0.0.1:{}/0", self.port)
        }
    }

    /// A client of the test's own, to look at what wsguard wrote.
    pub fn client(&self) -> Client {
        let password = self.options.password.map(|p| format!(":{p}@"));
        let url = self
            .url()
            .replacen("://", &format!("://{}", password.unwrap_or_default()), 1);
        if self.options.tls {
            let root = std::fs::read(certs().join("ca.crt")).expect("the test CA");
            let tls = TlsCertificates {
                client_tls: None,
                root_cert: Some(root),
            };
            Client::build_with_tls(url, tls).expect("a TLS client")
        } else {
            Client::open(url).expect("a client")
        }
    }

    pub async fn conn(&self) -> MultiplexedConnection {
        within(
            "redis connect",
            self.client().get_multiplexed_async_connection(),
        )
        .await
        .expect("redis answers")
    }

    /// Sends one command and reads its reply.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> T {
        let mut conn = self.conn().await;
        within("redis command", cmd.query_async(&mut conn))
            .await
            .expect("redis command")
    }

    /// The server's clock, in µs: the clock wsguard's scripts use.
    pub async fn time_us(&self) -> u64 {
        let (secs, micros): (u64, u64) = self.query(&mut redis::cmd("TIME")).await;
        secs * 1_000_000 + micros
    }

    /// The members of a sorted set with their scores.
    pub async fn members(&self, key: &str) -> Vec<(String, u64)> {
        let all: Vec<(String, f64)> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES"),
            )
            .await;
        // Scores are µs timestamps, exact in an f64 (below 2^53).
        all.into_iter().map(|(m, s)| (m, s as u64)).collect()
    }

    /// Polls the set `key` until it has `n` members (bounded).
    pub async fn wait_members(&self, key: &str, n: usize) -> Vec<(String, u64)> {
        let deadline = Instant::now() + STEP;
        loop {
            let members = self.members(key).await;
            if members.len() == n {
                return members;
            }
            assert!(
                Instant::now() < deadline,
                "{key} has {members:?}, not {n} members"
            );
            sleep(Duration::from_millis(10)).await;
        }
    }

    /// Spawns redis-server on `self.port` and waits until it answers: true,
    /// or false when the port was taken.
    async fn spawn(&mut self) -> bool {
        let log = self.dir.0.join("redis.log");
        let _ = std::fs::remove_file(&log);
        let mut cmd = Command::new(binary());
        let port = self.port.to_string();
        if self.options.tls {
            let certs = certs();
            cmd.args([
                "--port",
                "0",
                "--tls-port",
                &port,
                "--tls-auth-clients",
                "no",
            ])
            .arg("--tls-cert-file")
            .arg(certs.join("localhost.crt"))
            .arg("--tls-key-file")
            .arg(certs.join("localhost.key"))
            .arg("--tls-ca-cert-file")
            .arg(certs.join("ca.crt"));
        } else {
            cmd.args(["--port", &port]);
        }
        if let Some(password) = self.options.password {
            cmd.args(["--requirepass", password]);
        }
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir.0)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| missing(&e.to_string()));
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + STEP;
        loop {
            let child = self.child.as_mut().expect("spawned");
            if child.try_wait().expect("redis-server status").is_some() {
                self.child = None;
                let log = self.log();
                assert!(
                    log.contains("Address already in use"),
                    "redis-server ended:\n{log}"
                );
                return false;
            }
            // Whoever answers on the port must be this process, not another
            // test's server that got the same port.
            if self.process_id().await == Some(pid) {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server does not answer:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(10)).await;
        }
    }

    /// The `process_id` in `INFO server`, if a server answers.
    async fn process_id(&self) -> Option<u32> {
        let info = timeout(Duration::from_millis(500), async {
            let mut conn = self.client().get_multiplexed_async_connection().await?;
            redis::cmd("INFO")
                .arg("server")
                .query_async::<String>(&mut conn)
                .await
        })
        .await
        .ok()?
        .ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("process_id:")?.trim().parse().ok())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("redis.log")).unwrap_or_default()
    }
}

/// `$WSGUARD_REDIS_SERVER`, or redis-server from PATH.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WSGUARD_REDIS_SERVER") {
        return path.into();
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("redis-server"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| missing("not found on PATH"))
}

fn missing(why: &str) -> ! {
    panic!(
        "redis-server: {why}. The shared-limit tests need a real Redis: run `scripts/test.sh`, \
         or `apt-get install redis-server` (or set WSGUARD_REDIS_SERVER to its path)"
    )
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port()
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} failed");
}
