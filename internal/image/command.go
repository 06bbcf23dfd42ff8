package image

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// defaultOutputLimit bounds the output a Command keeps of each stream.
const defaultOutputLimit = 64 << 10

// ErrNoReference is returned by Command.Build when the command printed
// no image reference.
var ErrNoReference = errors.New("image command printed no image reference")

// Command is an image build of a team's own (Docker, Buildah, ko, Bazel,
// a script), plugged in where a Builder would be. Build runs
// `sh -c Shell` in the artifact dir with these in its environment:
//
//	RUNWAY_ARTIFACT_DIR   the artifact dir (also the working directory)
//	RUNWAY_IMAGE_NAME     the app's image name, such as "hello"
//	RUNWAY_IMAGE_TAG      the tag, such as the artifact's version
//	RUNWAY_IMAGE          Registry/name:tag, a suggested place to push to
//	RUNWAY_APP_DIR        AppDir, where a Builder would put the files
//	RUNWAY_ENTRYPOINT     the artifact's command, a JSON array of strings
//
// The command pushes the image and prints its reference as the last
// non-empty line of its standard output; it should be by digest
// (host/name@sha256:...), which is what a workload is then given. A
// command that fails, or prints no valid reference, fails the build with
// the tail of its output in the error. With Docker, for example:
//
//	docker build -t "$RUNWAY_IMAGE" . >&2 &&
//	docker push "$RUNWAY_IMAGE" >&2 &&
//	docker inspect --format '{{index .RepoDigests 0}}' "$RUNWAY_IMAGE"
//
// The command inherits Runway's environment (PATH, HOME, a registry's
// credentials helpers need them) with Env added.
type Command struct {
	// Shell is the command, run by sh -c.
	Shell string
	// Env is added to Runway's environment for the command (KEY=value).
	Env []string
	// Registry makes RUNWAY_IMAGE; empty: RUNWAY_IMAGE is name:tag.
	Registry string
	// Timeout bounds one build; zero: no bound but ctx's.
	Timeout time.Duration
	// OutputLimit is how many bytes of each of stdout and stderr are kept
	// (the last ones); zero: 64 KiB.
	OutputLimit int
}

// Build runs the command for the artifact in dir and returns the image
// reference it printed.
func (c *Command) Build(ctx context.Context, app, tag, dir string, entrypoint []string) (string, error) {
	if strings.TrimSpace(c.Shell) == "" {
		return "", errors.New("running image command: empty command")
	}
	img := app + ":" + tag
	if c.Registry != "" {
		img = c.Registry + "/" + img
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	ep, err := json.Marshal(entrypoint)
	if err != nil {
		return "", fmt.Errorf("running image command for %s: %w", img, err)
	}
	limit := c.OutputLimit
	if limit <= 0 {
		limit = defaultOutputLimit
	}
	stdout, stderr := &tailBuffer{max: limit}, &tailBuffer{max: limit}

	cmd := exec.CommandContext(ctx, "sh", "-c", c.Shell)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.Env = append(cmd.Env,
		"RUNWAY_ARTIFACT_DIR="+dir,
		"RUNWAY_IMAGE_NAME="+app,
		"RUNWAY_IMAGE_TAG="+tag,
		"RUNWAY_IMAGE="+img,
		"RUNWAY_APP_DIR="+AppDir,
		"RUNWAY_ENTRYPOINT="+string(ep),
	)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// The command's children go with it when ctx ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second

	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
		return "", fmt.Errorf("running image command for %s: %w%s", img, err, outputTail(stdout, stderr))
	}
	ref := lastLine(stdout.String())
	if ref == "" {
		return "", fmt.Errorf("running image command for %s: %w%s", img, ErrNoReference, outputTail(stdout, stderr))
	}
	if _, err := name.ParseReference(ref); err != nil {
		return "", fmt.Errorf("running image command for %s: last line of output %q is not an image reference: %w%s", img, ref, err, outputTail(stdout, stderr))
	}
	return ref, nil
}

// lastLine is s's last non-empty line, trimmed.
func lastLine(s string) string {
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return l
		}
	}
	return ""
}

// outputTail is the end of a command's output for an error message.
func outputTail(stdout, stderr *tailBuffer) string {
	const show = 2 << 10
	var b strings.Builder
	for _, s := range []struct {
		name string
		buf  *tailBuffer
	}{{"stderr", stderr}, {"stdout", stdout}} {
		out := strings.TrimSpace(s.buf.String())
		if out == "" {
			continue
		}
		if len(out) > show {
			out = "..." + out[len(out)-show:]
		}
		fmt.Fprintf(&b, "\n%s:\n%s", s.name, out)
	}
	return b.String()
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) >= t.max {
		t.buf.Reset()
		t.buf.Write(p[len(p)-t.max:])
		return n, nil
	}
	if over := t.buf.Len() + len(p) - t.max; over > 0 {
		t.buf.Next(over)
	}
	t.buf.Write(p)
	return n, nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
