// Package nodeagent is the one simulated part of the cluster tests: a
// stand-in for the kubelet and container runtime, which cannot run here.
// It registers a Node, binds pods to it, and runs each pod's container by
// pulling its image (a Runway artifact) into a directory and starting the
// entrypoint as a process of this machine on a loopback address of its
// own (the pod IP), with only the pod's environment. It runs readiness
// and liveness probes, restarts with back-off, completes Jobs' pods with
// their exit status, and serves their logs to the API server as the
// kubelet does. Everything else in the cluster tests is the real thing.
//
// CONTRACT SKELETON written by the lead; the owner replaces the bodies.
package nodeagent

import (
	"context"
	"errors"
	"log/slog"

	"k8s.io/client-go/rest"

	"github.com/runway-cd/runway/internal/image"
)

// Options configure an Agent.
type Options struct {
	// Config reaches the API server. Required.
	Config *rest.Config
	// NodeName is the node's name. Empty: "runway-sim-node".
	NodeName string
	// Dir holds the pods' filesystems and logs. Required.
	Dir string
	// Images is how images are pulled (the registry's transport).
	Images image.Options
	Logger *slog.Logger
}

// Agent is a running node.
type Agent struct{}

// Start registers the node and runs pods until Stop.
func Start(ctx context.Context, o Options) (*Agent, error) {
	return nil, errors.New("nodeagent: not implemented yet")
}

// Stop kills every pod's process and returns once they are gone.
func (a *Agent) Stop() {}
