package demo

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Leftovers lists the processes that still run for an environment of the
// Runway whose work directory is workDir (every environment when env is
// ""): app replicas carry RUNWAY_ENV or run from the work directory,
// PostgreSQL servers have their data directory on the command line.
func Leftovers(workDir, env string) []string {
	envDir := filepath.Join(workDir, "envs") + "/"
	if env != "" {
		envDir += env + "/"
	}
	var out []string
	pids, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range pids {
		cmdline, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		if len(cmdline) == 0 {
			continue // exited, a zombie or a kernel thread: holds nothing
		}
		environ, _ := os.ReadFile(filepath.Join(p, "environ"))
		cwd, _ := os.Readlink(filepath.Join(p, "cwd"))
		match := bytes.Contains(cmdline, []byte(envDir))
		if env != "" {
			match = match || bytes.Contains(environ, []byte("RUNWAY_ENV="+env+"\x00"))
		} else {
			match = match || bytes.Contains(environ, []byte("RUNWAY_ENV=")) && strings.HasPrefix(cwd, workDir+"/")
		}
		if match {
			out = append(out, fmt.Sprintf("pid %s: %s", filepath.Base(p), bytes.TrimSpace(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))))
		}
	}
	return out
}

// Listening reports whether something accepts connections on addr.
func Listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
