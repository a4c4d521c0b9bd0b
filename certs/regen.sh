#!/usr/bin/env bash
# Replace the development CA and the localhost certificate with new ones
# (ca.crt, ca.key, localhost.crt, localhost.key in this directory), made by
# `wsguard dev-certs --force`. Trust the new ca.crt again afterwards: the old
# one no longer signs anything. See README.md here.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
cargo run --release --quiet --bin wsguard -- dev-certs --force --dir "$here"
