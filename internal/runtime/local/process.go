package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/runway-cd/runway/internal/procfs"
	"github.com/runway-cd/runway/internal/runtime"
)

type replicaSet struct {
	app, version string
	healthPath   string
	procs        []*process
	// incomplete marks an adopted set that lost replicas while no control
	// plane watched it; Start replaces it as it would a set with a dead
	// replica.
	incomplete bool
}

type process struct {
	index     int
	pid       int
	startTime uint64 // field 22 of /proc/<pid>/stat: tells a reused pid apart
	addr      string
	logPath   string
	done      chan struct{} // closed when the process has exited
	err       error         // exit status of a child, valid after done
	// adopted processes are not children: done is closed by a goroutine
	// polling /proc, which release ends.
	adopted bool
	release func()
}

func (s *replicaSet) alive() bool {
	if s.incomplete {
		return false
	}
	for _, p := range s.procs {
		select {
		case <-p.done:
			return false
		default:
		}
	}
	return len(s.procs) > 0
}

func (s *replicaSet) replicas() []runtime.Replica {
	out := make([]runtime.Replica, len(s.procs))
	for i, p := range s.procs {
		out[i] = runtime.Replica{Addr: p.addr, PID: p.pid}
	}
	return out
}

func (s *replicaSet) stop(ctx context.Context) error {
	var errs []error
	for _, p := range s.procs {
		errs = append(errs, p.stop(ctx))
	}
	return errors.Join(errs...)
}

// Start implements runtime.Runtime.
func (r *Runtime) Start(ctx context.Context, rs runtime.ReplicaSet) ([]runtime.Replica, error) {
	e := r.env(rs.Env)
	e.mu.Lock()
	defer e.mu.Unlock()
	key := rs.App + "/" + rs.Version
	if s, ok := e.sets[key]; ok {
		if s.alive() {
			return s.replicas(), nil
		}
		_ = s.stop(ctx)
		delete(e.sets, key)
		if err := e.saveRecords(nil); err != nil {
			return nil, err
		}
	}
	if rs.Replicas < 1 {
		rs.Replicas = 1
	}
	if rs.HealthTimeout == 0 {
		rs.HealthTimeout = 30 * time.Second
	}
	rs.Vars = append(slices.Clip(rs.Vars), r.markerVar())
	sb, err := r.prepareEnv(e)
	if err != nil {
		return nil, err
	}
	s := &replicaSet{app: rs.App, version: rs.Version, healthPath: rs.HealthPath}
	for i := 0; i < rs.Replicas; i++ {
		p, err := r.startReplica(rs, i, sb, filepath.Join(e.logDir(), fmt.Sprintf("%s-%s-%d.log", rs.App, rs.Version, i)))
		if err != nil {
			_ = s.stop(ctx)
			return nil, err
		}
		s.procs = append(s.procs, p)
	}
	// Recorded before the health wait, so a control plane that dies during
	// it leaves no unrecorded process behind.
	if err := e.saveRecords(s); err != nil {
		_ = s.stop(ctx)
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, rs.HealthTimeout)
	defer cancel()
	errc := make(chan error, len(s.procs))
	for _, p := range s.procs {
		go func() {
			err := p.waitHealthy(hctx, rs.HealthPath)
			if err == nil {
				// Healthy is not enough: the port may have been taken
				// by another uid before the replica bound it.
				err = p.ownsPort(rs.App, rs.Version, sb.cred)
			}
			errc <- err
		}()
	}
	var errs []error
	for range s.procs {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		_ = s.stop(ctx)
		if serr := e.saveRecords(nil); serr != nil {
			r.log.Warn("recording replicas", "env", rs.Env, "err", serr)
		}
		return nil, fmt.Errorf("starting %s %s in %s: %w", rs.App, rs.Version, rs.Env, err)
	}
	e.sets[key] = s
	r.log.Info("replicas up", "env", rs.Env, "app", rs.App, "version", rs.Version, "replicas", len(s.procs))
	return s.replicas(), nil
}

// Stop implements runtime.Runtime.
func (r *Runtime) Stop(ctx context.Context, env, app, version string) error {
	e := r.env(env)
	e.mu.Lock()
	defer e.mu.Unlock()
	key := app + "/" + version
	s, ok := e.sets[key]
	if !ok {
		return nil
	}
	delete(e.sets, key)
	if err := s.stop(ctx); err != nil {
		return fmt.Errorf("stopping %s %s in %s: %w", app, version, env, err)
	}
	if err := e.saveRecords(nil); err != nil {
		return err
	}
	r.log.Info("replicas stopped", "env", env, "app", app, "version", version)
	return nil
}

// RunJob implements runtime.Runtime.
func (r *Runtime) RunJob(ctx context.Context, j runtime.Job) error {
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
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: sb.cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if ctx.Err() != nil && j.Timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s timed out after %s", j.Name, j.Timeout)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", j.Name, err)
	}
	return nil
}

// resolve makes ./name relative to dir.
func resolve(dir, name string) string {
	if strings.HasPrefix(name, "./") {
		return filepath.Join(dir, name)
	}
	return name
}

// startReplica starts one replica as its environment's sandbox user. Its
// log file is opened here (root's, 0600, in a directory only Runway
// enters) and handed to the process as stdout and stderr: the replica can
// write its log but not read or reopen it, nor any other.
func (r *Runtime) startReplica(rs runtime.ReplicaSet, index int, sb envSandbox, logPath string) (*process, error) {
	port, err := r.pickPort()
	if err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening replica log: %w", err)
	}
	cmd := exec.Command(resolve(rs.Dir, rs.Command[0]), rs.Command[1:]...)
	cmd.Dir = rs.Dir
	cmd.Env = sb.env(append(slices.Clip(rs.Vars), rs.PortEnv+"="+strconv.Itoa(port),
		"RUNWAY_ENV="+rs.Env, "RUNWAY_APP="+rs.App, "RUNWAY_VERSION="+rs.Version)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: sb.cred}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", rs.Command[0], err)
	}
	p := &process{
		index:   index,
		pid:     cmd.Process.Pid,
		addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		logPath: logPath,
		done:    make(chan struct{}),
		release: func() {},
	}
	// Read before Wait can reap it; the start time is set at fork, so it
	// is the same after exec.
	if st, err := procfs.Read(p.pid); err == nil {
		p.startTime = st.StartTime
	}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) waitHealthy(ctx context.Context, path string) error {
	client := &http.Client{Timeout: time.Second}
	url := "http://" + p.addr + path
	delay := 20 * time.Millisecond
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("replica exited before it was healthy (%v); log tail:\n%s", p.err, tail(p.logPath, 2048))
		case <-ctx.Done():
			return fmt.Errorf("replica on %s not healthy at %s before the deadline; log tail:\n%s", p.addr, path, tail(p.logPath, 2048))
		case <-time.After(delay):
		}
		if delay < 200*time.Millisecond {
			delay *= 2
		}
	}
}

// stop sends SIGTERM to the replica's process group (replicas are started
// with Setpgid, so the group id is the pid), then SIGKILL after a grace
// period or once ctx ends. A pid no longer naming the replica is never
// signalled.
func (p *process) stop(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if !p.same() {
		<-p.done // an adopted replica that exited since the last poll
		return nil
	}
	_ = syscall.Kill(-p.pid, syscall.SIGTERM)
	timer := time.NewTimer(stopGrace)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
	case <-ctx.Done():
	}
	if p.same() {
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	}
	<-p.done
	return nil
}

// stopGrace is how long a replica may take to exit after SIGTERM.
const stopGrace = 5 * time.Second

// same reports whether p.pid still names the replica: the same start time
// (a child's zombie still has it). A child whose start time could not be
// read is trusted, since its pid is not reused before it is reaped.
func (p *process) same() bool {
	if p.startTime == 0 && !p.adopted {
		return true
	}
	st, err := procfs.Read(p.pid)
	return err == nil && st.StartTime == p.startTime
}

// freePort asks the kernel for a free loopback port. It is free when
// asked, not necessarily when the replica binds it: see ownsPort.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}

// tail returns up to n bytes of the end of a file.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return ""
	}
	off := info.Size() - n
	if off < 0 {
		off = 0
	}
	b := make([]byte, info.Size()-off)
	_, _ = f.ReadAt(b, off)
	return string(b)
}
