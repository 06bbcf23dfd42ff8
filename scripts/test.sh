#!/usr/bin/env bash
# Runs every test with the race detector: unit tests with real git
# repositories and PostgreSQL servers, the end-to-end tests that drive a
# real Runway through its webhook, API, git and gateway, and the cluster
# tests on a real Kubernetes control plane with Argo Rollouts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
# The canary tests also run against a real Prometheus server.
if ! command -v prometheus >/dev/null; then
  echo "installing prometheus (apt-get) for the real-server canary tests"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
# The dashboard's browser tests drive Debian's headless Chromium (without
# it they skip, except under CI=true).
sh scripts/browser-deps.sh || [ "${CI:-}" != true ]
# The cluster tests' control plane (etcd, kube-apiserver,
# kube-controller-manager, Argo Rollouts' controller), built from source
# once per machine into a cache outside the repository (cold: tens of
# minutes on 2 cores; warm: instant).
RUNWAY_CLUSTER_TOOLS=$(bash scripts/cluster-tools.sh)
export RUNWAY_CLUSTER_TOOLS
go vet ./...
(cd examples/homelabping && go vet ./... && go build ./...)
(cd examples/services/postgres-schema && go vet ./... && go build ./...)
# staticcheck, built once into a cache outside the repository.
tools="${XDG_CACHE_HOME:-$HOME/.cache}/runway-tools"
if [ ! -x "$tools/staticcheck" ]; then
  echo "installing staticcheck into $tools"
  GOBIN="$tools" go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
"$tools/staticcheck" ./...
go test -race -count=1 -timeout 40m "$@" ./...
# Every fuzz target, briefly, beyond its seed corpus (skipped when the
# caller narrows the run with arguments such as -run or -short).
if [ "$#" -eq 0 ]; then
  bash scripts/fuzz.sh
fi
