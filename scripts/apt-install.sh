#!/usr/bin/env bash
# Installs Debian packages with apt-get without starting the daemons they ship (a
# policy-rc.d refuses every service start meanwhile): the scripts run their own instances.
#
# usage: scripts/apt-install.sh PACKAGE...
set -euo pipefail

(($#)) || { echo "usage: $0 PACKAGE..." >&2; exit 2; }
echo "==> installing $* with apt-get"
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
