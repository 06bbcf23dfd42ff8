package supervisor

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/procfs"
)

// readyEvents records OnReady calls.
type readyEvents struct {
	mu     sync.Mutex
	events []string
	ch     chan struct{}
}

func newReadyEvents() *readyEvents { return &readyEvents{ch: make(chan struct{}, 1000)} }

func (r *readyEvents) OnReady(addr string, ready bool) {
	r.mu.Lock()
	r.events = append(r.events, addr+" "+strconv.FormatBool(ready))
	r.mu.Unlock()
	r.ch <- struct{}{}
}

// await waits (bounded) until the events end with want.
func (r *readyEvents) await(t *testing.T, want string) {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		got := slices.Clone(r.events)
		r.mu.Unlock()
		if len(got) > 0 && got[len(got)-1] == want {
			return
		}
		select {
		case <-r.ch:
		case <-deadline.C:
			t.Fatalf("OnReady calls %q do not end with %q", got, want)
		}
	}
}

func TestKilledProcessIsRestarted(t *testing.T) {
	ev := newReadyEvents()
	s := newSupervisor(t, Options{OnReady: ev.OnReady})
	sp := servingSpec(t, "env/app/v1/0")
	if _, err := s.Apply(t.Context(), sp); err != nil {
		t.Fatal(err)
	}
	first := waitReady(t, s, sp.ID)
	ev.await(t, sp.Addr+" true")
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st := await(t, s, sp.ID, "restarted and ready", func(st Status) bool { return st.Restarts == 1 && st.Ready })
	if st.PID == first.PID || st.Addr != sp.Addr || st.LastExit != "signal: killed" || st.State != Running {
		t.Fatalf("after kill -9: %+v (before: %+v)", st, first)
	}
	ev.await(t, sp.Addr+" true")
	ev.mu.Lock()
	got := ev.events
	ev.mu.Unlock()
	if want := []string{sp.Addr + " true", sp.Addr + " false", sp.Addr + " true"}; !slices.Equal(got, want) {
		t.Errorf("OnReady calls = %q, want %q", got, want)
	}
}

func TestReadinessFlipCallsOnReady(t *testing.T) {
	ev := newReadyEvents()
	s := newSupervisor(t, Options{OnReady: ev.OnReady})
	unready := filepath.Join(t.TempDir(), "unready")
	sp := servingSpec(t, "env/flip", "UNREADY_FILE="+unready)
	if _, err := s.Apply(t.Context(), sp); err != nil {
		t.Fatal(err)
	}
	st := waitReady(t, s, sp.ID)
	ev.await(t, sp.Addr+" true")
	if err := os.WriteFile(unready, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ev.await(t, sp.Addr+" false")
	if got, _ := s.Get(sp.ID); got.Ready || got.State != Running || got.PID != st.PID || got.Restarts != 0 {
		t.Fatalf("unready workload: %+v", got)
	}
	if err := os.Remove(unready); err != nil {
		t.Fatal(err)
	}
	ev.await(t, sp.Addr+" true")
}

func TestLivenessFailureRestarts(t *testing.T) {
	s := newSupervisor(t, Options{})
	dead := filepath.Join(t.TempDir(), "dead")
	sp := servingSpec(t, "env/live", "DEAD_FILE="+dead)
	sp.Liveness = &Probe{Path: "/live", Period: 20 * time.Millisecond, Timeout: time.Second, FailureThreshold: 2}
	if _, err := s.Apply(t.Context(), sp); err != nil {
		t.Fatal(err)
	}
	first := waitReady(t, s, sp.ID)
	if err := os.WriteFile(dead, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	await(t, s, sp.ID, "liveness restart", func(st Status) bool { return st.Restarts == 1 })
	if err := os.Remove(dead); err != nil {
		t.Fatal(err)
	}
	st := await(t, s, sp.ID, "ready after the restart", func(st Status) bool { return st.Ready })
	if st.LastExit != "liveness probe failed" || st.PID == first.PID || st.Restarts != 1 {
		t.Fatalf("after a liveness failure: %+v", st)
	}
}

func TestRemoveDrainsThenStopsTheGroup(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	var s *Supervisor
	s = newSupervisor(t, Options{
		OnReady: func(addr string, ready bool) {
			mu.Lock()
			calls = append(calls, "ready "+strconv.FormatBool(ready))
			mu.Unlock()
		},
		Drain: func(ctx context.Context, addr string) {
			st, _ := s.Get("env/drain")
			mu.Lock()
			calls = append(calls, "drain "+addr+" running="+strconv.FormatBool(procfs.Running(st.PID, st.StartTime)))
			mu.Unlock()
		},
	})
	pidFile := filepath.Join(t.TempDir(), "child")
	addr := freeAddr(t)
	sp := Spec{ID: "env/drain", Command: []string{"/bin/sh", "-c", helperBin + " & echo $! > " + pidFile + "; wait"},
		Env: []string{"ADDR=" + addr}, Addr: addr, LogPath: filepath.Join(t.TempDir(), "log"),
		Readiness: &Probe{Path: "/healthz", Period: 20 * time.Millisecond}}
	if _, err := s.Apply(t.Context(), sp); err != nil {
		t.Fatal(err)
	}
	st := waitReady(t, s, sp.ID)
	child := readPID(t, pidFile)
	childStat, err := procfs.Read(child)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(t.Context(), sp.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Get(sp.ID); ok {
		t.Error("removed workload still listed")
	}
	if procfs.Running(st.PID, st.StartTime) {
		t.Error("the removed process still runs")
	}
	awaitGone(t, child, childStat.StartTime) // the group was signalled, not only the shell
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"ready true", "ready false", "drain " + addr + " running=true"}; !slices.Equal(calls, want) {
		t.Errorf("calls = %q, want %q", calls, want)
	}
}

func TestKilledLeaderTakesItsGroupAlong(t *testing.T) {
	s := newSupervisor(t, Options{})
	pidFile := filepath.Join(t.TempDir(), "child")
	sp := Spec{ID: "env/group", Command: []string{"/bin/sh", "-c", "rm -f " + pidFile + "; /bin/sleep 300 & echo $! > " + pidFile + ".tmp; mv " + pidFile + ".tmp " + pidFile + "; wait"},
		LogPath: filepath.Join(t.TempDir(), "log")}
	first, err := s.Apply(t.Context(), sp)
	if err != nil {
		t.Fatal(err)
	}
	child := readPID(t, pidFile)
	childStat, err := procfs.Read(child)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	await(t, s, sp.ID, "restart", func(st Status) bool { return st.Restarts == 1 })
	awaitGone(t, child, childStat.StartTime)
}

func TestStopGraceEndsInSIGKILL(t *testing.T) {
	s := newSupervisor(t, Options{})
	sp := servingSpec(t, "env/stubborn", "IGNORE_TERM=1")
	sp.StopGrace = 50 * time.Millisecond
	if _, err := s.Apply(t.Context(), sp); err != nil {
		t.Fatal(err)
	}
	st := waitReady(t, s, sp.ID)
	if err := s.Remove(t.Context(), sp.ID); err != nil {
		t.Fatal(err)
	}
	if procfs.Running(st.PID, st.StartTime) {
		t.Fatal("process survived Remove")
	}
	if tail := logTail(sp.LogPath); !strings.Contains(tail, "helper got terminated") {
		t.Errorf("log does not show the SIGTERM before the SIGKILL:\n%s", tail)
	}
}

func TestWaitReadyReportsAnEarlyExit(t *testing.T) {
	s := newSupervisor(t, Options{Backoff: Backoff{Initial: time.Hour}})
	addr := freeAddr(t)
	sp := helperSpec(t, "env/early", "EXIT_NOW=1", "EXIT_CODE=7")
	sp.Addr, sp.Readiness = addr, &Probe{Path: "/healthz"}
	if _, err := s.Apply(t.Context(), sp); err != nil {
		t.Fatal(err)
	}
	_, err := s.WaitReady(t.Context(), sp.ID)
	var ee *ExitError
	if !errors.As(err, &ee) || ee.LastExit != "exit status 7" || !strings.Contains(ee.LogTail, "helper exiting at once") {
		t.Fatalf("WaitReady = %v, want an exit error with status 7 and the log", err)
	}
	// Supervision goes on: the immediate restart happens.
	await(t, s, sp.ID, "a restart after the failed wait", func(st Status) bool { return st.Restarts == 1 })
}

func TestWaitReadyTimeoutNamesTheProbe(t *testing.T) {
	s := newSupervisor(t, Options{})
	unready := filepath.Join(t.TempDir(), "unready")
	if err := os.WriteFile(unready, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	sp := servingSpec(t, "env/slow", "UNREADY_FILE="+unready)
	if _, err := s.Apply(t.Context(), sp); err != nil {
		t.Fatal(err)
	}
	awaitLog(t, sp.LogPath, "starting")
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err := s.WaitReady(ctx, sp.ID)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "GET http://"+sp.Addr+"/healthz") ||
		!strings.Contains(err.Error(), "helper") {
		t.Fatalf("WaitReady = %v", err)
	}
}

func TestProcessEnvironment(t *testing.T) {
	s := newSupervisor(t, Options{})
	dir, err := os.MkdirTemp("", "svdir") // not t.TempDir: its parent is closed to the credential's uid
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sp := helperSpec(t, "env/environ", "PRINT_ENV=1", "A=b c")
	sp.Dir = dir
	if os.Getuid() == 0 {
		sp.Credential, sp.UID, sp.GID = true, 65534, 65534
	}
	if _, err := s.Apply(t.Context(), sp); err != nil {
		t.Fatal(err)
	}
	out := awaitLog(t, sp.LogPath, "uid:")
	var env []string
	for l := range strings.Lines(out) {
		if e, ok := strings.CutPrefix(strings.TrimSuffix(l, "\n"), "env: "); ok {
			env = append(env, e)
		}
	}
	// Exactly the Spec's, and the run's nonce (RunEnv) last.
	if len(env) != 3 || !strings.HasPrefix(env[2], RunEnv+"=") || len(env[2]) != len(RunEnv)+1+24 {
		t.Fatalf("environment = %q, want the Spec's and %s=<nonce>", env, RunEnv)
	}
	if want := []string{"PRINT_ENV=1", "A=b c"}; !slices.Equal(env[:2], want) {
		t.Errorf("environment = %q, want exactly %q and the nonce", env, want)
	}
	if !strings.Contains(out, "cwd: "+dir+"\n") {
		t.Errorf("log does not show the working directory %s:\n%s", dir, out)
	}
	if sp.Credential && !strings.Contains(out, "uid: 65534 gid: 65534") {
		t.Errorf("log does not show the credential:\n%s", out)
	}
	if fi, err := os.Stat(sp.LogPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("log file: %v, %v; want mode 0600", fi.Mode(), err)
	}
}

func TestApplyIsIdempotentAndReplacesChangedSpecs(t *testing.T) {
	s := newSupervisor(t, Options{})
	sp := servingSpec(t, "env/replace")
	if _, err := s.Apply(t.Context(), sp); err != nil {
		t.Fatal(err)
	}
	first := waitReady(t, s, sp.ID)
	again, err := s.Apply(t.Context(), sp)
	if err != nil || again.PID != first.PID {
		t.Fatalf("Apply of the same spec = %+v, %v; want the running process %d", again, err, first.PID)
	}
	sp.Env = append(sp.Env, "NEW=1")
	if _, err := s.Apply(t.Context(), sp); err != nil {
		t.Fatal(err)
	}
	second := waitReady(t, s, sp.ID)
	if second.PID == first.PID || procfs.Running(first.PID, first.StartTime) {
		t.Fatalf("changed spec: old process %d still runs or was kept (%+v)", first.PID, second)
	}
	other := servingSpec(t, "env/other")
	other.Addr = sp.Addr
	if _, err := s.Apply(t.Context(), other); !errors.Is(err, ErrConflict) {
		t.Errorf("Apply with another workload's addr = %v, want ErrConflict", err)
	}
}

// readPID waits (bounded) for a shell to write a pid into path.
func readPID(t *testing.T, path string) int {
	t.Helper()
	for range 2000 {
		if b, err := os.ReadFile(path); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				return pid
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no pid in %s", path)
	return 0
}

// awaitLog waits (bounded) until the log at path contains substr.
func awaitLog(t *testing.T, path, substr string) string {
	t.Helper()
	var tail string
	for range 2000 {
		if tail = logTail(path); strings.Contains(tail, substr) {
			return tail
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("log %s has no %q:\n%s", path, substr, tail)
	return ""
}

// TestSquatterIsNeverReady has another user's server on a workload's port
// before the workload binds it: it answers the readiness probe, but a
// workload run as its own uid is made ready only when that uid holds the
// port, so the gateway is never told to send it traffic.
func TestSquatterIsNeverReady(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: the workload must run as a uid other than the squatter's")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	squatter := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })}
	go func() { _ = squatter.Serve(ln) }()
	t.Cleanup(func() { squatter.Close() })
	events := newReadyEvents()
	var takenMu sync.Mutex
	var taken []string
	s := newSupervisor(t, Options{OnReady: events.OnReady, OnPortTaken: func(addr string, on bool) {
		takenMu.Lock()
		taken = append(taken, addr+" "+strconv.FormatBool(on))
		takenMu.Unlock()
	}})
	sp := helperSpec(t, "env/app/v1/0", "ADDR="+ln.Addr().String())
	sp.Addr = ln.Addr().String()
	sp.Readiness = &Probe{Path: "/healthz", Period: 20 * time.Millisecond, Timeout: time.Second, FailureThreshold: 2}
	sp.Credential, sp.UID, sp.GID = true, 65534, 65534
	if _, err := s.Apply(t.Context(), sp); err != nil {
		t.Fatal(err)
	}
	// The helper cannot bind the port and exits, and is restarted; all the
	// while the squatter answers every probe.
	st := await(t, s, sp.ID, "two restarts", func(st Status) bool { return st.Restarts >= 2 })
	if st.Ready {
		t.Fatalf("a workload whose port another uid holds was made ready: %+v", st)
	}
	events.mu.Lock()
	defer events.mu.Unlock()
	if slices.Contains(events.events, sp.Addr+" true") {
		t.Fatalf("OnReady made a squatted port ready: %q", events.events)
	}
	takenMu.Lock()
	defer takenMu.Unlock()
	if !slices.Equal(taken, []string{sp.Addr + " true"}) {
		t.Fatalf("OnPortTaken calls %q, want one saying %s is taken", taken, sp.Addr)
	}
	takenMu.Unlock()
	events.mu.Unlock()

	// The squatter goes: the workload's next run binds the port, is made
	// ready, and the gateway is told the address is the workload's again.
	squatter.Close()
	await(t, s, sp.ID, "ready on its own port", func(st Status) bool { return st.Ready })
	events.mu.Lock()
	takenMu.Lock()
	if !slices.Equal(taken, []string{sp.Addr + " true", sp.Addr + " false"}) {
		t.Fatalf("OnPortTaken calls %q, want taken, then free again", taken)
	}
}
