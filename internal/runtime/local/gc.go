package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/runway-cd/runway/internal/procfs"
	"github.com/runway-cd/runway/internal/runtime"
)

// runtimeDirVar marks every replica (and, by inheritance, every process
// it starts) with the runtime directory it belongs to. With RUNWAY_ENV it
// proves a process is this runtime's even when no record names it: the
// control plane may die between starting a replica and recording it.
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

// Running implements runtime.Runtime. An environment busy starting or
// stopping replicas is left out: what runs there is changing.
func (r *Runtime) Running() []runtime.Deployment {
	r.mu.Lock()
	envs := make([]*environment, 0, len(r.envs))
	for _, e := range r.envs {
		envs = append(envs, e)
	}
	r.mu.Unlock()
	var out []runtime.Deployment
	for _, e := range envs {
		if !e.mu.TryLock() {
			continue
		}
		for key := range e.sets {
			if app, version, ok := strings.Cut(key, "/"); ok {
				out = append(out, runtime.Deployment{Env: e.name, App: app, Version: version})
			}
		}
		e.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b runtime.Deployment) int {
		return strings.Compare(a.Env+"\x00"+a.App+"\x00"+a.Version, b.Env+"\x00"+b.App+"\x00"+b.Version)
	})
	return out
}

// CollectStrays implements runtime.Runtime. A process is the runtime's
// own if it carries the runtime's marker (RUNWAY_ENV, and RUNWAY_RUNTIME_DIR
// naming this directory, or, for replicas started before the marker
// existed, its output going to the environment's logs directory), or if it
// is a PostgreSQL server whose data directory is an environment's. It is
// a stray unless a replica record, an adopted or started replica, or the
// environment's PostgreSQL server (running or recorded) is the process
// itself, its process group leader or one of its ancestors. Each stray is
// stopped once its pid is proven to still name it (same start time). An
// environment busy starting or stopping something is skipped; the next
// call looks again.
func (r *Runtime) CollectStrays(ctx context.Context) ([]string, error) {
	byEnv := map[string][]stray{}
	for _, s := range scanStrays(r.ownDir(), "") {
		byEnv[s.env] = append(byEnv[s.env], s)
	}
	names := make([]string, 0, len(byEnv))
	for n := range byEnv {
		names = append(names, n)
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
		done, err := r.stopStrays(ctx, e, byEnv[name], e.known())
		e.mu.Unlock()
		stopped = append(stopped, done...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return stopped, errors.Join(errs...)
}

// destroyStrays stops every process of e's that Destroy would otherwise
// leave behind: all but e's own PostgreSQL server, which Destroy removes.
// The caller holds e.mu and has stopped e's replica sets.
func (r *Runtime) destroyStrays(ctx context.Context, e *environment) error {
	known := map[int]uint64{}
	if e.pg != nil {
		known[e.pg.PID()] = 0
	}
	_, err := r.stopStrays(ctx, e, scanStrays(r.ownDir(), e.name), known)
	return err
}

// known maps the pids the environment accounts for to their start times
// (0: trust the pid, for a server this runtime watches): its replicas in
// memory and on record, and its PostgreSQL server, running or recorded.
// The caller holds e.mu.
func (e *environment) known() map[int]uint64 {
	known := map[int]uint64{}
	for _, s := range e.sets {
		for _, p := range s.procs {
			known[p.pid] = p.startTime
		}
	}
	recs, _ := readRecords(e.dir) // unreadable records explain nothing
	for _, rec := range recs {
		if rec.PID > 0 && rec.StartTime != 0 {
			if _, ok := known[rec.PID]; !ok {
				known[rec.PID] = rec.StartTime
			}
		}
	}
	if e.pg != nil {
		known[e.pg.PID()] = 0
	}
	if pid, start, ok := recordedPostgres(filepath.Join(e.dir, "postgres")); ok {
		if _, seen := known[pid]; !seen {
			known[pid] = start
		}
	}
	return known
}

// recordedPostgres reads the server an instance dir's instance.json names
// (the postgres package's record; only pid and start time are used).
func recordedPostgres(dir string) (pid int, start uint64, ok bool) {
	b, err := os.ReadFile(filepath.Join(dir, "instance.json"))
	if err != nil {
		return 0, 0, false
	}
	var rec struct {
		PID       int    `json:"pid"`
		StartTime uint64 `json:"startTime"`
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.PID <= 0 || rec.StartTime == 0 {
		return 0, 0, false
	}
	return rec.PID, rec.StartTime, true
}

// stopStrays stops the candidates of e that known does not explain. The
// caller holds e.mu, so no Start of e is between spawning and recording.
func (r *Runtime) stopStrays(ctx context.Context, e *environment, cands []stray, known map[int]uint64) ([]string, error) {
	var stopped []string
	var errs []error
	for _, s := range cands {
		if s.env != e.name || explained(s, known) {
			continue
		}
		if err := stopStray(ctx, s); err != nil {
			errs = append(errs, fmt.Errorf("stopping stray %s: %w", s, err))
			continue
		}
		stopped = append(stopped, s.String())
		r.log.Warn("stray process stopped", "env", s.env, "kind", s.kind, "pid", s.pid, "cmd", s.cmd,
			"why", "started by this runtime but no record or running replica accounts for it")
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
