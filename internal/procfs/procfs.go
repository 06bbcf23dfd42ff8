// Package procfs reads what Runway needs from Linux's /proc: a process's
// state, parent and start time, and who holds each TCP listener. The start
// time tells a process apart from a later one that reused its PID, so
// Runway never adopts or signals a stranger; a listener's uid tells
// whether a replica's port is the replica's, so Runway never routes to a
// stranger.
package procfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Stat holds the fields of /proc/<pid>/stat that Runway uses.
type Stat struct {
	PID   int
	State byte // R, S, D, Z (exited, not yet reaped), X, ...
	PPID  int
	// StartTime is field 22: clock ticks after boot.
	StartTime uint64
}

// Exited reports whether the process has exited (a zombie has).
func (s Stat) Exited() bool { return s.State == 'Z' || s.State == 'X' }

// Read reads /proc/<pid>/stat.
func Read(pid int) (Stat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return Stat{}, fmt.Errorf("reading stat of process %d: %w", pid, err)
	}
	return Parse(string(b))
}

// Parse parses a /proc/<pid>/stat line. The command name (field 2) is in
// parentheses and may itself hold spaces and parentheses, so the fields
// after it are counted from the last ')'.
func Parse(line string) (Stat, error) {
	open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 0 || end < open {
		return Stat{}, fmt.Errorf("parsing /proc stat: no command name in %q", line)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line[:open]))
	if err != nil {
		return Stat{}, fmt.Errorf("parsing /proc stat pid: %w", err)
	}
	fields := strings.Fields(line[end+1:]) // fields[0] is field 3 (state)
	if len(fields) < 20 || len(fields[0]) == 0 {
		return Stat{}, fmt.Errorf("parsing /proc stat: %d fields after the command name, want at least 20", len(fields))
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		return Stat{}, fmt.Errorf("parsing /proc stat ppid: %w", err)
	}
	start, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return Stat{}, fmt.Errorf("parsing /proc stat start time: %w", err)
	}
	return Stat{PID: pid, State: fields[0][0], PPID: ppid, StartTime: start}, nil
}

// Running reports whether pid is still the process that started at
// startTime and has not exited.
func Running(pid int, startTime uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := Read(pid)
	return err == nil && st.StartTime == startTime && !st.Exited()
}

// Signal sends sig to pid if it is still the process that started at
// startTime. A process that has gone (or whose PID was reused) is not an
// error.
func Signal(pid int, startTime uint64, sig syscall.Signal) error {
	if !Running(pid, startTime) {
		return nil
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("sending %v to process %d: %w", sig, pid, err)
	}
	return nil
}

// AwaitExit looks every poll until pid, started at startTime, no longer
// runs, or ctx ends; it reports whether the process is gone.
func AwaitExit(ctx context.Context, pid int, startTime uint64, poll time.Duration) bool {
	t := time.NewTicker(poll)
	defer t.Stop()
	for Running(pid, startTime) {
		select {
		case <-ctx.Done():
			return !Running(pid, startTime)
		case <-t.C:
		}
	}
	return true
}

// Children lists the processes whose parent is pid.
func Children(pid int) []Stat {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []Stat
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := Read(p); err == nil && st.PPID == pid {
			kids = append(kids, st)
		}
	}
	return kids
}
