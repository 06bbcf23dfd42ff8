package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/runway-cd/runway/internal/sandbox"
)

const (
	// killTimeout bounds the wait for a build uid's processes to die
	// after SIGKILL; only a process stuck in the kernel takes long.
	killTimeout = 30 * time.Second
	// drainTimeout bounds reading the rest of a build's log once its
	// script has exited: with the sandbox disabled, a daemon the script
	// left may hold the pipe for good.
	drainTimeout = 5 * time.Second
)

// lockApp waits until no other build of app runs, or ctx ends, and
// returns the function that lets the next one go. An app's builds share
// a uid and a cache, and each ends by killing every process of that uid.
func (s *Store) lockApp(ctx context.Context, app string) (func(), error) {
	s.mu.Lock()
	token, ok := s.building[app]
	if !ok {
		token = make(chan struct{}, 1)
		s.building[app] = token
	}
	s.mu.Unlock()
	select {
	case token <- struct{}{}:
		return func() { <-token }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the running build of %s: %w", app, ctx.Err())
	}
}

// buildEnv is the environment of a build script of app at tree: the
// allow-listed variables of Runway's environment (sandbox.Env) with
// reproducibleGoFlags added to GOFLAGS, HOME and TMPDIR set to home (none
// when empty), RUNWAY_APP, RUNWAY_TREE (the tree's id) and dirs, the
// build's directories (GOCACHE ...). No RUNWAY_VERSION or RUNWAY_COMMIT:
// an artifact is reused for every commit of the same tree, so nothing
// that tells commits apart may reach its build.
func (s *Store) buildEnv(home, app, tree string, dirs ...string) []string {
	sb := s.opts.Sandbox
	goflags := withReproducibleGoFlags(lookup(sb.Env(""), "GOFLAGS"))
	return sb.Env(home, append([]string{"GOFLAGS=" + goflags, "RUNWAY_APP=" + app, "RUNWAY_TREE=" + tree}, dirs...)...)
}

// run runs the build script in work/src as the app's build uid, which is
// handed the checkout, an empty work/out (returned: what the script writes
// to $RUNWAY_OUT), work/home (HOME and TMPDIR) and the app's caches. The
// script gets buildEnv, never Runway's own environment.
//
// However the script ends (exit, failure, ctx done), run returns only
// once no process of the build uid is left: a daemon it started in a
// session of its own would otherwise write into the output while it is
// imported, or into a later build's. The caller holds the app's lock, so
// every process of that uid is this build's.
func (s *Store) run(ctx context.Context, work, script, app, tree string, log io.Writer) (string, error) {
	sb := s.opts.Sandbox
	key := sandbox.BuildKey(app)
	// What a build of a Runway that crashed left running goes first.
	if err := s.killBuild(ctx, key); err != nil {
		return "", err
	}
	cache, err := s.appCache(work, app, key, log)
	if err != nil {
		return "", err
	}
	src, out, home := filepath.Join(work, "src"), filepath.Join(work, "out"), filepath.Join(work, "home")
	if err := sb.ChownTree(src, key); err != nil {
		return "", err
	}
	for _, d := range []string{out, home} {
		if err := sb.Dir(d, 0o700, key); err != nil {
			return "", err
		}
	}
	cred, err := sb.Credential(key)
	if err != nil {
		return "", err
	}
	// A pipe of our own rather than exec's copying: Wait then returns when
	// the script exits, not when the last process holding its output does.
	pr, pw, err := os.Pipe()
	if err != nil {
		return "", fmt.Errorf("creating the build log pipe: %w", err)
	}
	defer pr.Close()
	cmd := exec.CommandContext(ctx, "sh", "-ec", script)
	cmd.Dir = src
	cmd.Env = s.buildEnv(home, app, tree,
		"GOCACHE="+filepath.Join(cache, "gocache"), "GOMODCACHE="+filepath.Join(cache, "gomodcache"), "RUNWAY_OUT="+out)
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return "", fmt.Errorf("starting the build script: %w", err)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(log, pr)
	}()
	runErr := cmd.Wait()
	// The process group first: all there is to kill when the sandbox is
	// disabled. Its id is not reused while a member lives.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	killErr := s.killBuild(ctx, key)
	_ = pr.SetReadDeadline(time.Now().Add(drainTimeout))
	<-copied
	return out, errors.Join(runErr, killErr)
}

// killBuild kills every process of a build uid and waits until none is
// left, even once ctx is done: a cancelled build is ended too.
func (s *Store) killBuild(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killTimeout)
	defer cancel()
	if err := s.opts.Sandbox.KillAll(ctx, key); err != nil {
		return fmt.Errorf("ending what the build left running: %w", err)
	}
	return nil
}
