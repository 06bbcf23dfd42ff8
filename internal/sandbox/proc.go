package sandbox

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/runway-cd/runway/internal/procfs"
)

// Processes lists the live pids (zombies are left out: they hold nothing
// and only their parent can remove them) whose real or effective uid is
// uid.
func Processes(uid uint32) []int {
	paths, _ := filepath.Glob("/proc/[0-9]*/status")
	var out []int
	for _, p := range paths {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		if real, eff, ok := uids(p); ok && (real == uid || eff == uid) {
			if st, err := procfs.Read(pid); err != nil || st.Exited() {
				continue
			}
			out = append(out, pid)
		}
	}
	return out
}

// uids reads the real and effective uid from a /proc/<pid>/status file.
func uids(path string) (real, eff uint32, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, found := strings.CutPrefix(sc.Text(), "Uid:")
		if !found {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) < 2 {
			return 0, 0, false
		}
		r, err1 := strconv.ParseUint(fields[0], 10, 32)
		e, err2 := strconv.ParseUint(fields[1], 10, 32)
		return uint32(r), uint32(e), err1 == nil && err2 == nil
	}
	return 0, 0, false
}

// killUID sends SIGKILL to uid's processes until none is left. A process
// of uid may fork while it is being killed, so it repeats; kill(2) as root
// on a pid that was reused in between would hit a stranger, but a pid is
// reused only after its zombie is reaped and the new process would have to
// run as uid too to be listed.
func killUID(ctx context.Context, uid uint32) error {
	for delay := 10 * time.Millisecond; ; {
		pids := Processes(uid)
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("killing the processes of uid %d: %d left: %w", uid, len(Processes(uid)), ctx.Err())
		case <-time.After(delay):
		}
		if delay < 200*time.Millisecond {
			delay *= 2
		}
	}
}
