#!/usr/bin/env bash
# Autobahn TestSuite conformance run (via kosoku) against wsguard in front of an echo backend.
#
# usage: scripts/conformance.sh [RUN...|all] [--direct] [-- KOSOKU-ARGS...]
#
#   RUN                 strict, lenient, strict-takeover or lenient-takeover (default: all four).
#                       The name is the wsguard-echo backend; "-takeover" runs wsguard with
#                       [deflate] context_takeover = true instead of config/conformance.toml's false
#   --direct            run kosoku straight against the backend, no proxy (a baseline;
#                       exits 0 whatever the verdicts; "all" is strict and lenient)
#   -- ARGS             passed to kosoku, e.g. -- -i '6.*' -x '9.*'
#
# Without --direct: wsguard-echo listens on 127.0.0.1:9002, wsguard (config/conformance.toml)
# on 127.0.0.1:9001 routes "/" to it, and kosoku drives 127.0.0.1:9001. Exits 1 if any case
# is FAILED (or ERROR: the handshake did not complete).
# Reports: target/conformance/<run>[-direct]/ (index.json, index.html, kosoku.log,
# verdicts.txt with one "case verdict close" line per case, for diffing between runs;
# wsguard.toml, the configuration the run used).
# Env: KOSOKU_PARALLELISM (default 2), CONFORMANCE_TIMEOUT seconds to wait for listeners (10).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BACKEND_ADDR=127.0.0.1:9002
PROXY_ADDR=127.0.0.1:9001
KOSOKU_VERSION=0.1.0
VENV=target/kosoku
PARALLELISM=${KOSOKU_PARALLELISM:-2}
WAIT=${CONFORMANCE_TIMEOUT:-10}
BIN="${CARGO_TARGET_DIR:-target}/release"

runs=()
direct=0
kosoku_args=()
while (($#)); do
    case "$1" in
        strict | lenient | strict-takeover | lenient-takeover) runs+=("$1") ;;
        all) runs+=(strict lenient strict-takeover lenient-takeover) ;;
        --direct) direct=1 ;;
        --) shift; kosoku_args=("$@"); break ;;
        -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "conformance.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done
((${#runs[@]})) || runs=(strict lenient strict-takeover lenient-takeover)
if ((direct)); then
    # Context takeover is wsguard's setting: without it a run is its backend's.
    direct_runs=()
    for run in "${runs[@]}"; do
        [[ " ${direct_runs[*]} " == *" ${run%-takeover} "* ]] || direct_runs+=("${run%-takeover}")
    done
    runs=("${direct_runs[@]}")
fi

# --- processes we start, stopped on any exit -------------------------------
pids=()
stop_all() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    pids=()
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() { echo "conformance.sh: $*" >&2; exit 1; }

# Wait until FILE has a "listening on" line, or PID dies, or WAIT seconds pass.
wait_for_line() {
    local file=$1 pid=$2 what=$3 deadline=$((SECONDS + WAIT))
    until grep -q '^listening on ' "$file" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || die "$what exited before listening (see $file)"
        ((SECONDS < deadline)) || die "$what did not print 'listening on' within ${WAIT}s"
        sleep 0.05
    done
}

# Wait until HOST:PORT accepts a TCP connection, or PID dies, or WAIT seconds pass.
wait_for_port() {
    local host=${1%:*} port=${1##*:} pid=$2 what=$3 log=$4 deadline=$((SECONDS + WAIT))
    until (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || die "$what exited before accepting on $1 (see $log)"
        ((SECONDS < deadline)) || die "$what did not accept on $1 within ${WAIT}s (see $log)"
        sleep 0.05
    done
}

port_free() { ! (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

# --- kosoku, pinned, in its own venv ----------------------------------------
have=""
if [[ -x $VENV/bin/python ]]; then
    have=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("kosoku"))' 2>/dev/null || true)
fi
if [[ $have != "$KOSOKU_VERSION" ]]; then
    echo "==> installing kosoku==$KOSOKU_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "kosoku==$KOSOKU_VERSION"
fi

# --- build --------------------------------------------------------------------
echo "==> cargo build --release --bins"
cargo build --release --bins
[[ -x $BIN/wsguard-echo ]] || die "$BIN/wsguard-echo not built"
if ((!direct)); then
    [[ -x $BIN/wsguard ]] || die "$BIN/wsguard not built"
    [[ -f config/conformance.toml ]] || die "config/conformance.toml missing"
    grep -q '^context_takeover = false$' config/conformance.toml ||
        die "config/conformance.toml: no 'context_takeover = false' line to flip for the -takeover runs"
fi

# --- summary of one run's index.json: prints counts, writes verdicts.txt -------
# Exit status: 0 if no case is FAILED or ERROR, 1 otherwise.
summarize() {
    python3 - "$1" <<'PY'
import collections, json, os, sys
out = sys.argv[1]
with open(os.path.join(out, "index.json")) as f:
    index = json.load(f)
cases = {}
for agent in index.values():
    cases.update(agent)
def key(case):
    return [int(p) if p.isdigit() else p for p in case.split(".")]
order = sorted(cases, key=key)
counts = collections.Counter(c["behavior"] for c in cases.values())
print(f"    {len(cases)} cases: " + ", ".join(f"{v} {n}" for v, n in counts.most_common()))
with open(os.path.join(out, "verdicts.txt"), "w") as f:
    for case in order:
        c = cases[case]
        f.write(f'{case} {c["behavior"]} {c["behaviorClose"]}\n')
bad = [c for c in order if cases[c]["behavior"] in ("FAILED", "ERROR")]
for case in bad:
    c = cases[case]
    print(f'    {c["behavior"]:6} {case}: close={c["behaviorClose"]} '
          f'remoteCloseCode={c.get("remoteCloseCode")}')
sys.exit(1 if bad or not cases else 0)
PY
}

# --- one run per name ----------------------------------------------------------------
failed_runs=()
for run in "${runs[@]}"; do
    backend=${run%-takeover}
    name=$run
    ((direct)) && name=$run-direct
    out=target/conformance/$name
    rm -rf "$out"
    mkdir -p "$out"
    echo "==> $name"

    port_free "$BACKEND_ADDR" || die "$BACKEND_ADDR is already in use"
    "$BIN/wsguard-echo" --mode "$backend" --listen "$BACKEND_ADDR" \
        >"$out/backend.log" 2>&1 &
    pids+=($!)
    wait_for_line "$out/backend.log" "$!" "wsguard-echo --mode $backend"

    target=$BACKEND_ADDR
    if ((!direct)); then
        # One configuration, so the two variants cannot drift apart.
        if [[ $run == *-takeover ]]; then
            sed 's/^context_takeover = false$/context_takeover = true/' config/conformance.toml
        else
            cat config/conformance.toml
        fi >"$out/wsguard.toml"
        port_free "$PROXY_ADDR" || die "$PROXY_ADDR is already in use"
        "$BIN/wsguard" --config "$out/wsguard.toml" >"$out/wsguard.log" 2>&1 &
        pids+=($!)
        wait_for_port "$PROXY_ADDR" "$!" wsguard "$out/wsguard.log"
        target=$PROXY_ADDR
    fi

    # kosoku exits non-zero whenever any case is not OK (UNIMPLEMENTED included),
    # so its status is not the verdict: index.json is.
    start=$SECONDS
    # Run in the background and `wait`, so a signal to this script is handled at once.
    "$VENV/bin/kosoku" -m fuzzingclient -p "$PARALLELISM" -o "$out" \
        "${kosoku_args[@]}" "$target" >"$out/kosoku.log" 2>&1 &
    pids+=($!)
    wait "$!" || true
    echo "    kosoku took $((SECONDS - start))s against $target; report: $out/index.html"
    stop_all

    [[ -f $out/index.json ]] || { tail -n 20 "$out/kosoku.log" >&2; die "kosoku wrote no index.json"; }
    summarize "$out" || failed_runs+=("$name")
done

if ((${#failed_runs[@]})); then
    if ((direct)); then
        echo "==> cases FAILED in: ${failed_runs[*]} (direct run: reported only)"
        exit 0
    fi
    echo "==> conformance FAILED: ${failed_runs[*]}" >&2
    exit 1
fi
echo "==> conformance OK: no FAILED cases"
