package postgres

import (
	"time"

	"github.com/runway-cd/runway/internal/procfs"
)

// procStat holds the fields of /proc/<pid>/stat that Runway uses.
type procStat struct {
	pid       int
	state     byte // R, S, D, Z (exited, not yet reaped), ...
	ppid      int
	startTime uint64 // field 22: clock ticks after boot; tells a reused pid apart
}

// readProcStat reads /proc/<pid>/stat.
func readProcStat(pid int) (procStat, error) {
	st, err := procfs.Read(pid)
	return fromProcfs(st), err
}

// parseProcStat parses a /proc/<pid>/stat line.
func parseProcStat(line string) (procStat, error) {
	st, err := procfs.Parse(line)
	return fromProcfs(st), err
}

func fromProcfs(st procfs.Stat) procStat {
	return procStat{pid: st.PID, state: st.State, ppid: st.PPID, startTime: st.StartTime}
}

// procStartTime is the start time of pid, field 22 of /proc/<pid>/stat.
func procStartTime(pid int) (uint64, error) {
	st, err := procfs.Read(pid)
	return st.StartTime, err
}

// children lists the processes whose parent is pid.
func children(pid int) []procStat {
	var kids []procStat
	for _, st := range procfs.Children(pid) {
		kids = append(kids, fromProcfs(st))
	}
	return kids
}

// running reports whether the process p still runs: same pid and start
// time, and not a zombie (a zombie has exited and holds nothing).
func running(p procStat) bool {
	now, err := readProcStat(p.pid)
	return err == nil && now.startTime == p.startTime && now.state != 'Z' && now.state != 'X'
}

// awaitGone waits until none of procs runs, for at most limit; it reports
// whether they all ended.
func awaitGone(procs []procStat, limit time.Duration) bool {
	const poll = 5 * time.Millisecond
	for waited := time.Duration(0); ; waited += poll {
		alive := false
		for _, p := range procs {
			alive = alive || running(p)
		}
		if !alive {
			return true
		}
		if waited >= limit {
			return false
		}
		time.Sleep(poll)
	}
}
