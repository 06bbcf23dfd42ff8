package local

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procStat is what the runtime reads from /proc/<pid>/stat.
type procStat struct {
	state     byte   // R, S, D, Z (exited, not yet reaped), ...
	startTime uint64 // field 22: clock ticks after boot
}

// readProcStat reads /proc/<pid>/stat. The command name (field 2) is in
// parentheses and may hold spaces and parentheses, so fields are counted
// from the last ')'.
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
	fields := strings.Fields(line[end+1:]) // fields[0] is field 3 (state)
	if len(fields) < 20 {
		return procStat{}, fmt.Errorf("parsing stat of process %d: %d fields after the command name, want at least 20", pid, len(fields))
	}
	start, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("parsing start time of process %d: %w", pid, err)
	}
	return procStat{state: fields[0][0], startTime: start}, nil
}

// procStartTime is the start time of pid, field 22 of /proc/<pid>/stat.
func procStartTime(pid int) (uint64, error) {
	st, err := readProcStat(pid)
	return st.startTime, err
}

// runs reports whether pid is the process that started at startTime and
// has not exited (a zombie has).
func runs(pid int, startTime uint64) bool {
	st, err := readProcStat(pid)
	return err == nil && st.startTime == startTime && st.state != 'Z' && st.state != 'X'
}
