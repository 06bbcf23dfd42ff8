// Package workload starts and stops the replicas of one version of an app
// in an environment, with the database settings the app's spec asks for.
// Both controllers that run apps use it: the environment controller for
// staging environments and the first start of services, the rollout
// controller for every version change in production. Neither calls the
// other to get replicas started.
package workload

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/runtime"
)

// Runtime is the part of the runtime that runs replicas.
type Runtime interface {
	Database(ctx context.Context, env, app string) (runtime.Database, error)
	Start(ctx context.Context, rs runtime.ReplicaSet) ([]runtime.Replica, error)
	Stop(ctx context.Context, env, app, version string) error
	Status(env, app, version string) []runtime.ReplicaStatus
}

// ErrRetry marks a failure to start a version that is not the version's
// fault (its database could not be provided, say): the caller should try
// again later rather than mark the version failed.
var ErrRetry = errors.New("not the version's fault; retry later")

// Starter runs artifacts' replicas on a runtime.
type Starter struct {
	RT Runtime
}

// Start runs art's replicas in env and waits at most healthTimeout for
// them to be ready; replicas already running for that version are adopted
// as they are (the runtime's Start is idempotent). A failure that is not
// the version's fault wraps ErrRetry.
func (s Starter) Start(ctx context.Context, env string, art build.Artifact, healthTimeout time.Duration) ([]gateway.Backend, error) {
	rs, err := s.ReplicaSet(ctx, env, art, healthTimeout)
	if err != nil {
		return nil, err
	}
	replicas, err := s.RT.Start(ctx, rs)
	if errors.Is(err, runtime.ErrUnavailable) {
		return nil, fmt.Errorf("%w: %w", ErrRetry, err)
	}
	if err != nil {
		return nil, err
	}
	return Backends(replicas), nil
}

// ReplicaSet is the replica set Start runs for art in env: the spec's
// command, probes, replicas and variables, with the database settings its
// needs ask for. A failure that is not the version's fault wraps ErrRetry;
// one wrapping runtime.ErrUnsatisfiable is the app's.
func (s Starter) ReplicaSet(ctx context.Context, env string, art build.Artifact, healthTimeout time.Duration) (runtime.ReplicaSet, error) {
	vars, err := s.Vars(ctx, env, art)
	if err != nil && !errors.Is(err, runtime.ErrUnsatisfiable) {
		return runtime.ReplicaSet{}, fmt.Errorf("%w: %w", ErrRetry, err)
	}
	if err != nil {
		return runtime.ReplicaSet{}, err
	}
	run := art.Spec.Run
	// Sorted: the same spec gives the same replica set (a Kubernetes pod
	// template's hash depends on it).
	for _, k := range slices.Sorted(maps.Keys(run.Env)) {
		vars = append(vars, k+"="+run.Env[k])
	}
	readiness, liveness := run.Probes()
	return runtime.ReplicaSet{
		Env: env, App: art.App, Version: art.Version, Dir: art.Dir, Command: run.Command,
		PortEnv: run.PortEnv, HealthPath: readiness.Path, Replicas: run.Replicas, Vars: vars,
		Readiness: readiness, Liveness: liveness,
		HealthTimeout: healthTimeout,
	}, nil
}

// Backends are the gateway backends of replicas.
func Backends(replicas []runtime.Replica) []gateway.Backend {
	backends := make([]gateway.Backend, len(replicas))
	for i, r := range replicas {
		backends[i] = gateway.Backend{Addr: r.Addr}
	}
	return backends
}

// Vars are the variables every process of art gets in env: its database
// settings when its spec needs postgres. An error wrapping
// runtime.ErrUnsatisfiable is the app's fault.
func (s Starter) Vars(ctx context.Context, env string, art build.Artifact) ([]string, error) {
	var vars []string
	for _, need := range art.Spec.Needs {
		if need != "postgres" {
			continue
		}
		db, err := s.RT.Database(ctx, env, art.App)
		if err != nil {
			return nil, err
		}
		vars = append(vars, db.Env()...)
	}
	return vars, nil
}

// Stop stops every replica of app at version in env.
func (s Starter) Stop(ctx context.Context, env, app, version string) error {
	return s.RT.Stop(ctx, env, app, version)
}

// Status says how each replica of app at version in env is doing.
func (s Starter) Status(env, app, version string) []runtime.ReplicaStatus {
	return s.RT.Status(env, app, version)
}
