package local

import (
	"context"
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
// get it: same dir, same secrets dir.
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
	return rt
}

// cleanupDir makes sure nothing started on dir outlives the test, whatever
// state the test left it in: a fresh runtime adopts what still runs and
// destroys every environment, then any recorded or tracked process that
// still runs as itself is killed. The returned track adds a pid.
func cleanupDir(t *testing.T, dir string) (track func(pid int)) {
	var tracked []replicaRecord
	track = func(pid int) {
		if st, err := procfs.Read(pid); err == nil {
			tracked = append(tracked, replicaRecord{PID: pid, StartTime: st.StartTime})
		}
	}
	t.Cleanup(func() {
		ctx := context.Background()
		var leftovers []replicaRecord
		entries, _ := os.ReadDir(dir)
		for _, de := range entries {
			recs, _ := readRecords(filepath.Join(dir, de.Name()))
			leftovers = append(leftovers, recs...)
		}
		rt, err := New(Options{Dir: dir, SecretsDir: secretsFor(dir), Logger: slog.New(slog.DiscardHandler)})
		if err == nil {
			_, _ = rt.Adopt(ctx)
			for _, env := range rt.Envs() {
				_ = rt.Destroy(ctx, env)
			}
		}
		for _, rec := range append(leftovers, tracked...) {
			if rec.StartTime != 0 && procfs.Running(rec.PID, rec.StartTime) {
				_ = syscall.Kill(-rec.PID, syscall.SIGKILL)
				_ = syscall.Kill(rec.PID, syscall.SIGKILL)
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
	if err := a.EnsurePostgres(ctx, env); err != nil {
		t.Fatalf("A.EnsurePostgres: %v", err)
	}
	if _, err := a.Database(ctx, env, "web"); err != nil {
		t.Fatalf("A.Database: %v", err)
	}
	pgPID := a.env(env).pg.PID()
	track(pgPID)
	a.Detach()
	if err := a.Close(ctx); err != nil {
		t.Fatalf("A.Close after Detach: %v", err)
	}

	recs, err := readRecords(filepath.Join(dir, env))
	if err != nil || len(recs) != 2 {
		t.Fatalf("replicas.json = %+v (err %v), want 2 records", recs, err)
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
	for _, p := range started {
		if !exited(p.PID) || listens(p.Addr) {
			t.Fatalf("replica pid %d on %s still runs after Stop", p.PID, p.Addr)
		}
	}
	if recs, err := readRecords(filepath.Join(dir, env)); err != nil || len(recs) != 0 {
		t.Fatalf("replicas.json after Stop = %+v (err %v), want empty", recs, err)
	}

	if err := b.Destroy(ctx, env); err != nil {
		t.Fatalf("B.Destroy: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, env)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("env dir after Destroy: stat err = %v, want not exist", err)
	}
	if !exited(pgPID) {
		t.Fatalf("postgres pid %d still runs after Destroy", pgPID)
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

func TestAdoptDropsRecords(t *testing.T) {
	tests := []struct {
		name string
		// record returns the record to adopt and the pid of a process the
		// test started, or 0.
		record func(t *testing.T) (replicaRecord, int)
		reason string
		// survives says whether the process must still run afterwards.
		survives bool
	}{
		{
			name: "reused pid",
			record: func(t *testing.T) (replicaRecord, int) {
				pid, start := startSleeper(t)
				return replicaRecord{PID: pid, StartTime: start + 1}, pid
			},
			reason:   "pid now names another process",
			survives: true,
		},
		{
			name: "dead process",
			record: func(t *testing.T) (replicaRecord, int) {
				cmd := exec.Command("true")
				if err := cmd.Run(); err != nil {
					t.Fatal(err)
				}
				return replicaRecord{PID: cmd.Process.Pid, StartTime: 1}, 0
			},
			reason: "process gone",
		},
		{
			name: "ours but not healthy",
			record: func(t *testing.T) (replicaRecord, int) {
				pid, start := startSleeper(t)
				return replicaRecord{PID: pid, StartTime: start}, pid
			},
			reason: "not healthy, stopped",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			dir := filepath.Join(t.TempDir(), "envs")
			rec, pid := tt.record(t)
			rec.App, rec.Version, rec.HealthPath = "web", "v1", "/healthz"
			rec.Addr = "127.0.0.1:1" // nothing listens
			e := &environment{name: "env", dir: filepath.Join(dir, "env"), sets: map[string]*replicaSet{}}
			if err := writeFileAtomic(filepath.Join(e.dir, recordFile), recordContent{Replicas: []replicaRecord{rec}}); err != nil {
				t.Fatal(err)
			}
			cleanupDir(t, dir)

			rt := newRuntimeIn(t, dir)
			rep, err := rt.Adopt(ctx)
			if err != nil {
				t.Fatalf("Adopt: %v", err)
			}
			wantDropped := "env/web/v1#0 pid " + strconv.Itoa(rec.PID) + ": " + tt.reason
			if len(rep.Adopted) != 0 || len(rep.Dropped) != 1 || !strings.HasPrefix(rep.Dropped[0], wantDropped) {
				t.Fatalf("report = %+v, want only %q dropped", rep, wantDropped)
			}
			if recs, err := readRecords(e.dir); err != nil || len(recs) != 0 {
				t.Fatalf("replicas.json after Adopt = %+v (err %v), want empty", recs, err)
			}
			if err := rt.Destroy(ctx, "env"); err != nil {
				t.Fatalf("Destroy: %v", err)
			}
			if pid != 0 && exited(pid) == tt.survives {
				t.Fatalf("process %d: exited = %v, want %v", pid, exited(pid), !tt.survives)
			}
		})
	}
}

func TestAdoptIncompleteSetIsReplaced(t *testing.T) {
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
	// One replica dies while no control plane watches.
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
	if len(rep.Adopted) != 1 || len(rep.Dropped) != 1 {
		t.Fatalf("report = %+v, want one adopted and one dropped", rep)
	}
	again, err := b.Start(ctx, rs)
	for _, p := range again {
		track(p.PID)
	}
	if err != nil {
		t.Fatalf("B.Start: %v", err)
	}
	if len(again) != 2 || again[0].PID == started[0].PID || again[1].PID == started[1].PID {
		t.Fatalf("B.Start = %+v, want two new replicas replacing %+v", again, started)
	}
	if !exited(started[0].PID) {
		t.Fatalf("the surviving replica %d of the replaced set still runs", started[0].PID)
	}
	if err := b.Destroy(ctx, "env"); err != nil {
		t.Fatalf("B.Destroy: %v", err)
	}
}
