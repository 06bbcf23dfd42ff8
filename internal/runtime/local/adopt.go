package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/runway-cd/runway/internal/postgres"
	"github.com/runway-cd/runway/internal/procfs"
)

const (
	// defaultAdoptHealthTimeout bounds the health check of each recorded
	// replica during Adopt.
	defaultAdoptHealthTimeout = 5 * time.Second
	// exitPoll is how often an adopted replica is checked for having
	// exited; it is not a child, so nothing else tells.
	exitPoll = 200 * time.Millisecond
)

// AdoptReport says what Adopt took over and which records it dropped, one
// human-readable entry each ("env/app/version#i pid N", "env/postgres pid
// N"); dropped entries end with the reason.
type AdoptReport struct {
	Adopted []string
	Dropped []string
}

// Adopt takes over what an earlier runtime on the same directory started
// and left running: every environment's PostgreSQL server and every
// recorded replica that still runs as the same process (same pid and
// start time) and answers its health path. Records of processes that are
// gone, or whose pid now names another process, are dropped without
// signalling anything; a replica that is verifiably ours but unhealthy is
// stopped. Afterwards Start returns adopted replicas as it returns the ones
// it started, and Stop, Database and Destroy work on them. Adopt is meant
// to run once, before anything else; what the runtime already runs is left
// alone.
func (r *Runtime) Adopt(ctx context.Context) (AdoptReport, error) {
	var rep AdoptReport
	entries, err := os.ReadDir(r.opts.Dir)
	if err != nil {
		return rep, fmt.Errorf("listing environments: %w", err)
	}
	for _, de := range entries {
		if !de.IsDir() {
			continue
		}
		if err := r.adoptEnv(ctx, de.Name(), &rep); err != nil {
			return rep, err
		}
	}
	r.log.Info("adopted running processes", "adopted", len(rep.Adopted), "dropped", len(rep.Dropped))
	return rep, nil
}

func (r *Runtime) adoptEnv(ctx context.Context, name string, rep *AdoptReport) error {
	e := r.env(name)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := r.adoptPostgres(ctx, e, rep); err != nil {
		return err
	}
	recs, err := readRecords(e.dir)
	if err != nil {
		return fmt.Errorf("adopting replicas of %s: %w", name, err)
	}
	if len(recs) == 0 {
		return nil
	}
	cred, err := r.opts.Sandbox.Credential(e.name)
	if err != nil {
		return fmt.Errorf("adopting replicas of %s: %w", name, err)
	}
	r.adoptReplicas(ctx, e, recs, cred, rep)
	return e.saveRecords(nil)
}

// adoptPostgres adopts the environment's server if it has one on disk.
func (r *Runtime) adoptPostgres(ctx context.Context, e *environment, rep *AdoptReport) error {
	dir := filepath.Join(e.dir, "postgres")
	if e.pg != nil {
		return nil
	}
	if _, err := os.Stat(dir); err != nil {
		return nil // no server in this environment
	}
	inst, err := postgres.Adopt(ctx, r.postgresConfig(e.name), dir)
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

// adoptReplicas checks every record at once (each health check may take
// the whole timeout) and groups the adopted replicas into their sets.
func (r *Runtime) adoptReplicas(ctx context.Context, e *environment, recs []replicaRecord, cred *syscall.Credential, rep *AdoptReport) {
	timeout := r.opts.AdoptHealthTimeout
	if timeout <= 0 {
		timeout = defaultAdoptHealthTimeout
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		rec    replicaRecord
		p      *process
		reason string
	}
	results := make(chan result, len(recs))
	for _, rec := range recs {
		go func() {
			p, reason := adoptReplica(hctx, rec, cred)
			results <- result{rec, p, reason}
		}()
	}
	managed := map[string]bool{} // sets this runtime already runs: left alone
	for key := range e.sets {
		managed[key] = true
	}
	lost := map[string]bool{} // sets with a replica not adopted
	for range recs {
		res := <-results
		key := res.rec.App + "/" + res.rec.Version
		desc := fmt.Sprintf("%s/%s/%s#%d pid %d", e.name, res.rec.App, res.rec.Version, res.rec.Index, res.rec.PID)
		if managed[key] {
			if res.p != nil {
				res.p.release()
			}
			continue
		}
		if res.p == nil {
			lost[key] = true
			rep.Dropped = append(rep.Dropped, desc+": "+res.reason)
			r.log.Info("replica record dropped", "env", e.name, "app", res.rec.App, "version", res.rec.Version, "pid", res.rec.PID, "reason", res.reason)
			continue
		}
		s := e.adopted(key, res.rec)
		s.procs = append(s.procs, res.p)
		rep.Adopted = append(rep.Adopted, desc)
		r.log.Info("replica adopted", "env", e.name, "app", res.rec.App, "version", res.rec.Version, "pid", res.rec.PID, "addr", res.rec.Addr)
	}
	for key, s := range e.sets {
		if managed[key] {
			continue
		}
		s.incomplete = lost[key]
		slices.SortFunc(s.procs, func(a, b *process) int { return a.index - b.index })
	}
}

// adopted returns the set key is adopted into, creating it on first use.
func (e *environment) adopted(key string, rec replicaRecord) *replicaSet {
	s, ok := e.sets[key]
	if !ok {
		s = &replicaSet{app: rec.App, version: rec.Version, healthPath: rec.HealthPath}
		e.sets[key] = s
	}
	return s
}

// adoptReplica adopts the recorded replica if it is still the same process,
// healthy and the holder of its port (as uid cred's, see ownsPort), or says
// why not. It signals a process only once its start time proves it is the
// recorded replica: an unhealthy one, or one whose port another uid holds,
// is stopped.
func adoptReplica(ctx context.Context, rec replicaRecord, cred *syscall.Credential) (*process, string) {
	st, err := procfs.Read(rec.PID)
	switch {
	case rec.PID <= 0 || rec.StartTime == 0:
		return nil, "record has no pid or start time"
	case err != nil:
		return nil, "process gone"
	case st.StartTime != rec.StartTime:
		return nil, fmt.Sprintf("pid now names another process (start time %d, recorded %d)", st.StartTime, rec.StartTime)
	case st.Exited():
		return nil, "process exited"
	}
	p := watch(rec)
	if err := p.waitHealthy(ctx, rec.HealthPath); err != nil {
		_ = p.stop(context.WithoutCancel(ctx))
		p.release()
		return nil, "not healthy, stopped"
	}
	if err := p.ownsPort(rec.App, rec.Version, cred); err != nil {
		_ = p.stop(context.WithoutCancel(ctx))
		p.release()
		return nil, err.Error() + "; stopped"
	}
	return p, ""
}

// watch makes a process of a running replica that is not a child: a
// goroutine polls /proc and closes done once it has exited, until release.
func watch(rec replicaRecord) *process {
	quit := make(chan struct{})
	p := &process{
		index:     rec.Index,
		pid:       rec.PID,
		startTime: rec.StartTime,
		addr:      rec.Addr,
		logPath:   rec.Log,
		done:      make(chan struct{}),
		adopted:   true,
	}
	p.release = sync.OnceFunc(func() { close(quit) })
	go func() {
		tick := time.NewTicker(exitPoll)
		defer tick.Stop()
		for procfs.Running(p.pid, p.startTime) {
			select {
			case <-tick.C:
			case <-quit:
				return
			}
		}
		close(p.done)
	}()
	return p
}

// Detach forgets every process without stopping it: what a control plane
// does when it exits while its apps and databases keep serving. The
// records stay on disk for a later Adopt. Detached processes are no longer
// watched; the runtime may be used afterwards as if new.
func (r *Runtime) Detach() {
	r.mu.Lock()
	envs := r.envs
	r.envs = map[string]*environment{}
	r.mu.Unlock()
	for _, e := range envs {
		e.mu.Lock()
		for key, s := range e.sets {
			for _, p := range s.procs {
				p.release()
			}
			delete(e.sets, key)
		}
		e.pg = nil
		e.mu.Unlock()
	}
	r.log.Info("runtime detached; processes keep running")
}
