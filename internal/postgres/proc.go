package postgres

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
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
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, fmt.Errorf("reading stat of process %d: %w", pid, err)
	}
	return parseProcStat(string(b))
}

// parseProcStat parses a /proc/<pid>/stat line. The command name (field 2)
// is in parentheses and may itself hold spaces and parentheses, so fields
// are counted from the last ')'.
func parseProcStat(line string) (procStat, error) {
	open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("parsing /proc stat: no command name in %q", line)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line[:open]))
	if err != nil {
		return procStat{}, fmt.Errorf("parsing /proc stat pid: %w", err)
	}
	fields := strings.Fields(line[end+1:]) // fields[0] is field 3 (state)
	if len(fields) < 20 {
		return procStat{}, fmt.Errorf("parsing /proc stat: %d fields after the command name, want at least 20", len(fields))
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		return procStat{}, fmt.Errorf("parsing /proc stat ppid: %w", err)
	}
	start, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("parsing /proc stat start time: %w", err)
	}
	return procStat{pid: pid, state: fields[0][0], ppid: ppid, startTime: start}, nil
}

// procStartTime is the start time of pid, field 22 of /proc/<pid>/stat.
func procStartTime(pid int) (uint64, error) {
	st, err := readProcStat(pid)
	if err != nil {
		return 0, err
	}
	return st.startTime, nil
}

// children lists the processes whose parent is pid.
func children(pid int) []procStat {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []procStat
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readProcStat(p); err == nil && st.ppid == pid {
			kids = append(kids, st)
		}
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
