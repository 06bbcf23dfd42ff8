package supervisor

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// helperBin is testdata/helper, built once by TestMain.
var helperBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "svhelper")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_ = os.Chmod(dir, 0o755) // runnable by the unprivileged uid of the credential test
	helperBin = filepath.Join(dir, "helper")
	build := exec.Command("go", "build", "-o", helperBin, "./testdata/helper")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the test helper: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fakeClock is a Clock that moves only when Advance is called.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), ch: ch})
	return ch
}

// Advance moves the clock by d and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			kept = append(kept, t)
			continue
		}
		t.ch <- c.now
	}
	c.timers = kept
}

// newSupervisor starts a supervisor that the test's cleanup stops with
// everything it runs.
func newSupervisor(t *testing.T, o Options) *Supervisor {
	t.Helper()
	s, err := New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopAll(t, s) })
	return s
}

func stopAll(t *testing.T, s *Supervisor) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.StopAll(ctx); err != nil {
		t.Logf("stopping workloads: %v", err)
	}
	s.Close()
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// helperSpec runs the helper with env and its log in a new temporary
// directory.
func helperSpec(t *testing.T, id string, env ...string) Spec {
	return Spec{ID: id, Group: "g", Command: []string{helperBin}, Env: env,
		LogPath: filepath.Join(t.TempDir(), "log"), StopGrace: 5 * time.Second}
}

// servingSpec runs the helper serving HTTP on a free port, probed fast.
func servingSpec(t *testing.T, id string, env ...string) Spec {
	addr := freeAddr(t)
	sp := helperSpec(t, id, append([]string{"ADDR=" + addr}, env...)...)
	sp.Addr = addr
	sp.Readiness = &Probe{Path: "/healthz", Period: 20 * time.Millisecond, Timeout: time.Second, FailureThreshold: 2}
	return sp
}

// await waits (bounded) until id's status satisfies cond.
func await(t *testing.T, s *Supervisor, id, what string, cond func(Status) bool) Status {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	var last Status
	for {
		s.mu.Lock()
		w := s.work[id]
		var changed chan struct{}
		if w != nil {
			last, changed = w.status(), w.changed
		}
		s.mu.Unlock()
		if w == nil {
			t.Fatalf("waiting for %s: no workload %s", what, id)
		}
		if cond(last) {
			return last
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s of %s; last status %+v", what, id, last)
		}
	}
}

func waitReady(t *testing.T, s *Supervisor, id string) Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	st, err := s.WaitReady(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// awaitGone waits (bounded) until pid started at start no longer runs.
func awaitGone(t *testing.T, pid int, start uint64) {
	t.Helper()
	for range 2000 {
		if gone(pid, start) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d still runs", pid)
}
