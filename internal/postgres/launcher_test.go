package postgres

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/procfs"
)

// fakeLauncher stands in for the data plane's supervisor
// (internal/supervisor, written alongside this package, runs the real
// thing): it runs each process itself, as its child, restarts one that
// exits without being stopped (at once, then after a short pause, at most
// fakeRestarts times) and finds what it runs by id.
type fakeLauncher struct {
	mu       sync.Mutex
	runs     map[string]*fakeRun
	launched []Process
}

// fakeRestarts bounds the fake's restarts of one process.
const fakeRestarts = 3

func newFakeLauncher(t *testing.T) *fakeLauncher {
	l := &fakeLauncher{runs: map[string]*fakeRun{}}
	t.Cleanup(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, r := range l.runs {
			_ = r.Stop(context.Background())
		}
	})
	return l
}

func (l *fakeLauncher) Launch(ctx context.Context, p Process) (Running, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.launched = append(l.launched, p)
	if r, ok := l.runs[p.ID]; ok {
		if !r.done() && slices.Equal(r.p.Command, p.Command) {
			return r, nil
		}
		if err := r.Stop(ctx); err != nil {
			return nil, err
		}
	}
	r := &fakeRun{p: p, exited: make(chan struct{})}
	r.mu.Lock()
	err := r.startLocked()
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	l.runs[p.ID] = r
	return r, nil
}

func (l *fakeLauncher) Find(ctx context.Context, id string) (Running, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.runs[id]
	if !ok || r.done() {
		return nil, false, nil
	}
	return r, true, nil
}

// fakeRun is one process the fake launcher keeps running.
type fakeRun struct {
	p        Process
	exited   chan struct{}
	mu       sync.Mutex
	pid      int
	restarts int
	stopping bool
}

func (r *fakeRun) PID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pid
}

func (r *fakeRun) Exited() <-chan struct{} { return r.exited }

func (r *fakeRun) done() bool {
	select {
	case <-r.exited:
		return true
	default:
		return false
	}
}

// startLocked starts one run of the process; r.mu is held.
func (r *fakeRun) startLocked() error {
	log, err := os.OpenFile(r.p.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(r.p.Command[0], r.p.Command[1:]...)
	cmd.Dir, cmd.Env = r.p.Dir, r.p.Env
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if r.p.Credential {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: r.p.UID, Gid: r.p.GID, Groups: []uint32{}}
	}
	err = cmd.Start()
	log.Close()
	if err != nil {
		return err
	}
	r.pid = cmd.Process.Pid
	go r.watch(cmd)
	return nil
}

// watch waits for a run to end and starts the next unless stopped.
func (r *fakeRun) watch(cmd *exec.Cmd) {
	_ = cmd.Wait()
	r.mu.Lock()
	pause := time.Duration(r.restarts) * 100 * time.Millisecond // a stand-in for the supervisor's backoff
	r.mu.Unlock()
	time.Sleep(pause)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping || r.restarts >= fakeRestarts {
		close(r.exited)
		return
	}
	r.restarts++
	if err := r.startLocked(); err != nil {
		close(r.exited)
	}
}

func (r *fakeRun) Stop(ctx context.Context) error {
	r.mu.Lock()
	r.stopping = true
	pid := r.pid
	r.mu.Unlock()
	if r.done() {
		return nil
	}
	_ = syscall.Kill(pid, syscall.Signal(r.p.StopSignal))
	select {
	case <-r.exited:
	case <-ctx.Done():
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-r.exited
	}
	return nil
}

// startLaunched starts an instance through a fake launcher, removed at
// the test's end.
func startLaunched(t *testing.T) (string, Config, *fakeLauncher, *Instance) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "env")
	l := newFakeLauncher(t)
	cfg := testConfig(t, dir)
	cfg.Launcher = l
	inst, err := Start(t.Context(), cfg, dir)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = inst.Remove(context.Background()) })
	return dir, cfg, l, inst
}

// TestLauncherRunsAndRestarts runs the server through a launcher that
// restarts it when killed: the instance rides out the restart, is adopted
// through the launcher and removed through it.
func TestLauncherRunsAndRestarts(t *testing.T) {
	ctx := t.Context()
	dir, cfg, l, inst := startLaunched(t)

	if len(l.launched) != 1 {
		t.Fatalf("launched %d processes, want 1", len(l.launched))
	}
	p := l.launched[0]
	if p.ID != dir || p.Addr != net.JoinHostPort("127.0.0.1", strconv.Itoa(inst.Port())) || p.StopSignal != int(syscall.SIGINT) ||
		p.LogPath != filepath.Join(dir, "postgres.log") || p.Credential != (os.Geteuid() == 0) || filepath.Base(p.Command[0]) != "postgres" {
		t.Fatalf("launched %+v", p)
	}
	if inst.PID() != l.runs[dir].PID() {
		t.Fatalf("instance pid %d, launcher's %d", inst.PID(), l.runs[dir].PID())
	}
	conn, err := inst.EnsureDatabase(ctx, "shop", "shop")
	if err != nil {
		t.Fatalf("EnsureDatabase: %v", err)
	}
	if got := queryAsApp(t, conn); got != "pong" {
		t.Fatalf("query = %q", got)
	}

	// Killed, it is restarted on the same port; EnsureDatabase called
	// straight away waits for it.
	killed := inst.PID()
	if err := syscall.Kill(killed, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	again, err := inst.EnsureDatabase(ctx, "shop", "shop")
	if err != nil {
		t.Fatalf("EnsureDatabase after a kill: %v", err)
	}
	if again != conn {
		t.Fatalf("EnsureDatabase after a kill = %+v, want %+v", again, conn)
	}
	if inst.PID() == killed {
		t.Fatalf("pid %d unchanged: not restarted", killed)
	}
	select {
	case <-inst.Exited():
		t.Fatalf("Exited closed by a restart")
	default:
	}
	if got := queryAsApp(t, conn); got != "pong" {
		t.Fatalf("query after the restart = %q", got)
	}

	// A control plane restarted later finds the server through the launcher.
	adopted, err := Adopt(ctx, cfg, dir)
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	if adopted.PID() != inst.PID() || adopted.Port() != inst.Port() {
		t.Fatalf("adopted pid %d port %d, want %d %d", adopted.PID(), adopted.Port(), inst.PID(), inst.Port())
	}
	if c, err := adopted.EnsureDatabase(ctx, "shop", "shop"); err != nil || c != conn {
		t.Fatalf("EnsureDatabase on the adopted instance = %+v, %v", c, err)
	}

	procs := append(procfs.Children(adopted.PID()), procfs.Stat{PID: adopted.PID()})
	if err := adopted.Remove(ctx); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if !l.runs[dir].done() {
		t.Fatalf("the launcher still runs the server after Remove")
	}
	select {
	case <-adopted.Exited():
	default:
		t.Fatalf("Exited not closed after Remove")
	}
	for _, p := range procs {
		if st, err := procfs.Read(p.PID); err == nil && !st.Exited() && (p.StartTime == 0 || st.StartTime == p.StartTime) {
			t.Errorf("server process %d runs after Remove", p.PID)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dir after Remove: stat err = %v", err)
	}
	if _, err := Adopt(ctx, cfg, dir); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Adopt after Remove: err = %v, want ErrNotRunning", err)
	}
}

// A launched server that cannot bind its port is stopped and reported as
// errPortTaken, though its launcher keeps restarting it, so Start tries
// another port.
func TestLauncherPortTaken(t *testing.T) {
	ctx := t.Context()
	dir, cfg, l, inst := startLaunched(t)
	if err := inst.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	full, err := cfg.withDefaults(ctx)
	if err != nil {
		t.Fatal(err)
	}
	own, err := resolveOwner(full)
	if err != nil {
		t.Fatal(err)
	}
	if err := inst.launchWith(ctx, full, own, busy.Addr().(*net.TCPAddr).Port); !errors.Is(err, errPortTaken) {
		t.Fatalf("launchWith on a taken port: err = %v, want errPortTaken", err)
	}
	if !l.runs[dir].done() {
		t.Fatalf("the server that could not bind is still run by the launcher")
	}
}
