package gatewayproc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// procStat is what the supervisor reads from /proc/<pid>/stat.
type procStat struct {
	state     byte   // R, S, D, Z (exited, not yet reaped), X, ...
	startTime uint64 // field 22: clock ticks after boot
}

// readProcStat reads /proc/<pid>/stat. The command name, field 2, is in
// parentheses and may itself hold spaces or parentheses, so the other fields
// are counted from the last ')'.
func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, fmt.Errorf("reading stat of process %d: %w", pid, err)
	}
	line := string(b)
	end := strings.LastIndexByte(line, ')')
	if end < 0 {
		return procStat{}, fmt.Errorf("parsing stat of process %d: no command name", pid)
	}
	fields := strings.Fields(line[end+1:]) // fields[0] is field 3, the state
	if len(fields) < 20 || len(fields[0]) == 0 {
		return procStat{}, fmt.Errorf("parsing stat of process %d: %d fields after the command name, want at least 20", pid, len(fields))
	}
	start, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("parsing start time of process %d: %w", pid, err)
	}
	return procStat{state: fields[0][0], startTime: start}, nil
}

// running reports whether pid is still the process that started at
// startTime and has not exited; a zombie has exited. Comparing start times
// is what keeps a reused PID from being taken for the gateway.
func running(pid int, startTime uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := readProcStat(pid)
	return err == nil && st.startTime == startTime && st.state != 'Z' && st.state != 'X'
}

// signal sends sig to pid if it is still the process that started at
// startTime. A process that has already gone is not an error.
func signal(pid int, startTime uint64, sig syscall.Signal) error {
	if !running(pid, startTime) {
		return nil
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("sending %v to process %d: %w", sig, pid, err)
	}
	return nil
}
