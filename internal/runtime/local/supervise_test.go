package local

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/runtime"
)

// eventually polls cond every 20ms until it holds or limit has passed; it
// reports whether it held. Waiting for a process is not timed: the limit
// only bounds a test that would otherwise hang.
func eventually(limit time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(limit); ; {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKilledReplicaIsRestarted: kill -9 of a replica, and the supervisor
// starts it again on the same address; Status counts the restart with how
// the last run ended, and the version keeps running throughout.
func TestKilledReplicaIsRestarted(t *testing.T) {
	ctx := t.Context()
	rt := newRuntime(t)
	started, err := rt.Start(ctx, testReplicaSet("production", "v1", 2))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := syscall.Kill(started[0].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var st []runtime.ReplicaStatus
	ok := eventually(time.Minute, func() bool {
		st = rt.Status("production", "web", "v1")
		return len(st) == 2 && st[0].Restarts == 1 && st[0].Ready && st[0].PID != started[0].PID
	})
	if !ok {
		t.Fatalf("Status = %+v, want replica 0 restarted once and ready", st)
	}
	checks := []struct {
		name string
		ok   func() bool
	}{
		{"the restart keeps the address", func() bool { return st[0].Addr == started[0].Addr }},
		{"the last exit says how it ended", func() bool { return st[0].LastExit == "signal: killed" && !st[0].LastExitAt.IsZero() }},
		{"running again", func() bool { return st[0].State == runtime.ReplicaRunning }},
		{"the other replica untouched", func() bool {
			return st[1].Restarts == 0 && st[1].PID == started[1].PID && st[1].Index == 1
		}},
		{"the new process answers", func() bool {
			return strings.HasPrefix(get(t, "http://"+started[0].Addr+"/whoami"), strconv.Itoa(st[0].PID)+" ")
		}},
		{"the version still runs", func() bool { return slices.Equal(mustVersions(t, rt, "production", "web"), []string{"v1"}) }},
		{"Start returns the set as it runs", func() bool {
			again, err := rt.Start(ctx, testReplicaSet("production", "v1", 2))
			return err == nil && again[0].PID == st[0].PID && again[1] == started[1]
		}},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !c.ok() {
				t.Errorf("not so: %+v", st)
			}
		})
	}
}

// TestCrashLoopingReplicaBacksOff: a replica that exits at every start
// after it was up is restarted with backoff; Status shows BackOff with
// the last exit and the end of the log, and the version still counts as
// running (production keeps it while the supervisor restarts it).
func TestCrashLoopingReplicaBacksOff(t *testing.T) {
	ctx := t.Context()
	rt := newRuntime(t)
	flag := filepath.Join(t.TempDir(), "broken")
	started, err := rt.Start(ctx, testReplicaSet("production", "v1", 1, "-crash-if="+flag))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(started[0].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var st []runtime.ReplicaStatus
	ok := eventually(time.Minute, func() bool {
		st = rt.Status("production", "web", "v1")
		return len(st) == 1 && st[0].State == runtime.ReplicaBackOff
	})
	if !ok {
		t.Fatalf("Status = %+v, want BackOff", st)
	}
	r := st[0]
	checks := []struct {
		name string
		ok   bool
	}{
		{"restarted at least once", r.Restarts >= 1},
		{"the last exit is the crash", r.LastExit == "exit status 3"},
		{"the next start is scheduled", r.NextStart.After(r.LastExitAt)},
		{"not ready", !r.Ready && r.PID == 0},
		{"the log tail says why", strings.Contains(r.LogTail, "fatal: the config file is missing")},
		{"the version still runs", slices.Equal(mustVersions(t, rt, "production", "web"), []string{"v1"})},
		{"and is listed as running", slices.Contains(rt.Running(), runtime.Deployment{Env: "production", App: "web", Version: "v1"})},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !c.ok {
				t.Errorf("not so: %+v", r)
			}
		})
	}

	// Fixed: the next restart brings it back.
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	if !eventually(time.Minute, func() bool {
		st = rt.Status("production", "web", "v1")
		return len(st) == 1 && st[0].Ready
	}) {
		t.Fatalf("Status = %+v, want ready again", st)
	}
}

// TestStartRetriesPortRace: the port picked for a replica is taken before
// the replica binds it (here by a listener that never answers); the
// replica fails with "address already in use" and Start declares it again
// on another port.
func TestStartRetriesPortRace(t *testing.T) {
	ctx := t.Context()
	rt := newRuntime(t)
	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	taken := squatter.Addr().(*net.TCPAddr).Port
	picks := 0
	rt.pickPort = func() (int, error) {
		picks++
		if picks == 1 {
			return taken, nil
		}
		return freePort()
	}
	reps, err := rt.Start(ctx, testReplicaSet("env-a", "v1", 1))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if picks != 2 || reps[0].Addr == squatter.Addr().String() {
		t.Fatalf("Start = %+v after %d picks, want the replica on a second port", reps, picks)
	}
	if body := get(t, "http://"+reps[0].Addr+"/whoami"); !strings.HasPrefix(body, strconv.Itoa(reps[0].PID)+" ") {
		t.Fatalf("the replica answers %q", body)
	}
	log, err := os.ReadFile(filepath.Join(rt.opts.Dir, "env-a", "logs", "web-v1-0.log"))
	if err != nil || !strings.Contains(string(log), "address already in use") {
		t.Fatalf("the replica's log does not show the lost bind: %q, %v", log, err)
	}

	// Every port taken: Start gives up after a bounded number of tries,
	// leaving nothing behind.
	rt.pickPort = func() (int, error) { return taken, nil }
	if _, err := rt.Start(ctx, testReplicaSet("env-a", "v2", 1)); err == nil || !strings.Contains(err.Error(), "lost its port 3 times") {
		t.Fatalf("Start with every port taken = %v, want it to give up after 3 tries", err)
	}
	if st := rt.Status("env-a", "web", "v2"); len(st) != 0 {
		t.Fatalf("Status after the failed start = %+v, want nothing", st)
	}
}

// mustVersions is rt.Versions, failing the test on an error.
func mustVersions(t testing.TB, rt *Runtime, env, app string) []string {
	t.Helper()
	v, err := rt.Versions(env, app)
	if err != nil {
		t.Fatalf("Versions(%s, %s): %v", env, app, err)
	}
	return v
}
