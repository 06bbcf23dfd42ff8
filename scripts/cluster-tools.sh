#!/usr/bin/env bash
# Builds the test control plane's binaries from the Go module proxy (no
# cluster can be downloaded here): etcd, kube-apiserver,
# kube-controller-manager and Argo Rollouts' rollouts-controller, from the
# separate modules under tools/cluster. They go once per machine into
#   ${RUNWAY_TOOLS_CACHE:-$HOME/.cache/runway-tools}/cluster-<key>/bin
# where <key> hashes those modules' go.mod and go.sum, the Go versions and
# the build flags; an existing directory is reused as it is. A build goes
# into a temporary directory renamed into place when complete, so a killed
# build leaves nothing half built behind.
#
# Progress goes to stderr; the last line on stdout is the bin directory:
#   export RUNWAY_CLUSTER_TOOLS=$(bash scripts/cluster-tools.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

# Argo Rollouts v1.10.2 needs Go >= 1.26.10; the go command fetches this
# toolchain from the Go module proxy (the rest builds with the machine's Go).
rollouts_toolchain=go1.27.3
buildflags=(-trimpath "-ldflags=-s -w")
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

cache="${RUNWAY_TOOLS_CACHE:-$HOME/.cache/runway-tools}"
mkdir -p "$cache"

local_go=$(GOTOOLCHAIN=local go version)
key=$(
  {
    for m in etcd kube rollouts; do
      echo "== $m"
      cat "tools/cluster/$m/go.mod" "tools/cluster/$m/go.sum"
    done
    echo "$local_go"
    echo "rollouts: $rollouts_toolchain"
    echo "flags: ${buildflags[*]} CGO_ENABLED=$CGO_ENABLED"
  } | sha256sum | cut -c1-12
)
dir="$cache/cluster-$key"

log() { echo "cluster-tools: $*" >&2; }

if [ -x "$dir/bin/rollouts-controller" ]; then
  log "cached in $dir"
  echo "$dir/bin"
  exit 0
fi

# One build per key at a time: others wait for it and then reuse it.
exec 9>"$dir.lock"
if ! flock -n 9; then
  log "another build of $dir is running; waiting for it"
  flock 9
fi
if [ -x "$dir/bin/rollouts-controller" ]; then
  log "cached in $dir"
  echo "$dir/bin"
  exit 0
fi

# What a killed build of this key left behind (we hold its lock).
rm -rf "$cache/.cluster-$key".*
tmp=$(mktemp -d "$cache/.cluster-$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
mkdir -p "$tmp/bin"
start=$SECONDS

build() { # build <module dir> <toolchain> <output> <package>
  local mod=$1 toolchain=$2 out=$3 pkg=$4 t0=$SECONDS
  log "building $(basename "$out") ($pkg) ..."
  (cd "tools/cluster/$mod" && GOTOOLCHAIN=$toolchain go build "${buildflags[@]}" -o "$out" "$pkg") >&2
  log "built $(basename "$out") in $((SECONDS - t0))s (total $((SECONDS - start))s)"
}

build etcd local "$tmp/bin/etcd" go.etcd.io/etcd/server/v3
build kube local "$tmp/bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
build kube local "$tmp/bin/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager
build rollouts "$rollouts_toolchain" "$tmp/bin/rollouts-controller" github.com/argoproj/argo-rollouts/cmd/rollouts-controller

{
  echo "$local_go"
  echo "rollouts built with $rollouts_toolchain"
  for m in etcd kube rollouts; do
    grep -E '^require [^ ]+ v' "tools/cluster/$m/go.mod" || true
  done
} >"$tmp/VERSIONS"

rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
log "done in $((SECONDS - start))s: $dir/bin"
echo "$dir/bin"
