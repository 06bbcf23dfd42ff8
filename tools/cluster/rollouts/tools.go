//go:build tools

// Package tools pins the command scripts/cluster-tools.sh builds.
package tools

import (
	_ "github.com/argoproj/argo-rollouts/cmd/rollouts-controller"
)
