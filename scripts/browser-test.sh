#!/usr/bin/env bash
# Cross-site WebSocket hijacking, stopped in a real Chromium (headless, driven by playwright-core).
#
# usage: scripts/browser-test.sh [--update-docs]
#
#   --update-docs   also copy four screenshots to docs/ (chat-allowed.png, chat-evil-refused.png,
#                   socketio-allowed.png, socketio-evil-refused.png)
#
# Starts, as its own processes (stopped on any exit):
#   wsguard demo   proxy on wss://localhost:8443 (TLS, certs/localhost.crt), allow = http://localhost:8080,
#                  route /chat -> the embedded chat backend on 127.0.0.1:9000, frames capped at 4 KiB,
#                  and the allowed chat page on http://localhost:8080
#   wsguard-page   the same page on http://127.0.0.1:8081, labelled "evil.example — not in the allow-list"
#   wsguard-page   the same page on http://127.0.0.1:8082 talking to the chat backend directly (ws://, no
#                  wsguard), to tell a backend that does not negotiate permessage-deflate from a proxy
#                  that does not pass it on
# then runs scripts/browser-test.mjs three times, wsguard restarted for each: with [origin] mode =
# "enforce"; with mode = "report"; and "auth": enforce, with /chat behind [auth.session], a JWT
# (HS256, secret: 32 random bytes made for the run) read from the "session" cookie. The development
# CA and certificate in certs/ are made first if missing (`wsguard dev-certs`); Chromium trusts
# certs/ca.crt through a fresh NSS db in a temporary HOME (certutil), like a user who imported it,
# with no certificate error ignored.
# Last, phase "socketio" (scripts/browser-test-sio.mjs): the demo and the pages are stopped, and
# plain `wsguard run` listens on wss:// / https://localhost:8443 with one route, "/socket.io/"
# (framework = "socket.io", [origin] allow = http://localhost:8080), to two stock Socket.IO
# backends (tests/frameworks/sio-chat-server.mjs on 127.0.0.1:9001 and :9002, CORS open to any
# origin); the node program serves the Socket.IO chat page on http://localhost:8080 and, as
# "evil", on http://127.0.0.1:8081.
#
# BROWSER_TEST_BUILD=debug: a debug build (`cargo build --locked --bins`) instead of --release.
# BROWSER_TEST_PHASES: the phases to run, in this order (default "enforce report auth socketio").
#
# Needs chromium and certutil (Debian packages chromium, chromium-driver, libnss3-tools; installed
# with apt if missing: if that is impossible the test is SKIPPED with exit 0), node + npm
# (playwright-core is installed into target/browser, no browser download; socket.io and
# socket.io-client into target/frameworks by scripts/frameworks-install.sh).
# Logs and screenshots: target/browser/run/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PLAYWRIGHT_VERSION=1.65.1
PROXY_ADDR=127.0.0.1:8443
PAGE_ADDR=127.0.0.1:8080
EVIL_ADDR=127.0.0.1:8081
DIRECT_ADDR=127.0.0.1:8082
BACKEND_ADDR=127.0.0.1:9000
ADMIN_ADDR=127.0.0.1:9091
WS_URL=wss://localhost:8443/chat
EVIL_BANNER="evil.example — not in the allow-list"
DIRECT_BANNER="straight to the chat backend, no wsguard"
WAIT=${BROWSER_TEST_WAIT:-15}  # seconds to wait for each listener
NODE_TIMEOUT=${BROWSER_TEST_TIMEOUT:-180}
SIO_BACKEND_ADDRS=(127.0.0.1:9001 127.0.0.1:9002)
SIO_SERVER=https://localhost:8443
TARGET=${CARGO_TARGET_DIR:-target}
case ${BROWSER_TEST_BUILD:-release} in
    release) BIN=$TARGET/release; BUILD=(cargo build --locked --release --bins) ;;
    debug) BIN=$TARGET/debug; BUILD=(cargo build --locked --bins) ;;
    *) echo "browser-test.sh: BROWSER_TEST_BUILD is release or debug" >&2; exit 2 ;;
esac
NODE_DIR=target/browser
OUT=target/browser/run

update_docs=0
case "${1:-}" in
    "") ;;
    --update-docs) update_docs=1 ;;
    -h | --help) sed -n '2,/^set /p' "$0" | sed -n 's/^# \{0,1\}//p'; exit 0 ;;
    *) echo "browser-test.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

die() { echo "browser-test.sh: $*" >&2; exit 1; }

skip() {
    {
        echo
        echo "################################################################"
        echo "##  BROWSER TEST SKIPPED: $*"
        echo "##  Nothing was tested in a browser. Install Debian's chromium"
        echo "##  and chromium-driver packages and run scripts/browser-test.sh."
        echo "################################################################"
        echo
    } >&2
    exit 0
}

# --- processes and files we make, cleaned up on any exit ----------------------
pids=()
tmp=""
stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        stop_pid "$pid"
    done
    pids=()
    # An `if`, not `&&`: the trap's last status would become the script's exit status.
    if [[ -n $tmp ]]; then rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- chromium from Debian -------------------------------------------------------
as_root() {
    if ((EUID == 0)); then "$@"; else sudo -n "$@"; fi
}
if [[ ! -x /usr/bin/chromium || ! -x /usr/bin/chromedriver ]] || ! command -v certutil >/dev/null; then
    echo "==> installing chromium, chromium-driver, libnss3-tools with apt"
    export DEBIAN_FRONTEND=noninteractive
    if ! { as_root apt-get update -qq && as_root apt-get install -y -qq chromium chromium-driver libnss3-tools; }; then
        skip "chromium, chromium-driver and libnss3-tools could not be installed with apt"
    fi
fi
[[ -x /usr/bin/chromium ]] || skip "/usr/bin/chromium missing after install"
command -v certutil >/dev/null || skip "certutil missing after installing libnss3-tools"
command -v node >/dev/null && command -v npm >/dev/null || die "node and npm are needed (apt-get install nodejs npm)"

# --- playwright-core, pinned, no browser download --------------------------------
have=$(node -p "try { require('./$NODE_DIR/node_modules/playwright-core/package.json').version } catch { '' }")
if [[ $have != "$PLAYWRIGHT_VERSION" ]]; then
    echo "==> installing playwright-core@$PLAYWRIGHT_VERSION into $NODE_DIR"
    mkdir -p "$NODE_DIR"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$NODE_DIR" --no-save --no-audit \
        --no-fund --loglevel=error "playwright-core@$PLAYWRIGHT_VERSION"
fi

# --- socket.io and socket.io-client (the backends and the page's bundle) ------------
scripts/frameworks-install.sh
FW_MODULES=$TARGET/frameworks/node_modules
[[ $FW_MODULES == /* ]] || FW_MODULES=$PWD/$FW_MODULES
SIO_BUNDLE=$FW_MODULES/socket.io-client/dist/socket.io.min.js
[[ -f $SIO_BUNDLE ]] || die "$SIO_BUNDLE missing after scripts/frameworks-install.sh"

# --- build ------------------------------------------------------------------------
echo "==> ${BUILD[*]}"
"${BUILD[@]}"
[[ -x $BIN/wsguard && -x $BIN/wsguard-page ]] || die "wsguard or wsguard-page not built in $BIN"

# --- temp dir: configs and a HOME with an NSS db that trusts the dev CA --------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/wsguard-browser.XXXXXX")
rm -rf "$OUT"
mkdir -p "$OUT" "$tmp/home"
certs=$(cd certs && pwd)

# Before Chromium starts: the CA it is to trust, made on this machine if missing.
"$BIN/wsguard" dev-certs --dir "$certs"
nssdb=$tmp/home/.pki/nssdb
mkdir -p "$nssdb"
certutil -d "sql:$nssdb" -N --empty-password || die "certutil cannot create an NSS db in $nssdb"
certutil -d "sql:$nssdb" -A -n "wsguard development CA" -t "C,," -i "$certs/ca.crt" ||
    die "certutil cannot add certs/ca.crt to the NSS db"
echo "==> TLS trust: certs/ca.crt added as a CA to a fresh NSS db in a temporary HOME"

write_config() { # MODE FILE [AUTH]   AUTH: the [auth.NAME] /chat uses
    local route_auth=""
    if [[ -n ${3:-} ]]; then route_auth="auth = \"$3\""; fi
    cat >"$2" <<EOF
# written by scripts/browser-test.sh
[server]
listen = "$PROXY_ADDR"
tls_cert = "$certs/localhost.crt"
tls_key = "$certs/localhost.key"

[origin]
allow = ["http://localhost:8080"]
mode = "$1"

[frames]
max_frame_size = "4 KiB"
max_message_size = "4 KiB"

[[route]]
path = "/chat"
backends = ["$BACKEND_ADDR"]
$route_auth

[admin]
listen = "$ADMIN_ADDR"

[demo]
backend_listen = "$BACKEND_ADDR"
page_listen = "$PAGE_ADDR"
EOF
}
write_config enforce "$tmp/enforce.toml"
write_config report "$tmp/report.toml"
# The HS256 secret: 32 random bytes, as 64 hex digits (no line ending: the browser test reads the
# file's bytes as the key, as wsguard does).
(umask 077 && head -c 32 /dev/urandom | od -An -vtx1 | tr -d ' \n' >"$tmp/session.secret")
write_config enforce "$tmp/auth.toml" session
cat >>"$tmp/auth.toml" <<EOF

[auth.session]
type = "jwt"
algorithms = ["HS256"]
hmac_secret_file = "$tmp/session.secret"
cookie = "session"
leeway = "0s"
EOF
# Phase socketio: plain `wsguard run`, no demo; the route passes Engine.IO polling through.
cat >"$tmp/socketio.toml" <<EOF
# written by scripts/browser-test.sh
[server]
listen = "$PROXY_ADDR"
tls_cert = "$certs/localhost.crt"
tls_key = "$certs/localhost.key"

[origin]
allow = ["http://localhost:8080"]

[[route]]
path = "/socket.io/"
match = "prefix"
backends = [$(printf '"%s", ' "${SIO_BACKEND_ADDRS[@]}" | sed 's/, $//')]
framework = "socket.io"

[admin]
listen = "$ADMIN_ADDR"
EOF
for mode in enforce report auth socketio; do
    "$BIN/wsguard" check --config "$tmp/$mode.toml" >/dev/null
done

# --- servers --------------------------------------------------------------------
port_free() { ! (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
wait_for_port() { # ADDR PID WHAT LOG
    local deadline=$((SECONDS + WAIT))
    until (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; do
        kill -0 "$2" 2>/dev/null || { tail -n 20 "$4" >&2; die "$3 exited before accepting on $1 (see $4)"; }
        ((SECONDS < deadline)) || die "$3 did not accept on $1 within ${WAIT}s (see $4)"
        sleep 0.05
    done
}
for addr in "$PROXY_ADDR" "$PAGE_ADDR" "$EVIL_ADDR" "$DIRECT_ADDR" "$BACKEND_ADDR" "$ADMIN_ADDR" \
    "${SIO_BACKEND_ADDRS[@]}"; do
    port_free "$addr" || die "$addr is already in use (a running 'wsguard demo'?)"
done

wsguard_pid=""
start_wsguard() { # MODE
    local log=$OUT/wsguard-$1.log
    # Debug for the demo module only: the chat backend logs each join there.
    NO_COLOR=1 RUST_LOG=info,wsguard::demo=debug \
        "$BIN/wsguard" demo --config "$tmp/$1.toml" --log-format text >"$log" 2>&1 &
    wsguard_pid=$!
    pids+=("$wsguard_pid")
    wait_for_port "$PROXY_ADDR" "$wsguard_pid" "wsguard demo ($1)" "$log"
    wait_for_port "$PAGE_ADDR" "$wsguard_pid" "wsguard demo page ($1)" "$log"
    wait_for_port "$BACKEND_ADDR" "$wsguard_pid" "wsguard demo backend ($1)" "$log"
}
stop_started() { # PID...: stop these and forget them
    local kept=() pid gone
    for gone in "$@"; do stop_pid "$gone"; done
    for pid in "${pids[@]}"; do [[ " $* " == *" $pid "* ]] || kept+=("$pid"); done
    pids=("${kept[@]}")
}
stop_wsguard() { stop_started "$wsguard_pid"; }

NO_COLOR=1 "$BIN/wsguard-page" --listen "$EVIL_ADDR" --ws-url "$WS_URL" --banner "$EVIL_BANNER" \
    >"$OUT/evil-page.log" 2>&1 &
pids+=($!)
page_pids=($!)
wait_for_port "$EVIL_ADDR" "$!" wsguard-page "$OUT/evil-page.log"
NO_COLOR=1 "$BIN/wsguard-page" --listen "$DIRECT_ADDR" --ws-url "ws://$BACKEND_ADDR/chat" \
    --banner "$DIRECT_BANNER" >"$OUT/direct-page.log" 2>&1 &
pids+=($!)
page_pids+=($!)
wait_for_port "$DIRECT_ADDR" "$!" "wsguard-page (direct)" "$OUT/direct-page.log"

run_node() { # PHASE
    echo "==> browser test, phase $1"
    # In the background and `wait`ed, so a signal to this script is handled at once.
    HOME=$tmp/home BROWSER_TEST_PHASE=$1 BROWSER_TEST_LOG="$OUT/wsguard-$1.log" \
        BROWSER_TEST_METRICS_URL="http://$ADMIN_ADDR/metrics" \
        BROWSER_TEST_SECRET_FILE="$tmp/session.secret" \
        BROWSER_TEST_OUT=$OUT BROWSER_TEST_PROFILE="$tmp/profile-$1" \
        BROWSER_TEST_NODE_MODULES="$PWD/$NODE_DIR/node_modules" \
        timeout "$NODE_TIMEOUT" node scripts/browser-test.mjs &
    pids+=($!)
    wait "$!" || die "browser test failed in phase '$1' (logs: $OUT/)"
}

PHASES=" ${BROWSER_TEST_PHASES:-enforce report auth socketio} "
for phase in $PHASES; do
    [[ $phase == @(enforce|report|auth|socketio) ]] || die "unknown phase '$phase' in BROWSER_TEST_PHASES"
done
if ((update_docs)) && [[ $PHASES != " enforce report auth socketio " ]]; then
    die "--update-docs needs every phase (BROWSER_TEST_PHASES unset)"
fi
for phase in enforce report auth; do
    [[ $PHASES == *" $phase "* ]] || continue
    started=$SECONDS
    start_wsguard "$phase"
    run_node "$phase"
    stop_wsguard
    echo "==> phase $phase: $((SECONDS - started))s"
done

# --- phase socketio: Socket.IO through the HTTP pass-through ----------------------------
# The pages of the demo phases give their ports (8080, 8081) to the Socket.IO page server.
run_socketio() {
    started=$SECONDS
    stop_started "${page_pids[@]}"
    # The backends exit when their stdin closes: a FIFO this script holds open (fd 9) until it exits.
    mkfifo "$tmp/sio-stdin"
    exec 9<>"$tmp/sio-stdin"
    sio_logs=()
    for i in "${!SIO_BACKEND_ADDRS[@]}"; do
        addr=${SIO_BACKEND_ADDRS[$i]}
        name=sio-$((i + 1))
        FW_NODE_MODULES=$FW_MODULES FW_NAME=$name FW_PORT=${addr##*:} SIO_CORS='*' \
            node tests/frameworks/sio-chat-server.mjs <"$tmp/sio-stdin" 9>&- \
            >"$OUT/$name.log" 2>"$OUT/$name.err" &
        pids+=($!)
        wait_for_port "$addr" "$!" "Socket.IO backend $name" "$OUT/$name.err"
        sio_logs+=("$OUT/$name.log")
    done
    log=$OUT/wsguard-socketio.log
    NO_COLOR=1 RUST_LOG=info "$BIN/wsguard" run --config "$tmp/socketio.toml" --log-format text \
        </dev/null 9>&- >"$log" 2>&1 &
    wsguard_pid=$!
    pids+=("$wsguard_pid")
    wait_for_port "$PROXY_ADDR" "$wsguard_pid" "wsguard (socketio)" "$log"
    wait_for_port "$ADMIN_ADDR" "$wsguard_pid" "wsguard admin (socketio)" "$log"
    echo "==> browser test, phase socketio"
    HOME=$tmp/home BROWSER_TEST_LOG=$log BROWSER_TEST_OUT=$OUT BROWSER_TEST_PROFILE="$tmp/profile-socketio" \
        BROWSER_TEST_METRICS_URL="http://$ADMIN_ADDR/metrics" BROWSER_TEST_NODE_MODULES="$PWD/$NODE_DIR/node_modules" \
        BROWSER_TEST_SIO_SERVER=$SIO_SERVER BROWSER_TEST_SIO_DIRECT="http://${SIO_BACKEND_ADDRS[0]}" \
        BROWSER_TEST_SIO_LOGS="$(IFS=,; echo "${sio_logs[*]}")" BROWSER_TEST_SIO_BUNDLE=$SIO_BUNDLE \
        BROWSER_TEST_SIO_PAGE="$PWD/tests/frameworks/sio-chat-page.html" \
        timeout "$NODE_TIMEOUT" node scripts/browser-test-sio.mjs 9>&- &
    pids+=($!)
    wait "$!" || die "browser test failed in phase 'socketio' (logs: $OUT/)"
    stop_wsguard
    echo "==> phase socketio: $((SECONDS - started))s"
}
if [[ $PHASES == *" socketio "* ]]; then run_socketio; fi

if ((update_docs)); then
    cp "$OUT/chat-allowed.png" "$OUT/chat-evil-refused.png" docs/
    cp "$OUT/socketio-allowed.png" "$OUT/socketio-evil-refused.png" docs/
    echo "==> screenshots copied to docs/"
fi
echo "==> browser test OK (TLS trust: certs/ca.crt through NSS; logs and screenshots: $OUT/)"
