package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/runway-cd/runway/internal/procfs"
	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/internal/supervisor"
)

// runtimeDirVar marks every replica (and, by inheritance, every process
// it starts) with the runtime directory it belongs to. With RUNWAY_ENV it
// proves a process is this runtime's even when no supervisor knows it: a
// supervisor may die between starting a replica and recording it.
const runtimeDirVar = "RUNWAY_RUNTIME_DIR"

const (
	strayReplica  = "replica"
	strayPostgres = "postgres"
	// strayGrace is how long a stray gets to exit after SIGTERM (SIGINT,
	// PostgreSQL's fast shutdown, for a server) before SIGKILL.
	strayGrace = 5 * time.Second
	// strayPoll is how often a signalled stray is checked for having
	// exited; it is not a child, so nothing else tells.
	strayPoll = 20 * time.Millisecond
	// maxAncestors bounds the walk up the parent chain.
	maxAncestors = 64
)

// stray is a process that this runtime's directory proves is its own.
type stray struct {
	env   string
	kind  string // strayReplica or strayPostgres
	pid   int
	start uint64 // field 22 of /proc/<pid>/stat
	cmd   string
}

func (s stray) String() string {
	return fmt.Sprintf("%s/%s pid %d: %s", s.env, s.kind, s.pid, s.cmd)
}

// markerVar is the variable every replica of this runtime gets.
func (r *Runtime) markerVar() string { return runtimeDirVar + "=" + r.ownDir() }

// ownDir is the runtime directory as an absolute path, the form found in
// markers and on PostgreSQL command lines.
func (r *Runtime) ownDir() string {
	dir, err := filepath.Abs(r.opts.Dir)
	if err != nil {
		return filepath.Clean(r.opts.Dir)
	}
	return dir
}

// Running implements runtime.Replicas: every version of which the
// supervisor runs at least one replica, a version left partial by an
// interrupted Stop included, so that garbage collection sees it (Versions,
// which decides what serves, lists only complete ones). An environment busy
// starting or stopping replicas is left out: what runs there is changing.
func (r *Runtime) Running() []runtime.Deployment {
	sup, err := r.supervisor()
	if err != nil {
		r.log.Warn("listing what runs", "err", err)
		return nil
	}
	all, err := sup.ListContext(context.Background(), "")
	if err != nil {
		r.log.Warn("listing what runs", "err", err)
		return nil
	}
	byEnv := groupByEnv(all)
	var out []runtime.Deployment
	for _, name := range slices.Sorted(maps.Keys(byEnv)) {
		r.mu.Lock()
		e, ok := r.envs[name]
		r.mu.Unlock()
		if !ok {
			e = &environment{name: name, dir: filepath.Join(r.opts.Dir, name), sets: map[string]*replicaSet{}}
		} else if !e.mu.TryLock() {
			continue
		}
		for _, v := range e.views(byEnv[name]) {
			if len(v.byIndex) > 0 {
				out = append(out, runtime.Deployment{Env: name, App: v.app, Version: v.version})
			}
		}
		if ok {
			e.mu.Unlock()
		}
	}
	slices.SortFunc(out, func(a, b runtime.Deployment) int {
		return strings.Compare(a.Env+"\x00"+a.App+"\x00"+a.Version, b.Env+"\x00"+b.App+"\x00"+b.Version)
	})
	return out
}

// groupByEnv groups the statuses of the workloads this runtime declares by
// environment; others are left out.
func groupByEnv(list []supervisor.Status) map[string][]supervisor.Status {
	out := map[string][]supervisor.Status{}
	for _, st := range list {
		if env, ok := ours(st.ID); ok {
			out[env] = append(out[env], st)
		}
	}
	return out
}

// CollectStrays implements runtime.Environments: within one call nothing runs
// that no environment explains.
//
// A workload the supervisor runs for an environment whose directory is
// gone (a teardown cut short after removing it) is removed from the
// supervisor.
//
// A process is the runtime's own if it carries the runtime's marker
// (RUNWAY_ENV, and RUNWAY_RUNTIME_DIR naming this directory, or, for
// replicas started before the marker existed, its output going to the
// environment's logs directory), or if it is a PostgreSQL server whose data
// directory is an environment's. It is a stray unless a workload of its
// environment in the supervisor, or the environment's PostgreSQL server
// the runtime runs itself, is the process, its process group leader or one
// of its ancestors: a replica of a Runway from before the supervisor, a
// process a killed supervisor started but never recorded, a server no
// environment runs (recorded or not). The supervisor is asked again just
// before anything is stopped, so a process it started meanwhile is not
// taken for a stray. Each stray is stopped once its pid is proven to still
// name it (same start time). An environment busy starting or stopping
// something is skipped; the next call looks again.
func (r *Runtime) CollectStrays(ctx context.Context) ([]string, error) {
	sup, err := r.supervisor()
	if err != nil {
		return nil, fmt.Errorf("collecting strays: %w", err)
	}
	// Scanned before the supervisor is asked: a process it starts after
	// the list was taken is not among the candidates.
	byEnv := map[string][]stray{}
	for _, s := range scanStrays(r.ownDir(), "") {
		byEnv[s.env] = append(byEnv[s.env], s)
	}
	all, err := sup.ListContext(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("collecting strays: listing the supervisor's workloads: %w", err)
	}
	workloads := groupByEnv(all)
	names := slices.Collect(maps.Keys(byEnv))
	for n := range workloads {
		if _, ok := byEnv[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var stopped []string
	var errs []error
	for _, name := range names {
		e := r.env(name)
		if !e.mu.TryLock() {
			r.log.Debug("environment busy; strays looked for on the next pass", "env", name)
			continue
		}
		removed, err := r.removeOrphans(ctx, sup, e, workloads[name])
		stopped = append(stopped, removed...)
		if err != nil {
			errs = append(errs, err)
		}
		done, err := r.stopStrays(ctx, sup, e, byEnv[name], e.known(workloads[name]))
		e.mu.Unlock()
		stopped = append(stopped, done...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return stopped, errors.Join(errs...)
}

// removeOrphans removes e's workloads from the supervisor if e's
// directory is gone, replicas before the server. The caller holds e.mu.
func (r *Runtime) removeOrphans(ctx context.Context, sup Supervisor, e *environment, list []supervisor.Status) ([]string, error) {
	if len(list) == 0 {
		return nil, nil
	}
	if _, err := os.Stat(e.dir); !errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	var replicas, servers []string
	for _, st := range list {
		if _, ok := parseReplicaID(st.ID); ok {
			replicas = append(replicas, st.ID)
		} else {
			servers = append(servers, st.ID)
		}
	}
	var removed []string
	var errs []error
	for _, ids := range [][]string{replicas, servers} {
		for _, id := range ids {
			if err := sup.Remove(ctx, id); err != nil {
				errs = append(errs, fmt.Errorf("removing the orphaned workload %s: %w", id, err))
				continue
			}
			removed = append(removed, id+": its environment's directory is gone")
			r.log.Warn("orphaned workload removed", "env", e.name, "workload", id, "why", "its environment's directory is gone")
		}
	}
	clear(e.sets)
	return removed, errors.Join(errs...)
}

// destroyStrays stops every process of e's that Destroy would otherwise
// leave behind: all but what the supervisor still runs for e (its
// server, which Destroy removes next) and e's own PostgreSQL server. The
// caller holds e.mu and has removed e's replicas.
func (r *Runtime) destroyStrays(ctx context.Context, sup Supervisor, e *environment) error {
	cands := scanStrays(r.ownDir(), e.name)
	list, err := sup.ListContext(ctx, e.name)
	if err != nil {
		return fmt.Errorf("listing the workloads of %s: %w", e.name, err)
	}
	_, err = r.stopStrays(ctx, sup, e, cands, e.known(groupByEnv(list)[e.name]))
	return err
}

// known maps the pids e accounts for to their start times (0: trust the
// pid, for a server this runtime watches): every workload the supervisor
// runs for it (list) and the PostgreSQL server the runtime runs itself.
// Nothing on disk explains a process: a record without a process that
// runs it explains only what a dead control plane once ran. The caller
// holds e.mu.
func (e *environment) known(list []supervisor.Status) map[int]uint64 {
	known := map[int]uint64{}
	for _, st := range list {
		if st.PID > 0 {
			known[st.PID] = st.StartTime
		}
	}
	if e.pg != nil {
		known[e.pg.PID()] = 0
	}
	return known
}

// stopStrays stops the candidates of e that known does not explain, nor
// the supervisor's list of e's workloads taken again now. The caller holds
// e.mu, so no Start of e is declaring replicas.
func (r *Runtime) stopStrays(ctx context.Context, sup Supervisor, e *environment, cands []stray, known map[int]uint64) ([]string, error) {
	var unexplained []stray
	for _, s := range cands {
		if s.env == e.name && !explained(s, known) {
			unexplained = append(unexplained, s)
		}
	}
	if len(unexplained) == 0 {
		return nil, nil
	}
	again, err := sup.ListContext(ctx, e.name)
	if err != nil {
		return nil, fmt.Errorf("listing the workloads of %s: %w", e.name, err)
	}
	for pid, start := range e.known(groupByEnv(again)[e.name]) {
		known[pid] = start
	}
	var stopped []string
	var errs []error
	for _, s := range unexplained {
		if explained(s, known) {
			continue
		}
		if err := stopStray(ctx, s); err != nil {
			errs = append(errs, fmt.Errorf("stopping stray %s: %w", s, err))
			continue
		}
		stopped = append(stopped, s.String())
		r.log.Warn("stray process stopped", "env", s.env, "kind", s.kind, "pid", s.pid, "cmd", s.cmd,
			"why", "started by this runtime but no workload of the supervisor accounts for it")
	}
	return stopped, errors.Join(errs...)
}

// explained reports whether a known process is s itself, its process
// group leader or an ancestor. A known pid counts only while it still
// names the same process (same start time).
func explained(s stray, known map[int]uint64) bool {
	is := func(pid int, start uint64) bool {
		want, ok := known[pid]
		return ok && (want == 0 || want == start)
	}
	if is(s.pid, s.start) {
		return true
	}
	if pgid, err := syscall.Getpgid(s.pid); err == nil && pgid != s.pid {
		if st, err := procfs.Read(pgid); err == nil && is(pgid, st.StartTime) {
			return true
		}
	}
	st, err := procfs.Read(s.pid)
	if err != nil {
		return true // gone: nothing to stop
	}
	for range maxAncestors {
		if st.PPID <= 1 {
			return false
		}
		if st, err = procfs.Read(st.PPID); err != nil {
			return false
		}
		if is(st.PID, st.StartTime) {
			return true
		}
	}
	return false
}

// stopStray asks s to exit, then kills it after strayGrace or once ctx
// ends. Before every signal it checks that the pid still names s.
func stopStray(ctx context.Context, s stray) error {
	leader := false
	if pgid, err := syscall.Getpgid(s.pid); err == nil {
		leader = pgid == s.pid
	}
	first := syscall.SIGTERM
	if s.kind == strayPostgres {
		first = syscall.SIGINT // fast shutdown
	}
	signalStray(s, first, leader && s.kind == strayReplica)
	wctx, cancel := context.WithTimeout(ctx, strayGrace)
	defer cancel()
	if procfs.AwaitExit(wctx, s.pid, s.start, strayPoll) {
		return nil
	}
	if s.kind == strayPostgres {
		// A server's processes lead their own groups: kill each.
		for _, k := range procfs.Children(s.pid) {
			signalStray(stray{pid: k.PID, start: k.StartTime}, syscall.SIGKILL, false)
		}
	}
	signalStray(s, syscall.SIGKILL, leader)
	kctx, kcancel := context.WithTimeout(context.WithoutCancel(ctx), strayGrace)
	defer kcancel()
	if !procfs.AwaitExit(kctx, s.pid, s.start, strayPoll) {
		return fmt.Errorf("pid %d outlived SIGKILL", s.pid)
	}
	return nil
}

// signalStray sends sig to s (and its process group when group is set)
// if its pid still names it.
func signalStray(s stray, sig syscall.Signal, group bool) {
	if !procfs.Running(s.pid, s.start) {
		return
	}
	if group {
		_ = syscall.Kill(-s.pid, sig)
	}
	_ = syscall.Kill(s.pid, sig)
}

// scanStrays lists the running processes that dir proves are this
// runtime's, in every environment or only in env. This process is never
// among them.
func scanStrays(dir, env string) []stray {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		realDir = dir
	}
	self := os.Getpid()
	var out []stray
	for _, de := range entries {
		pid, err := strconv.Atoi(de.Name())
		if err != nil || pid == self {
			continue
		}
		s, ok := inspect(pid, dir, realDir)
		if !ok || (env != "" && s.env != env) {
			continue
		}
		st, err := procfs.Read(pid)
		if err != nil || st.Exited() {
			continue
		}
		s.pid, s.start = pid, st.StartTime
		out = append(out, s)
	}
	return out
}

// inspect tells whether pid is a process of the runtime on dir (realDir:
// dir with symlinks resolved, as /proc shows open files) and of which
// environment.
func inspect(pid int, dir, realDir string) (stray, bool) {
	proc := filepath.Join("/proc", strconv.Itoa(pid))
	cmdline, err := os.ReadFile(filepath.Join(proc, "cmdline"))
	if err != nil || len(cmdline) == 0 {
		return stray{}, false // gone, a zombie or a kernel thread
	}
	argv := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	cmd := strings.Join(argv, " ")
	if env, ok := postgresEnv(argv, dir); ok {
		return stray{env: env, kind: strayPostgres, cmd: cmd}, true
	}
	environ, err := os.ReadFile(filepath.Join(proc, "environ"))
	if err != nil {
		return stray{}, false
	}
	env, ok := lookupVar(environ, "RUNWAY_ENV")
	if !ok || !validEnvName(env) {
		return stray{}, false
	}
	if marker, ok := lookupVar(environ, runtimeDirVar); ok {
		return stray{env: env, kind: strayReplica, cmd: cmd}, marker == dir
	}
	// A replica started before the marker existed: its output goes to the
	// environment's logs directory.
	logs := filepath.Join(realDir, env, "logs") + "/"
	for _, fd := range []string{"1", "2"} {
		if target, err := os.Readlink(filepath.Join(proc, "fd", fd)); err == nil && strings.HasPrefix(target, logs) {
			return stray{env: env, kind: strayReplica, cmd: cmd}, true
		}
	}
	return stray{}, false
}

// postgresEnv reports whether argv is a PostgreSQL server whose data
// directory is dir/<env>/postgres/data, and env.
func postgresEnv(argv []string, dir string) (string, bool) {
	if len(argv) < 3 || filepath.Base(argv[0]) != "postgres" {
		return "", false
	}
	i := slices.Index(argv, "-D")
	if i < 0 || i+1 >= len(argv) {
		return "", false
	}
	rel, err := filepath.Rel(dir, argv[i+1])
	if err != nil {
		return "", false
	}
	env, rest, ok := strings.Cut(rel, string(filepath.Separator))
	if !ok || rest != filepath.Join("postgres", "data") || !validEnvName(env) {
		return "", false
	}
	return env, true
}

// lookupVar finds name's value in a NUL-separated environment block.
func lookupVar(environ []byte, name string) (string, bool) {
	prefix := []byte(name + "=")
	for kv := range bytes.SplitSeq(environ, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, prefix); ok {
			return string(v), true
		}
	}
	return "", false
}

// validEnvName rejects what cannot be an environment directory's name.
func validEnvName(env string) bool {
	return env != "" && env != "." && env != ".." && !strings.ContainsAny(env, "/\x00")
}
