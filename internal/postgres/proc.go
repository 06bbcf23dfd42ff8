package postgres

import (
	"time"

	"github.com/runway-cd/runway/internal/procfs"
)

// running reports whether the process p still runs: same pid and start
// time, and not exited.
func running(p procfs.Stat) bool { return procfs.Running(p.PID, p.StartTime) }

// awaitGone waits until none of procs runs, for at most limit; it reports
// whether they all ended.
func awaitGone(procs []procfs.Stat, limit time.Duration) bool {
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
