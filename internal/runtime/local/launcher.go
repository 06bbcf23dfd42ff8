package local

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runway-cd/runway/internal/postgres"
	"github.com/runway-cd/runway/internal/supervisor"
)

const (
	// postgresStopGrace is how long the supervisor lets a server's fast
	// shutdown (SIGINT) take before it kills the server's process group.
	postgresStopGrace = 10 * time.Second
	// launchedPoll is how often a launched server's workload is checked for
	// having been removed from the supervisor (Running.Exited).
	launchedPoll = 200 * time.Millisecond
)

// pgLauncher runs an environment's PostgreSQL server as the supervisor's
// workload "<env>/postgres" (postgres.Launcher): the supervisor restarts
// it when it dies, on the same port with the same arguments, also while no
// control plane runs.
type pgLauncher struct {
	sup  Supervisor
	env  string
	quit <-chan struct{} // closed when the runtime detaches: pollers end
}

var _ postgres.Launcher = pgLauncher{}

// Launch implements postgres.Launcher. Readiness is a TCP connect to the
// server's address; the postgres package waits for it to accept a login.
func (l pgLauncher) Launch(ctx context.Context, p postgres.Process) (postgres.Running, error) {
	st, err := l.sup.Apply(ctx, supervisor.Spec{
		ID:         postgresID(l.env),
		Group:      l.env,
		Command:    p.Command,
		Dir:        p.Dir,
		Env:        p.Env,
		UID:        p.UID,
		GID:        p.GID,
		Credential: p.Credential,
		LogPath:    p.LogPath,
		Addr:       p.Addr,
		Readiness:  &supervisor.Probe{},
		StopSignal: p.StopSignal,
		StopGrace:  postgresStopGrace,
	})
	if err != nil {
		return nil, fmt.Errorf("declaring the postgres of %s to the supervisor: %w", l.env, err)
	}
	return l.running(st), nil
}

// Find implements postgres.Launcher: the environment's server workload, if
// the supervisor has one (id, the instance dir, names the environment's
// only server).
func (l pgLauncher) Find(ctx context.Context, id string) (postgres.Running, bool, error) {
	st, ok, err := l.sup.GetContext(ctx, postgresID(l.env))
	if err != nil {
		return nil, false, fmt.Errorf("asking the supervisor for the server of %s: %w", l.env, err)
	}
	if !ok {
		return nil, false, nil
	}
	return l.running(st), true, nil
}

func (l pgLauncher) running(st supervisor.Status) *launched {
	r := &launched{sup: l.sup, id: st.ID, exited: make(chan struct{})}
	r.pid.Store(int64(st.PID))
	go r.watch(l.quit)
	return r
}

// launched is a server the supervisor runs (postgres.Running).
type launched struct {
	sup    Supervisor
	id     string
	pid    atomic.Int64 // the last pid the supervisor reported
	exited chan struct{}
	once   sync.Once
}

// PID implements postgres.Running: the current process's, or, while the
// supervisor waits to restart it, the last one's.
func (r *launched) PID() int {
	if st, ok, err := r.sup.GetContext(context.Background(), r.id); err == nil && ok && st.PID > 0 {
		r.pid.Store(int64(st.PID))
	}
	return int(r.pid.Load())
}

// Exited implements postgres.Running: closed once the workload is gone
// from the supervisor (stopped for good); a process the supervisor
// restarts has not exited in this sense.
func (r *launched) Exited() <-chan struct{} { return r.exited }

// Stop implements postgres.Running: the supervisor stops the server and
// forgets it.
func (r *launched) Stop(ctx context.Context) error {
	err := r.sup.Remove(ctx, r.id)
	if err == nil {
		r.once.Do(func() { close(r.exited) })
	}
	return err
}

// watch closes exited once the supervisor no longer has the workload,
// until quit.
func (r *launched) watch(quit <-chan struct{}) {
	tick := time.NewTicker(launchedPoll)
	defer tick.Stop()
	for {
		select {
		case <-r.exited:
			return
		case <-quit:
			return
		case <-tick.C:
		}
		// Gone only when the supervisor says so, not when it cannot be
		// asked.
		if _, ok, err := r.sup.GetContext(context.Background(), r.id); err == nil && !ok {
			r.once.Do(func() { close(r.exited) })
			return
		}
	}
}
