#!/usr/bin/env bash
# Runway's benchmarks (see docs/benchmarks.md), reported, not asserted:
#   1. the gateway against nginx and against no proxy, in one run
#      ("runway bench gateway"; installs wrk and nginx from Debian if
#      missing, as root; flags go to it, e.g. --rounds 1 --duration 5s);
#   2. a replica's restart after kill -9 (p50/max over 20 kills) and a
#      staging environment's start against its floor (a bare PostgreSQL
#      start from an initialised data dir plus bare app starts).
# BENCH=gateway or BENCH=runtime runs one of them.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${BENCH:-all}
if [ "$which" = all ] || [ "$which" = gateway ]; then
	go run ./cmd/runway bench gateway "$@"
fi
if [ "$which" = all ] || [ "$which" = runtime ]; then
	go test -run '^$' -bench 'ReplicaRestart|StagingReady' -benchtime 1x -count 1 ./internal/runtime/local/
fi
