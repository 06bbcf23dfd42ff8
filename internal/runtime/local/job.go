package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/runway-cd/runway/internal/procfs"
	"github.com/runway-cd/runway/internal/runtime"
)

// jobOutputGrace is how long RunJob waits, once a job's processes are
// gone, for the rest of its output: only a process that left the job's
// process group (setsid) still holds its output pipe then, and RunJob does
// not wait for it.
const jobOutputGrace = 5 * time.Second

// RunJob implements runtime.Jobs. The job runs in a process group of its
// own, as its environment's sandbox uid; when its command exits, whatever
// it left running in its group is killed, as a container's processes die
// with it (a test script's background server must not outlive the job, nor
// keep the job waiting on its output).
func (r *Runtime) RunJob(ctx context.Context, j runtime.Job) error {
	if err := checkJob(j); err != nil {
		return fmt.Errorf("%s: %w", j.Name, err)
	}
	if len(j.Command) == 0 {
		return errors.New("job has no command")
	}
	if j.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, j.Timeout)
		defer cancel()
	}
	log := j.Log
	if log == nil {
		log = io.Discard
	}
	e := r.env(j.Env)
	e.mu.Lock() // not across the run: Start and Stop of the environment go on meanwhile
	sb, err := r.prepareEnv(e)
	e.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%s: %w", j.Name, err)
	}
	cmd := exec.CommandContext(ctx, resolve(j.Dir, j.Command[0]), j.Command[1:]...)
	cmd.Dir = j.Dir
	// Only the allow-listed variables and the job's own: never Runway's
	// environment (its secrets) or another environment's settings.
	cmd.Env = sb.env(j.Vars...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: sb.cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err = runGroup(cmd, log)
	if ctx.Err() != nil && j.Timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s timed out after %s", j.Name, j.Timeout)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", j.Name, err)
	}
	return nil
}

// runGroup runs cmd (the leader of a new process group) with its output to
// log, and once it has exited, before it is reaped (so that the group's id
// cannot have been reused), kills what remains of its group and waits for
// it to be gone. Its output
// goes through a pipe of its own rather than exec's copying, which would
// wait for every process holding the pipe, the killed ones' included.
func runGroup(cmd *exec.Cmd, log io.Writer) error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("making the output pipe: %w", err)
	}
	defer pr.Close()
	cmd.Stdout, cmd.Stderr = pw, pw
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(log, pr)
	}()
	err = cmd.Start()
	pw.Close() // the job's processes hold the write end now
	if err != nil {
		pr.Close()
		<-copied
		return err
	}
	procfs.WaitChildExit(cmd.Process.Pid)
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	err = cmd.Wait()
	select {
	case <-copied:
	case <-time.After(jobOutputGrace):
		pr.Close() // a process outside the group holds the pipe
		<-copied
	}
	awaitGroupGone(cmd.Process.Pid, jobOutputGrace)
	return err
}

// awaitGroupGone waits, at most limit, until no process of group pgid
// runs (a zombie has exited): a killed process closes its files, which
// ends the job's output, a moment before it is gone.
func awaitGroupGone(pgid int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for groupRuns(pgid) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// groupRuns reports whether a process of group pgid runs.
func groupRuns(pgid int) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, de := range entries {
		pid, err := strconv.Atoi(de.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(pid); err != nil || g != pgid {
			continue
		}
		if st, err := procfs.Read(pid); err == nil && !st.Exited() {
			return true
		}
	}
	return false
}

// checkJob refuses a job whose environment is no valid name, or whose app
// (optional: it is for logs) is given and none.
func checkJob(j runtime.Job) error {
	if j.App == "" {
		return checkEnv(j.Env)
	}
	return checkApp(j.Env, j.App)
}

// resolve makes ./name relative to dir.
func resolve(dir, name string) string {
	if strings.HasPrefix(name, "./") {
		return filepath.Join(dir, name)
	}
	return name
}
