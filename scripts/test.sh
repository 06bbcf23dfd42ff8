#!/usr/bin/env bash
# Runs every test with the race detector: unit tests with real git
# repositories and PostgreSQL servers, and the end-to-end tests that drive
# a real Runway through its webhook, API, git and gateway.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
go vet ./...
(cd examples/homelabping && go vet ./... && go build ./...)
go test -race -count=1 -timeout 40m "$@" ./...
