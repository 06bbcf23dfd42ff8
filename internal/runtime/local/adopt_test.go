package local

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/runway-cd/runway/internal/procfs"
)

// newRuntimeIn returns a runtime on dir, as a restarted control plane would
// get it: same dir, same secrets dir, and an in-process supervisor on the
// same state file.
func newRuntimeIn(t *testing.T, dir string) *Runtime {
	t.Helper()
	rt, err := New(Options{
		Dir:                dir,
		SecretsDir:         secretsFor(dir),
		Logger:             slog.New(slog.NewTextHandler(t.Output(), nil)),
		AdoptHealthTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// Its supervisor must not outlive the test (a detached one is
	// closed already).
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	return rt
}

// cleanupDir makes sure nothing started on dir outlives the test, whatever
// state the test left it in: a fresh runtime (whose supervisor adopts
// what the state file names) adopts what still runs, destroys every
// environment and closes, then any tracked process that still runs as
// itself is killed. The returned track adds a pid.
func cleanupDir(t *testing.T, dir string) (track func(pid int)) {
	type tracked struct {
		pid   int
		start uint64
	}
	var procs []tracked
	track = func(pid int) {
		if st, err := procfs.Read(pid); err == nil {
			procs = append(procs, tracked{pid, st.StartTime})
		}
	}
	t.Cleanup(func() {
		ctx := context.Background()
		rt, err := New(Options{Dir: dir, SecretsDir: secretsFor(dir), Logger: slog.New(slog.DiscardHandler)})
		if err == nil {
			_, _ = rt.Adopt(ctx)
			for _, env := range rt.Envs() {
				_ = rt.Destroy(ctx, env)
			}
			_ = rt.Close(ctx)
		}
		for _, p := range procs {
			if procfs.Running(p.pid, p.start) {
				_ = syscall.Kill(-p.pid, syscall.SIGKILL)
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
			}
		}
	})
	return track
}

// exited reports whether pid no longer runs: gone, or a zombie waiting to
// be reaped by the runtime that started it.
func exited(pid int) bool {
	st, err := procfs.Read(pid)
	return err != nil || st.Exited()
}

// stateIDs lists the workload IDs the in-process supervisor's state file
// on dir names, read as plain JSON: whatever its layout, every ID appears
// as an "id" field.
func stateIDs(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, supervisorStateFile))
	if err != nil {
		t.Fatalf("reading the supervisor's state: %v", err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decoding the supervisor's state: %v", err)
	}
	var ids []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if id, ok := v["id"].(string); ok {
				ids = append(ids, id)
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(v)
	slices.Sort(ids)
	return slices.Compact(ids)
}

func TestAdoptAfterDetach(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "envs")
	track := cleanupDir(t, dir)
	const env = "staging-1"
	rs := testReplicaSet(env, "v1", 2)

	a := newRuntimeIn(t, dir)
	started, err := a.Start(ctx, rs)
	for _, p := range started {
		track(p.PID)
	}
	if err != nil {
		t.Fatalf("A.Start: %v", err)
	}
	// Start times tell the replicas apart from later processes that
	// get their pids.
	startTimes := make([]uint64, len(started))
	for i, p := range started {
		startTimes[i] = startTimeOf(p.PID)
	}
	if err := a.EnsurePostgres(ctx, env); err != nil {
		t.Fatalf("A.EnsurePostgres: %v", err)
	}
	if _, err := a.Database(ctx, env, "web"); err != nil {
		t.Fatalf("A.Database: %v", err)
	}
	pgPID := a.env(env).pg.PID()
	pgStart := startTimeOf(pgPID)
	track(pgPID)
	a.Detach()
	if err := a.Close(ctx); err != nil {
		t.Fatalf("A.Close after Detach: %v", err)
	}

	wantIDs := []string{env + "/postgres", env + "/web/v1/0", env + "/web/v1/1"}
	if got := stateIDs(t, dir); !slices.Equal(got, wantIDs) {
		t.Fatalf("the supervisor's state names %v, want %v", got, wantIDs)
	}
	for i, p := range started {
		if get(t, "http://"+p.Addr+"/whoami") == "" {
			t.Fatalf("replica %d stopped answering after Detach", i)
		}
	}

	b := newRuntimeIn(t, dir)
	rep, err := b.Adopt(ctx)
	if err != nil {
		t.Fatalf("B.Adopt: %v", err)
	}
	want := []string{
		env + "/postgres pid " + strconv.Itoa(pgPID),
		env + "/web/v1#0 pid " + strconv.Itoa(started[0].PID),
		env + "/web/v1#1 pid " + strconv.Itoa(started[1].PID),
	}
	slices.Sort(rep.Adopted)
	if !slices.Equal(rep.Adopted, want) || len(rep.Dropped) != 0 {
		t.Fatalf("report = %+v, want adopted %v and nothing dropped", rep, want)
	}
	if got := mustVersions(t, b, env, "web"); !slices.Equal(got, []string{"v1"}) {
		t.Fatalf("B.Versions = %v, want [v1]", got)
	}

	again, err := b.Start(ctx, rs)
	if err != nil {
		t.Fatalf("B.Start: %v", err)
	}
	if !slices.Equal(again, started) {
		t.Fatalf("B.Start = %+v, want the adopted %+v", again, started)
	}
	for _, p := range again {
		if got := get(t, "http://"+p.Addr+"/whoami"); !strings.HasPrefix(got, strconv.Itoa(p.PID)+" ") {
			t.Fatalf("replica on %s answers %q, want pid %d", p.Addr, got, p.PID)
		}
	}

	db, err := b.Database(ctx, env, "web")
	if err != nil {
		t.Fatalf("B.Database: %v", err)
	}
	conn, err := pgx.Connect(ctx, envValue(db.Env(), "DATABASE_URL"))
	if err != nil {
		t.Fatalf("connecting with the adopted server's DATABASE_URL: %v", err)
	}
	var one int
	err = conn.QueryRow(ctx, "SELECT 1").Scan(&one)
	conn.Close(ctx)
	if err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}

	if err := b.Stop(ctx, env, "web", "v1"); err != nil {
		t.Fatalf("B.Stop: %v", err)
	}
	for i, p := range started {
		if procfs.Running(p.PID, startTimes[i]) || listens(p.Addr) {
			t.Fatalf("replica pid %d on %s still runs after Stop (listens: %v)", p.PID, p.Addr, listens(p.Addr))
		}
	}
	if got := b.Status(env, "web", "v1"); len(got) != 0 {
		t.Fatalf("Status after Stop = %+v, want none", got)
	}

	if err := b.Destroy(ctx, env); err != nil {
		t.Fatalf("B.Destroy: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, env)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("env dir after Destroy: stat err = %v, want not exist", err)
	}
	if procfs.Running(pgPID, pgStart) {
		t.Fatalf("postgres pid %d still runs after Destroy", pgPID)
	}
	if got := stateIDs(t, dir); len(got) != 0 {
		t.Fatalf("the supervisor's state names %v after Destroy, want nothing", got)
	}
}

// startSleeper starts a process in its own group, as replicas are, that
// the test kills itself.
func startSleeper(t *testing.T) (pid int, startTime uint64) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	st, err := procfs.Read(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid, st.StartTime
}

// TestAdoptIgnoresObsoleteRecords: replicas.json, where Runway recorded
// replicas before the supervisor ran them, proves nothing any more. A
// record naming a live process with its exact start time is neither
// adopted nor signalled (the process carries no marker), and the file is
// removed.
func TestAdoptIgnoresObsoleteRecords(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "envs")
	cleanupDir(t, dir)
	pid, start := startSleeper(t)
	rec := map[string]any{"replicas": []map[string]any{{
		"app": "web", "version": "v1", "index": 0, "pid": pid, "startTime": start,
		"addr": "127.0.0.1:1", "healthPath": "/healthz",
	}}}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	envDir := filepath.Join(dir, "env")
	if err := os.MkdirAll(envDir, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(envDir, obsoleteRecordFile), b, 0o600); err != nil {
		t.Fatal(err)
	}

	rt := newRuntimeIn(t, dir)
	rep, err := rt.Adopt(ctx)
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	if len(rep.Adopted) != 0 || len(rep.Dropped) != 0 {
		t.Fatalf("report = %+v, want nothing adopted or dropped", rep)
	}
	if _, err := os.Stat(filepath.Join(envDir, obsoleteRecordFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("replicas.json after Adopt: stat err = %v, want not exist", err)
	}
	if got := mustVersions(t, rt, "env", "web"); len(got) != 0 {
		t.Fatalf("Versions = %v, want none", got)
	}
	if stopped, err := rt.CollectStrays(ctx); err != nil || len(stopped) != 0 {
		t.Fatalf("CollectStrays = %v, %v; want nothing stopped", stopped, err)
	}
	if err := rt.Destroy(ctx, "env"); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if !procfs.Running(pid, start) {
		t.Fatal("the recorded process was signalled")
	}
}

// TestAdoptRestartsReplicaThatDiedUnsupervised: a replica that dies while
// neither control plane nor supervisor runs is started again by the next
// supervisor; the next runtime adopts the whole set, the survivor as it
// is.
func TestAdoptRestartsReplicaThatDiedUnsupervised(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "envs")
	track := cleanupDir(t, dir)
	rs := testReplicaSet("env", "v1", 2)

	a := newRuntimeIn(t, dir)
	started, err := a.Start(ctx, rs)
	for _, p := range started {
		track(p.PID)
	}
	if err != nil {
		t.Fatalf("A.Start: %v", err)
	}
	a.Detach()
	// One replica dies while nothing watches.
	if err := syscall.Kill(-started[1].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for !exited(started[1].PID) {
		time.Sleep(10 * time.Millisecond)
	}

	b := newRuntimeIn(t, dir)
	rep, err := b.Adopt(ctx)
	if err != nil {
		t.Fatalf("B.Adopt: %v", err)
	}
	if len(rep.Adopted) != 2 || len(rep.Dropped) != 0 {
		t.Fatalf("report = %+v, want both adopted", rep)
	}
	again, err := b.Start(ctx, rs)
	for _, p := range again {
		track(p.PID)
	}
	if err != nil {
		t.Fatalf("B.Start: %v", err)
	}
	if len(again) != 2 || again[0] != started[0] || again[1].PID == started[1].PID || again[1].Addr != started[1].Addr {
		t.Fatalf("B.Start = %+v, want the survivor of %+v and its partner restarted on its address", again, started)
	}
	if got := get(t, "http://"+again[1].Addr+"/whoami"); !strings.HasPrefix(got, strconv.Itoa(again[1].PID)+" ") {
		t.Fatalf("the restarted replica answers %q, want pid %d", got, again[1].PID)
	}
	st := b.Status("env", "web", "v1")
	if len(st) != 2 || st[1].Restarts != 1 || st[0].Restarts != 0 {
		t.Fatalf("Status = %+v, want one restart of replica 1", st)
	}
	if err := b.Destroy(ctx, "env"); err != nil {
		t.Fatalf("B.Destroy: %v", err)
	}
}
