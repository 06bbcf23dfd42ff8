#!/usr/bin/env bash
# Runway's benchmarks (see docs/benchmarks.md), reported, not asserted:
#   1. the gateway against nginx and against no proxy, in one run
#      ("runway bench gateway"; installs wrk and nginx from Debian if
#      missing, as root; flags go to it, e.g. --rounds 1 --duration 5s);
#   2. a replica's restart after kill -9 (p50/max over 20 kills) and a
#      staging environment's start against its floor (a bare PostgreSQL
#      start from an initialised data dir plus bare app starts);
#   3. pipelines end to end (test/e2e): pipelines completed per minute for a
#      stream of pushes to 3 apps and the time a change waits in its app's
#      promotion queue (BenchmarkPipelines), and 10 changes pushed within
#      2.4 s against the same 10 staging environments written by hand in
#      one commit (BenchmarkParallelStaging).
# BENCH=gateway, BENCH=runtime or BENCH=pipelines runs one of them.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${BENCH:-all}
if [ "$which" = all ] || [ "$which" = gateway ]; then
	go run ./cmd/runway bench gateway "$@"
fi
if [ "$which" = all ] || [ "$which" = runtime ]; then
	go test -run '^$' -bench 'ReplicaRestart|StagingReady' -benchtime 1x -count 1 ./internal/runtime/local/
fi
if [ "$which" = all ] || [ "$which" = pipelines ]; then
	go test -run '^$' -bench 'Pipelines|ParallelStaging' -benchtime 1x -count 1 -timeout 90m -v ./test/e2e/
fi
