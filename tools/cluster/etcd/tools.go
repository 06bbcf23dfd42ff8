//go:build tools

// Package tools pins the command scripts/cluster-tools.sh builds.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
