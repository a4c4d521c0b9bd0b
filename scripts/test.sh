#!/usr/bin/env bash
# The test suite: installs redis-server (needed by tests/shared_limits.rs) with apt-get when it
# is missing, then runs `cargo test --locked` with this script's arguments.
set -euo pipefail

if ! command -v redis-server >/dev/null && [[ -z "${WSGUARD_REDIS_SERVER:-}" ]]; then
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    echo "installing redis-server for the shared-limit tests" >&2
    "${sudo[@]}" "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" redis-server
fi
exec cargo test --locked "$@"
