#!/usr/bin/env bash
# Installs the pinned framework test programs' dependencies (tests/frameworks: Socket.IO, SockJS,
# @microsoft/signalr, ws) into target/frameworks (under CARGO_TARGET_DIR when set) with `npm ci`
# from the lock file, when they are missing or the lock file changed. Outside the source tree,
# so `git status` stays clean. installed.lock is written after a finished `npm ci`: an
# interrupted install or a changed lock file is installed again.
#
# Used by scripts/test.sh (tests/socketio.rs) and scripts/frameworks-test.sh. Prints nothing
# when the install is current. Needs node and npm.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

frameworks="${CARGO_TARGET_DIR:-target}/frameworks"
if ! cmp -s tests/frameworks/package-lock.json "$frameworks/installed.lock"; then
    command -v npm >/dev/null || { echo "npm is needed for the framework tests" >&2; exit 1; }
    echo "installing the framework test dependencies into $frameworks" >&2
    mkdir -p "$frameworks"
    rm -f "$frameworks/installed.lock"
    cp tests/frameworks/{package.json,package-lock.json,.npmrc} "$frameworks/"
    (cd "$frameworks" && npm ci --no-audit --no-fund --loglevel=error)
    cp tests/frameworks/package-lock.json "$frameworks/installed.lock"
fi
