#!/usr/bin/env bash
# wsguard side by side with nginx and HAProxy, on loopback.
#
# usage: scripts/bench.sh [--duration S] [--warmup S] [--idle N] [--churn-rate R]
#                         [--soak-conns N] [--soak-duration S] [--sessions N] [--http-rate R]
#                         [--peers "LIST"] [--scenarios "LIST"]
#
#   --duration S       seconds measured per scenario but the soak (default 10)
#   --warmup S         seconds of load before each measurement (default 2)
#   --idle N           connections in the idle scenarios (default 5000)
#   --churn-rate R     new connections per second in the churn scenarios (default 500)
#   --soak-conns N     connections in the soak (default 8000)
#   --soak-duration S  seconds measured in the soak (default 60)
#   --sessions N       Engine.IO polling sessions in longpoll (default 2000)
#   --http-rate R      GETs per second in all in http-keepalive (default 10000)
#   --peers LIST       any of: direct nginx nginx-64k haproxy wsguard wsguard-nib (default: all, in
#                      that order); wsguard-nib is wsguard with [deflate] inspect_backend = false
#   --scenarios LIST   any of: idle idle-tls idle-deflate bin64 bin64-tls bin16k text16k rate128
#                      rate128-tls churn churn-full soak chat1k chat1k-plain chat1k-rate
#                      longpoll http-keepalive (default: all but longpoll)
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
# The HTTP half (longpoll, about 60 s, is not in the default list; name it with --scenarios):
# longpoll runs --sessions Engine.IO v4 polling sessions through each proxy to two backends
# (target/release/eio-backend, two processes on the load CPU; a session exists on one of them
# only), each session a held GET
# on one keep-alive connection and a POST a second on another, the message POSTed answering the
# held GET; its two connections come from one source address of its own (127.1.x.y, the third
# octet varying, as nginx's ip_hash keys on the first three). wsguard: framework = "socket.io"
# (sticks on the sid it tags); nginx: ip_hash; HAProxy: balance source with hash-type consistent
# (both stick on the client address: neither can read the backend-chosen sid without cookies).
# http-keepalive: 64 keep-alive connections sending 100 B GETs at --http-rate in all to one
# backend; wsguard: http = true; nginx: upstream keepalive with proxy_http_version 1.1 and
# Connection ""; HAProxy: mode http, http-reuse safe. They run on direct, nginx, haproxy and
# wsguard only (nginx-64k and wsguard-nib differ in WebSocket settings).
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
SESSIONS=2000
HTTP_RATE=10000
PEERS="direct nginx nginx-64k haproxy wsguard wsguard-nib"
SCENARIOS="idle idle-tls idle-deflate bin64 bin64-tls bin16k text16k rate128 rate128-tls churn churn-full soak chat1k chat1k-plain chat1k-rate http-keepalive"
while (($#)); do
    case "$1" in
        --duration) DURATION=$2; shift ;;
        --warmup) WARMUP=$2; shift ;;
        --idle) IDLE=$2; shift ;;
        --churn-rate) CHURN_RATE=$2; shift ;;
        --soak-conns) SOAK_CONNS=$2; shift ;;
        --soak-duration) SOAK_DURATION=$2; shift ;;
        --sessions) SESSIONS=$2; shift ;;
        --http-rate) HTTP_RATE=$2; shift ;;
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
# The HTTP half: the long-polling listener and the keep-alive one; the two Engine.IO backends.
declare -A LP_PORT=([nginx]=19111 [haproxy]=19113 [wsguard]=19115)
declare -A KA_PORT=([nginx]=19112 [haproxy]=19114 [wsguard]=19116)
EIO_PORTS=(19120 19121)
HTTP_CONNS=64
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
# A polling session holds two client connections.
((2 * SESSIONS > MAX_CONNS)) && MAX_CONNS=$((2 * SESSIONS))
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

# The HTTP half needs neither wsguard-echo nor wsguard-page (each a whole LTO link of its own).
ws_scenarios=0
for name in $SCENARIOS; do
    [[ $name == longpoll || $name == http-keepalive ]] || ws_scenarios=1
done
if ((ws_scenarios)); then
    cargo build --release --quiet -p wsguard --bins
else
    cargo build --release --quiet -p wsguard --bin wsguard
fi
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
for p in "$BACKEND_PORT" "${WS_PORT[@]}" "${WSS_PORT[@]}" "${LP_PORT[@]}" "${KA_PORT[@]}" \
    "${EIO_PORTS[@]}"; do
    if port_open "$p"; then
        echo "bench.sh: 127.0.0.1:$p is already in use" >&2
        exit 1
    fi
done

# --- configs -------------------------------------------------------------------
# HAProxy wants certificate and key in one file; it holds the key, so only we may read it.
(umask 077 && cat "$CERTS/localhost.crt" "$CERTS/localhost.key" >"$TMP/localhost.pem")

nginx_conf() { # label, extra proxy directives, extra http-block directives
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
${3:-}
}
EOF
}
# The HTTP half, on nginx only. ip_hash sticks on the client address's first three octets (the
# sid is chosen by the backend, in a body nginx does not read); keepalive pools upstream
# connections (it bounds the idle ones kept); keepalive_requests is raised on both sides so no
# connection is closed after its 1,000th request (nginx's default; HAProxy and wsguard have none).
nginx_http="
    upstream eio {
        ip_hash;
        server 127.0.0.1:${EIO_PORTS[0]};
        server 127.0.0.1:${EIO_PORTS[1]};
        keepalive $((SESSIONS + 64));
        keepalive_requests 1000000;
    }
    upstream plain {
        server 127.0.0.1:${EIO_PORTS[0]};
        keepalive $HTTP_CONNS;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:${LP_PORT[nginx]};
        keepalive_requests 1000000;
        location / {
            proxy_pass http://eio;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_read_timeout 60s;
        }
    }
    server {
        listen 127.0.0.1:${KA_PORT[nginx]};
        keepalive_requests 1000000;
        location / {
            proxy_pass http://plain;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"
nginx_conf nginx "" "$nginx_http"
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
# The HTTP half. balance source sticks on the client address (the sid is in a body HAProxy
# does not read; stick on url_param(sid) would need the first answer stored); http-reuse safe
# is 2.6's default, spelled out.
frontend longpoll
    bind 127.0.0.1:${LP_PORT[haproxy]}
    default_backend eio
frontend keepalive
    bind 127.0.0.1:${KA_PORT[haproxy]}
    default_backend plain
backend eio
    balance source
    hash-type consistent
    http-reuse safe
    server b0 127.0.0.1:${EIO_PORTS[0]}
    server b1 127.0.0.1:${EIO_PORTS[1]}
backend plain
    http-reuse safe
    server b0 127.0.0.1:${EIO_PORTS[0]}
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

# The HTTP half: lp (framework = "socket.io" over both Engine.IO backends, the [http] defaults:
# each session has an address of its own) and ka (http = true, one backend, the per-IP request
# quota on, too high to trigger, as the [rate] quotas above: all 64 connections come from
# 127.0.0.1).
for kind in lp ka; do
    {
        echo "[server]"
        if [[ $kind == lp ]]; then
            echo "listen = \"127.0.0.1:${LP_PORT[wsguard]}\""
        else
            echo "listen = \"127.0.0.1:${KA_PORT[wsguard]}\""
        fi
        echo
        echo "[origin]"
        echo 'allow = ["http://localhost"]'
        echo
        echo "[limits]"
        echo "connections_per_ip = \"off\""
        echo "handshakes_per_ip = \"off\""
        echo
        if [[ $kind == ka ]]; then
            echo "[http]"
            echo "requests_per_ip = 1000000"
            echo "request_burst = 1000000"
            echo
        fi
        echo "[[route]]"
        if [[ $kind == lp ]]; then
            echo 'path = "/socket.io/"'
            echo 'match = "prefix"'
            echo 'framework = "socket.io"'
            echo "backends = [\"127.0.0.1:${EIO_PORTS[0]}\", \"127.0.0.1:${EIO_PORTS[1]}\"]"
        else
            echo 'path = "/"'
            echo 'match = "prefix"'
            echo 'http = true'
            echo "backends = [\"127.0.0.1:${EIO_PORTS[0]}\"]"
        fi
    } >"$TMP/wsguard-$kind.toml"
    "$BIN/wsguard" check --config "$TMP/wsguard-$kind.toml" >/dev/null 2>&1 ||
        "$BIN/wsguard" check --config "$TMP/wsguard-$kind.toml"
done

# --- running -------------------------------------------------------------------
PEER_PIDS=()   # all processes of the running proxy, per listener kind
declare -A LISTENER_PIDS

is_http() { [[ $1 == longpoll || $1 == http-keepalive ]]; }

start_peer() { # label, scenario
    local label=$1 name=$2 pid
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
            LISTENER_PIDS=([ws]=$all [wss]=$all [lp]=$all [ka]=$all)
            ;;
        haproxy)
            taskset -c $PROXY_CPU haproxy -db -f "$TMP/haproxy/haproxy.cfg" 2>"$TMP/haproxy/stderr" &
            pid=$!
            pids+=("$pid")
            wait_port "${WS_PORT[$label]}"
            wait_port "${WSS_PORT[$label]}"
            LISTENER_PIDS=([ws]=$pid [wss]=$pid [lp]=$pid [ka]=$pid)
            ;;
        wsguard | wsguard-nib)
            local tls
            if is_http "$name"; then
                # The HTTP half: only the listener measured.
                local kind=lp port=${LP_PORT[wsguard]}
                [[ $name == http-keepalive ]] && kind=ka port=${KA_PORT[wsguard]}
                TOKIO_WORKER_THREADS=1 RUST_LOG=warn taskset -c $PROXY_CPU \
                    "$BIN/wsguard" --config "$TMP/wsguard-$kind.toml" 2>>"$TMP/wsguard.log" &
                pid=$!
                pids+=("$pid")
                LISTENER_PIDS[$kind]=$pid
                wait_port "$port"
                return 0
            fi
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
        if is_backend "$pid"; then keep+=("$pid"); else stop_pid "$pid"; fi
    done
    pids=("${keep[@]}")
}

# One scenario against one peer. Failures are recorded in the JSON and reported, not fatal.
scenario() {
    local label=$1 name=$2 url pid args=() duration=$DURATION
    local tls=ws
    [[ $name == *-tls || $name == churn* || $name == soak ]] && tls=wss
    if is_http "$name"; then
        http_scenario "$label" "$name"
        return 0
    fi
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

# One scenario of the HTTP half against one peer; direct goes to the first backend alone.
http_scenario() {
    local label=$1 name=$2 url args=() port kind
    if [[ $name == longpoll ]]; then
        kind=lp
        args+=(--mode longpoll -c "$SESSIONS" --source 127.1.0.1)
    else
        kind=ka
        args+=(--mode http -c "$HTTP_CONNS" --rate "$HTTP_RATE")
    fi
    if [[ $label == direct ]]; then
        port=${EIO_PORTS[0]}
    elif [[ $kind == lp ]]; then
        port=${LP_PORT[$label]}
        args+=(--pid "${LISTENER_PIDS[$kind]}")
    else
        port=${KA_PORT[$label]}
        args+=(--pid "${LISTENER_PIDS[$kind]}")
    fi
    url="http://localhost:$port/"
    [[ $kind == lp ]] && url+="socket.io/"
    use_backend eio
    printf '  %-11s %-14s ' "$label" "$name"
    local line
    if line=$(taskset -c $LOAD_CPU "$BIN/wsguard-bench" run --label "$label" --scenario "$name" \
        --url "$url" --backend-pid "$BACKEND_PID" --warmup "$WARMUP" --duration "$DURATION" \
        --out "$RESULTS" "${args[@]}" 2>"$TMP/last.err"); then
        :
    else
        echo "(errors: $(tail -1 "$TMP/last.err" | cut -c1-200))"
    fi
    local rps us
    rps=$(json_num "$line" requests_per_s)
    us=$(json_num "$line" cpu_us_per_request)
    if [[ $kind == lp ]]; then
        printf '%.0f req/s, %s µs/req, POST p50/p99 %s/%s µs, delivery p50/p99 %s/%s µs, %s KiB/held\n' \
            "${rps:-0}" "${us:--}" "$(json_num "$line" post_rtt_us p50)" \
            "$(json_num "$line" post_rtt_us p99)" "$(json_num "$line" delivery_us p50)" \
            "$(json_num "$line" delivery_us p99)" "$(json_num "$line" kib_per_held)"
    else
        printf '%.0f req/s, %s µs/req, p50/p99 %s/%s µs\n' "${rps:-0}" "${us:--}" \
            "$(json_num "$line" latency_us p50)" "$(json_num "$line" latency_us p99)"
    fi
}
# A number from a result line, two decimals at most: json_num LINE KEY [KEY-IN-OBJECT].
json_num() {
    local text=$1
    if (($# == 3)); then
        text=$({ grep -o "\"$2\":{[^}]*}" <<<"$text" || true; } | head -1)
        shift
    fi
    { grep -o "\"$2\":[0-9.e+-]*" <<<"$text" || true; } | head -1 | cut -d: -f2 |
        sed -E 's/^([0-9]+\.[0-9]{0,2}).*/\1/'
}

echo "wsguard bench $stamp: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

BACKEND_PID= # comma-separated: the eio backends are two processes
BACKEND_MODE=
is_backend() { [[ ,$BACKEND_PID, == *,"$1",* ]]; }
# The echo backend for a scenario: lenient (echoes frames as they came, compressed ones too)
# for the permessage-deflate ones, strict for the rest.
backend_mode() {
    case "$1" in
        longpoll | http-keepalive) echo eio ;;
        chat* | idle-deflate) echo lenient ;;
        *) echo strict ;;
    esac
}
# (Re)starts the backend in MODE on the same port; the proxies connect per client connection.
use_backend() {
    [[ $1 == "$BACKEND_MODE" ]] && return 0
    if [[ -n $BACKEND_PID ]]; then
        local keep=() pid
        for pid in "${pids[@]}"; do is_backend "$pid" || keep+=("$pid"); done
        pids=("${keep[@]}")
        for pid in ${BACKEND_PID//,/ }; do stop_pid "$pid"; done
    fi
    BACKEND_MODE=$1
    if [[ $1 == eio ]]; then
        local port list=()
        for port in "${EIO_PORTS[@]}"; do
            taskset -c $LOAD_CPU "$BIN/eio-backend" --listen "127.0.0.1:$port" &
            list+=("$!")
            pids+=("$!")
        done
        BACKEND_PID=$(IFS=,; echo "${list[*]}")
        for port in "${EIO_PORTS[@]}"; do wait_port "$port"; done
        return 0
    fi
    TOKIO_WORKER_THREADS=1 taskset -c $LOAD_CPU "$BIN/wsguard-echo" --mode "$1" \
        --listen "127.0.0.1:$BACKEND_PORT" >/dev/null &
    BACKEND_PID=$!
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
        if is_http "$name" && [[ $label == nginx-64k || $label == wsguard-nib ]]; then continue; fi
        start_peer "$label" "$name"
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
