#!/usr/bin/env bash
# Installs what Runway's demo and tests need on a fresh Debian machine:
# PostgreSQL's server binaries (Runway starts its own servers) and the Go
# modules of Runway and of the example app.
set -euo pipefail
cd "$(dirname "$0")/.."

have_pg() {
  local bindir
  bindir=$(pg_config --bindir 2>/dev/null || true)
  [ -n "$bindir" ] && [ -x "$bindir/initdb" ] && [ -x "$bindir/postgres" ] && return 0
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

if ! have_pg; then
  echo "installing PostgreSQL server binaries (apt-get)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
command -v go >/dev/null || { echo "Go is required (https://go.dev/dl/)" >&2; exit 1; }
go mod download
(cd examples/homelabping && go mod download)
(cd examples/services/postgres-schema && go mod download)
