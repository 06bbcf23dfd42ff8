#!/usr/bin/env bash
# Runs every fuzz target of the module briefly (FUZZTIME each, default 5s)
# on top of its seed corpus, which `go test` already runs. A crash fails
# the script and leaves the failing input under testdata/fuzz/ of its
# package, to be committed with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-5s}
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' || true)
  for t in $targets; do
    echo "fuzz $pkg $t ($fuzztime)"
    go test -run='^$' -fuzz="^${t}\$" -fuzztime="$fuzztime" "$pkg" >/tmp/runway-fuzz.log 2>&1 || {
      cat /tmp/runway-fuzz.log; echo "fuzz target $t of $pkg failed" >&2; exit 1; }
  done
done
