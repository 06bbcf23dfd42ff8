package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/runway-cd/runway/internal/postgres"
	"github.com/runway-cd/runway/internal/supervisor"
)

const (
	// defaultAdoptHealthTimeout bounds the wait for a replica the
	// supervisor is still starting during Adopt.
	defaultAdoptHealthTimeout = 5 * time.Second
	// adoptPoll is how often Adopt looks whether such a replica is ready.
	adoptPoll = 20 * time.Millisecond
)

// obsoleteRecordFile is where Runway kept an environment's replicas (pid
// and start time) before the supervisor ran them.
const obsoleteRecordFile = "replicas.json"

// AdoptReport says what Adopt took over and what it dropped, one
// human-readable entry each ("env/app/version#i pid N", "env/postgres pid
// N"); dropped entries end with the reason.
type AdoptReport struct {
	Adopted []string
	Dropped []string
}

// Adopt takes over what runs for the environments on disk after a control
// plane restart: every environment's PostgreSQL server the supervisor
// runs (postgres.Adopt through the launcher), and every replica
// the supervisor runs, whatever its state (one in BackOff is being
// restarted by the supervisor, and its version keeps running). The
// runtime keeps no records of its own: the supervisor's list is the truth,
// and the runtime only rebuilds which replica sets it has from it.
//
// Two checks remain the runtime's, as at Start. A ready replica whose port
// another uid holds (see ownsPort) is removed: the supervisor's probe
// passes on whoever answers. A replica that never became ready (still
// starting its first run after AdoptHealthTimeout: a Start cut short by
// the restart) is removed, as Start would have removed it. Either leaves
// its set incomplete, so Versions does not list it and the next Start
// declares the missing replica again.
//
// Replicas of a Runway from before the supervisor (recorded in an
// environment's replicas.json) are not adopted: the file is removed, and
// CollectStrays stops those replicas (they carry the runtime's marker), so
// an upgrade restarts every replica once; likewise a server an older
// Runway ran as its own child is not adopted, CollectStrays stops it and
// EnsurePostgres starts it again under the supervisor, on the same data.
// Adopt is meant to run once,
// before anything else; what the runtime already runs is left alone.
func (r *Runtime) Adopt(ctx context.Context) (AdoptReport, error) {
	var rep AdoptReport
	sup, err := r.supervisor()
	if err != nil {
		return rep, fmt.Errorf("adopting: %w", err)
	}
	entries, err := os.ReadDir(r.opts.Dir)
	if err != nil {
		return rep, fmt.Errorf("listing environments: %w", err)
	}
	for _, de := range entries {
		if !de.IsDir() || !validEnvName(de.Name()) {
			continue
		}
		if err := r.adoptEnv(ctx, sup, de.Name(), &rep); err != nil {
			return rep, err
		}
	}
	r.log.Info("adopted running processes", "adopted", len(rep.Adopted), "dropped", len(rep.Dropped))
	return rep, nil
}

func (r *Runtime) adoptEnv(ctx context.Context, sup Supervisor, name string, rep *AdoptReport) error {
	e := r.env(name)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := r.adoptPostgres(ctx, sup, e, rep); err != nil {
		return err
	}
	obsolete := filepath.Join(e.dir, obsoleteRecordFile)
	if _, err := os.Stat(obsolete); err == nil {
		if err := os.Remove(obsolete); err != nil {
			return fmt.Errorf("removing the obsolete %s of %s: %w", obsoleteRecordFile, name, err)
		}
		r.log.Info("removed the replica records of an earlier Runway: their replicas are not adopted, strays are stopped and started again under the supervisor", "env", name)
	}
	all, err := sup.ListContext(ctx, name)
	if err != nil {
		return fmt.Errorf("listing the workloads of %s: %w", name, err)
	}
	var list []supervisor.Status
	for _, st := range all {
		if ref, ok := parseReplicaID(st.ID); ok && ref.env == name {
			list = append(list, st)
		}
	}
	if len(list) == 0 {
		return nil
	}
	cred, err := r.opts.Sandbox.Credential(e.name)
	if err != nil {
		return fmt.Errorf("adopting replicas of %s: %w", name, err)
	}
	r.adoptReplicas(ctx, sup, e, list, cred, rep)
	return nil
}

// adoptPostgres adopts the environment's server if it has one on disk.
func (r *Runtime) adoptPostgres(ctx context.Context, sup Supervisor, e *environment, rep *AdoptReport) error {
	dir := filepath.Join(e.dir, "postgres")
	if e.pg != nil {
		return nil
	}
	if _, err := os.Stat(dir); err != nil {
		return nil // no server in this environment
	}
	inst, err := postgres.Adopt(ctx, r.postgresConfig(e.name, sup), dir)
	switch {
	case errors.Is(err, postgres.ErrNotRunning):
		// EnsurePostgres starts it again on the same data.
		rep.Dropped = append(rep.Dropped, fmt.Sprintf("%s/postgres: %v", e.name, err))
		return nil
	case err != nil:
		return fmt.Errorf("adopting postgres of %s: %w", e.name, err)
	}
	e.pg = inst
	rep.Adopted = append(rep.Adopted, fmt.Sprintf("%s/postgres pid %d", e.name, inst.PID()))
	return nil
}

// adoptReplicas checks every replica at once (each may wait the whole
// timeout) and rebuilds e's replica sets from those kept. The caller
// holds e.mu.
func (r *Runtime) adoptReplicas(ctx context.Context, sup Supervisor, e *environment, list []supervisor.Status, cred *syscall.Credential, rep *AdoptReport) {
	timeout := r.opts.AdoptHealthTimeout
	if timeout <= 0 {
		timeout = defaultAdoptHealthTimeout
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		st     supervisor.Status
		reason string // why it was dropped; "" if adopted
	}
	managed := map[string]bool{} // sets the runtime runs already: left alone
	for key := range e.sets {
		managed[key] = true
	}
	results := make([]result, len(list))
	var wg sync.WaitGroup
	for i, st := range list {
		ref, _ := parseReplicaID(st.ID)
		if managed[ref.app+"/"+ref.version] {
			continue
		}
		wg.Go(func() {
			st, reason := r.adoptReplica(hctx, sup, st, ref, cred)
			results[i] = result{st, reason}
		})
	}
	wg.Wait()
	for i, st := range list {
		ref, _ := parseReplicaID(st.ID)
		key := ref.app + "/" + ref.version
		if managed[key] {
			continue
		}
		res := results[i]
		desc := fmt.Sprintf("%s/%s/%s#%d pid %d", e.name, ref.app, ref.version, ref.index, res.st.PID)
		if res.reason != "" {
			rep.Dropped = append(rep.Dropped, desc+": "+res.reason)
			r.log.Info("replica not adopted", "env", e.name, "app", ref.app, "version", ref.version, "index", ref.index, "pid", res.st.PID, "reason", res.reason)
			continue
		}
		s, ok := e.sets[key]
		if !ok {
			s = &replicaSet{app: ref.app, version: ref.version}
			e.sets[key] = s
		}
		s.replicas = max(s.replicas, ref.index+1)
		rep.Adopted = append(rep.Adopted, desc)
		r.log.Info("replica adopted", "env", e.name, "app", ref.app, "version", ref.version, "index", ref.index,
			"pid", res.st.PID, "addr", res.st.Addr, "state", res.st.State, "restarts", res.st.Restarts)
	}
}

// adoptReplica waits (within ctx) for a replica the supervisor is starting
// to become ready, and removes it if another uid holds its port. It returns the replica's status
// and why it was removed ("" if kept).
func (r *Runtime) adoptReplica(ctx context.Context, sup Supervisor, st supervisor.Status, ref replicaRef, cred *syscall.Credential) (supervisor.Status, string) {
	tick := time.NewTicker(adoptPoll)
	defer tick.Stop()
	for st.State == supervisor.Starting && !st.Ready && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
		now, ok, err := sup.GetContext(ctx, st.ID)
		if err != nil {
			continue // asked again at the next tick
		}
		if !ok {
			return st, "removed from the supervisor meanwhile"
		}
		st = now
	}
	// A replica whose address another uid holds is never routed to; any
	// other is kept, ready or not: the supervisor goes on probing and
	// restarting it (a production replica whose database is slow after a
	// restart of the data plane must not be removed for it).
	var reason string
	var fe *foreignListenerError
	if err := ownsPort(st.Addr, ref.index, ref.app, ref.version, cred); errors.As(err, &fe) {
		reason = err.Error() + "; stopped"
	}
	if reason == "" {
		return st, ""
	}
	if err := sup.Remove(context.WithoutCancel(ctx), st.ID); err != nil {
		reason += fmt.Sprintf(" (removing it: %v)", err)
	}
	return st, reason
}

// Detach forgets every process without stopping it: what a control plane
// does when it exits while its apps and databases keep serving. An
// in-process supervisor stops supervising and keeps its state file for a
// later runtime on the same dir, which adopts what still runs; a given
// supervisor goes on. The runtime may be used afterwards as if new (with a
// new in-process supervisor, which adopts what this one left).
func (r *Runtime) Detach() {
	// Background copies of the PostgreSQL template end with the process
	// that started them (a half copy is cleaned by the next refill).
	if d := r.opts.Postgres.TemplateDir; d != "" {
		postgres.StopRefills(d)
	}
	r.mu.Lock()
	envs := r.envs
	r.envs = map[string]*environment{}
	r.mu.Unlock()
	for _, e := range envs {
		e.mu.Lock()
		clear(e.sets)
		e.pg = nil
		e.mu.Unlock()
	}
	r.supMu.Lock()
	own := r.own
	r.own = nil
	close(r.quit)
	r.quit = make(chan struct{})
	r.supMu.Unlock()
	if own != nil {
		own.Close()
	}
	r.log.Info("runtime detached; processes keep running")
}
