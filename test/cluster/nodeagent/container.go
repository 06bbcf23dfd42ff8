package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxBackOff caps the crash-loop and image pull back-offs, as the
// kubelet's; a container that ran twice as long starts afresh.
const maxBackOff = 5 * time.Minute

// crashDelay is how long the kubelet waits before the restart that
// follows the n-th crash in a row (n >= 1): not at all after the first,
// then base, doubling, capped at maxBackOff.
func crashDelay(base time.Duration, n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := base
	for i := 2; i < n && d < maxBackOff; i++ {
		d *= 2
	}
	return min(d, maxBackOff)
}

// pullDelay is the wait after the n-th failed pull in a row (n >= 1).
func pullDelay(base time.Duration, n int) time.Duration {
	return crashDelay(base, n+1)
}

// runner runs one container of a pod, restarting it as its policy says.
type runner struct {
	w      *podWorker
	c      *corev1.Container
	st     *containerStatus
	policy corev1.RestartPolicy
	dir    string // Dir/<pod-uid>/<container>

	pulled pulled
	rootfs string

	// Of the current run, for exec probes.
	env  []string
	cwd  string
	cred *syscall.Credential
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// run runs the container until it is done for good (per its restart
// policy) or ctx ends, and reports whether its last run exited 0.
func (r *runner) run(ctx context.Context) bool {
	if !r.prepare(ctx) {
		return false
	}
	crashes := 0
	for {
		argv, env, err := r.config(ctx)
		if err != nil {
			crashes++
			r.setWaiting("CreateContainerConfigError", err.Error())
			if !sleep(ctx, crashDelay(r.w.a.backOff, crashes+1)) {
				return false
			}
			continue
		}
		term, ran := r.once(ctx, argv, env)
		if ctx.Err() != nil {
			return term.ExitCode == 0
		}
		if ran >= 2*maxBackOff {
			crashes = 0
		}
		if !r.restarts(term.ExitCode) {
			return term.ExitCode == 0
		}
		crashes++
		delay := crashDelay(r.w.a.backOff, crashes)
		r.w.update(func() {
			r.st.last = corev1.ContainerState{Terminated: term}
			if delay > 0 {
				pod := r.w.pod
				r.st.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
					Reason:  "CrashLoopBackOff",
					Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", delay, r.c.Name, pod.Name, pod.Namespace, pod.UID),
				}}
			}
		})
		if !sleep(ctx, delay) {
			return false
		}
		r.w.update(func() { r.st.restarts++ })
	}
}

func (r *runner) restarts(code int32) bool {
	switch r.policy {
	case corev1.RestartPolicyAlways:
		return true
	case corev1.RestartPolicyOnFailure:
		return code != 0
	}
	return false
}

// prepare pulls the image, with back-off while it fails, and makes the
// container's rootfs.
func (r *runner) prepare(ctx context.Context) bool {
	log := r.w.log.With("container", r.c.Name, "image", r.c.Image)
	for failures := 0; ; {
		p, err := r.w.a.images.pull(ctx, r.c.Image)
		if err == nil {
			r.pulled = p
			break
		}
		if ctx.Err() != nil {
			return false
		}
		failures++
		log.Info("image pull failed", "err", err)
		r.setWaiting("ErrImagePull", err.Error())
		delay := pullDelay(r.w.a.backOff, failures)
		if !sleep(ctx, min(delay, time.Second)) {
			return false
		}
		r.setWaiting("ImagePullBackOff", fmt.Sprintf("Back-off pulling image %q: %v", r.c.Image, err))
		if !sleep(ctx, delay-min(delay, time.Second)) {
			return false
		}
	}
	r.rootfs = filepath.Join(r.dir, "rootfs")
	uid, gid := -1, -1
	if r.w.a.unprivileged {
		uid, gid = nobody, nobody
	}
	os.RemoveAll(r.rootfs)
	if err := copyTree(r.pulled.rootfs, r.rootfs, uid, gid); err != nil {
		log.Error("making the container's rootfs", "err", err)
		r.setWaiting("CreateContainerError", fmt.Sprintf("making rootfs: %v", err))
		<-ctx.Done() // nothing will fix it; wait for deletion
		return false
	}
	r.w.update(func() { r.st.imageID = r.pulled.imageID })
	return true
}

func (r *runner) setWaiting(reason, msg string) {
	r.w.update(func() {
		r.st.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}
		r.st.ready = false
	})
}

// config resolves the container's environment and command line.
func (r *runner) config(ctx context.Context) (argv, env []string, err error) {
	r.w.mu.Lock()
	pod := r.w.pod.DeepCopy()
	r.w.mu.Unlock()
	// The pod IP and host IP may not be in the informer's copy yet.
	pod.Status.PodIP, pod.Status.PodIPs = r.w.ip.String(), []corev1.PodIP{{IP: r.w.ip.String()}}
	pod.Status.HostIP, pod.Status.HostIPs = hostIP, []corev1.HostIP{{IP: hostIP}}
	e, err := resolveEnv(ctx, r.w.a, pod, r.c, nodeAllocatable)
	if err != nil {
		return nil, nil, err
	}
	return commandLine(r.c, r.pulled.cfg, e), processEnv(r.pulled.cfg.Env, e, r.w.a.hostPath), nil
}

// once starts the container's process, runs its probes and waits for it
// to exit (or be killed: liveness or startup failure, ctx ending). It
// records the run in the container's status and returns how it ended.
func (r *runner) once(ctx context.Context, argv, env []string) (*corev1.ContainerStateTerminated, time.Duration) {
	startedAt := metav1.Now().Rfc3339Copy()
	cmd, logOffset, err := r.start(argv, env)
	if err != nil {
		r.w.log.Info("container failed to start", "container", r.c.Name, "err", err)
		term := &corev1.ContainerStateTerminated{ExitCode: 128, Reason: "StartError", Message: err.Error(), StartedAt: startedAt, FinishedAt: startedAt}
		r.w.update(func() {
			r.st.state = corev1.ContainerState{Terminated: term}
			r.st.ready = false
		})
		return term, 0
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	r.w.a.wg.Add(1)
	go func() {
		defer r.w.a.wg.Done()
		_ = cmd.Wait()
		close(exited)
	}()
	id := fmt.Sprintf("sim://%d", pid)
	r.w.update(func() {
		r.st.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: startedAt}}
		r.st.id = id
		r.st.ready = r.c.ReadinessProbe == nil
		r.st.started = r.c.StartupProbe == nil
		r.st.runStarts = append(r.st.runStarts, logOffset)
		r.st.exited = exited
	})
	r.w.log.Info("container started", "container", r.c.Name, "pid", pid, "argv", argv)

	runCtx, stopProbes := context.WithCancel(ctx)
	failed := make(chan string, 1)
	var probes sync.WaitGroup
	r.startProbes(runCtx, &probes, failed)

	var message string
	select {
	case <-exited:
	case message = <-failed:
		r.w.log.Info("container killed", "container", r.c.Name, "reason", message)
		r.kill(pid, exited, r.w.podGrace())
	case <-ctx.Done():
		r.kill(pid, exited, r.w.stopGrace())
	}
	stopProbes()
	probes.Wait()
	killGroup(pid, syscall.SIGKILL) // what the process left behind dies with the container
	finishedAt := metav1.Now().Rfc3339Copy()
	code := exitCode(cmd.ProcessState)
	reason := "Completed"
	if code != 0 {
		reason = "Error"
	}
	term := &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, Message: message, StartedAt: startedAt, FinishedAt: finishedAt, ContainerID: id}
	r.w.update(func() {
		r.st.state = corev1.ContainerState{Terminated: term}
		r.st.ready = false
	})
	r.w.log.Info("container exited", "container", r.c.Name, "pid", pid, "exitCode", code)
	return term, finishedAt.Sub(startedAt.Time)
}

// start starts the process: its own process group, output appended to
// the container's log, as nobody when the agent may.
func (r *runner) start(argv, env []string) (*exec.Cmd, int64, error) {
	if len(argv) == 0 {
		return nil, 0, errNoCommand
	}
	cwd := workingDir(r.rootfs, r.c, r.pulled.cfg)
	if err := r.makeDir(cwd); err != nil {
		return nil, 0, err
	}
	prog, err := resolveProgram(argv[0], r.rootfs, cwd, r.pulled.cfg.Env)
	if err != nil {
		return nil, 0, err
	}
	logf, err := os.OpenFile(r.st.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, 0, fmt.Errorf("opening the log: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	info, err := logf.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("opening the log: %w", err)
	}
	// A process whose agent dies dies too (Pdeathsig); as nobody it may
	// still bind ports below 1024, as a container's root may.
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var cred *syscall.Credential
	if r.w.a.unprivileged {
		cred = &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}
		attr.Credential, attr.AmbientCaps = cred, []uintptr{capNetBindService}
	}
	cmd := &exec.Cmd{
		Path:        prog,
		Args:        argv,
		Dir:         cwd,
		Env:         env,
		Stdout:      logf,
		Stderr:      logf,
		SysProcAttr: attr,
	}
	if err := startRetryingBusy(cmd); err != nil {
		return nil, 0, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	r.w.mu.Lock()
	r.env, r.cwd, r.cred = env, cwd, cred
	r.w.mu.Unlock()
	return cmd, info.Size(), nil
}

// startRetryingBusy starts cmd, retrying for a while when the program
// is "text file busy": a rootfs just copied while another goroutine
// forked leaves the child a moment with the copy's write descriptor
// (golang/go#22315).
func startRetryingBusy(cmd *exec.Cmd) error {
	for attempt := 1; ; attempt++ {
		err := cmd.Start()
		if err == nil || !errors.Is(err, syscall.ETXTBSY) || attempt == 20 {
			return err
		}
		time.Sleep(time.Duration(attempt) * 10 * time.Millisecond)
		// A failed Start leaves cmd unusable; make it afresh.
		*cmd = exec.Cmd{Path: cmd.Path, Args: cmd.Args, Dir: cmd.Dir, Env: cmd.Env, Stdout: cmd.Stdout, Stderr: cmd.Stderr, SysProcAttr: cmd.SysProcAttr}
	}
}

// capNetBindService is CAP_NET_BIND_SERVICE.
const capNetBindService = 10

// makeDir creates the working directory when the image lacks it, as
// container runtimes do.
func (r *runner) makeDir(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the working directory: %w", err)
	}
	if r.w.a.unprivileged {
		for d := dir; d != r.rootfs && len(d) > len(r.rootfs); d = filepath.Dir(d) {
			if err := os.Lchown(d, nobody, nobody); err != nil {
				return fmt.Errorf("creating the working directory: %w", err)
			}
		}
	}
	return nil
}

// kill stops the process group: SIGTERM, then SIGKILL after grace (or
// at once when the agent stops), and waits for the process to exit.
func (r *runner) kill(pid int, exited <-chan struct{}, grace time.Duration) {
	if grace <= 0 {
		killGroup(pid, syscall.SIGKILL)
		<-exited
		return
	}
	killGroup(pid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-exited:
		return
	case <-t.C:
	case <-r.w.killNow:
	}
	killGroup(pid, syscall.SIGKILL)
	<-exited
}

// startProbes runs the container's startup probe, then its readiness and
// liveness probes, until ctx ends; a failing startup or liveness probe
// sends why on failed.
func (r *runner) startProbes(ctx context.Context, wg *sync.WaitGroup, failed chan<- string) {
	target := probeTarget{podIP: r.w.ip.String(), container: r.c, exec: r.execProbe}
	fail := func(msg string) {
		select {
		case failed <- msg:
		default:
		}
	}
	goProbe := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	steady := func() {
		if p := r.c.ReadinessProbe; p != nil {
			goProbe(func() {
				probeLoop(ctx, p, false, target, func(ok bool, err error) bool {
					r.w.update(func() { r.st.ready = ok })
					if !ok {
						r.w.log.Info("readiness probe failed", "container", r.c.Name, "err", err)
					}
					return false
				})
			})
		}
		if p := r.c.LivenessProbe; p != nil {
			goProbe(func() {
				probeLoop(ctx, p, true, target, func(ok bool, err error) bool {
					if ok {
						return false
					}
					fail(fmt.Sprintf("liveness probe failed: %v", err))
					return true
				})
			})
		}
	}
	p := r.c.StartupProbe
	if p == nil {
		steady()
		return
	}
	goProbe(func() {
		probeLoop(ctx, p, false, target, func(ok bool, err error) bool {
			if !ok {
				fail(fmt.Sprintf("startup probe failed: %v", err))
				return true
			}
			r.w.update(func() { r.st.started = true })
			steady()
			return true
		})
	})
}

// probeLoop probes on p's schedule and calls changed when the result
// flips, until ctx ends or changed returns true.
func probeLoop(ctx context.Context, p *corev1.Probe, initial bool, t probeTarget, changed func(ok bool, err error) bool) {
	timing := timingOf(p)
	th := newThreshold(p, initial)
	if !sleep(ctx, timing.initialDelay) {
		return
	}
	for {
		err := probeOnce(ctx, p, t)
		if ctx.Err() != nil {
			return
		}
		if result, flipped := th.observe(err == nil); flipped && changed(result, err) {
			return
		}
		if !sleep(ctx, timing.period) {
			return
		}
	}
}

// execProbe runs an exec probe's command as the container's process
// would run, and fails unless it exits 0.
func (r *runner) execProbe(ctx context.Context, command []string) error {
	if len(command) == 0 {
		return errNoCommand
	}
	r.w.mu.Lock()
	env, cwd, cred := r.env, r.cwd, r.cred
	r.w.mu.Unlock()
	prog, err := resolveProgram(command[0], r.rootfs, cwd, r.pulled.cfg.Env)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, prog, command[1:]...)
	cmd.Args[0] = command[0]
	cmd.Dir, cmd.Env = cwd, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	cmd.Cancel = func() error { killGroup(cmd.Process.Pid, syscall.SIGKILL); return nil }
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("command %q exited with %d: %s", command, ee.ExitCode(), lastBytes(out, 200))
		}
		return fmt.Errorf("command %q: %w", command, err)
	}
	return nil
}

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
