package local

import (
	"github.com/runway-cd/runway/internal/procfs"
)

// procStat is what the runtime reads from /proc/<pid>/stat.
type procStat struct {
	state     byte   // R, S, D, Z (exited, not yet reaped), ...
	startTime uint64 // field 22: clock ticks after boot
}

// readProcStat reads /proc/<pid>/stat.
func readProcStat(pid int) (procStat, error) {
	st, err := procfs.Read(pid)
	return procStat{state: st.State, startTime: st.StartTime}, err
}

// procStartTime is the start time of pid, field 22 of /proc/<pid>/stat.
func procStartTime(pid int) (uint64, error) {
	st, err := readProcStat(pid)
	return st.startTime, err
}

// runs reports whether pid is the process that started at startTime and
// has not exited (a zombie has).
func runs(pid int, startTime uint64) bool { return procfs.Running(pid, startTime) }
