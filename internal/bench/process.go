package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/runway-cd/runway/internal/procfs"
)

// stopGrace is how long a process has after SIGTERM before SIGKILL.
const stopGrace = 5 * time.Second

// childAttr puts a child in its own process group, so a Ctrl-C at the
// terminal reaches only the benchmark, which then stops its children in
// order; and asks the kernel to send the child SIGTERM if the benchmark
// dies without stopping it (SIGTERM, not SIGKILL: nginx's master then
// stops its workers too).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// process is a child the benchmark started and must stop.
type process struct {
	name string
	cmd  *exec.Cmd
	// done is closed when the process has exited and been reaped.
	done    chan struct{}
	waitErr error
	logPath string
	log     *slog.Logger
}

// start starts argv as a child whose stdout and stderr go to logPath.
func start(name string, argv []string, dir, logPath string, log *slog.Logger) (*process, error) {
	lf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("starting %s: opening log: %w", name, err)
	}
	defer lf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{}), logPath: logPath, log: log}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	log.Debug("started", "process", name, "pid", cmd.Process.Pid, "argv", argv)
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitError describes how the process ended, with the end of its log.
func (p *process) exitError() error {
	b, _ := os.ReadFile(p.logPath)
	return fmt.Errorf("%s (pid %d) exited: %v: %s", p.name, p.pid(), p.waitErr, tail(string(b), 800))
}

// stop sends SIGTERM to the process, and SIGKILL to its process group if it
// has not exited after stopGrace. It signals only this process, by PID,
// while it is known not to have been reaped.
func (p *process) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		p.log.Warn("process did not stop after SIGTERM; killing it", "process", p.name, "pid", p.pid())
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
	p.log.Debug("stopped", "process", p.name, "pid", p.pid())
}

// listenAddr waits until the process (or, with children, one of its child
// processes) has a TCP socket listening on loopback and returns its address.
// It matches the inodes of the process's open sockets with /proc/net/tcp, so
// it finds the port of a process that listened on port 0.
func (p *process) listenAddr(ctx context.Context, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if p.exited() {
			return "", p.exitError()
		}
		if addr, ok := findListener(p.pid()); ok {
			return addr, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for %s (pid %d) to listen: %w", p.name, p.pid(), ctx.Err())
		case <-p.done:
		case <-tick.C:
		}
	}
}

// findListener returns the loopback TCP listener among pid's open files.
func findListener(pid int) (string, bool) {
	inodes := socketInodes(pid)
	if len(inodes) == 0 {
		return "", false
	}
	ls, err := procfs.Listeners()
	if err != nil {
		return "", false
	}
	for _, l := range ls {
		if inodes[l.Inode] && l.Addr.Addr().IsLoopback() {
			return l.Addr.String(), true
		}
	}
	return "", false
}

// socketInodes returns the inodes of the sockets pid has open.
func socketInodes(pid int) map[uint64]bool {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	inodes := map[uint64]bool{}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		s, ok := strings.CutPrefix(target, "socket:[")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64); err == nil {
			inodes[n] = true
		}
	}
	return inodes
}

// cpuTime returns the user plus system CPU time pid and its live
// descendants (nginx's workers) have used, from /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	total, err := processCPU(pid)
	if err != nil {
		return 0, err
	}
	seen := map[int]bool{pid: true}
	queue := []int{pid}
	for i := 0; i < len(queue) && i < 256; i++ {
		for _, c := range procfs.Children(queue[i]) {
			if seen[c.PID] || c.Exited() {
				continue
			}
			seen[c.PID] = true
			queue = append(queue, c.PID)
			if d, err := processCPU(c.PID); err == nil {
				total += d
			}
		}
	}
	return total, nil
}

// processCPU reads utime and stime (fields 14 and 15) of /proc/<pid>/stat.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, fmt.Errorf("reading CPU time of process %d: %w", pid, err)
	}
	return parseCPU(string(b), clockTicks())
}

// parseCPU returns utime+stime of a /proc/<pid>/stat line, in ticks of
// 1/hz seconds. Fields are counted after the last ')', as the command name
// may hold spaces and parentheses.
func parseCPU(line string, hz int64) (time.Duration, error) {
	end := strings.LastIndexByte(line, ')')
	if end < 0 || hz <= 0 {
		return 0, errors.New("parsing /proc stat: no command name")
	}
	f := strings.Fields(line[end+1:]) // f[0] is field 3
	if len(f) < 13 {
		return 0, fmt.Errorf("parsing /proc stat: %d fields after the command name, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing /proc stat CPU time %q: %w", s, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / time.Duration(hz), nil
}

// clockTicks returns the kernel's USER_HZ, the unit of /proc's CPU times,
// from the AT_CLKTCK entry of the auxiliary vector; 100, Linux's value on
// every common architecture, if it cannot be read.
func clockTicks() int64 {
	const atClkTck = 17
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 100
	}
	for i := 0; i+16 <= len(b); i += 16 {
		key, val := binary.NativeEndian.Uint64(b[i:]), binary.NativeEndian.Uint64(b[i+8:])
		if key == atClkTck && val > 0 {
			return int64(val)
		}
	}
	return 100
}

// freeLoopbackPort returns a loopback address whose port was free a moment
// ago, for programs (nginx) that cannot listen on port 0 and report it.
func freeLoopbackPort() (string, error) {
	ls, err := procfs.Listeners()
	if err != nil {
		return "", err
	}
	used := map[uint16]bool{}
	for _, l := range ls {
		used[l.Addr.Port()] = true
	}
	// Ports from the top of the range Linux does not hand out as ephemeral
	// ports by default (32768-60999), so wrk's and the proxies' outgoing
	// connections do not take it first.
	const first, n = 61000, 2000
	offset := int(time.Now().UnixNano() % n)
	for i := range n {
		port := uint16(first + (offset+i)%n)
		if !used[port] {
			return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String(), nil
		}
	}
	return "", errors.New("no free loopback port in 61000-62999")
}

// tail returns the last n bytes of s, trimmed.
func tail(s string, n int) string {
	s = string(bytes.TrimSpace([]byte(s)))
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
