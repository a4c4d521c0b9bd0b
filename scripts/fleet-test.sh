#!/usr/bin/env bash
# A real fleet: two wsguard instances sharing their per-IP limits through one Redis
# ([limits.shared]), behind HAProxy in TCP mode (static round robin, PROXY protocol v2), driven by
# clients bound to distinct 127.0.0.0/8 source addresses (all loopback on Linux).
#
# usage: scripts/fleet-test.sh [--no-measure]
#
# Checks, each printing PASS or FAIL (any FAIL: exit status 1):
#   1  one connection cap for the fleet while connections alternate between the instances
#   2  one handshake quota for the fleet (each instance alone saw fewer than the burst)
#   3  the instances' JSON log lines name the client from the PROXY header, not HAProxy
#   4  SIGKILL of an instance: its leases still count, then expire within one lease; SIGTERM:
#      the leases of connections its drain left open go as it exits
#   5  Redis stopped and started again, with on_error = "open" and then "closed"
# Then (unless --no-measure) it measures, through HAProxy: handshake latency at concurrency 1
# and the sustained handshake rate at concurrency 32, shared tier on and off; Redis memory
# per client IP holding one connection. Results: a table, and target/fleet/results.json.
#
# Everything it starts (redis-server, wsguard-echo, two wsguard, HAProxy) runs under
# target/fleet/ (configurations and logs) on ports probed free, and is stopped on any exit.
# Installs redis-server and haproxy with apt-get if missing; Python websockets in the venv
# target/fleet-venv. Takes about a minute after the build.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT=target/fleet
VENV=target/fleet-venv
WEBSOCKETS_VERSION=17.4
BIN="${CARGO_TARGET_DIR:-target}/release"

measure=1
while (($#)); do
    case "$1" in
        --no-measure) measure=0 ;;
        -h | --help) sed -n '2,/^set /p' "$0" | sed -n 's/^# \{0,1\}//p'; exit 0 ;;
        *) echo "fleet-test.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

# --- tools ------------------------------------------------------------------------
missing=()
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || missing+=(redis-server)
command -v haproxy >/dev/null || missing+=(haproxy)
if ((${#missing[@]})); then
    scripts/apt-install.sh "${missing[@]}"
fi

have=""
if [[ -x $VENV/bin/python ]]; then
    have=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("websockets"))' 2>/dev/null || true)
fi
if [[ $have != "$WEBSOCKETS_VERSION" ]]; then
    echo "==> installing websockets==$WEBSOCKETS_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "websockets==$WEBSOCKETS_VERSION"
fi

# --- build --------------------------------------------------------------------------
bins=(wsguard wsguard-echo)
((measure)) && bins+=(wsguard-bench)  # the load generator, only for the measurements
echo "==> cargo build --release --locked (${bins[*]})"
cargo build --release --locked --quiet -p wsguard --bins
((measure)) && cargo build --release --locked --quiet -p wsguard-bench
for bin in "${bins[@]}"; do
    [[ -x $BIN/$bin ]] || { echo "fleet-test.sh: $BIN/$bin not built" >&2; exit 1; }
done

rm -rf "$OUT"
mkdir -p "$OUT"

# --- the driver: starts and stops the fleet, runs the checks and the measurements ----
# It stops what it started on any exit of its own. It runs in a process group of its own,
# with everything it starts: the trap below ends that group, whatever became of the driver.
driver=""
stop_driver() {
    if [[ -n $driver ]]; then
        kill -TERM -- "-$driver" 2>/dev/null || true
        wait "$driver" 2>/dev/null || true
        # A driver killed outright left its children behind: they are in the group still.
        kill -KILL -- "-$driver" 2>/dev/null || true
    fi
}
trap stop_driver EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cat >"$OUT/driver.py" <<'PY'
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

OUT, BIN, TEMPLATE, MEASURE = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"

# The quotas of the checks: small, so a handful of clients reach them.
CAP = 4  # connections_per_ip
RATE = 60  # handshakes_per_ip, per minute: one a second
BURST = 5  # handshake_burst
LEASE = 3.0  # [limits.shared] lease, seconds (the shortest allowed)
# The measurements: quotas no client reaches, so every handshake asks Redis and passes.
HUGE = 1_000_000
WAIT = 10.0  # bound of every wait for a state change
HOLD = 5000  # client IPs holding one connection each, for Redis memory per IP
ROUNDS = 3  # of the latency and rate measurements, shared tier on and off in turn

failures = []


def check(name, ok, detail=""):
    print(f"{'PASS' if ok else 'FAIL'}  {name}" + (f" ({detail})" if detail else ""), flush=True)
    if not ok:
        failures.append(name)
    return ok


def note(text):
    print(f"      {text}", flush=True)


class Abort(Exception):
    """A step the later ones depend on failed."""


def require(name, ok, detail=""):
    if not check(name, ok, detail):
        raise Abort(name)


# --- processes -------------------------------------------------------------------------

children = []


def spawn(argv, log, **kw):
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("stdout", log)
    p = subprocess.Popen(argv, stderr=log, **kw)
    children.append(p)
    return p


def stop(p, wait=5.0):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(wait)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(wait)


async def wait_until(what, cond, timeout=WAIT, every=0.05):
    """Polls cond() until it is true; returns the seconds it took. Raises Abort after timeout."""
    t0 = time.monotonic()
    while True:
        if cond():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise Abort(f"{what}: not within {timeout:.0f}s")
        await asyncio.sleep(every)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_get(port, path):
    """(status, body) of GET http://127.0.0.1:port/path; (0, error) if it failed."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError as e:
        return 0, str(e)


# --- Redis -------------------------------------------------------------------------------

REDIS_PORT = free_port()
redis_proc = None
redis_lives = 0


def redis(*args):
    r = subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "--raw", *map(str, args)],
                       capture_output=True, text=True, timeout=5)
    return r.stdout.strip()


async def redis_start():
    global redis_proc, redis_lives
    redis_lives += 1
    log = open(f"{OUT}/redis.{redis_lives}.log", "wb")
    redis_proc = spawn(["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1",
                        "--save", "", "--appendonly", "no", "--dir", OUT], log)
    await wait_until("redis answers PING", lambda: redis_proc.poll() is None and redis("PING") == "PONG")


def redis_stop():
    redis("SHUTDOWN", "NOSAVE")
    try:
        redis_proc.wait(WAIT)
    except subprocess.TimeoutExpired:
        stop(redis_proc)


# Leases of a connection set that have not expired, on the Redis server's clock.
LIVE_LEASES = ("local t = redis.call('TIME') "
               "return redis.call('ZCOUNT', KEYS[1], '(' .. (t[1] * 1000000 + t[2]), '+inf')")


def live_leases(ip):
    return int(redis("EVAL", LIVE_LEASES, 1, f"wsguard:{{{ip}}}:c") or 0)


# --- the backend, the instances, HAProxy ------------------------------------------------

BACKEND_PORT = None  # wsguard-echo's, once it listens


async def start_echo():
    log = open(f"{OUT}/echo.log", "wb")
    p = spawn([f"{BIN}/wsguard-echo", "--listen", "127.0.0.1:0"], log)
    found = []

    def listening():
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", open(f"{OUT}/echo.log").read())
        found[:] = [int(m.group(1))] if m else []
        if p.poll() is not None:
            raise Abort("wsguard-echo exited")
        return bool(found)

    await wait_until("wsguard-echo listening", listening)
    return found[0]


class Instance:
    def __init__(self, name):
        self.name = name
        self.port = free_port()
        self.admin = free_port()
        self.proc = None
        self.lives = 0
        self.log = None

    async def start(self, shared=True, on_error="open", cap=CAP, rate=RATE, burst=BURST, lease=LEASE):
        self.lives += 1
        values = {
            "LISTEN_PORT": self.port, "ADMIN_PORT": self.admin, "BACKEND_PORT": BACKEND_PORT,
            "REDIS_PORT": REDIS_PORT, "CONNECTIONS_PER_IP": cap, "HANDSHAKES_PER_IP": rate,
            "HANDSHAKE_BURST": burst, "ON_ERROR": on_error, "LEASE": f"{lease:g}s",
        }
        text = open(TEMPLATE).read()
        if not shared:
            text = text[: text.index("\n[limits.shared]\n") + 1]
        text = re.sub(r"@([A-Z_]+)@", lambda m: str(values[m.group(1)]), text)
        stem = f"{OUT}/wsguard-{self.name}.{self.lives}"
        with open(f"{stem}.toml", "w") as f:
            f.write(text)
        self.log = f"{stem}.log"
        self.proc = spawn([f"{BIN}/wsguard", "--config", f"{stem}.toml", "--log-format", "json"],
                          open(self.log, "wb"))

        def ready():
            if self.proc.poll() is not None:
                raise Abort(f"wsguard {self.name} exited (see {self.log})")
            listening = any(l.get("message") == "wsguard listening" for l in self.lines())
            return listening and http_get(self.admin, "/healthz")[0] == 200

        await wait_until(f"wsguard {self.name} listening", ready)

    def stop(self):
        stop(self.proc)

    def lines(self):
        out = []
        for line in open(self.log):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def metrics(self):
        status, body = http_get(self.admin, "/metrics")
        if status != 200:
            raise Abort(f"wsguard {self.name}: /metrics answered {status} {body}")
        return parse_metrics(body)


def parse_metrics(text):
    out = []
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if m:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out.append((m.group(1), labels, float(m.group(3))))
    return out


def metric(samples, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == w for k, w in labels.items()))


def fleet_metric(name, **labels):
    return sum(metric(i.metrics(), name, **labels) for i in instances)


instances = [Instance("a"), Instance("b")]
FRONT_PORT = free_port()
HAPROXY_SOCK = f"{OUT}/haproxy.sock"


async def start_haproxy():
    # Strict turns, which the checks rely on to put a client's connections on both instances:
    # roundrobin's dynamic weights gave an instance back from a SIGKILL seven connections in a
    # row. Health checks ask each instance's /healthz (503 while it drains); a connection
    # that finds its server dead is retried on the other one.
    servers = "\n".join(
        f"    server {i.name} 127.0.0.1:{i.port} send-proxy-v2 check port {i.admin} inter 250ms fall 1 rise 1"
        for i in instances)
    cfg = f"""global
    maxconn 8000
    stats socket {os.path.abspath(HAPROXY_SOCK)} level admin

defaults
    mode tcp
    maxconn 8000
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    timeout check 1s
    retries 3
    option redispatch 1

frontend fleet
    bind 127.0.0.1:{FRONT_PORT}
    default_backend wsguard

backend wsguard
    balance static-rr
    option httpchk GET /healthz
    http-check expect status 200
{servers}
"""
    with open(f"{OUT}/haproxy.cfg", "w") as f:
        f.write(cfg)
    p = spawn(["haproxy", "-db", "-f", f"{OUT}/haproxy.cfg"], open(f"{OUT}/haproxy.log", "wb"))
    await wait_until("HAProxy listening", lambda: p.poll() is None and accepts(FRONT_PORT))
    return p


def haproxy_up():
    """Names of the servers HAProxy has up."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(HAPROXY_SOCK)
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return set()
    rows = data.decode().splitlines()
    if not rows:
        return set()
    head = rows[0].lstrip("# ").split(",")
    up = set()
    for row in rows[1:]:
        cols = dict(zip(head, row.split(",")))
        if cols.get("pxname") == "wsguard" and cols.get("status", "").startswith("UP"):
            up.add(cols.get("svname"))
    return up


async def wait_fleet_up():
    await wait_until("HAProxy sees both instances up", lambda: haproxy_up() >= {"a", "b"})


async def restart_fleet(**config):
    for i in instances:
        i.stop()
    for i in instances:
        await i.start(**config)
    await wait_fleet_up()


# --- clients -------------------------------------------------------------------------------

async def attempt(ip):
    """One WebSocket handshake through HAProxy from source address `ip`: (status, detail,
    connection). 101 comes with the open connection; a refusal's detail is its Retry-After;
    status 0 is a connection that failed without an HTTP answer, its detail the error."""
    loop = asyncio.get_running_loop()
    s = socket.socket()
    s.setblocking(False)
    try:
        s.bind((ip, 0))
        async with asyncio.timeout(5):
            await loop.sock_connect(s, ("127.0.0.1", FRONT_PORT))
        ws = await connect(f"ws://127.0.0.1:{FRONT_PORT}/", sock=s, open_timeout=5,
                           close_timeout=2, ping_interval=None, compression=None, proxy=None)
        return 101, None, ws
    except InvalidStatus as e:
        s.close()
        return e.response.status_code, e.response.headers.get("Retry-After"), None
    except Exception as e:  # refused, reset, timed out: no HTTP answer
        s.close()
        return 0, str(e) or type(e).__name__, None


async def open_held(ip, n):
    held = []
    for _ in range(n):
        status, detail, ws = await attempt(ip)
        if status != 101:
            await close_all(held)
            raise Abort(f"{ip}: connection {len(held) + 1} of {n} answered {status} {detail or ''}")
        held.append(ws)
    return held


async def close_all(held):
    for ws in held:
        await ws.close()


async def handshake(ip):
    """Open, one echoed message, close: the status (-1: the echo failed) and the detail of
    attempt()."""
    status, detail, ws = await attempt(ip)
    if ws is None:
        return status, detail
    try:
        await ws.send("ping through the fleet")
        async with asyncio.timeout(5):
            echoed = await ws.recv()
    except Exception:
        echoed = None
    await ws.close()
    return (status if echoed == "ping through the fleet" else -1), None


class HealthzWatch:
    """Asks every instance's /healthz every 100 ms while it runs; counts what was not 200."""

    def __init__(self):
        self.asked = 0
        self.bad = []

    async def run(self):
        while True:
            for i in instances:
                status, _ = http_get(i.admin, "/healthz")
                self.asked += 1
                if status != 200:
                    self.bad.append((i.name, status))
            await asyncio.sleep(0.1)

    async def __aenter__(self):
        self.task = asyncio.create_task(self.run())
        return self

    async def __aexit__(self, *_):
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass


def leases_of_each():
    return [metric(i.metrics(), "wsguard_shared_leases") for i in instances]


def transitions(inst):
    msgs = [l.get("message", "") for l in inst.lines()]
    return (sum(m.startswith("shared store unavailable") for m in msgs),
            sum(m.startswith("shared store answers again") for m in msgs))


# --- the checks ------------------------------------------------------------------------------

results = {}


async def check_connection_cap():
    ip = "127.0.0.2"
    held = await open_held(ip, CAP)
    leases = leases_of_each()
    check(f"1 {CAP} connections of {ip} through HAProxy landed on both instances",
          all(n > 0 for n in leases), f"leases a={leases[0]:g} b={leases[1]:g}")
    refused = fleet_metric("wsguard_handshakes_refused_total", reason="shared_ip_connections")
    status, _, ws = await attempt(ip)
    if ws:
        held.append(ws)
    refused = fleet_metric("wsguard_handshakes_refused_total", reason="shared_ip_connections") - refused
    check(f"1 connection {CAP + 1} of {ip} is refused by the fleet-wide cap",
          status == 429 and refused == 1, f"status {status}, shared_ip_connections +{refused:g}")
    status, _ = await handshake("127.0.0.3")
    check("1 another client IP (127.0.0.3) still connects, and its messages echo", status == 101,
          f"status {status}")
    await close_all(held)


async def check_handshake_quota():
    ip = "127.0.0.4"
    allowed = [metric(i.metrics(), "wsguard_shared_decisions_total", outcome="allowed") for i in instances]
    statuses = [(await handshake(ip))[0] for _ in range(BURST)]
    status, retry_after = await handshake(ip)
    after = [metric(i.metrics(), "wsguard_shared_decisions_total", outcome="allowed") for i in instances]
    each = [b - a for a, b in zip(allowed, after)]
    limited = fleet_metric("wsguard_rate_limited_total", reason="shared_ip_handshake_rate")
    check(f"2 {BURST} handshakes (open, echo, close) of {ip} pass", statuses == [101] * BURST,
          f"statuses {statuses}")
    check(f"2 handshake {BURST + 1} of {ip} is refused by the fleet-wide quota, with Retry-After",
          status == 429 and retry_after is not None and int(retry_after) >= 1 and limited == 1,
          f"status {status}, Retry-After {retry_after}, shared_ip_handshake_rate {limited:g}")
    check(f"2 each instance alone saw fewer than handshake_burst = {BURST}",
          sum(each) == BURST and all(0 < n < BURST for n in each),
          f"allowed a={each[0]:g} b={each[1]:g}")


def check_logged_clients():
    lines = [l for i in instances for l in i.lines()]
    clients = {l["client"] for l in lines if "client" in l}
    closed = [l for l in lines if l.get("message") == "connection closed"]
    peers = {l.get("peer", "").rsplit(":", 1)[0] for l in closed}
    refusal = [l for l in lines if l.get("client") == "127.0.0.2" and l.get("status") == 429]
    check("3 log lines name the clients from the PROXY header (client=127.0.0.2, .3, .4), never HAProxy",
          {"127.0.0.2", "127.0.0.3", "127.0.0.4"} <= clients and "127.0.0.1" not in clients,
          f"clients {sorted(clients)}")
    check("3 closed connections keep the TCP peer (HAProxy, 127.0.0.1) in peer=",
          bool(closed) and peers == {"127.0.0.1"}, f"peers {sorted(peers)}")
    check("3 the refusal line carries client=127.0.0.2 and rule=shared_ip_connections",
          len(refusal) == 1 and refusal[0].get("rule") == "shared_ip_connections",
          f"{len(refusal)} line(s)")


async def check_sigkill():
    ip = "127.0.0.8"
    victim, survivor = instances
    held = await open_held(ip, CAP)
    leases = leases_of_each()
    require(f"4 {ip} holds {CAP} connections, on both instances", all(n > 0 for n in leases),
            f"leases a={leases[0]:g} b={leases[1]:g}")
    killed = time.monotonic()
    victim.proc.kill()
    victim.proc.wait(WAIT)
    status, _, ws = await attempt(ip)
    if ws:
        held.append(ws)
    check(f"4 just after kill -9 of {victim.name}, {ip} is still at the cap (its dead leases count)",
          status == 429, f"status {status}, {live_leases(ip)} live leases")
    # Redis says when a slot is free; the handshake then must pass (on the survivor).
    recovered = None
    deadline = killed + LEASE + LEASE / 3 + 2
    while time.monotonic() < deadline:
        if live_leases(ip) < CAP:
            status, _, ws = await attempt(ip)
            if ws:
                recovered = time.monotonic() - killed
                held.append(ws)
                break
        await asyncio.sleep(0.1)
    results["sigkill_recovery_s"] = recovered
    # A lease expires at most LEASE after its last renewal, which is at most LEASE / 3 old.
    check(f"4 within one lease ({LEASE:g}s) a new connection of {ip} succeeds through {survivor.name}",
          recovered is not None and LEASE * 2 / 3 - 0.5 <= recovered <= LEASE + 1,
          f"recovered after {recovered:.2f}s" if recovered else "not recovered")
    await close_all(held)
    await victim.start()
    await wait_fleet_up()


async def check_sigterm():
    ip = "127.0.0.9"
    leaving, staying = instances[1], instances[0]
    held = await open_held(ip, CAP)
    leases = leases_of_each()
    require(f"4 {ip} holds {CAP} connections, on both instances", all(n > 0 for n in leases),
            f"leases a={leases[0]:g} b={leases[1]:g}")
    # This blocks the client's event loop: its connections on the leaving instance never answer
    # the close frames, so the drain ends at shutdown_timeout with them open, and only the
    # instance's last act (removing all its leases) frees their slots.
    leaving.stop()
    left = live_leases(ip)
    timed_out = any(l.get("message", "").startswith("shutdown_timeout passed") for l in leaving.lines())
    status, _, ws = await attempt(ip)
    if ws:
        held.append(ws)
    check(f"4 SIGTERM to {leaving.name}, whose drain times out: its leases are removed as it exits, and "
          f"{ip} connects through {staying.name} at once", timed_out and status == 101 and left == leases[0],
          f"{left} live leases after the drain, status {status}")
    await close_all(held)
    await leaving.start()
    await wait_fleet_up()


async def check_store_outage_open():
    async with HealthzWatch() as watch:
        await store_outage_open()
    check("5 /healthz answered 200 throughout (open)", watch.asked > 0 and not watch.bad,
          f"{watch.asked} asked, not 200: {watch.bad[:3]}")


async def store_outage_open():
    redis_stop()
    statuses = [(await handshake("127.0.0.5"))[0] for _ in range(3)]
    held = await open_held("127.0.0.6", CAP)
    check('5 Redis stopped, on_error = "open": handshakes pass', statuses == [101] * 3,
          f"statuses {statuses}, then {CAP} held")
    await wait_until("both instances see the store down",
                     lambda: all(metric(i.metrics(), "wsguard_shared_store_up") == 0 for i in instances))
    opened = fleet_metric("wsguard_shared_decisions_total", outcome="error_open")
    errors = [metric(i.metrics(), "wsguard_shared_store_errors_total") for i in instances]
    check('5 wsguard_shared_store_up = 0, errors counted, decisions "error_open"',
          opened >= 3 + CAP and all(e > 0 for e in errors),
          f"error_open {opened:g}, store errors a={errors[0]:g} b={errors[1]:g}")
    await redis_start()
    back = await wait_until("both instances see the store up again",
                            lambda: all(metric(i.metrics(), "wsguard_shared_store_up") == 1 for i in instances))
    rewritten = await wait_until("the held leases are written back", lambda: live_leases("127.0.0.6") == CAP)
    status, _, ws = await attempt("127.0.0.6")
    if ws:
        held.append(ws)
    results["store_back_open_s"] = back
    check(f"5 Redis back: store up after {back:.2f}s, the {CAP} leases held meanwhile written back, "
          "and the fleet-wide cap applies again", status == 429,
          f"leases back {back + rewritten:.2f}s after the start, status {status}")
    counts = [transitions(i) for i in instances]
    check("5 one WARN line when the store went, one INFO line when it came back, per instance",
          all(c == (1, 1) for c in counts), f"a={counts[0]} b={counts[1]}")
    await close_all(held)


async def check_store_outage_closed():
    redis_stop()
    await restart_fleet(on_error="closed")
    async with HealthzWatch() as watch:
        await store_outage_closed()
    check("5 /healthz answered 200 throughout (closed)", watch.asked > 0 and not watch.bad,
          f"{watch.asked} asked, not 200: {watch.bad[:3]}")


async def store_outage_closed():
    answers = [await handshake("127.0.0.7") for _ in range(2)]
    closed = fleet_metric("wsguard_shared_decisions_total", outcome="error_closed")
    check('5 Redis stopped, on_error = "closed": 503 with Retry-After: 1',
          answers == [(503, "1")] * 2 and closed >= 2, f"answers {answers}, error_closed {closed:g}")
    await redis_start()
    t0 = time.monotonic()
    # Each try from an address of its own: a refused try still costs its IP a handshake.
    n = 0
    while True:
        n += 1
        status, _ = await handshake(f"127.0.1.{n}")
        if status == 101 or time.monotonic() - t0 > WAIT:
            break
        await asyncio.sleep(0.1)
    first = time.monotonic() - t0
    # Each instance finds the store back on its own probe, a second apart at most.
    both = await wait_until("both instances see the store up again",
                            lambda: all(metric(i.metrics(), "wsguard_shared_store_up") == 1 for i in instances))
    results["store_back_closed_s"] = first
    passing = [(await handshake(f"127.0.2.{k}"))[0] for k in range(1, 3)]
    check(f"5 Redis back: a handshake passes after {first:.2f}s, then on both instances",
          status == 101 and passing == [101, 101], f"both up {first + both:.2f}s after the start, then {passing}")
    held = await open_held("127.0.0.7", CAP)
    status, _, ws = await attempt("127.0.0.7")
    if ws:
        held.append(ws)
    check("5 and the fleet-wide cap applies again", status == 429, f"status {status}")
    await close_all(held)


# --- measurements ------------------------------------------------------------------------------

benches = []  # wsguard-bench runs, asyncio's children


async def bench(*args, hold=False):
    argv = [f"{BIN}/wsguard-bench", "handshakes", "--url", f"ws://127.0.0.1:{FRONT_PORT}/", *map(str, args)]
    log = open(f"{OUT}/bench.log", "ab")
    p = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.PIPE if hold else subprocess.DEVNULL,
                                             stdout=subprocess.PIPE, stderr=log)
    benches.append(p)
    return p


async def bench_line(p):
    async with asyncio.timeout(60):
        line = await p.stdout.readline()
    return json.loads(line) if line else {}


def store_round_trips():
    """Admission round trips so far, both instances: (count, seconds)."""
    return (fleet_metric("wsguard_shared_store_duration_seconds_count"),
            fleet_metric("wsguard_shared_store_duration_seconds_sum"))


async def cycle(conns, warmup, duration, sources):
    pids = ",".join(str(i.proc.pid) for i in instances)
    trips = store_round_trips()
    p = await bench("--conns", conns, "--warmup", warmup, "--duration", duration, "--source", "127.1.0.1",
                    "--sources", sources, "--pid", pids, "--store-pid", redis_proc.pid)
    v = await bench_line(p)
    async with asyncio.timeout(30):
        await p.wait()
    n, secs = (b - a for a, b in zip(trips, store_round_trips()))
    # Warm-up included: the mean of every admission of the run.
    v["store_round_trip_us_mean"] = secs / n * 1e6 if n else None
    return v


# What the table shows, per run: the median over the rounds.
SUMMARY = {
    "latency_p50_us": lambda r: r["latency"]["latency_us"]["p50"],
    "latency_p99_us": lambda r: r["latency"]["latency_us"]["p99"],
    "handshakes_per_s": lambda r: r["rate"]["per_second"],
    "loaded_latency_p50_us": lambda r: r["rate"]["latency_us"]["p50"],
    "loaded_latency_p99_us": lambda r: r["rate"]["latency_us"]["p99"],
    "wsguard_cpu_us_per_handshake": lambda r: r["rate"]["proxy_cpu_us_per_handshake"],
    "redis_cpu_us_per_handshake": lambda r: r["rate"]["store_cpu_us_per_handshake"],
    "admission_round_trip_us_mean": lambda r: r["rate"]["store_round_trip_us_mean"],
}


async def measure_latency_and_rate():
    """Shared tier on and off, in turn, ROUNDS times: the machine's other load drifts, and
    both see the same drift."""
    runs = {"shared_on": [], "shared_off": []}
    for _ in range(ROUNDS):
        for shared in (True, False):
            await restart_fleet(shared=shared, cap=HUGE, rate=HUGE, burst=HUGE, lease=30)
            light = await cycle(1, 0.5, 2, 250)
            loaded = await cycle(32, 1, 3, 1000)
            runs["shared_on" if shared else "shared_off"].append({"latency": light, "rate": loaded})
    for name, rounds in runs.items():
        bad = [r[k]["first_error"] for r in rounds for k in ("latency", "rate") if r[k].get("errors", 1)]
        done = sum(r[k].get("handshakes", 0) for r in rounds for k in ("latency", "rate"))
        check(f"6 {name.replace('_', ' ')}: {done} handshakes in {ROUNDS} rounds, none refused or failed",
              not bad and done > 0, bad[0] if bad else "")
        median = {}
        for key, get in SUMMARY.items():
            values = sorted(v for v in (get(r) for r in rounds) if v is not None)
            median[key] = values[len(values) // 2] if values else None
        results[name] = {"median": median, "rounds": rounds}


async def measure_memory():
    # Each IP makes one handshake a minute: its GCRA key lives a minute, its lease as long
    # as its connection.
    await restart_fleet(cap=1, rate=1, burst=1, lease=60)
    redis("FLUSHALL")
    before = int(redis("INFO", "memory").split("used_memory:")[1].split()[0])
    p = await bench("--hold", HOLD, "--conns", 64, "--source", "127.2.0.1", "--sources", HOLD, "--hold-max", 60,
                    hold=True)
    v = await bench_line(p)
    opened = v.get("opened", 0)
    after = int(redis("INFO", "memory").split("used_memory:")[1].split()[0])
    keys = int(redis("DBSIZE"))
    c_bytes = int(redis("MEMORY", "USAGE", "wsguard:{127.2.0.1}:c") or 0)
    h_bytes = int(redis("MEMORY", "USAGE", "wsguard:{127.2.0.1}:h") or 0)
    p.stdin.close()
    async with asyncio.timeout(30):
        await p.wait()
    memory = {
        "client_ips": opened, "keys": keys, "used_memory_before": before, "used_memory_after": after,
        "bytes_per_ip": (after - before) / opened if opened else None,
        "memory_usage_c": c_bytes, "memory_usage_h": h_bytes,
    }
    check(f"6 Redis memory: {opened} client IPs holding one connection each, two keys each",
          opened == HOLD and keys == 2 * HOLD, f"{keys} keys")
    return memory


def table(r):
    on, off = r["shared_on"]["median"], r["shared_off"]["median"]

    def ms(key):
        return lambda x: f"{x[key] / 1000:.2f} ms"

    def us(key):
        return lambda x: "-" if x[key] is None else f"{x[key]:.0f} µs"

    rows = [
        ("handshake latency p50, concurrency 1", ms("latency_p50_us")),
        ("handshake latency p99, concurrency 1", ms("latency_p99_us")),
        ("handshakes/s, concurrency 32", lambda x: f"{x['handshakes_per_s']:.0f}"),
        ("  latency p50 at that rate", ms("loaded_latency_p50_us")),
        ("  latency p99 at that rate", ms("loaded_latency_p99_us")),
        ("  wsguard CPU per handshake (both)", us("wsguard_cpu_us_per_handshake")),
        ("  Redis CPU per handshake", us("redis_cpu_us_per_handshake")),
        ("  admission round trip, mean", us("admission_round_trip_us_mean")),
    ]
    print(f"\n| {f'median of {ROUNDS} rounds, through HAProxy':<38} | {'shared on':>12} | {'shared off':>12} |")
    print(f"|{'-' * 40}|{'-' * 14}|{'-' * 14}|")
    for name, f in rows:
        print(f"| {name:<38} | {f(on):>12} | {f(off):>12} |")
    m = r["redis_memory"]
    if m["bytes_per_ip"] is not None:
        print(f"\nRedis memory per client IP holding one connection: {m['bytes_per_ip']:.0f} bytes "
              f"(used_memory +{m['used_memory_after'] - m['used_memory_before']} for {m['client_ips']} IPs); "
              f"MEMORY USAGE of one :c key {m['memory_usage_c']} bytes, of one :h key {m['memory_usage_h']} bytes")
    print(f"SIGKILL: a connection passes again {r['sigkill_recovery_s']:.2f}s after the kill (lease {LEASE:g}s)")
    print(f"Redis restarted: store up again after {r['store_back_open_s']:.2f}s (open), "
          f"handshakes pass again after {r['store_back_closed_s']:.2f}s (closed)")
    print(f"load average {' '.join(r['machine']['loadavg'])} on {r['machine']['cpus']} CPUs")


async def main():
    global BACKEND_PORT
    BACKEND_PORT = await start_echo()
    await redis_start()
    for i in instances:
        await i.start()
    await start_haproxy()
    await wait_fleet_up()
    note(f"redis :{REDIS_PORT}, echo :{BACKEND_PORT}, wsguard a :{instances[0].port} b :{instances[1].port}, "
         f"HAProxy :{FRONT_PORT}; connections_per_ip={CAP} handshakes_per_ip={RATE} "
         f"handshake_burst={BURST} lease={LEASE:g}s")
    steps = [check_connection_cap, check_handshake_quota, check_logged_clients, check_sigkill,
             check_sigterm, check_store_outage_open, check_store_outage_closed]
    for step in steps:
        try:
            r = step()
            if asyncio.iscoroutine(r):
                await r
        except Abort as e:
            check(f"{step.__name__}: {e}", False)
            return
        except Exception as e:
            check(f"{step.__name__}: {type(e).__name__}: {e}", False)
            raise
    if not MEASURE:
        return
    try:
        await measure_latency_and_rate()
        results["redis_memory"] = await measure_memory()
    except Abort as e:
        check(f"measurements: {e}", False)
        return
    results["machine"] = {"cpus": os.cpu_count(), "loadavg": open("/proc/loadavg").read().split()[:3]}
    with open(f"{OUT}/results.json", "w") as f:
        json.dump(results, f, indent=2)
    table(results)


async def run():
    """main(), cancelled by SIGTERM; the load generator stopped either way."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    try:
        await main()
    finally:
        for p in benches:
            if p.returncode is None:
                p.kill()
                await p.wait()


try:
    asyncio.run(run())
except asyncio.CancelledError:
    print(f"\n==> fleet test stopped by SIGTERM; logs in {OUT}/", flush=True)
    sys.exit(143)
finally:
    for p in reversed(children):
        stop(p)
if failures:
    print(f"\n==> fleet test FAILED: {len(failures)} check(s); logs in {OUT}/", flush=True)
    sys.exit(1)
print(f"\n==> fleet test OK; logs in {OUT}/", flush=True)
PY

# In the background and `wait`, so a signal to this script is handled at once; setsid
# makes the driver's process id its group's.
setsid "$VENV/bin/python" "$OUT/driver.py" "$OUT" "$BIN" config/fleet.toml "$measure" &
driver=$!
status=0
wait "$driver" || status=$?
stop_driver
driver=""
exit "$status"
