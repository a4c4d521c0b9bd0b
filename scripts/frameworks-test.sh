#!/usr/bin/env bash
# The real-framework harness: stock Socket.IO 4.8, SockJS 0.3 and a SignalR-protocol hub (the
# Node programs under tests/frameworks/), driven by their real clients (socket.io-client,
# sockjs-client, @microsoft/signalr), through wsguard's HTTP pass-through mode
# (route `framework = "socket.io" | "sockjs" | "signalr"`, sticky sessions) on 127.0.0.1.
#
# usage: scripts/frameworks-test.sh [--direct] [--tls] [--only a,b,...] [--keep]
#   --direct     clients go straight at the backends (no wsguard, no build); the checks that
#                need wsguard are not run and are listed at the end. FW_DIRECT=1 does the same.
#   --tls        wsguard listens with TLS (a development certificate made by `wsguard dev-certs`
#                in the temporary directory); the clients accept it without verifying it, and
#                HAProxy (b) speaks TLS to the wsguard instances. Not with --direct.
#   --only LIST  run only these scenarios (the others count as skipped: exit status 1).
#   --keep       keep the temporary directory (configs and every process's log) on success too.
#
# Scenarios, one PASS/FAIL/SKIP line each, with numbers:
#   a  Socket.IO default transports: connects (polling), upgrades to websocket, N messages acked
#   b  2 Socket.IO backends x 2 wsguard instances behind HAProxy (mode http, roundrobin, keep-alive,
#      no stickiness): 20 clients chat, no backend logs "Session ID unknown", and the requests of
#      one session really spread over both wsguard instances (HAProxy's log, wsguard's access log).
#      In --direct mode: the clients split over the two backends, and a control run through
#      HAProxy straight at the backends must show "Session ID unknown" (what wsguard prevents).
#   c  Polling only, a long-poll GET held ~30 s (backend pingInterval 30000), then still chats
#   d  A 900 KB message over polling and over websocket (acked with the body echoed back)
#   e  Bad Origin on the polling handshake, a cross-site one without Origin, and a bad Origin on a POST into a
#      live session (curl): 403 from wsguard, and the backend never saw those requests
#   f  SockJS forced onto websocket, xhr-streaming and xhr-polling, 2 backends: each chats
#   g  SignalR negotiate-then-upgrade (default) and LongPolling, 2 backends: each chats, sticks
#   h  2 Socket.IO backends, one killed (SIGKILL) mid-session: its clients chat on the other one
#      within 10 s (socket.io-client's own reconnection)
#
# Exit status 0 only if every scenario ran and passed (in --direct mode: every check that does
# not need wsguard passed); 1 otherwise. A summary line "N passed, N failed, N skipped" ends it.
#
# Installs what it needs: the pinned npm packages (scripts/frameworks-install.sh, into
# target/frameworks), haproxy (scripts/apt-install.sh) if missing. Builds wsguard with
# `cargo build --locked --bin wsguard` unless WSGUARD_BIN names a binary. Everything it starts runs
# on free 127.0.0.1 ports, with configs and logs in a temporary directory, and is stopped on exit
# (the Node servers also exit when their stdin, held by this script, closes). About two minutes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

DIRECT=0
[[ ${FW_DIRECT:-0} == 1 ]] && DIRECT=1
ONLY="a,b,c,d,e,f,g,h"
KEEP=0
TLS=0
while (($#)); do
    case "$1" in
        --direct) DIRECT=1 ;;
        --only) ONLY=${2:?--only needs a list}; shift ;;
        --keep) KEEP=1 ;;
        --tls) TLS=1 ;;
        -h | --help) sed -n '2,/^set /p' "$0" | sed -n 's/^# \{0,1\}//p'; exit 0 ;;
        *) echo "frameworks-test.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done
wanted() { [[ ",$ONLY," == *",$1,"* ]]; }

GOOD_ORIGIN=http://localhost:8080
BAD_ORIGIN=http://evil.example
SIO_MESSAGES=${FW_SIO_MESSAGES:-20}
BIG=921600 # 900 KiB

# --- tools ------------------------------------------------------------------------------
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
for tool in jq curl; do
    command -v "$tool" >/dev/null || "${sudo[@]}" scripts/apt-install.sh "$tool"
done
for tool in node npm python3; do
    command -v "$tool" >/dev/null || { echo "frameworks-test.sh: $tool is needed" >&2; exit 1; }
done
scripts/frameworks-install.sh
target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target="$ROOT/$target"
export FW_NODE_MODULES="$target/frameworks/node_modules"
FW="$ROOT/tests/frameworks"
if ! command -v haproxy >/dev/null && { wanted b; }; then
    "${sudo[@]}" scripts/apt-install.sh haproxy
fi

if ((DIRECT)); then
    echo "==> --direct: clients go straight at the backends; wsguard is not built or started"
else
    if [[ -z ${WSGUARD_BIN:-} ]]; then
        echo "==> cargo build --locked --bin wsguard"
        cargo build --locked --quiet --bin wsguard
        WSGUARD_BIN="$target/debug/wsguard"
    fi
    [[ -x $WSGUARD_BIN ]] || { echo "frameworks-test.sh: $WSGUARD_BIN is not an executable" >&2; exit 1; }
fi
if ((DIRECT && TLS)); then
    echo "==> --tls has no effect with --direct (the backends are plain HTTP)"
    TLS=0
fi

# --- processes ----------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/frameworks-test.XXXXXX")
declare -A PID=() PORT=()
STARTED=()
STATUS=1
cleanup() {
    local name
    for name in "${STARTED[@]}"; do kill -TERM "${PID[$name]}" 2>/dev/null || true; done
    exec 9>&- || true # the servers' stdin: they exit when it closes
    sleep 0.3
    for name in "${STARTED[@]}"; do kill -KILL "${PID[$name]}" 2>/dev/null || true; done
    if ((KEEP)) || ((STATUS != 0)); then
        echo "logs and configs kept in $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
mkfifo "$TMP/stdin"
exec 9<>"$TMP/stdin"
# With --tls: what every client and curl need to accept wsguard's development certificate.
CLIENT_ENV=()
CURL_TLS=()
if ((TLS)); then
    "$WSGUARD_BIN" dev-certs --dir "$TMP/certs" >/dev/null
    CLIENT_ENV=(SIO_INSECURE=1 SOCKJS_INSECURE=1 SIGNALR_INSECURE=1)
    CURL_TLS=(-k)
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() { # PORT NAME: until something accepts on 127.0.0.1:PORT (10 s)
    local i
    for ((i = 0; i < 100; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "${PID[$2]}" 2>/dev/null || { echo "$2 exited:" >&2; tail -20 "$TMP/$2.log" >&2; return 1; }
        sleep 0.1
    done
    echo "$2 does not listen on $1 after 10 s" >&2
    return 1
}
# start_node NAME PROGRAM [VAR=VALUE...]: a Node server from tests/frameworks; PORT[NAME] is its port.
start_node() {
    local name=$1 program=$2 i port=""
    shift 2
    env FW_NAME="$name" FW_PORT=0 "$@" node "$FW/$program" <"$TMP/stdin" 9>&- >"$TMP/$name.log" 2>"$TMP/$name.err" &
    PID[$name]=$!
    STARTED+=("$name")
    for ((i = 0; i < 100; i++)); do
        port=$(jq -r 'select(.event == "listening") | .port' "$TMP/$name.log" 2>/dev/null | head -1)
        [[ -n $port ]] && break
        kill -0 "${PID[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    [[ -n $port ]] || { echo "$name ($program) did not start:" >&2; cat "$TMP/$name.err" >&2; exit 1; }
    PORT[$name]=$port
}
start_wsguard() { # NAME CONFIG
    "$WSGUARD_BIN" --config "$2" </dev/null 9>&- >"$TMP/$1.out" 2>"$TMP/$1.log" &
    PID[$1]=$!
    STARTED+=("$1")
}
start_haproxy() { # NAME CONFIG: in the foreground (-db), its request log on stdout
    haproxy -db -f "$2" </dev/null 9>&- >"$TMP/$1.log" 2>"$TMP/$1.err" &
    PID[$1]=$!
    STARTED+=("$1")
}
now_ms() { date +%s%3N; }

# --- logs -----------------------------------------------------------------------------------
# Each scenario reads only what a backend logged since its start: mark NAME... remembers where
# the logs end, new_lines NAME prints what came after.
declare -A MARK=()
mark() { local n; for n in "$@"; do MARK[$n]=$(wc -l <"$TMP/$n.log"); done; }
new_lines() { tail -n +"$((${MARK[$1]:-0} + 1))" "$TMP/$1.log"; }
# count_events JQ_FILTER NAME...: lines since the mark, in those backends' logs, that match.
count_events() {
    local filter=$1 n total=0 c
    shift
    for n in "$@"; do
        c=$(new_lines "$n" | jq -c "select($filter)" 2>/dev/null | wc -l)
        total=$((total + c))
    done
    echo "$total"
}
session_unknown() { count_events '.event == "connection_error" and .message == "Session ID unknown"' "$@"; }
marker_seen() { # MARKER NAME...: how many requests with that marker the backends saw (whole logs)
    local n total=0 c
    local marker=$1
    shift
    for n in "$@"; do
        c=$(jq -c --arg m "$marker" 'select(.event == "request" and .marker == $m)' "$TMP/$n.log" | wc -l)
        total=$((total + c))
    done
    echo "$total"
}

# The wsguard access log ([http] access_log = true): one `tracing` line per HTTP request on
# wsguard's stderr. Its format is not settled yet, so this is the only place that reads it:
# it counts the lines that look like access-log lines (WSGUARD_ACCESS_RE, default: containing
# "access") and mention PATH_PREFIX. Adapt it here when the format lands.
wsguard_access_count() { # LOG [PATH_PREFIX]
    { grep -E "${WSGUARD_ACCESS_RE:-request passed}" "$1" || true; } | { grep -cF -- "${2:-}" || true; }
}

# --- results --------------------------------------------------------------------------------
declare -A RESULT=()
NOT_RUN=() # wsguard checks not run in --direct mode
FAILS=()
expect() { # WHAT COMMAND...: a check of the current scenario
    local what=$1
    shift
    "$@" || FAILS+=("$what")
}
expect_wsguard() { # WHAT COMMAND...: a check that needs wsguard (not run in --direct mode)
    local what=$1
    shift
    if ((DIRECT)); then NOT_RUN+=("$SCENARIO: $what"); else "$@" || FAILS+=("$what"); fi
}
begin() { SCENARIO=$1; FAILS=(); echo "--- $1: $2"; }
conclude() { # SUMMARY: PASS or FAIL with the failed checks
    if ((${#FAILS[@]})); then
        RESULT[$SCENARIO]=FAIL
        printf 'FAIL %s  %s; failed: %s\n' "$SCENARIO" "$1" "$(IFS=';'; echo "${FAILS[*]}")"
    else
        RESULT[$SCENARIO]=PASS
        printf 'PASS %s  %s\n' "$SCENARIO" "$1"
    fi
}
skip() { RESULT[$1]=SKIP; printf 'SKIP %s  %s\n' "$1" "$2"; }
eq() { [[ $1 == "$2" ]]; }
ge() { (($1 >= $2)); }
le() { (($1 <= $2)); }

# --- backends ---------------------------------------------------------------------------
echo "==> backends (logs in $TMP)"
start_node sioA sio-chat-server.mjs SIO_PATH=/socket.io/
start_node sioB sio-chat-server.mjs SIO_PATH=/socket.io/
start_node sioPoll sio-chat-server.mjs SIO_PATH=/sio-poll/ SIO_PING_INTERVAL=30000
start_node sioC sio-chat-server.mjs SIO_PATH=/sio-kill/
start_node sioD sio-chat-server.mjs SIO_PATH=/sio-kill/
start_node sockjs1 sockjs-server.mjs SOCKJS_PREFIX=/sockjs
start_node sockjs2 sockjs-server.mjs SOCKJS_PREFIX=/sockjs
start_node signalr1 signalr-server.mjs SIGNALR_HUB=/chathub
start_node signalr2 signalr-server.mjs SIGNALR_HUB=/chathub
for n in sioA sioB sioPoll sioC sioD sockjs1 sockjs2 signalr1 signalr2; do echo "    $n on 127.0.0.1:${PORT[$n]}"; done

# --- wsguard -------------------------------------------------------------------------------
# Two instances with the same routes: scenario b puts both behind HAProxy; every other scenario
# goes through the first.
write_config() { # FILE LISTEN_PORT
    cat >"$1" <<EOF
# scripts/frameworks-test.sh: wsguard's HTTP pass-through for the framework backends.
[server]
listen = "127.0.0.1:$2"
$( ((TLS)) && printf 'tls_cert = "%s"\ntls_key = "%s"\n' "$TMP/certs/localhost.crt" "$TMP/certs/localhost.key")

[origin]
allow = ["$GOOD_ORIGIN"]
allow_missing = false

[http]
access_log = true

[[route]]
path = "/socket.io/"
match = "prefix"
backends = ["127.0.0.1:${PORT[sioA]}", "127.0.0.1:${PORT[sioB]}"]
framework = "socket.io"

[[route]]
path = "/sio-poll/"
match = "prefix"
backends = ["127.0.0.1:${PORT[sioPoll]}"]
framework = "socket.io"

[[route]]
path = "/sio-kill/"
match = "prefix"
backends = ["127.0.0.1:${PORT[sioC]}", "127.0.0.1:${PORT[sioD]}"]
framework = "socket.io"

[[route]]
path = "/sockjs"
match = "prefix"
backends = ["127.0.0.1:${PORT[sockjs1]}", "127.0.0.1:${PORT[sockjs2]}"]
framework = "sockjs"

[[route]]
path = "/chathub"
match = "prefix"
backends = ["127.0.0.1:${PORT[signalr1]}", "127.0.0.1:${PORT[signalr2]}"]
framework = "signalr"
EOF
}
WSGUARD_OK=1
if ((!DIRECT)); then
    echo "==> wsguard ($WSGUARD_BIN)"
    for n in wsg1 wsg2; do
        PORT[$n]=$(free_port)
        write_config "$TMP/$n.toml" "${PORT[$n]}"
        start_wsguard "$n" "$TMP/$n.toml"
    done
    for n in wsg1 wsg2; do
        if wait_port "${PORT[$n]}" "$n"; then
            echo "    $n on 127.0.0.1:${PORT[$n]} ($TMP/$n.toml)"
        else
            WSGUARD_OK=0
        fi
    done
    if ((!WSGUARD_OK)); then
        echo "wsguard did not start with the framework config: $("$WSGUARD_BIN" check --config "$TMP/wsg1.toml" 2>&1 | tail -3)" >&2
    fi
fi
# base URL for a backend (direct) or for wsguard
base() {
    if ((DIRECT)); then
        echo "http://127.0.0.1:${PORT[$1]}"
    elif ((TLS)); then
        echo "https://127.0.0.1:${PORT[${2:-wsg1}]}"
    else
        echo "http://127.0.0.1:${PORT[${2:-wsg1}]}"
    fi
}

# --- clients ----------------------------------------------------------------------------
# run_client LOG PROGRAM VAR=VALUE...: in the background; CLIENT_PID is its pid.
run_client() {
    local log=$1 program=$2
    shift 2
    env "${CLIENT_ENV[@]}" "$@" node "$FW/$program" </dev/null 9>&- >"$TMP/$log" 2>"$TMP/$log.err" &
    CLIENT_PID=$!
}
done_line() { jq -c 'select(.event == "done")' "$TMP/$1" | tail -1; }
field() { jq -r "$2" <<<"$1"; } # JSON FILTER

# --- scenarios ------------------------------------------------------------------------------
scenario_a() {
    begin a "Socket.IO, default transports (polling, then the upgrade), $SIO_MESSAGES messages"
    mark sioA sioB
    run_client a.log sio-chat-client.mjs SIO_URL="$(base sioA)" SIO_ORIGIN=$GOOD_ORIGIN \
        SIO_COUNT="$SIO_MESSAGES" SIO_INTERVAL_MS=20 SIO_STAY_MS=200
    wait "$CLIENT_PID"
    local d acked upgraded first unknown backend access=0
    d=$(done_line a.log)
    acked=$(field "$d" '.acked // 0')
    upgraded=$(field "$d" '.upgraded // false')
    first=$(jq -r 'select(.event == "open") | .transport' "$TMP/a.log" | head -1)
    backend=$(field "$d" '.backends | keys | join("+")')
    unknown=$(session_unknown sioA sioB)
    expect "acked $acked/$SIO_MESSAGES" eq "$acked" "$SIO_MESSAGES"
    expect "bodies intact" eq "$(field "$d" '.intact')" true
    expect "first transport $first, not polling" eq "$first" polling
    expect "not upgraded to websocket" eq "$upgraded" true
    expect "last ack over $(jq -r 'select(.event == "ack") | .transport' "$TMP/a.log" | tail -1)" \
        eq "$(jq -r 'select(.event == "ack") | .transport' "$TMP/a.log" | tail -1)" websocket
    expect "$unknown Session ID unknown" eq "$unknown" 0
    ((DIRECT)) || access=$(wsguard_access_count "$TMP/wsg1.log" /socket.io/)
    expect_wsguard "wsguard access log: $access /socket.io/ requests" ge "$access" 3
    conclude "acked $acked/$SIO_MESSAGES, $first -> upgraded=$upgraded, backend $backend, Session ID unknown: $unknown, wsguard access lines: $access"
}

haproxy_config() { # FILE PORT SERVER_OPTIONS SERVER_PORT...
    local file=$1 port=$2 options=$3 i=0 p
    shift 3
    {
        cat <<EOF
global
    log stdout format raw local0
    maxconn 2000
defaults
    mode http
    log global
    option httplog
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout tunnel 1h
frontend fe
    bind 127.0.0.1:$port
    default_backend be
backend be
    balance roundrobin
EOF
        for p in "$@"; do
            i=$((i + 1))
            echo "    server s$i 127.0.0.1:$p$options"
        done
    } >"$file"
}
# Per session id (the sid query parameter), which HAProxy servers its requests went to: prints
# "SESSIONS SPREAD": how many sessions HAProxy saw, and how many went to more than one server.
haproxy_spread() {
    grep -oE 'be/s[0-9]+ .*[?&]sid=[^& "]+' "$1" |
        sed -E 's#^be/(s[0-9]+) .*[?&]sid=([^& "]+)$#\2 \1#' | sort -u |
        awk '{ n[$1]++ } END { s = 0; t = 0; for (k in n) { t++; if (n[k] > 1) s++ } print t, s }'
}
haproxy_requests() { grep -c "be/$2 " "$1" || true; } # LOG SERVER

run_many() { # PREFIX COUNT URL_FUNCTION VAR=VALUE...: COUNT clients at once, waits for all
    local prefix=$1 count=$2 urlf=$3 i pids=()
    shift 3
    for ((i = 0; i < count; i++)); do
        run_client "$prefix-$i.log" sio-chat-client.mjs FW_NAME="$prefix-$i" SIO_URL="$($urlf "$i")" "$@"
        pids+=("$CLIENT_PID")
    done
    for i in "${pids[@]}"; do wait "$i"; done
}
sum_done() { # PREFIX COUNT FILTER: sum of FILTER over the clients' done lines
    local i total=0 v
    for ((i = 0; i < $2; i++)); do
        v=$(jq -r "select(.event == \"done\") | $3" "$TMP/$1-$i.log" | tail -1)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

scenario_b() {
    local clients=20 per=10
    begin b "$clients Socket.IO clients, 2 backends, 2 wsguard instances behind HAProxy round robin"
    mark sioA sioB
    if ((DIRECT)); then
        url_of() { if (($1 % 2)); then base sioB; else base sioA; fi; }
    else
        PORT[hp]=$(free_port)
        local tls=""
        ((TLS)) && tls=" ssl verify none"
        haproxy_config "$TMP/hp.cfg" "${PORT[hp]}" "$tls" "${PORT[wsg1]}" "${PORT[wsg2]}"
        start_haproxy hp "$TMP/hp.cfg"
        wait_port "${PORT[hp]}" hp
        url_of() { echo "http://127.0.0.1:${PORT[hp]}"; }
    fi
    local w1_before=0 w2_before=0
    ((DIRECT)) || { w1_before=$(wsguard_access_count "$TMP/wsg1.log" /socket.io/); w2_before=$(wsguard_access_count "$TMP/wsg2.log" /socket.io/); }
    run_many b "$clients" url_of SIO_ORIGIN=$GOOD_ORIGIN SIO_COUNT=$per SIO_INTERVAL_MS=100 SIO_TIMEOUT_MS=60000
    local acked connected upgraded unknown errors on_a on_b
    acked=$(sum_done b $clients '.acked')
    connected=$(sum_done b $clients 'if .acked > 0 then 1 else 0 end')
    upgraded=$(sum_done b $clients 'if .upgraded then 1 else 0 end')
    unknown=$(session_unknown sioA sioB)
    errors=$(count_events '.event == "connection_error"' sioA sioB)
    on_a=$(count_events '.event == "connection"' sioA)
    on_b=$(count_events '.event == "connection"' sioB)
    expect "$connected/$clients clients chatted" eq "$connected" $clients
    expect "acked $acked/$((clients * per))" eq "$acked" $((clients * per))
    expect "$unknown Session ID unknown" eq "$unknown" 0
    expect "$errors connection errors" eq "$errors" 0
    local spread="" w1=0 w2=0 s1=0 s2=0 sessions=0 split=0
    if ((!DIRECT)); then
        s1=$(haproxy_requests "$TMP/hp.log" s1)
        s2=$(haproxy_requests "$TMP/hp.log" s2)
        read -r sessions split < <(haproxy_spread "$TMP/hp.log")
        w1=$(($(wsguard_access_count "$TMP/wsg1.log" /socket.io/) - w1_before))
        w2=$(($(wsguard_access_count "$TMP/wsg2.log" /socket.io/) - w2_before))
        spread=", HAProxy: $s1+$s2 requests to wsg1+wsg2, $split/$sessions sessions spread over both; wsguard access lines $w1+$w2"
    fi
    # Round robin per request: each instance takes about half; both must take a fair share.
    expect_wsguard "HAProxy sent wsg1 $s1 and wsg2 $s2 requests" eval '((s1 * 4 >= (s1 + s2) && s2 * 4 >= (s1 + s2) && s1 + s2 > 0))'
    expect_wsguard "only $split/$sessions sessions had requests on both instances" eval '((split * 2 >= sessions && sessions > 0))'
    expect_wsguard "wsguard access log: $w1 on wsg1, $w2 on wsg2" eval '((w1 * 4 >= (w1 + w2) && w2 * 4 >= (w1 + w2) && w1 + w2 > 0))'
    local control=""
    if ((DIRECT)); then
        # The control: HAProxy round robin straight at the two backends, no stickiness. Polling
        # requests of one session land on the backend that does not know it: the check above
        # must be able to see that.
        mark sioA sioB
        PORT[hpc]=$(free_port)
        haproxy_config "$TMP/hpc.cfg" "${PORT[hpc]}" "" "${PORT[sioA]}" "${PORT[sioB]}"
        start_haproxy hpc "$TMP/hpc.cfg"
        wait_port "${PORT[hpc]}" hpc
        url_hpc() { echo "http://127.0.0.1:${PORT[hpc]}"; }
        run_many bctl 4 url_hpc SIO_ORIGIN=$GOOD_ORIGIN SIO_COUNT=3 SIO_INTERVAL_MS=100 SIO_TIMEOUT_MS=8000 SIO_NO_RECONNECT=1
        local ctl
        ctl=$(session_unknown sioA sioB)
        expect "control (HAProxy straight at the backends) logged no Session ID unknown" ge "$ctl" 1
        control=", control without wsguard: $ctl Session ID unknown"
        kill -TERM "${PID[hpc]}" 2>/dev/null || true
    fi
    conclude "$connected/$clients clients, acked $acked/$((clients * per)), upgraded $upgraded, connections on backends $on_a+$on_b, Session ID unknown: $unknown$spread$control"
}

C_PID=""
C_MS=33000
scenario_c_start() {
    mark sioPoll
    C_STARTED=$(now_ms)
    run_client c.log sio-chat-client.mjs SIO_URL="$(base sioPoll)" SIO_PATH=/sio-poll/ SIO_ORIGIN=$GOOD_ORIGIN \
        SIO_TRANSPORTS=polling SIO_COUNT=2 SIO_INTERVAL_MS=$C_MS SIO_TIMEOUT_MS=70000 SIO_ACK_TIMEOUT_MS=15000
    C_PID=$CLIENT_PID
}
scenario_c() {
    begin c "Socket.IO polling only, a long-poll held ~30 s (pingInterval 30000), then chat"
    echo "    (waiting for the client started at the beginning: ~$((C_MS / 1000)) s in all)"
    wait "$C_PID"
    local d acked held transports disconnects late
    d=$(done_line c.log)
    acked=$(field "$d" '.acked // 0')
    transports=$(field "$d" '.transports | join(",")')
    disconnects=$(jq -c 'select(.event == "disconnect")' "$TMP/c.log" | grep -vc 'io client disconnect' || true)
    # The longest gap between two polling GETs of the session, as the backend saw them: a GET
    # is sent when the one before returns, so that is how long a GET was held.
    held=$(new_lines sioPoll | jq -s '[.[] | select(.event == "request" and .method == "GET" and (.url | test("[?&]sid=")))
        | .t] | [range(1; length) as $i | .[$i] - .[$i - 1]] | max // 0')
    late=$(jq -r 'select(.event == "ack" and .n == 1) | .transport' "$TMP/c.log")
    expect "acked $acked/2" eq "$acked" 2
    expect "transports $transports" eq "$transports" polling
    expect "longest held GET $held ms" ge "$held" 25000
    expect "ack after the held GET over '$late'" eq "$late" polling
    expect "$disconnects disconnects" eq "$disconnects" 0
    conclude "acked $acked/2 over $transports, a GET held $held ms, then the message after it acked; disconnects: $disconnects"
}

scenario_d() {
    begin d "Socket.IO, a 900 KiB message over polling and over websocket"
    mark sioA sioB
    run_client d-poll.log sio-chat-client.mjs SIO_URL="$(base sioA)" SIO_ORIGIN=$GOOD_ORIGIN \
        SIO_TRANSPORTS=polling SIO_COUNT=2 SIO_SIZE=$BIG SIO_INTERVAL_MS=300 SIO_TIMEOUT_MS=30000
    wait "$CLIENT_PID"
    run_client d-ws.log sio-chat-client.mjs SIO_URL="$(base sioA)" SIO_ORIGIN=$GOOD_ORIGIN \
        SIO_WAIT_UPGRADE=1 SIO_COUNT=2 SIO_SIZE=$BIG SIO_INTERVAL_MS=300 SIO_TIMEOUT_MS=30000
    wait "$CLIENT_PID"
    local p w pt wt unknown
    p=$(done_line d-poll.log)
    w=$(done_line d-ws.log)
    pt=$(jq -r 'select(.event == "ack") | .transport' "$TMP/d-poll.log" | sort -u | paste -sd,)
    wt=$(jq -r 'select(.event == "ack") | .transport' "$TMP/d-ws.log" | sort -u | paste -sd,)
    unknown=$(session_unknown sioA sioB)
    expect "polling: acked $(field "$p" '.acked // 0')/2" eq "$(field "$p" '.acked // 0')" 2
    expect "polling: bodies damaged" eq "$(field "$p" '.intact')" true
    expect "polling: acks over $pt" eq "$pt" polling
    expect "websocket: acked $(field "$w" '.acked // 0')/2" eq "$(field "$w" '.acked // 0')" 2
    expect "websocket: bodies damaged" eq "$(field "$w" '.intact')" true
    expect "websocket: acks over $wt" eq "$wt" websocket
    expect "$unknown Session ID unknown" eq "$unknown" 0
    conclude "$BIG-byte messages echoed intact: polling $(field "$p" '.acked // 0')/2 ($(field "$p" '.errors | join(" ")')), websocket $(field "$w" '.acked // 0')/2 ($(field "$w" '.errors | join(" ")'))"
}

# curl_status OUTFILE ARGS...: the HTTP status (000 when the connection failed)
curl_status() { local out=$1; shift; curl -sS "${CURL_TLS[@]}" -o "$out" -w '%{http_code}' --max-time 10 "$@" 2>/dev/null || true; }
scenario_e() {
    begin e "Origin on Engine.IO polling requests (curl): good, bad, missing, bad POST into a live session"
    local url sid status body backends=(sioA sioB)
    url="$(base sioA)/socket.io/?EIO=4&transport=polling"
    status=$(curl_status "$TMP/e-good.body" -H "Origin: $GOOD_ORIGIN" "$url&marker=e-good-handshake")
    body=$(cat "$TMP/e-good.body")
    sid=$(jq -r '.sid // empty' <<<"${body#0}" 2>/dev/null || true)
    expect "good handshake: $status ${body:0:60}" eq "$status" 200
    expect "no sid in the handshake answer" test -n "$sid"
    expect "the backend did not see the good handshake" eq "$(marker_seen e-good-handshake "${backends[@]}")" 1
    # Socket.IO's CONNECT to the main namespace, with a good Origin: the session is live.
    status=$(curl_status "$TMP/e-post.body" -X POST -H "Origin: $GOOD_ORIGIN" -H 'Content-Type: text/plain;charset=UTF-8' \
        --data '40' "$url&sid=$sid&marker=e-good-post")
    expect "good POST: $status $(cat "$TMP/e-post.body")" eq "$status" 200
    local bad_post bad_handshake missing
    bad_post=$(curl_status "$TMP/e-bad-post.body" -X POST -H "Origin: $BAD_ORIGIN" -H 'Content-Type: text/plain;charset=UTF-8' \
        --data '42["chat",{"n":99,"body":"from evil"}]' "$url&sid=$sid&marker=e-bad-post")
    bad_handshake=$(curl_status "$TMP/e-bad.body" -H "Origin: $BAD_ORIGIN" "$url&marker=e-bad-handshake")
    # No Origin is a same-origin GET to a browser, unless Fetch Metadata says it came from
    # another site (an <img> or <script> tag): that one is refused.
    missing=$(curl_status "$TMP/e-missing.body" -H 'Sec-Fetch-Site: cross-site' "$url&marker=e-no-origin")
    # The session still answers a good poll after the refused POST (it holds the CONNECT answer).
    status=$(curl_status "$TMP/e-poll.body" -H "Origin: $GOOD_ORIGIN" "$url&sid=$sid&marker=e-good-poll")
    expect "good poll after the bad POST: $status $(head -c 60 "$TMP/e-poll.body")" eq "$status" 200
    local seen_post seen_handshake seen_missing
    seen_post=$(marker_seen e-bad-post "${backends[@]}")
    seen_handshake=$(marker_seen e-bad-handshake "${backends[@]}")
    seen_missing=$(marker_seen e-no-origin "${backends[@]}")
    expect_wsguard "bad-Origin POST into the session: $bad_post" eq "$bad_post" 403
    expect_wsguard "the backend saw the bad-Origin POST ($seen_post)" eq "$seen_post" 0
    expect_wsguard "bad-Origin handshake: $bad_handshake" eq "$bad_handshake" 403
    expect_wsguard "the backend saw the bad-Origin handshake ($seen_handshake)" eq "$seen_handshake" 0
    expect_wsguard "cross-site handshake without Origin: $missing" eq "$missing" 403
    expect_wsguard "the backend saw the cross-site handshake without Origin ($seen_missing)" eq "$seen_missing" 0
    if ((DIRECT)); then
        # Straight at the backend nothing refuses them: the marker count must see all three, or
        # the "never reached the backend" checks above would prove nothing.
        expect "direct: the backend's marker count missed the bad requests ($seen_post/$seen_handshake/$seen_missing)" \
            eq "$seen_post$seen_handshake$seen_missing" 111
    fi
    conclude "sid ${sid:-none}: bad POST $bad_post (backend saw $seen_post), bad handshake $bad_handshake (saw $seen_handshake), no Origin $missing (saw $seen_missing)"
}

scenario_f() {
    begin f "SockJS forced onto websocket, xhr-streaming, xhr-polling (2 clients each, 2 backends)"
    mark sockjs1 sockjs2
    local t i summary=() pids=() n=0
    for t in websocket xhr-streaming xhr-polling; do
        for i in 0 1; do
            local b=sockjs1
            ((i)) && b=sockjs2
            run_client "f-$t-$i.log" sockjs-client.mjs FW_NAME="f-$t-$i" SOCKJS_URL="$(base $b)/sockjs" \
                SOCKJS_TRANSPORT=$t SOCKJS_ORIGIN=$GOOD_ORIGIN SOCKJS_COUNT=5 SOCKJS_INTERVAL_MS=100
            pids+=("$CLIENT_PID")
        done
    done
    for i in "${pids[@]}"; do wait "$i"; done
    for t in websocket xhr-streaming xhr-polling; do
        local ok=0 used=() where=()
        for i in 0 1; do
            local d
            d=$(done_line "f-$t-$i.log")
            used+=("$(field "$d" '.transport // "none"')")
            where+=("$(field "$d" '.backends | keys | join("+")')")
            expect "$t client $i: received $(field "$d" '.received // 0')/5 ($(field "$d" '.errors | join(" ")'))" eq "$(field "$d" '.received // 0')" 5
            expect "$t client $i: echoes damaged" eq "$(field "$d" '.intact')" true
            expect "$t client $i: used $(field "$d" '.transport')" eq "$(field "$d" '.transport')" "$t"
            expect "$t client $i: answered by $(field "$d" '.backends | keys | join("+")')" eq "$(field "$d" '.backends | length')" 1
            [[ $(field "$d" '.received // 0') == 5 ]] && ok=$((ok + 1))
        done
        summary+=("$t $ok/2 (used ${used[*]}, backends ${where[*]})")
    done
    conclude "$(IFS=';'; echo "${summary[*]}")"
}

scenario_g() {
    begin g "SignalR default (negotiate, then WebSockets) and LongPolling, 3 clients each, 2 backends"
    mark signalr1 signalr2
    local kind i pids=() summary=()
    for kind in default LongPolling; do
        for i in 0 1 2; do
            local b=signalr1 transport=""
            ((i % 2)) && b=signalr2
            # LongPolling clients stay idle 2 s first: a poll is held that long before they chat.
            local stay=0
            [[ $kind == default ]] || { transport=$kind; stay=2000; }
            run_client "g-$kind-$i.log" signalr-client.mjs FW_NAME="g-$kind-$i" SIGNALR_URL="$(base $b)/chathub" \
                SIGNALR_TRANSPORT=$transport SIGNALR_ORIGIN=$GOOD_ORIGIN SIGNALR_COUNT=5 SIGNALR_INTERVAL_MS=50 SIGNALR_STAY_MS=$stay
            pids+=("$CLIENT_PID")
        done
    done
    for i in "${pids[@]}"; do wait "$i"; done
    for kind in default LongPolling; do
        local want=WebSockets ok=0 where=()
        [[ $kind == default ]] || want=$kind
        for i in 0 1 2; do
            local d
            d=$(done_line "g-$kind-$i.log")
            where+=("$(field "$d" '.backends | keys | join("+")')")
            expect "$kind client $i: $(field "$d" '.invoked // 0') invokes, $(field "$d" '.sent // 0') sends of 5 ($(field "$d" '.errors | join(" ")'))" \
                eq "$(field "$d" '"\(.invoked)/\(.sent)"')" 5/5
            expect "$kind client $i: damaged echoes" eq "$(field "$d" '.intact')" true
            expect "$kind client $i: transport $(field "$d" '.transport')" eq "$(field "$d" '.transport')" "$want"
            expect "$kind client $i: answered by $(field "$d" '.backends | keys | join("+")') (not sticky)" eq "$(field "$d" '.backends | length')" 1
            [[ $(field "$d" '"\(.invoked)/\(.sent)"') == 5/5 ]] && ok=$((ok + 1))
        done
        summary+=("$kind $ok/3 over $want (backends ${where[*]})")
    done
    local unknown
    unknown=$(count_events '.event == "unknown_id"' signalr1 signalr2)
    expect "$unknown requests with an unknown connection id (404)" eq "$unknown" 0
    # The stand-in answers an id it never issued 404, as ASP.NET does, and logs it, so the count
    # above can see a request routed to the wrong backend (asked straight at the backend).
    local probe probed
    probe=$(curl_status /dev/null -X POST -H "Origin: $GOOD_ORIGIN" --data '{}' \
        "http://127.0.0.1:${PORT[signalr1]}/chathub?id=never-issued&marker=g-probe")
    probed=$(count_events '.event == "unknown_id" and .id == "never-issued"' signalr1)
    expect "an id the backend never issued: $probe, logged $probed times" eq "$probe/$probed" 404/1
    conclude "$(IFS=';'; echo "${summary[*]}"); unknown ids: $unknown (a made-up id: $probe)"
}

scenario_h() {
    local clients=6 count=30
    begin h "2 Socket.IO backends, one SIGKILLed mid-session: its clients on the other within 10 s"
    mark sioC sioD
    local i pids=()
    for ((i = 0; i < clients; i++)); do
        local urls
        if ((DIRECT)); then
            # Straight at the backends the client fails over itself (SIO_URLS), standing in for
            # the proxy's choice of a live backend.
            if ((i % 2)); then urls="$(base sioD),$(base sioC)"; else urls="$(base sioC),$(base sioD)"; fi
        else
            urls=$(base sioC)
        fi
        run_client "h-$i.log" sio-chat-client.mjs FW_NAME="h-$i" SIO_URLS="$urls" SIO_PATH=/sio-kill/ \
            SIO_ORIGIN=$GOOD_ORIGIN SIO_COUNT=$count SIO_INTERVAL_MS=500 SIO_ACK_TIMEOUT_MS=3000 SIO_TIMEOUT_MS=45000
        pids+=("$CLIENT_PID")
    done
    sleep 4
    # The victim: the backend that most clients are on now.
    local on_c=0 on_d=0 last victim other
    for ((i = 0; i < clients; i++)); do
        last=$(jq -r 'select(.event == "ack") | .backend' "$TMP/h-$i.log" | tail -1)
        [[ $last == sioC ]] && on_c=$((on_c + 1))
        [[ $last == sioD ]] && on_d=$((on_d + 1))
    done
    victim=sioC other=sioD
    ((on_d > on_c)) && victim=sioD other=sioC
    local killed_at
    killed_at=$(now_ms)
    kill -KILL "${PID[$victim]}"
    wait "${PID[$victim]}" 2>/dev/null || true # reaped here, so bash does not report "Killed"
    echo "    killed $victim ($on_c clients on sioC, $on_d on sioD)"
    for i in "${pids[@]}"; do wait "$i"; done
    local moved=0 affected=0 worst=0 total=0 acked
    for ((i = 0; i < clients; i++)); do
        acked=$(jq -r 'select(.event == "done") | .acked' "$TMP/h-$i.log")
        total=$((total + ${acked:-0}))
        last=$(jq -r --argjson k "$killed_at" 'select(.event == "ack" and .at < $k) | .backend' "$TMP/h-$i.log" | tail -1)
        [[ $last == "$victim" ]] || continue
        affected=$((affected + 1))
        local first
        first=$(jq -r --argjson k "$killed_at" --arg o "$other" \
            'select(.event == "ack" and .at >= $k and .backend == $o) | .at - $k' "$TMP/h-$i.log" | head -1)
        if [[ -n $first ]]; then
            ((first > worst)) && worst=$first
            ((first <= 10000)) && moved=$((moved + 1))
        else
            worst=999999
        fi
        expect "h-$i: first ack from $other ${first:-never} ms after the kill" le "${first:-999999}" 10000
    done
    expect "no client was on the killed backend" ge "$affected" 1
    expect "only $total/$((clients * count)) acked overall" ge "$total" $((clients * count * 2 / 3))
    conclude "killed $victim under $affected of $clients clients: $moved/$affected chatting on $other within 10 s (slowest $worst ms), acked $total/$((clients * count)) overall"
}

# --- run --------------------------------------------------------------------------------------
echo "==> scenarios: $ONLY$( ((DIRECT)) && echo ' (direct: straight at the backends)')"
if ((!DIRECT && !WSGUARD_OK)); then
    for s in a b c d e f g h; do wanted $s && { RESULT[$s]=FAIL; echo "FAIL $s  wsguard did not start"; }; done
else
    wanted c && scenario_c_start
    wanted a && scenario_a
    wanted b && scenario_b
    wanted d && scenario_d
    wanted e && scenario_e
    wanted f && scenario_f
    wanted g && scenario_g
    wanted c && scenario_c
    wanted h && scenario_h
fi

pass=0 fail=0 skipped=0
for s in a b c d e f g h; do
    [[ -n ${RESULT[$s]:-} ]] || skip "$s" "not run (--only $ONLY)"
    case ${RESULT[$s]} in PASS) pass=$((pass + 1)) ;; FAIL) fail=$((fail + 1)) ;; *) skipped=$((skipped + 1)) ;; esac
done
echo "==> ran: $(for s in a b c d e f g h; do printf '%s=%s ' "$s" "${RESULT[$s]}"; done)"
if ((DIRECT)); then
    echo "==> --direct: ${#NOT_RUN[@]} wsguard checks not run:"
    printf '      %s\n' "${NOT_RUN[@]}"
fi
echo "frameworks: $pass passed, $fail failed, $skipped skipped"
if ((fail == 0 && skipped == 0)); then STATUS=0; fi
exit "$STATUS"
