package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"unicode/utf8"
)

// logTailBytes is how much of a log's end Status.LogTail and errors carry.
const logTailBytes = 2 << 10

// ExitError is WaitReady's error when the workload's process exited
// before it became ready.
type ExitError struct {
	ID       string
	LastExit string
	LogTail  string
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("workload %s exited before it was ready (%s); end of its log:\n%s", e.ID, e.LastExit, e.LogTail)
}

// WaitReady waits until the workload is ready and returns its Status. It
// fails when a process of the workload exits before it became ready (an
// *ExitError with the exit status and the end of the log): any exit while
// WaitReady waits, and any exit since Apply of a workload that was never
// ready. It fails too when ctx ends, naming the address and probe. Either
// way supervision continues: whether to Remove is the caller's decision.
func (s *Supervisor) WaitReady(ctx context.Context, id string) (Status, error) {
	s.mu.Lock()
	w := s.work[id]
	if w == nil {
		s.mu.Unlock()
		return Status{}, fmt.Errorf("waiting for %s: %w", id, ErrNotFound)
	}
	exits := w.exits
	if !w.everReady {
		exits = 0
	}
	s.mu.Unlock()
	for {
		s.mu.Lock()
		if s.work[id] != w {
			s.mu.Unlock()
			return Status{}, fmt.Errorf("waiting for %s: removed or replaced: %w", id, ErrNotFound)
		}
		st, changed := w.status(), w.changed
		exited, ready := w.exits > exits, w.ready
		s.mu.Unlock()
		switch {
		case ready:
			return st, nil
		case exited:
			st.LogTail = logTail(w.spec.LogPath)
			return st, &ExitError{ID: id, LastExit: st.LastExit, LogTail: st.LogTail}
		}
		select {
		case <-changed:
		case <-s.closing:
			return st, fmt.Errorf("waiting for %s: %w", id, ErrClosed)
		case <-ctx.Done():
			return st, fmt.Errorf("waiting for %s to be ready (%s): %w; end of its log:\n%s",
				id, probeTarget(w.spec), ctx.Err(), logTail(w.spec.LogPath))
		}
	}
}

// probeTarget names what readiness probes of sp.
func probeTarget(sp Spec) string {
	switch {
	case sp.Readiness == nil:
		return "no readiness probe"
	case sp.Readiness.Path == "":
		return "TCP connect to " + sp.Addr
	default:
		return "GET http://" + sp.Addr + sp.Readiness.Path
	}
}

// logTail returns the last logTailBytes of the log at path, from a line
// start where there is one; "" if it cannot be read.
func logTail(path string) string {
	// Not following a symlink nor blocking on a FIFO: a log's directory
	// may be writable by the workload's user (PostgreSQL's is).
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	off := max(fi.Size()-logTailBytes, 0)
	b := make([]byte, fi.Size()-off)
	n, err := f.ReadAt(b, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	b = b[:n]
	if off > 0 {
		if i := strings.IndexByte(string(b), '\n'); i >= 0 && i < len(b)-1 {
			b = b[i+1:]
		}
	}
	tail := string(b)
	if !utf8.ValidString(tail) {
		tail = strings.ToValidUTF8(tail, "\uFFFD")
	}
	return tail
}
