package local

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/internal/supervisor"
)

// Supervisor is what the runtime needs of the process supervisor (the local
// kubelet): it declares workloads and reads their status, the supervisor
// starts, probes and restarts them. *supervisor.Supervisor (in-process)
// and *supervisor.Client (the data plane's, over its admin socket) both
// are one.
type Supervisor interface {
	Apply(ctx context.Context, sp supervisor.Spec) (supervisor.Status, error)
	WaitReady(ctx context.Context, id string) (supervisor.Status, error)
	Remove(ctx context.Context, id string) error
	// GetContext and ListContext fail when the supervisor cannot be
	// asked (the data plane restarting): never read that as "nothing
	// runs", which would start replicas again or stop what runs as
	// strays.
	GetContext(ctx context.Context, id string) (supervisor.Status, bool, error)
	ListContext(ctx context.Context, group string) ([]supervisor.Status, error)
}

var (
	_ Supervisor = (*supervisor.Supervisor)(nil)
	_ Supervisor = (*supervisor.Client)(nil)
)

// supervisorStateFile, in the runtime dir, is the in-process supervisor's
// state (every Spec, environments' database passwords included, with its
// pid): root's, 0600, a file where only directories are environments.
const supervisorStateFile = ".supervisor.json"

// Workload IDs: "<env>/<app>/<version>/<index>" for a replica,
// "<env>/postgres" for an environment's server. The group is the
// environment.
const postgresWorkload = "postgres"

func replicaID(env, app, version string, index int) string {
	return env + "/" + app + "/" + version + "/" + strconv.Itoa(index)
}

func postgresID(env string) string { return env + "/" + postgresWorkload }

// replicaRef is a replica's ID taken apart.
type replicaRef struct {
	env, app, version string
	index             int
}

// parseReplicaID takes a replica's workload ID apart; ok is false for any
// other ID (a server's, or a workload this runtime did not declare).
func parseReplicaID(id string) (replicaRef, bool) {
	parts := strings.Split(id, "/")
	if len(parts) != 4 {
		return replicaRef{}, false
	}
	i, err := strconv.Atoi(parts[3])
	if err != nil || i < 0 || strconv.Itoa(i) != parts[3] {
		return replicaRef{}, false
	}
	for _, p := range parts[:3] {
		if !validEnvName(p) {
			return replicaRef{}, false
		}
	}
	return replicaRef{env: parts[0], app: parts[1], version: parts[2], index: i}, true
}

// ours reports whether a workload is one this runtime declares: a replica
// or an environment's server.
func ours(id string) (env string, ok bool) {
	if r, ok := parseReplicaID(id); ok {
		return r.env, true
	}
	env, rest, ok := strings.Cut(id, "/")
	return env, ok && rest == postgresWorkload && validEnvName(env)
}

// newSupervisor starts the in-process supervisor on the runtime dir's
// state file: it adopts what an earlier one on the same dir left running.
func (r *Runtime) newSupervisor() (*supervisor.Supervisor, error) {
	sup, err := supervisor.New(context.Background(), supervisor.Options{
		StatePath: filepath.Join(r.opts.Dir, supervisorStateFile),
		Logger:    r.log,
	})
	if err != nil {
		return nil, fmt.Errorf("starting the in-process supervisor: %w", err)
	}
	return sup, nil
}

// supervisor returns the supervisor the runtime declares workloads to; an
// in-process one closed by Detach is started again.
func (r *Runtime) supervisor() (Supervisor, error) {
	if r.opts.Supervisor != nil {
		return r.opts.Supervisor, nil
	}
	r.supMu.Lock()
	defer r.supMu.Unlock()
	if r.own == nil {
		sup, err := r.newSupervisor()
		if err != nil {
			return nil, err
		}
		r.own = sup
	}
	return r.own, nil
}

// probe converts a runtime probe; an empty path is the health path.
func probe(p runtime.Probe, healthPath string) *supervisor.Probe {
	if p.Path == "" {
		p.Path = healthPath
	}
	return &supervisor.Probe{Path: p.Path, Period: p.Period, Timeout: p.Timeout, FailureThreshold: p.FailureThreshold}
}

// replicaStatus maps a supervisor's status of replica index.
func replicaStatus(index int, st supervisor.Status) runtime.ReplicaStatus {
	return runtime.ReplicaStatus{
		Index: index, Addr: st.Addr, PID: st.PID,
		State: runtime.ReplicaState(st.State), Ready: st.Ready, Restarts: st.Restarts,
		LastExit: st.LastExit, LastExitAt: st.LastExitAt, NextStart: st.NextStart, Since: st.Since,
		LogTail: st.LogTail,
	}
}

// stopGrace is how long a replica may take to exit after SIGTERM before
// the supervisor kills its process group.
const stopGrace = 5 * time.Second
