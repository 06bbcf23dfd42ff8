#!/usr/bin/env bash
# Runs the whole method end to end for the example app (see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
exec go run ./cmd/runway demo "$@"
