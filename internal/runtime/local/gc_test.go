package local

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/logbuf"
	"github.com/runway-cd/runway/internal/postgres"
	"github.com/runway-cd/runway/internal/procfs"
	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/internal/supervisor"
)

// newLoggedRuntime is newRuntimeIn whose log also goes to the returned
// buffer.
func newLoggedRuntime(t *testing.T, dir string) (*Runtime, *logbuf.Buffer) {
	t.Helper()
	logs := &logbuf.Buffer{}
	rt, err := New(Options{
		Dir:        dir,
		SecretsDir: secretsFor(dir),
		Logger:     slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), logs), nil)),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	return rt, logs
}

// unrecorded is a replica started the way the supervisor starts one, but
// known to no supervisor: one a killed supervisor started and never
// recorded.
type unrecorded struct {
	pid  int
	addr string
	done chan struct{} // closed once it has exited and been reaped
}

// startUnrecorded starts a replica the way the supervisor does, marker
// included, and records it nowhere.
func startUnrecorded(t *testing.T, rt *Runtime, env, version string) *unrecorded {
	t.Helper()
	rs := testReplicaSet(env, version, 1)
	rs.Vars = append(rs.Vars, rt.markerVar())
	sb, err := rt.prepareEnv(rt.env(env))
	if err != nil {
		t.Fatal(err)
	}
	command, err := resolveCommand(rs.Dir, rs.Command[0])
	if err != nil {
		t.Fatal(err)
	}
	rs.Command[0] = command
	port := freeTestPort(t)
	sp := replicaSpec(rs, 0, sb, port, filepath.Join(rt.env(env).logDir(), "web-"+version+"-0.log"))
	logf, err := os.OpenFile(sp.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(sp.Command[0], sp.Command[1:]...)
	cmd.Dir, cmd.Env = sp.Dir, sp.Env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: sb.cred}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting an unrecorded replica: %v", err)
	}
	p := &unrecorded{pid: cmd.Process.Pid, addr: sp.Addr, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		<-p.done
	})
	for deadline := time.Now().Add(30 * time.Second); !listens(p.addr); {
		if time.Now().After(deadline) {
			t.Fatalf("the unrecorded replica never listened on %s", p.addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p
}

// startForeign starts a sleep that is not the runtime's, with extra
// environment variables and working directory dir.
func startForeign(t *testing.T, dir string, vars ...string) (pid int, start uint64) {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	cmd.Env = append(os.Environ(), vars...)
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting sleep: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	st, err := procfs.Read(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid, st.StartTime
}

func TestCollectStraysReplicas(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "envs")
	track := cleanupDir(t, dir)
	rt, logs := newLoggedRuntime(t, dir)
	const env = "staging-1"

	// A recorded replica that started a child of its own.
	rs := testReplicaSet(env, "v1", 1)
	rs.Command = []string{"/bin/sh", "-c", "sleep 300 & exec ./server"}
	recorded, err := rt.Start(ctx, rs)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	track(recorded[0].PID)
	recordedStart := startTimeOf(recorded[0].PID)
	var child procfs.Stat
	for _, k := range procfs.Children(recorded[0].PID) {
		child = k
	}
	if child.PID == 0 {
		t.Fatal("the recorded replica's child sleep is not running")
	}
	track(child.PID)

	inEnv := startUnrecorded(t, rt, env, "v2")
	track(inEnv.pid)
	inGhost := startUnrecorded(t, rt, "ghost", "v1") // an env nothing else knows
	track(inGhost.pid)
	if err := os.MkdirAll(filepath.Join(dir, env), 0o755); err != nil {
		t.Fatal(err)
	}
	// A replica started before replicas got the marker: its output goes
	// to the environment's logs.
	legacyLog, err := os.Create(filepath.Join(dir, env, "logs", "web-v0-0.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer legacyLog.Close()
	legacy := exec.Command("sleep", "300")
	legacy.Env = append(os.Environ(), "RUNWAY_ENV="+env)
	legacy.Stdout, legacy.Stderr = legacyLog, legacyLog
	if err := legacy.Start(); err != nil {
		t.Fatal(err)
	}
	legacyDone := make(chan struct{})
	go func() { _ = legacy.Wait(); close(legacyDone) }()
	t.Cleanup(func() { _ = legacy.Process.Kill(); <-legacyDone })
	otherDir := filepath.Join(t.TempDir(), "other-envs")
	foreign := map[string][2]uint64{}
	for name, vars := range map[string][]string{
		"same env name, no marker":           {"RUNWAY_ENV=" + env},
		"marker of another runtime":          {"RUNWAY_ENV=" + env, runtimeDirVar + "=" + otherDir},
		"no variables, working dir in ours":  nil,
		"env var and working dir, no marker": {"RUNWAY_ENV=" + env, "RUNWAY_APP=web"},
	} {
		pid, start := startForeign(t, filepath.Join(dir, env), vars...)
		foreign[name] = [2]uint64{uint64(pid), start}
	}

	stopped, err := rt.CollectStrays(ctx)
	if err != nil {
		t.Fatalf("CollectStrays: %v", err)
	}
	checks := []struct {
		name string
		ok   func() bool
	}{
		{"three strays reported", func() bool {
			return len(stopped) == 3 && strings.HasPrefix(stopped[0], "ghost/replica pid ") &&
				strings.HasPrefix(stopped[1], env+"/replica pid ") && strings.HasPrefix(stopped[2], env+"/replica pid ")
		}},
		{"unrecorded replica of a known env stopped", func() bool { return waitExited(inEnv) }},
		{"unrecorded replica without the marker stopped", func() bool {
			select {
			case <-legacyDone:
				return true
			case <-time.After(time.Minute):
				return false
			}
		}},
		{"unrecorded replica of an unknown env stopped", func() bool { return waitExited(inGhost) }},
		{"each removal logged", func() bool { return strings.Count(logs.String(), "stray process stopped") == 3 }},
		{"recorded replica untouched", func() bool { return procfs.Running(recorded[0].PID, recordedStart) && listens(recorded[0].Addr) }},
		{"recorded replica's child untouched", func() bool { return procfs.Running(child.PID, child.StartTime) }},
		{"a second pass finds nothing", func() bool {
			again, err := rt.CollectStrays(ctx)
			return err == nil && len(again) == 0
		}},
	}
	for name, f := range foreign {
		checks = append(checks, struct {
			name string
			ok   func() bool
		}{"foreign process untouched: " + name, func() bool { return procfs.Running(int(f[0]), f[1]) }})
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !c.ok() {
				t.Errorf("not so (stopped %q)", stopped)
			}
		})
	}
}

// waitExited reports whether a replica started by this test process ends
// (it is reaped by its Wait goroutine) within a minute.
func waitExited(p *unrecorded) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(time.Minute):
		return false
	}
}

// TestCollectStraysPostgres: servers under the runtime dir that the
// supervisor does not run are stopped in one pass, recorded by the
// postgres package or not, and so are workloads of environments whose
// directory is gone; the environment's own server is left alone.
func TestCollectStraysPostgres(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "envs")
	cleanupDir(t, dir)
	rt, logs := newLoggedRuntime(t, dir)
	t.Cleanup(func() { _ = rt.Close(context.Background()) })

	if err := rt.EnsurePostgres(ctx, "owned"); err != nil {
		t.Fatalf("EnsurePostgres: %v", err)
	}
	owned := rt.env("owned").pg.PID()
	ownedStart := startTimeOf(owned)
	if st, ok := rt.own.Get(postgresID("owned")); !ok || st.PID != owned {
		t.Fatalf("the supervisor runs %+v (%v), want the owned server, pid %d", st, ok, owned)
	}

	// Servers started outside the supervisor: one killed before it was
	// recorded (instance.json is written only once the server accepts
	// connections), one recorded by a control plane that ran it as its
	// child and died.
	strays := map[string]*postgres.Instance{}
	for _, env := range []string{"crashed", "recorded"} {
		inst, err := postgres.Start(ctx, postgres.Config{Logger: rt.log, SecretsDir: rt.secretsDir(env)}, filepath.Join(dir, env, "postgres"))
		if err != nil {
			t.Fatalf("postgres.Start: %v", err)
		}
		t.Cleanup(func() { _ = inst.Remove(context.Background()) })
		strays[env] = inst
	}
	if err := os.Remove(filepath.Join(dir, "crashed", "postgres", "instance.json")); err != nil {
		t.Fatal(err)
	}
	starts := map[string]uint64{}
	for env, inst := range strays {
		starts[env] = startTimeOf(inst.PID())
	}
	// A workload of an environment whose directory is gone.
	orphan, err := rt.own.Apply(ctx, supervisor.Spec{ID: "gone/web/v1/0", Group: "gone", Command: []string{"/bin/sleep", "300"},
		LogPath: filepath.Join(t.TempDir(), "orphan.log")})
	if err != nil {
		t.Fatal(err)
	}

	stopped, err := rt.CollectStrays(ctx)
	if err != nil {
		t.Fatalf("CollectStrays: %v", err)
	}
	checks := []struct {
		name string
		ok   func() bool
	}{
		{"what was removed is reported", func() bool {
			return len(stopped) == 3 && strings.HasPrefix(stopped[0], "crashed/postgres pid ") &&
				stopped[1] == "gone/web/v1/0: its environment's directory is gone" && strings.HasPrefix(stopped[2], "recorded/postgres pid ")
		}},
		{"and logged", func() bool {
			return strings.Count(logs.String(), "stray process stopped") == 2 && strings.Count(logs.String(), "orphaned workload removed") == 1
		}},
		{"unrecorded server stopped", func() bool { return !procfs.Running(strays["crashed"].PID(), starts["crashed"]) }},
		{"recorded server stopped", func() bool { return !procfs.Running(strays["recorded"].PID(), starts["recorded"]) }},
		{"orphaned workload gone", func() bool {
			_, known := rt.own.Get("gone/web/v1/0")
			return !known && exited(orphan.PID)
		}},
		{"own server untouched", func() bool { return procfs.Running(owned, ownedStart) }},
		{"own server usable", func() bool {
			_, err := rt.Database(ctx, "owned", "app")
			return err == nil
		}},
		{"a second pass finds nothing", func() bool {
			again, err := rt.CollectStrays(ctx)
			return err == nil && len(again) == 0
		}},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !c.ok() {
				t.Errorf("not so (stopped %q)", stopped)
			}
		})
	}
}

func TestDestroyHalfCreatedEnv(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "envs")
	track := cleanupDir(t, dir)
	rt, _ := newLoggedRuntime(t, dir)
	const env = "half"
	// initdb interrupted, and a postmaster.pid naming no server.
	pgDir := filepath.Join(dir, env, "postgres")
	for _, d := range []string{filepath.Join(pgDir, "data.init", "base"), filepath.Join(pgDir, "data")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(pgDir, "data", "postmaster.pid"), []byte("999999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startUnrecorded(t, rt, env, "v1")
	track(p.pid)

	rep, err := rt.Adopt(ctx)
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	if len(rep.Adopted) != 0 {
		t.Fatalf("adopted %v from a half-created env", rep.Adopted)
	}
	if !slices.Contains(rt.Envs(), env) {
		t.Fatalf("Envs = %v, want the half-created %s listed", rt.Envs(), env)
	}
	if err := rt.Destroy(ctx, env); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, env)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("env dir left: %v", err)
	}
	if !waitExited(p) {
		t.Error("unrecorded replica outlived Destroy")
	}
	if slices.Contains(rt.Envs(), env) {
		t.Errorf("Envs = %v after Destroy", rt.Envs())
	}
}

func TestRunning(t *testing.T) {
	ctx := t.Context()
	rt := newRuntime(t)
	for _, d := range []runtime.Deployment{{Env: "b", App: "web", Version: "v2"}, {Env: "a", App: "web", Version: "v1"}, {Env: "b", App: "web", Version: "v1"}} {
		if _, err := rt.Start(ctx, testReplicaSet(d.Env, d.Version, 1)); err != nil {
			t.Fatalf("Start %v: %v", d, err)
		}
	}
	want := []runtime.Deployment{{Env: "a", App: "web", Version: "v1"}, {Env: "b", App: "web", Version: "v1"}, {Env: "b", App: "web", Version: "v2"}}
	if got := rt.Running(); !slices.Equal(got, want) {
		t.Fatalf("Running = %v, want %v", got, want)
	}
}

// startTimeOf is pid's start time, or 0 when it cannot be read.
func startTimeOf(pid int) uint64 {
	st, _ := procfs.Read(pid)
	return st.StartTime
}
