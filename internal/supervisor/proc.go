package supervisor

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/runway-cd/runway/internal/procfs"
)

// proc is one process of a workload: a child started by this supervisor,
// or a process adopted from a previous one.
type proc struct {
	pid       int
	start     uint64    // procfs start time: tells p apart from a later process with its pid
	startedAt time.Time // Clock time of the start (of the adoption, for an adopted process)
	child     bool

	mu     sync.Mutex
	reaped bool // a child's exit is being reaped: its pid may be reused from now on

	exited chan struct{} // closed once the process has exited
	exit   string        // set before exited is closed

	livenessFailed atomic.Bool
	probedReady    atomic.Bool // a readiness probe has passed
}

// startProc starts sp's command in its own process group.
func startProc(sp Spec, run string, now time.Time) (*proc, error) {
	logf, err := openLog(sp.LogPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(sp.Command[0], sp.Command[1:]...)
	// Nothing inherited; RunEnv marks the process, so that a supervisor
	// killed before it recorded the pid finds it again (findRun).
	cmd.Env = append(append([]string{}, sp.Env...), RunEnv+"="+run)
	cmd.Dir = sp.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if sp.Credential {
		// Groups empty: the supervisor's supplementary groups are dropped.
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: sp.UID, Gid: sp.GID, Groups: []uint32{}}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", sp.Command[0], err)
	}
	pid := cmd.Process.Pid
	// Not yet waited for, so even a child that already exited is still a
	// zombie with this pid and its start time can be read.
	st, err := procfs.Read(pid)
	if err != nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = cmd.Wait()
		return nil, fmt.Errorf("reading start time of process %d: %w", pid, err)
	}
	p := &proc{pid: pid, start: st.StartTime, startedAt: now, child: true, exited: make(chan struct{})}
	go p.reap(cmd)
	return p, nil
}

// openLog opens a workload's log for appending, never through a symlink
// (a root supervisor must not be led into appending to another file).
func openLog(path string) (*os.File, error) {
	// O_NONBLOCK: a FIFO planted in the log's place fails the open (no
	// reader) instead of blocking the run loop; then only a regular file
	// is taken.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening log: %w", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("opening log %s: not a regular file", path)
	}
	return f, nil
}

// reap waits for a child's exit. Before reaping it, while the zombie still
// holds the pid (so the process group id cannot have been reused), it
// kills what remains of the group, as a container's processes die with
// it.
func (p *proc) reap(cmd *exec.Cmd) {
	procfs.WaitChildExit(p.pid)
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	p.mu.Lock()
	p.reaped = true
	p.mu.Unlock()
	_ = cmd.Wait()
	if ps := cmd.ProcessState; ps != nil {
		p.exit = ps.String()
	} else {
		p.exit = "exited"
	}
	close(p.exited)
}

// adoptProc watches a process recorded by a previous supervisor, which is
// not this one's child, by polling /proc until it is gone or closing is
// closed.
func adoptProc(pid int, start uint64, now time.Time, closing <-chan struct{}, bg *sync.WaitGroup) *proc {
	p := &proc{pid: pid, start: start, startedAt: now, exited: make(chan struct{})}
	bg.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for !gone(pid, start) {
			select {
			case <-closing:
				return
			case <-t.C:
			}
		}
		killOrphanedGroup(pid)
		p.exit = "exited (adopted: exit status unknown)"
		close(p.exited)
	})
	return p
}

// gone reports whether the process pid started at start has exited
// entirely. A multi-threaded process's leader is a zombie (procfs
// Exited) before its other threads have exited and released its files
// (its listening sockets among them), so a zombie with threads left is
// not gone yet.
func gone(pid int, start uint64) bool {
	st, err := procfs.Read(pid)
	if err != nil {
		// Only a process that is not there is gone: a read that failed
		// for another reason (out of file descriptors) must not make a
		// running process look exited, or it would be started twice.
		return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
	}
	if st.StartTime != start {
		return true
	}
	if !st.Exited() {
		return false
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	return err != nil || len(tasks) <= 1
}

// killOrphanedGroup kills what remains of the process group of an adopted
// leader that has exited. No process has the pid any more, and Linux
// gives no new process a pid that is still some group's id, so a group
// with that id is the leader's.
func killOrphanedGroup(pid int) {
	if _, err := syscall.Getpgid(pid); errors.Is(err, syscall.ESRCH) {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// signalGroup sends sig to p's process group, provided p is provably
// still the process this supervisor started or adopted; a process that
// is gone is not an error.
func (p *proc) signalGroup(sig syscall.Signal) error {
	if p.child {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.reaped { // reap kills the rest of the group itself
			return nil
		}
		return kill(-p.pid, sig)
	}
	if !procfs.Running(p.pid, p.start) {
		return nil
	}
	if pg, err := syscall.Getpgid(p.pid); err == nil && pg == p.pid {
		return kill(-p.pid, sig)
	}
	return procfs.Signal(p.pid, p.start, sig)
}

func kill(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("sending %v to %d: %w", sig, pid, err)
	}
	return nil
}

// exitStatus describes how p ended; valid once p.exited is closed.
func (p *proc) exitStatus() string { return p.exit }

// RunEnv is the variable every workload process gets with its run's
// nonce, recorded before the process starts.
const RunEnv = "RUNWAY_SUPERVISOR_RUN"

// newRun returns a fresh run nonce.
func newRun() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// findRun finds the process started for run and not recorded (a
// supervisor killed between the start and the record): the process group
// leader whose environment carries the nonce (its children inherit it, but
// lead no group of that id). It returns 0 when there is none.
func findRun(run string) (pid int, start uint64) {
	want := []byte(RunEnv + "=" + run + "\x00")
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		n, err := strconv.Atoi(filepath.Base(dir))
		if err != nil {
			continue
		}
		environ, err := os.ReadFile(filepath.Join(dir, "environ"))
		if err != nil || !bytes.Contains(append(environ, 0), want) {
			continue
		}
		if pg, err := syscall.Getpgid(n); err != nil || pg != n {
			continue
		}
		st, err := procfs.Read(n)
		if err != nil || st.Exited() {
			continue
		}
		return n, st.StartTime
	}
	return 0, 0
}
