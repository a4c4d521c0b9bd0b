#!/usr/bin/env bash
# wsguard side by side with nginx and HAProxy, on loopback.
#
# usage: scripts/bench.sh [--duration S] [--warmup S] [--idle N] [--churn-rate R]
#                         [--soak-conns N] [--soak-duration S] [--peers "LIST"] [--scenarios "LIST"]
#
#   --duration S       seconds measured per scenario but the soak (default 10)
#   --warmup S         seconds of load before each measurement (default 2)
#   --idle N           connections in the idle scenarios (default 5000)
#   --churn-rate R     new connections per second in the churn scenarios (default 500)
#   --soak-conns N     connections in the soak (default 8000)
#   --soak-duration S  seconds measured in the soak (default 60)
#   --peers LIST       any of: direct nginx nginx-64k haproxy wsguard wsguard-nib (default: all, in
#                      that order); wsguard-nib is wsguard with [deflate] inspect_backend = false
#   --scenarios LIST   any of: idle idle-tls idle-deflate bin64 bin64-tls bin16k text16k rate128
#                      rate128-tls churn churn-full soak chat1k chat1k-plain chat1k-rate
#                      (default: all)
#
# Installs nginx and haproxy with apt-get if they are missing, builds the release binaries,
# then for each scenario, each peer in turn (their order rotating from one scenario to the
# next): starts it (configs written to a temp dir), runs the scenario with
# target/release/wsguard-bench, stops it. Each proxy is pinned to CPU 1 and runs one
# worker (nginx worker_processes 1, HAProxy nbthread 1, wsguard TOKIO_WORKER_THREADS=1);
# the load generator and the echo backend (wsguard-echo --mode strict) share CPU 0.
# CPU is utime+stime of all the proxy's processes over the measurement window only.
# The permessage-deflate scenarios (chat1k: 1 KiB JSON chat messages, pre-compressed; idle-deflate:
# idle with the offer) use wsguard-echo --mode lenient, which echoes compressed frames as they came;
# nginx and HAProxy pass them through blind, wsguard inflates them to inspect. chat1k-plain is chat1k
# without the offer; chat1k-rate paces the compressed chat at 5,000 msgs/s over 200 connections.
# idle-tls is idle over wss://. churn opens new wss:// connections at the churn rate, open loop
# (at most 1000 in flight; more count as failed), each: TLS 1.3 handshake, upgrade, one echo,
# close frames both ways, TCP close; the client keeps one TLS session store (resumption, as a
# browser); churn-full resumes nothing. soak holds --soak-conns wss:// connections, each sending
# one 128 B message a second (spread evenly), counts lost, reordered and corrupt echoes and
# samples the proxy's RSS every second. The direct peer runs none of the wss:// scenarios.
#
# The open-file limit is raised to its hard limit: the proxy holds two sockets per soak or idle
# connection, the load generator and the echo backend one each.
#
# Writes target/bench/results-<time>.jsonl (one JSON line per run; results.jsonl is the
# latest), target/bench/table.md (ending with the target verdicts), and the RTT plot
# docs/bench-latency.png.
# With the defaults a whole run took about 21 minutes peer by peer; the rotation starts each
# proxy once per scenario, and ten scenarios on four peers took 13 minutes. Numbers are only
# comparable on a quiet machine: the load average is printed before and after.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=10
WARMUP=2
IDLE=5000
CHURN_RATE=500
SOAK_CONNS=8000
SOAK_DURATION=60
PEERS="direct nginx nginx-64k haproxy wsguard wsguard-nib"
SCENARIOS="idle idle-tls idle-deflate bin64 bin64-tls bin16k text16k rate128 rate128-tls churn churn-full soak chat1k chat1k-plain chat1k-rate"
while (($#)); do
    case "$1" in
        --duration) DURATION=$2; shift ;;
        --warmup) WARMUP=$2; shift ;;
        --idle) IDLE=$2; shift ;;
        --churn-rate) CHURN_RATE=$2; shift ;;
        --soak-conns) SOAK_CONNS=$2; shift ;;
        --soak-duration) SOAK_DURATION=$2; shift ;;
        --peers) PEERS=$2; shift ;;
        --scenarios) SCENARIOS=$2; shift ;;
        -h | --help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

# Ports on 127.0.0.1; away from the demo (8080, 8443, 9000) and conformance (9001, 9002).
BACKEND_PORT=19100
declare -A WS_PORT=([nginx]=19101 [nginx-64k]=19103 [haproxy]=19105 [wsguard]=19107 [wsguard-nib]=19109)
declare -A WSS_PORT=([nginx]=19102 [nginx-64k]=19104 [haproxy]=19106 [wsguard]=19108 [wsguard-nib]=19110)
PROXY_CPU=1
LOAD_CPU=0
# Churn connections in flight at once, at most: two seconds of the default rate; past that a
# proxy has stopped keeping up.
CHURN_INFLIGHT=1000

# --- open files ------------------------------------------------------------------
# Every process started from here inherits the limit. The proxy holds two sockets per
# connection (client and backend side), the load generator and the echo backend one.
NOFILE=$(ulimit -Hn)
[[ $NOFILE == unlimited ]] && NOFILE=1048576
ulimit -n "$NOFILE"
MAX_CONNS=$IDLE
((SOAK_CONNS > MAX_CONNS)) && MAX_CONNS=$SOAK_CONNS
((CHURN_INFLIGHT > MAX_CONNS)) && MAX_CONNS=$CHURN_INFLIGHT
# nginx counts both sides of a proxied connection, and more: with 2N + 1,000 a soak of
# 8,000 ran out ("worker_connections are not enough") at 7,973, so it gets 2N + 2,000.
# HAProxy counts client connections and sizes its own file limit to twice that and a bit.
NGINX_CONNS=$((2 * MAX_CONNS + 2000))
HAPROXY_MAXCONN=$((MAX_CONNS + 200))
if ((NGINX_CONNS > NOFILE)); then
    echo "bench.sh: $MAX_CONNS connections need $NGINX_CONNS open files in the proxy;" \
        "the hard limit is $NOFILE (lower --idle or --soak-conns)" >&2
    exit 1
fi

# --- tools ------------------------------------------------------------------
missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v haproxy >/dev/null || missing+=(haproxy)
if ((${#missing[@]})); then
    scripts/apt-install.sh "${missing[@]}"
fi
command -v taskset >/dev/null || { echo "bench.sh: taskset (util-linux) is required" >&2; exit 1; }

cargo build --release --quiet -p wsguard --bins
cargo build --release --quiet -p wsguard-bench
BIN="${CARGO_TARGET_DIR:-target}/release"
CERTS="$PWD/certs"
# The development CA and localhost certificate, made on this machine if missing.
"$BIN/wsguard" dev-certs --dir "$CERTS" >/dev/null

mkdir -p target/bench docs
stamp=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS="target/bench/results-$stamp.jsonl"
: >"$RESULTS"
TMP=$(mktemp -d /tmp/wsguard-bench.XXXXXX)
chmod 755 "$TMP"

# --- processes we start, stopped on any exit ---------------------------------
pids=()
stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
stop_all() {
    local pid
    for pid in "${pids[@]}"; do stop_pid "$pid"; done
    pids=()
    rm -rf "$TMP"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
    local i
    for ((i = 0; i < 100; i++)); do
        port_open "$1" && return 0
        sleep 0.1
    done
    echo "bench.sh: nothing listens on 127.0.0.1:$1 after 10 s (see $TMP)" >&2
    return 1
}
for p in "$BACKEND_PORT" "${WS_PORT[@]}" "${WSS_PORT[@]}"; do
    if port_open "$p"; then
        echo "bench.sh: 127.0.0.1:$p is already in use" >&2
        exit 1
    fi
done

# --- configs -------------------------------------------------------------------
# HAProxy wants certificate and key in one file; it holds the key, so only we may read it.
(umask 077 && cat "$CERTS/localhost.crt" "$CERTS/localhost.key" >"$TMP/localhost.pem")

nginx_conf() { # label, extra proxy directives
    local dir="$TMP/$1"
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $NOFILE;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $NGINX_CONNS; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    upstream echo { server 127.0.0.1:$BACKEND_PORT; }
    server {
        listen 127.0.0.1:${WS_PORT[$1]};
        listen 127.0.0.1:${WSS_PORT[$1]} ssl;
        ssl_certificate $CERTS/localhost.crt;
        ssl_certificate_key $CERTS/localhost.key;
        # nginx 1.22 leaves TLS 1.3 out by default; HAProxy and wsguard offer it, and churn
        # asks for nothing else.
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host \$host;
            proxy_buffering off;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
            $2
        }
    }
}
EOF
}
nginx_conf nginx ""
nginx_conf nginx-64k "proxy_buffer_size 64k; proxy_buffers 8 64k; proxy_busy_buffers_size 128k;"

mkdir -p "$TMP/haproxy"
cat >"$TMP/haproxy/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $HAPROXY_MAXCONN
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout tunnel 1h
frontend ws
    bind 127.0.0.1:${WS_PORT[haproxy]}
    bind 127.0.0.1:${WSS_PORT[haproxy]} ssl crt $TMP/localhost.pem
    default_backend echo
backend echo
    server echo 127.0.0.1:$BACKEND_PORT
EOF

# The full default policy: Origin allow-list, masking and strict mask-key rules, UTF-8,
# default caps (max_frame_size and max_message_size 1 MiB: room for 16 KiB messages),
# permessage-deflate inspected ([deflate] defaults). The rate quotas stay on (their cost is
# measured) with limits too high to trigger; the per-IP limits are off because every load
# connection comes from 127.0.0.1. wsguard-nib only adds [deflate] inspect_backend = false;
# its configs are written only when it runs, as older builds refuse the key.
wsguard_peers=wsguard
[[ " $PEERS " == *" wsguard-nib "* ]] && wsguard_peers+=" wsguard-nib"
for label in $wsguard_peers; do for tls in ws wss; do
    {
        echo "[server]"
        if [[ $tls == wss ]]; then
            echo "listen = \"127.0.0.1:${WSS_PORT[$label]}\""
            echo "tls_cert = \"$CERTS/localhost.crt\""
            echo "tls_key = \"$CERTS/localhost.key\""
        else
            echo "listen = \"127.0.0.1:${WS_PORT[$label]}\""
        fi
        echo
        echo "[origin]"
        echo 'allow = ["http://localhost"]'
        echo
        echo "[rate]"
        echo "messages_per_second = 100000000"
        echo "bytes_per_second = \"3 GiB\""
        echo "control_per_second = 100000000"
        echo
        echo "[limits]"
        echo "connections_per_ip = \"off\""
        echo "handshakes_per_ip = \"off\""
        echo
        if [[ $label == wsguard-nib ]]; then
            echo "[deflate]"
            echo "inspect_backend = false"
            echo
        fi
        echo "[[route]]"
        echo 'path = "/"'
        echo 'match = "prefix"'
        echo "backends = [\"127.0.0.1:$BACKEND_PORT\"]"
    } >"$TMP/$label-$tls.toml"
    "$BIN/wsguard" check --config "$TMP/$label-$tls.toml" >/dev/null 2>&1 ||
        "$BIN/wsguard" check --config "$TMP/$label-$tls.toml"
done; done

# --- running -------------------------------------------------------------------
PEER_PIDS=()   # all processes of the running proxy, per listener kind
declare -A LISTENER_PIDS

start_peer() {
    local label=$1 pid
    LISTENER_PIDS=()
    case "$label" in
        direct) return 0 ;;
        nginx | nginx-64k)
            taskset -c $PROXY_CPU nginx -p "$TMP/$label" -c "$TMP/$label/nginx.conf" \
                -e "$TMP/$label/error.log" -g 'daemon off;' &
            pid=$!
            pids+=("$pid")
            wait_port "${WS_PORT[$label]}"
            wait_port "${WSS_PORT[$label]}"
            local all
            all=$(echo "$pid" $(pgrep -P "$pid") | tr ' ' ',')
            LISTENER_PIDS=([ws]=$all [wss]=$all)
            ;;
        haproxy)
            taskset -c $PROXY_CPU haproxy -db -f "$TMP/haproxy/haproxy.cfg" 2>"$TMP/haproxy/stderr" &
            pid=$!
            pids+=("$pid")
            wait_port "${WS_PORT[$label]}"
            wait_port "${WSS_PORT[$label]}"
            LISTENER_PIDS=([ws]=$pid [wss]=$pid)
            ;;
        wsguard | wsguard-nib)
            local tls
            for tls in ws wss; do
                TOKIO_WORKER_THREADS=1 RUST_LOG=warn taskset -c $PROXY_CPU \
                    "$BIN/wsguard" --config "$TMP/$label-$tls.toml" 2>>"$TMP/wsguard.log" &
                pid=$!
                pids+=("$pid")
                LISTENER_PIDS[$tls]=$pid
            done
            wait_port "${WS_PORT[$label]}"
            wait_port "${WSS_PORT[$label]}"
            ;;
    esac
}

stop_peer() {
    local keep=() pid
    for pid in "${pids[@]}"; do
        if [[ $pid == "$BACKEND_PID" ]]; then keep+=("$pid"); else stop_pid "$pid"; fi
    done
    pids=("${keep[@]}")
}

# One scenario against one peer. Failures are recorded in the JSON and reported, not fatal.
scenario() {
    local label=$1 name=$2 url pid args=() duration=$DURATION
    local tls=ws
    [[ $name == *-tls || $name == churn* || $name == soak ]] && tls=wss
    if [[ $label == direct ]]; then
        [[ $tls == wss || $name == idle* ]] && return 0
        url="ws://127.0.0.1:$BACKEND_PORT/"
    else
        local port
        if [[ $tls == wss ]]; then port=${WSS_PORT[$label]}; else port=${WS_PORT[$label]}; fi
        url="$tls://localhost:$port/"
        args+=(--pid "${LISTENER_PIDS[$tls]}")
    fi
    case "$name" in
        idle) args+=(--mode idle -c "$IDLE" -s 128 --kind text) ;;
        idle-deflate) args+=(--mode idle -c "$IDLE" -s 128 --kind text --deflate) ;;
        idle-tls) args+=(--mode idle -c "$IDLE" -s 128 --kind text) ;;
        churn) args+=(--mode churn --rate "$CHURN_RATE" -c "$CHURN_INFLIGHT" -s 128 --kind text) ;;
        churn-full) args+=(--mode churn --rate "$CHURN_RATE" -c "$CHURN_INFLIGHT" -s 128 --kind text
            --no-resume) ;;
        soak)
            args+=(--mode soak -c "$SOAK_CONNS" -s 128 --kind text)
            duration=$SOAK_DURATION
            ;;
        bin64 | bin64-tls) args+=(--mode throughput -c 64 -w 16 -s 64 --kind binary) ;;
        bin16k) args+=(--mode throughput -c 16 -w 4 -s 16384 --kind binary) ;;
        text16k) args+=(--mode throughput -c 16 -w 4 -s 16384 --kind text) ;;
        rate128 | rate128-tls) args+=(--mode rate -c 200 --rate 20000 -s 128 --kind text) ;;
        chat1k) args+=(--mode throughput -c 64 -w 16 -s 1024 --kind chat --deflate) ;;
        chat1k-plain) args+=(--mode throughput -c 64 -w 16 -s 1024 --kind chat) ;;
        chat1k-rate) args+=(--mode rate -c 200 --rate 5000 -s 1024 --kind chat --deflate) ;;
        *) echo "bench.sh: unknown scenario $name" >&2; return 1 ;;
    esac
    use_backend "$(backend_mode "$name")"
    printf '  %-11s %-12s ' "$label" "$name"
    local line
    if line=$(taskset -c $LOAD_CPU "$BIN/wsguard-bench" run --label "$label" --scenario "$name" \
        --url "$url" --ca "$CERTS/ca.crt" --backend-pid "$BACKEND_PID" \
        --warmup "$WARMUP" --duration "$duration" --out "$RESULTS" "${args[@]}" 2>"$TMP/last.err"); then
        :
    else
        echo "(errors: $(tail -1 "$TMP/last.err"))"
    fi
    echo "$line" | sed -E 's/.*"completed":([0-9]+).*"cpu_us_per_conn":([0-9.]+).*"failed":([0-9]+).*/\1 conns, \3 failed, \2 µs\/conn/;
        s/.*"lost":([0-9]+).*"msgs_per_s":([0-9.]+).*/\2 msgs\/s, \1 lost/;
        s/.*"msgs_per_s":([0-9.]+).*/\1 msgs\/s/; s/.*"kib_per_conn_after_msg":([0-9.]+).*/\1 KiB\/conn/' |
        cut -c1-60
}

echo "wsguard bench $stamp: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

BACKEND_PID=
BACKEND_MODE=
# The echo backend for a scenario: lenient (echoes frames as they came, compressed ones too)
# for the permessage-deflate ones, strict for the rest.
backend_mode() {
    case "$1" in
        chat* | idle-deflate) echo lenient ;;
        *) echo strict ;;
    esac
}
# (Re)starts the backend in MODE on the same port; the proxies connect per client connection.
use_backend() {
    [[ $1 == "$BACKEND_MODE" ]] && return 0
    if [[ -n $BACKEND_PID ]]; then
        local keep=() pid
        for pid in "${pids[@]}"; do [[ $pid == "$BACKEND_PID" ]] || keep+=("$pid"); done
        pids=("${keep[@]}")
        stop_pid "$BACKEND_PID"
    fi
    TOKIO_WORKER_THREADS=1 taskset -c $LOAD_CPU "$BIN/wsguard-echo" --mode "$1" \
        --listen "127.0.0.1:$BACKEND_PORT" >/dev/null &
    BACKEND_PID=$!
    BACKEND_MODE=$1
    pids+=("$BACKEND_PID")
    wait_port "$BACKEND_PORT"
}

# Scenario by scenario, each peer in turn, the peers' order rotating by one from a scenario to
# the next. Run peer by peer, the first peer measured cheapest: nginx and nginx-64k, the same
# for 128 B messages, differed by 15-25% in CPU and RTT when nginx ran first and nginx-64k
# second, in two runs. Whatever drifts over a run now reaches every peer of a scenario
# alike. Each scenario gets a fresh proxy: memory freed by an earlier one stays in its
# allocator and would hide an idle scenario's cost.
read -ra peer_list <<<"$PEERS"
turn=0
for name in $SCENARIOS; do
    echo "$name:"
    for ((k = 0; k < ${#peer_list[@]}; k++)); do
        label=${peer_list[$(((turn + k) % ${#peer_list[@]}))]}
        start_peer "$label"
        scenario "$label" "$name"
        stop_peer
    done
    turn=$((turn + 1))
done

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
cp "$RESULTS" target/bench/results.jsonl
"$BIN/wsguard-bench" report "$RESULTS" --plot docs/bench-latency.png | tee target/bench/table.md
echo
echo "results: $RESULTS, table: target/bench/table.md, plot: docs/bench-latency.png"
