package local

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/internal/supervisor"
)

// replicaSet is what the runtime declared of a replica set: how many
// replicas it has (adopted: the highest index the supervisor runs, plus
// one). The supervisor holds everything else.
type replicaSet struct {
	app, version string
	replicas     int
}

// setView is a replica set as the supervisor reports it.
type setView struct {
	app, version string
	want         int
	byIndex      map[int]supervisor.Status
}

// complete reports whether the supervisor knows every replica of the set.
func (v *setView) complete() bool {
	for i := range v.want {
		if _, ok := v.byIndex[i]; !ok {
			return false
		}
	}
	return v.want > 0
}

// replicas lists the set's replicas the supervisor knows, by index.
func (v *setView) replicas() []runtime.Replica {
	var out []runtime.Replica
	for i := range v.want {
		if st, ok := v.byIndex[i]; ok {
			out = append(out, runtime.Replica{Addr: st.Addr, PID: st.PID})
		}
	}
	return out
}

// views groups the supervisor's statuses of e's replicas (list: its
// List(e.name)) into sets by app/version; a set declared but unknown to
// the supervisor has an empty view. The caller holds e.mu.
func (e *environment) views(list []supervisor.Status) map[string]*setView {
	out := map[string]*setView{}
	view := func(app, version string) *setView {
		key := app + "/" + version
		v, ok := out[key]
		if !ok {
			v = &setView{app: app, version: version, byIndex: map[int]supervisor.Status{}}
			if s, ok := e.sets[key]; ok {
				v.want = s.replicas
			}
			out[key] = v
		}
		return v
	}
	for _, s := range e.sets {
		view(s.app, s.version)
	}
	for _, st := range list {
		ref, ok := parseReplicaID(st.ID)
		if !ok || ref.env != e.name {
			continue
		}
		v := view(ref.app, ref.version)
		v.byIndex[ref.index] = st
		v.want = max(v.want, ref.index+1)
	}
	return out
}

// replicaIDs lists the IDs of env's replicas in list, of app at version
// only unless app is "".
func replicaIDs(list []supervisor.Status, env, app, version string) []string {
	var ids []string
	for _, st := range list {
		ref, ok := parseReplicaID(st.ID)
		if ok && ref.env == env && (app == "" || ref.app == app && ref.version == version) {
			ids = append(ids, st.ID)
		}
	}
	return ids
}

// removeWorkloads removes workloads from the supervisor, all at once: each
// is drained through the gateway before it is signalled.
func removeWorkloads(ctx context.Context, sup Supervisor, ids []string) error {
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			if err := sup.Remove(ctx, id); err != nil {
				errs[i] = fmt.Errorf("removing %s: %w", id, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Start implements runtime.Replicas. It declares every replica the
// supervisor does not run yet, each on a port of its own, and waits until
// all of them are ready and hold their ports; replicas the supervisor
// already runs (adopted ones included) are returned as they are. On
// failure what this call declared is removed.
func (r *Runtime) Start(ctx context.Context, rs runtime.ReplicaSet) (_ []runtime.Replica, err error) {
	defer func() { err = unavailable(err) }()
	if err := checkReplicaSet(rs); err != nil {
		return nil, fmt.Errorf("starting a replica set: %w", err)
	}
	sup, err := r.supervisor()
	if err != nil {
		return nil, fmt.Errorf("starting %s %s in %s: %w", rs.App, rs.Version, rs.Env, err)
	}
	e := r.env(rs.Env)
	e.mu.Lock()
	defer e.mu.Unlock()
	if rs.Replicas < 1 {
		rs.Replicas = 1
	}
	if rs.HealthTimeout == 0 {
		rs.HealthTimeout = 30 * time.Second
	}
	key := rs.App + "/" + rs.Version
	list, err := sup.ListContext(ctx, rs.Env)
	if err != nil {
		return nil, fmt.Errorf("starting %s %s in %s: asking the supervisor what runs: %w", rs.App, rs.Version, rs.Env, err)
	}
	known := e.views(list)[key]
	if known == nil {
		known = &setView{app: rs.App, version: rs.Version, byIndex: map[int]supervisor.Status{}}
	}
	known.want = max(known.want, rs.Replicas)
	if known.complete() {
		e.sets[key] = &replicaSet{app: rs.App, version: rs.Version, replicas: known.want}
		return known.replicas(), nil
	}
	if len(rs.Command) == 0 {
		return nil, fmt.Errorf("starting %s %s in %s: no command", rs.App, rs.Version, rs.Env)
	}
	sb, err := r.prepareEnv(e)
	if err != nil {
		return nil, err
	}
	command, err := resolveCommand(rs.Dir, rs.Command[0])
	if err != nil {
		return nil, fmt.Errorf("starting %s %s in %s: starting %s: %w", rs.App, rs.Version, rs.Env, rs.Command[0], err)
	}
	rs.Command = append([]string{command}, rs.Command[1:]...)
	rs.Vars = append(slices.Clip(rs.Vars), r.markerVar())

	hctx, cancel := context.WithTimeout(ctx, rs.HealthTimeout)
	defer cancel()
	var missing []int
	for i := range known.want {
		if _, ok := known.byIndex[i]; !ok {
			missing = append(missing, i)
		}
	}
	statuses := make([]supervisor.Status, len(missing))
	errs := make([]error, len(missing))
	var wg sync.WaitGroup
	for n, i := range missing {
		wg.Go(func() {
			statuses[n], errs[n] = r.startReplica(hctx, sup, e, rs, i, sb)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		var applied []string
		for _, i := range missing {
			if id := replicaID(rs.Env, rs.App, rs.Version, i); known.byIndex[i].ID == "" {
				if _, ok, gerr := sup.GetContext(ctx, id); gerr != nil || ok {
					applied = append(applied, id)
				}
			}
		}
		if rerr := removeWorkloads(context.WithoutCancel(ctx), sup, applied); rerr != nil {
			r.log.Warn("removing the replicas of a failed start", "env", rs.Env, "app", rs.App, "version", rs.Version, "err", rerr)
		}
		return nil, fmt.Errorf("starting %s %s in %s: %w", rs.App, rs.Version, rs.Env, err)
	}
	for n, i := range missing {
		known.byIndex[i] = statuses[n]
	}
	e.sets[key] = &replicaSet{app: rs.App, version: rs.Version, replicas: known.want}
	r.log.Info("replicas up", "env", rs.Env, "app", rs.App, "version", rs.Version, "replicas", known.want, "started", len(missing))
	return known.replicas(), nil
}

// Stop implements runtime.Replicas.
func (r *Runtime) Stop(ctx context.Context, env, app, version string) (err error) {
	defer func() { err = unavailable(err) }()
	if err := checkReplicaSet(runtime.ReplicaSet{Env: env, App: app, Version: version}); err != nil {
		return fmt.Errorf("stopping a replica set: %w", err)
	}
	sup, err := r.supervisor()
	if err != nil {
		return fmt.Errorf("stopping %s %s in %s: %w", app, version, env, err)
	}
	if !r.holds(env) {
		// Nothing of env is known here: stop what the supervisor runs
		// of it without registering env (which Envs would list).
		list, err := sup.ListContext(ctx, env)
		if err != nil {
			return fmt.Errorf("stopping %s %s in %s: asking the supervisor what runs: %w", app, version, env, err)
		}
		if len(replicaIDs(list, env, app, version)) == 0 {
			return nil
		}
	}
	e := r.env(env)
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.sets, app+"/"+version)
	list, err := sup.ListContext(ctx, env)
	if err != nil {
		return fmt.Errorf("stopping %s %s in %s: asking the supervisor what runs: %w", app, version, env, err)
	}
	ids := replicaIDs(list, env, app, version)
	if len(ids) == 0 {
		return nil
	}
	if err := removeWorkloads(ctx, sup, ids); err != nil {
		return fmt.Errorf("stopping %s %s in %s: %w", app, version, env, err)
	}
	r.log.Info("replicas stopped", "env", env, "app", app, "version", version)
	return nil
}

// checkReplicaSet refuses a replica set whose environment, app or version
// is no valid name: all three are required.
func checkReplicaSet(rs runtime.ReplicaSet) error {
	return errors.Join(runtime.CheckName("environment", rs.Env), runtime.CheckName("app", rs.App),
		runtime.CheckName("version", rs.Version))
}

// portAttempts bounds how often a replica is declared again on another
// port when the one picked was taken before the replica bound it.
const portAttempts = 3

// portRaceError is a replica that lost its port to another process between
// the pick and its bind: worth another port.
type portRaceError struct{ err error }

func (e *portRaceError) Error() string { return e.err.Error() }
func (e *portRaceError) Unwrap() error { return e.err }

// startReplica declares replica index of rs to the supervisor and waits
// until it is ready and holds its port, on a new port when it lost the
// one picked (a bind that failed with "address already in use", or a
// listener of another uid: see ownsPort).
func (r *Runtime) startReplica(ctx context.Context, sup Supervisor, e *environment, rs runtime.ReplicaSet, index int, sb envSandbox) (supervisor.Status, error) {
	logPath := filepath.Join(e.logDir(), fmt.Sprintf("%s-%s-%d.log", rs.App, rs.Version, index))
	var err error
	for attempt := 1; attempt <= portAttempts; attempt++ {
		port, perr := r.pickPort()
		if perr != nil {
			return supervisor.Status{}, perr
		}
		sp := replicaSpec(rs, index, sb, port, logPath)
		offset := fileSize(logPath)
		if _, err := sup.Apply(ctx, sp); err != nil {
			return supervisor.Status{}, fmt.Errorf("starting %s: %w", rs.Command[0], err)
		}
		var st supervisor.Status
		st, err = r.awaitReplica(ctx, sup, sp, offset, rs, index, sb.cred)
		var race *portRaceError
		if !errors.As(err, &race) {
			return st, err
		}
		r.log.Info("replica lost its port, trying another", "env", rs.Env, "app", rs.App, "version", rs.Version,
			"index", index, "port", port, "attempt", attempt, "err", err)
		if rerr := sup.Remove(context.WithoutCancel(ctx), sp.ID); rerr != nil {
			return supervisor.Status{}, fmt.Errorf("removing replica %d after it lost its port: %w", index, rerr)
		}
	}
	return supervisor.Status{}, fmt.Errorf("replica %d lost its port %d times: %w", index, portAttempts, err)
}

// replicaSpec is how the supervisor runs replica index of rs on port: as
// the environment's sandbox user, with the allow-listed environment, the
// replica's variables and its port, its output appended to its log (opened
// by the supervisor, root's, 0600, in a directory only Runway enters: the
// replica can write its log but not read or reopen it, nor any other).
func replicaSpec(rs runtime.ReplicaSet, index int, sb envSandbox, port int, logPath string) supervisor.Spec {
	sp := supervisor.Spec{
		ID:      replicaID(rs.Env, rs.App, rs.Version, index),
		Group:   rs.Env,
		Command: rs.Command,
		Dir:     rs.Dir,
		Env: sb.env(append(slices.Clip(rs.Vars), rs.PortEnv+"="+strconv.Itoa(port),
			"RUNWAY_ENV="+rs.Env, "RUNWAY_APP="+rs.App, "RUNWAY_VERSION="+rs.Version)...),
		LogPath:   logPath,
		Addr:      net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Readiness: probe(rs.Readiness, rs.HealthPath),
		StopGrace: stopGrace,
	}
	if rs.Liveness != nil {
		sp.Liveness = probe(*rs.Liveness, rs.HealthPath)
	}
	if sb.cred != nil {
		sp.UID, sp.GID, sp.Credential = sb.cred.Uid, sb.cred.Gid, true
	}
	return sp
}

// startRestarts is how many times a replica may be restarted while its
// start waits for it to become ready: Kubernetes shows CrashLoopBackOff
// from the second failure on; at the third restart (1s and 2s of backoff
// later) the start fails rather than waiting out the health timeout.
const startRestarts = 3

// awaitRestarts follows a replica the supervisor restarts until it is
// ready, or fails once it has been restarted startRestarts times and
// exited again, or ctx ends.
func (r *Runtime) awaitRestarts(ctx context.Context, sup Supervisor, id string) (supervisor.Status, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var st supervisor.Status
	for {
		now, ok, err := sup.GetContext(ctx, id)
		switch {
		case err != nil:
			// asked again at the next tick
		case !ok:
			return st, fmt.Errorf("replica %s removed from the supervisor while starting", id)
		case now.Ready:
			return now, nil
		case now.Restarts >= startRestarts && (now.State == supervisor.BackOff || now.PID == 0):
			return now, fmt.Errorf("replica exited before it was healthy (%s), crash-looping: restarted %d times", now.LastExit, now.Restarts)
		default:
			st = now
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-tick.C:
		}
	}
}

// awaitReplica waits until the supervisor reports the replica ready, then
// checks that the replica's uid holds its port: a ready probe is not
// enough, the port may have been taken by another uid before the replica
// bound it.
func (r *Runtime) awaitReplica(ctx context.Context, sup Supervisor, sp supervisor.Spec, logOffset int64, rs runtime.ReplicaSet, index int, cred *syscall.Credential) (supervisor.Status, error) {
	st, err := sup.WaitReady(ctx, sp.ID)
	if err != nil {
		logTail := tailSince(sp.LogPath, logOffset, 2048)
		switch {
		case ctx.Err() != nil:
			return st, fmt.Errorf("replica on %s not healthy at %s before the deadline; log tail:\n%s", sp.Addr, sp.Readiness.Path, logTail)
		case strings.Contains(logTail, "address already in use"):
			// Say who took it, if another uid holds it.
			var fe *foreignListenerError
			if err := ownsPort(sp.Addr, index, rs.App, rs.Version, cred); errors.As(err, &fe) {
				return st, &portRaceError{err}
			}
			return st, &portRaceError{fmt.Errorf("replica %d could not bind %s; log tail:\n%s", index, sp.Addr, logTail)}
		}
		exit := err.Error()
		if last, ok, gerr := sup.GetContext(ctx, sp.ID); gerr == nil && ok && last.LastExit != "" {
			exit = last.LastExit
		}
		// The supervisor restarts it, with its backoff: a replica that
		// failed once at start (its database not up yet, say) may come
		// up at the next try. One that keeps exiting fails the start.
		if st, err = r.awaitRestarts(ctx, sup, sp.ID); err != nil {
			if ctx.Err() != nil {
				return st, fmt.Errorf("replica exited before it was healthy (%s) and was not healthy at %s before the deadline; log tail:\n%s",
					exit, sp.Readiness.Path, tailSince(sp.LogPath, logOffset, 2048))
			}
			return st, fmt.Errorf("%w; log tail:\n%s", err, tailSince(sp.LogPath, logOffset, 2048))
		}
	}
	if err := ownsPort(sp.Addr, index, rs.App, rs.Version, cred); err != nil {
		var fe *foreignListenerError
		if errors.As(err, &fe) {
			return st, &portRaceError{err}
		}
		return st, err
	}
	return st, nil
}

// resolveCommand makes a replica's program an absolute path, as the
// supervisor wants it: ./name and dir/name are relative to the artifact's
// dir, a bare name is looked up in Runway's PATH (as exec.Command would).
func resolveCommand(dir, name string) (string, error) {
	path := name
	switch {
	case filepath.IsAbs(name):
	case strings.Contains(name, "/"):
		path = filepath.Join(dir, name)
	default:
		p, err := exec.LookPath(name)
		if err != nil {
			return "", err
		}
		path = p
	}
	path, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%s is not an executable file", path)
	}
	return path, nil
}

// freePort asks the kernel for a free loopback port. It is free when
// asked, not necessarily when the replica binds it: see startReplica and
// ownsPort.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tailSince returns up to n bytes of the end of a file, of what was
// written after offset.
func tailSince(path string, offset, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return ""
	}
	if offset > info.Size() {
		offset = 0 // truncated since
	}
	off := max(info.Size()-n, offset)
	b := make([]byte, info.Size()-off)
	_, _ = f.ReadAt(b, off)
	return string(b)
}

// fileSize is the size of the file at path, 0 if there is none.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// unavailable marks err as the runtime's own failure (runtime.ErrUnavailable)
// when the supervisor could not be reached or is shutting down.
func unavailable(err error) error {
	if err == nil || errors.Is(err, runtime.ErrUnavailable) {
		return err
	}
	if errors.Is(err, supervisor.ErrUnreachable) || errors.Is(err, supervisor.ErrClosed) {
		return fmt.Errorf("%w: %w", runtime.ErrUnavailable, err)
	}
	return err
}
