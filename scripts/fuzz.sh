#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 60).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# How it is run: cargo-fuzz (libFuzzer) on the stable toolchain, with
# RUSTC_BOOTSTRAP=1 so stable rustc accepts the sanitizer flags cargo-fuzz
# passes (`-Zsanitizer=address`). cargo-fuzz is installed with
# `cargo install cargo-fuzz --locked` if it is missing (about 3 minutes).
# Each target reads the committed seeds in fuzz/seeds/TARGET and writes what it
# learns to fuzz/corpus/TARGET (not committed). A crash stops the run and
# leaves its input in fuzz/artifacts/TARGET/; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-...
# The last libFuzzer status line of each target (execs, cov, ft) is printed
# at the end; full logs are in target/fuzz-logs/.
set -euo pipefail

seconds="${1:-60}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

if ! cargo fuzz --help >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

logs="$root/target/fuzz-logs"
mkdir -p "$logs"
cargo fuzz build
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "seeds/$t"
    echo "== $t: ${seconds}s" >&2
    # One worker: the machine's 2 cores are shared.
    if ! cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$logs/$t.log" 2>&1; then
        echo "!! $t failed; see $logs/$t.log and fuzz/artifacts/$t/" >&2
        status=1
    fi
done

echo
echo "target            last status line"
for t in "${targets[@]}"; do
    line="$(grep -E '^#[0-9]+' "$logs/$t.log" | tail -n 1 || true)"
    printf '%-17s %s\n' "$t" "$line"
done
exit "$status"
