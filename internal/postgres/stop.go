package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/runway-cd/runway/internal/procfs"
)

// stopTimeout is how long Stop lets a fast shutdown take before it kills.
const stopTimeout = 10 * time.Second

// Stop shuts the server down: SIGINT (PostgreSQL's fast shutdown: roll back
// open transactions, disconnect clients), then, if it has not exited within
// about 10s or once ctx ends, SIGKILL to the server and all its processes.
// Stop is idempotent and keeps the instance directory. With a Launcher,
// the launcher stops it for good (Running.Stop) and Stop makes sure the
// server's processes are gone too.
func (i *Instance) Stop(ctx context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.stopLocked(ctx)
}

func (i *Instance) stopLocked(ctx context.Context) error {
	if i.stopped {
		return nil
	}
	if i.running != nil {
		if err := i.stopRunning(ctx); err != nil {
			return err
		}
		i.stopped = true
		i.log.Info("postgres: stopped through its launcher", "pid", i.running.PID(), "dir", i.dir)
		return nil
	}
	select {
	case <-i.exited:
	default:
		if !i.sameProcess() {
			// An adopted server that exited since the last poll: its pid
			// may already name another process, which must not be signalled.
			<-i.exited
			break
		}
		if err := syscall.Kill(i.pid, syscall.SIGINT); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signalling postgres %d to shut down: %w", i.pid, err)
		}
		timer := time.NewTimer(stopTimeout)
		defer timer.Stop()
		select {
		case <-i.exited:
		case <-timer.C:
			i.log.Warn("postgres: fast shutdown timed out, killing", "pid", i.pid, "dir", i.dir)
			i.kill()
		case <-ctx.Done():
			i.log.Warn("postgres: stop cancelled, killing", "pid", i.pid, "dir", i.dir, "err", ctx.Err())
			i.kill()
		}
		<-i.exited
	}
	i.stopped = true
	i.log.Info("postgres: stopped", "pid", i.pid, "dir", i.dir)
	return nil
}

// kill ends the postmaster and every process it started, and returns once
// they are gone. PostgreSQL's child processes make themselves process group
// leaders, so a signal to the postmaster's group misses them: freeze the
// postmaster so it cannot fork, list its children, then kill all their
// groups. Killed children are reparented, so wait for them via /proc.
func (i *Instance) kill() {
	if !i.sameProcess() {
		return
	}
	_ = syscall.Kill(i.pid, syscall.SIGSTOP)
	kids := procfs.Children(i.pid)
	_ = syscall.Kill(-i.pid, syscall.SIGKILL)
	_ = syscall.Kill(i.pid, syscall.SIGKILL)
	for _, k := range kids {
		_ = syscall.Kill(-k.PID, syscall.SIGKILL)
		_ = syscall.Kill(k.PID, syscall.SIGKILL)
	}
	if !awaitGone(kids, killWait) {
		i.log.Warn("postgres: server processes outlived SIGKILL", "pid", i.pid, "dir", i.dir)
	}
}

// sameProcess reports whether i.pid still names the server that was
// started or adopted, told apart from a later process by its start time.
// Without a recorded start time (it could not be read) it trusts the pid,
// which is safe only for a child not yet reaped: Adopt refuses such records.
func (i *Instance) sameProcess() bool {
	if i.startedAt == 0 {
		return true
	}
	st, err := procfs.Read(i.pid)
	return err == nil && st.StartTime == i.startedAt
}

// killWait bounds how long kill waits for killed processes to end.
const killWait = 5 * time.Second

// Remove stops the server if it runs and deletes everything of the
// instance: its directory, a socket directory made outside it and its
// secrets directory.
func (i *Instance) Remove(ctx context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.removed {
		return nil
	}
	if err := i.stopLocked(ctx); err != nil {
		return err
	}
	if err := os.RemoveAll(i.dir); err != nil {
		return fmt.Errorf("removing instance dir: %w", err)
	}
	if i.ownsSock {
		if err := os.RemoveAll(i.sockDir); err != nil {
			return fmt.Errorf("removing socket dir: %w", err)
		}
	}
	if i.secretsDir != "" {
		if err := os.RemoveAll(i.secretsDir); err != nil {
			return fmt.Errorf("removing secrets dir: %w", err)
		}
	}
	i.removed = true
	i.log.Info("postgres: removed", "dir", i.dir)
	return nil
}
