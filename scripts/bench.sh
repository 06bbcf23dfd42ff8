#!/usr/bin/env bash
# Measures Runway's gateway against nginx and against no proxy, in one run
# (see docs/benchmarks.md). Installs wrk and nginx from Debian if missing
# (as root). Flags go to "runway bench gateway", e.g. --rounds 1 --duration 5s.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./cmd/runway bench gateway "$@"
