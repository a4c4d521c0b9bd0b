#!/usr/bin/env bash
# The test suite: installs redis-server (needed by tests/shared_limits.rs) with apt-get when it
# is missing, installs the pinned Socket.IO server and client (tests/frameworks, needed by
# tests/socketio.rs) into target/frameworks with `npm ci` when node is present and they are
# missing or the lock file changed, python websockets into target/test-venv (tests/stacks.rs),
# then runs `cargo test --locked` with this script's arguments.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v redis-server >/dev/null && [[ -z "${WSGUARD_REDIS_SERVER:-}" ]]; then
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    echo "installing redis-server for the shared-limit tests" >&2
    "${sudo[@]}" scripts/apt-install.sh redis-server
fi

# scripts/frameworks-install.sh installs them outside the source tree (target/frameworks), again
# when the lock file changed or an install was cut short.
if command -v node >/dev/null; then
    scripts/frameworks-install.sh
else
    echo "node not found: the Socket.IO tests will be skipped" >&2
fi
# Python websockets, pinned, in its own venv: tests/stacks.rs runs it as a backend (it drops
# the replies it has not sent once it reads a close frame, which the proxy's close must allow for).
WEBSOCKETS_VERSION=17.4
venv="${CARGO_TARGET_DIR:-target}/test-venv"
if ! "$venv/bin/python" -c "import websockets, sys; sys.exit(websockets.__version__ != '$WEBSOCKETS_VERSION')" 2>/dev/null; then
    echo "installing python websockets $WEBSOCKETS_VERSION into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "websockets==$WEBSOCKETS_VERSION"
fi
WSGUARD_PYTHON="$(cd "$venv" && pwd)/bin/python"
export WSGUARD_PYTHON
exec cargo test --locked "$@"
