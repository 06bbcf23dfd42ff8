package gatewayproc

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/runway-cd/runway/internal/procfs"
)

// procStat is what the supervisor reads from /proc/<pid>/stat.
type procStat struct {
	state     byte   // R, S, D, Z (exited, not yet reaped), X, ...
	startTime uint64 // field 22: clock ticks after boot
}

// readProcStat reads /proc/<pid>/stat.
func readProcStat(pid int) (procStat, error) {
	st, err := procfs.Read(pid)
	return procStat{state: st.State, startTime: st.StartTime}, err
}

// running reports whether pid is still the process that started at
// startTime and has not exited; a zombie has exited. Comparing start times
// is what keeps a reused PID from being taken for the gateway.
func running(pid int, startTime uint64) bool {
	return procfs.Running(pid, startTime)
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
