// Package gatewayproc runs Runway's gateway as a process of its own, so that
// production keeps being served while the control plane is down or
// restarting, and finds that process again when the control plane comes
// back.
//
// The gateway's admin API is a unix socket, 0600 in a 0700 directory
// (beside the state file, or in a short private directory under
// os.TempDir() when that path is too long for a socket), so only Runway's
// user can change routes. Its metrics are served read-only on a loopback
// port for the control plane's scraper.
//
// Ensure adopts the gateway named by a record file when it is still the
// process that was recorded (same PID and same start time in /proc, so a
// reused PID is never taken for it) and answers on its admin API; otherwise
// it starts a new one in its own session, so that killing the control plane,
// even with SIGKILL, does not take the gateway down with it. The gateway
// keeps its routes in a state file (gateway.SaveRoutes), so a gateway
// restarted by Watch comes back with the routes it had.
package gatewayproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/gateway/remote"
	"github.com/runway-cd/runway/internal/procfs"
)

const (
	// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
	stopGrace = 5 * time.Second
	// watchInterval is how often Watch checks the gateway process.
	watchInterval = 200 * time.Millisecond
	// adoptWait bounds how long Ensure waits for a recorded gateway's admin
	// API to answer before it gives up on adopting it.
	adoptWait = 2 * time.Second
)

// Options say how to run the gateway process.
type Options struct {
	// Command is the gateway program and its leading arguments, e.g.
	// {"/usr/local/bin/runway", "gateway"}; the flags --listen, --admin,
	// --metrics, --state, --allow-backend and --reserved are appended.
	// Required.
	Command []string
	// Listen is the host:port the gateway serves traffic on. Empty means
	// 127.0.0.1 and a free port, port 0 a free port on that host; either
	// way the port chosen at first start is kept across restarts.
	Listen string
	// AdminSocket is the path of the gateway's admin unix socket. Empty
	// means admin.sock in the directory of StatePath or, when that path is
	// longer than a unix socket path may be, in a short private directory
	// under os.TempDir(), which the record keeps so a restart finds it
	// again.
	AdminSocket string
	// Metrics is the loopback host:port serving the gateway's metrics.
	// Empty means 127.0.0.1 and a free port, kept across restarts.
	Metrics string
	// Backends is the gateway's backend policy. Its Reserved addresses
	// (Runway's API) may change from one control plane to the next: an
	// adopted gateway is given the policy of the control plane adopting it.
	Backends gateway.BackendPolicy
	// StatePath is the file the gateway keeps its routes in. Required.
	StatePath string
	// SupervisePath, if set, makes the process the data plane's
	// supervisor too (--supervise), keeping its workloads in that file. A
	// recorded process started without it, or with another file, is
	// replaced rather than adopted; the workloads it ran outlive it and
	// are adopted by the new one.
	SupervisePath string
	// RecordPath is where the running gateway is recorded (see Record).
	// Required.
	RecordPath string
	// LogPath receives the gateway's stdout and stderr, appended. Empty
	// means they are discarded.
	LogPath string
	// Logger receives the supervisor's own events. Nil means slog.Default().
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for a started gateway to answer on its
	// admin API. Zero means 10 seconds.
	ReadyTimeout time.Duration
}

// Handle is a running gateway process, started or adopted by Ensure. It is
// safe for concurrent use.
type Handle struct {
	o       Options
	log     *slog.Logger
	client  *http.Client
	listen  string
	admin   string // admin socket path
	metrics string // metrics host:port

	mu      sync.Mutex // guards proc and stopped; held across a restart
	proc    process
	stopped bool
}

// process is one incarnation of the gateway.
type process struct {
	pid   int
	start uint64 // field 22 of /proc/<pid>/stat
	// exited is closed once a process this supervisor started has been
	// reaped; nil for an adopted process, which is watched through /proc.
	exited <-chan struct{}
}

// Ensure returns the gateway recorded at o.RecordPath if it still runs and
// answers, and otherwise starts one, waits until it answers and records it.
// A recorded gateway that still runs but cannot be adopted (it does not
// answer, or it serves other addresses than o asks for) is stopped first, so
// the new one does not clash with it. ctx bounds only the start-up; the
// gateway outlives it.
func Ensure(ctx context.Context, o Options) (*Handle, error) {
	if len(o.Command) == 0 || o.StatePath == "" || o.RecordPath == "" {
		return nil, errors.New("ensuring gateway: Command, StatePath and RecordPath are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	if err := gateway.ParseBackendPolicy(o.Backends); err != nil {
		return nil, fmt.Errorf("ensuring gateway: %w", err)
	}
	h := &Handle{o: o, log: o.Logger}
	rec, err := readRecord(o.RecordPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		rec = nil
	case err != nil:
		h.log.Warn("ignoring gateway record", "path", o.RecordPath, "err", err)
		rec = nil
	}
	sock, err := adminSocket(o, rec)
	if err != nil {
		return nil, fmt.Errorf("ensuring gateway: %w", err)
	}
	h.admin = sock.path
	h.client = &http.Client{Timeout: time.Second, Transport: remote.Transport(h.admin)}
	if h.adopt(ctx, rec) {
		return h, nil
	}
	h, err = h.startFirst(ctx)
	if err != nil && sock.created {
		_ = os.RemoveAll(filepath.Dir(sock.path))
	}
	return h, err
}

// startFirst starts the gateway of a Handle that adopted none.
func (h *Handle) startFirst(ctx context.Context) (*Handle, error) {
	var err error
	if h.listen, err = chooseAddr(h.o.Listen); err != nil {
		return nil, fmt.Errorf("ensuring gateway: choosing listen address: %w", err)
	}
	if h.metrics, err = chooseAddr(h.o.Metrics); err != nil {
		return nil, fmt.Errorf("ensuring gateway: choosing metrics address: %w", err)
	}
	p, err := h.start(ctx)
	if err != nil {
		return nil, fmt.Errorf("ensuring gateway: %w", err)
	}
	h.proc = p
	if err := writeRecord(h.o.RecordPath, h.record()); err != nil {
		h.kill(p)
		return nil, fmt.Errorf("ensuring gateway: %w", err)
	}
	return h, nil
}

// AdminSocket returns the path of the gateway's admin unix socket, for
// remote.New.
func (h *Handle) AdminSocket() string { return h.admin }

// MetricsURL returns the URL of the gateway's read-only metrics listener.
func (h *Handle) MetricsURL() string { return "http://" + h.metrics + "/metrics" }

// ListenAddr returns the host:port the gateway serves traffic on.
func (h *Handle) ListenAddr() string { return h.listen }

// PID returns the process id of the current gateway process.
func (h *Handle) PID() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.proc.pid
}

// Stop ends the gateway: SIGTERM, then SIGKILL if it has not exited after 5
// seconds or when ctx ends. It waits until the process has gone, removes the
// record and ends Watch. Stopping a stopped Handle does nothing.
func (h *Handle) Stop(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return nil
	}
	h.stopped = true
	p := h.proc
	if err := h.terminate(ctx, p); err != nil {
		return fmt.Errorf("stopping gateway: %w", err)
	}
	// Remove the record only if it is still ours.
	if r, err := readRecord(h.o.RecordPath); err == nil && r.PID == p.pid && r.StartTime == p.start {
		if err := os.Remove(h.o.RecordPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("stopping gateway: removing record: %w", err)
		}
	}
	if dir := filepath.Dir(h.admin); isShortDir(dir) {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("stopping gateway: removing admin socket dir: %w", err)
		}
	}
	h.log.Info("gateway stopped", "pid", p.pid)
	return nil
}

// adopt takes over the recorded gateway if it can; it reports whether it
// did. A recorded gateway that runs but cannot be adopted is stopped.
func (h *Handle) adopt(ctx context.Context, r *Record) bool {
	if r == nil {
		return false
	}
	if !procfs.Running(r.PID, r.StartTime) {
		h.log.Info("recorded gateway is gone (exited, or its PID reused)", "pid", r.PID, "path", h.o.RecordPath)
		return false
	}
	p := process{pid: r.PID, start: r.StartTime}
	// A record without a metrics address is of a gateway older than the
	// admin socket, whose admin API any local user could reach.
	if !sameAddr(h.o.Listen, r.Listen) || r.Admin != h.admin || r.Metrics == "" || !sameAddr(h.o.Metrics, r.Metrics) || r.Supervise != h.o.SupervisePath {
		h.log.Info("replacing recorded gateway with other addresses or supervisor", "pid", r.PID,
			"listen", r.Listen, "admin", r.Admin, "metrics", r.Metrics, "supervise", r.Supervise,
			"wantListen", h.o.Listen, "wantAdmin", h.admin, "wantMetrics", h.o.Metrics, "wantSupervise", h.o.SupervisePath)
		h.retire(ctx, p)
		return false
	}
	wait, cancel := context.WithTimeout(ctx, adoptWait)
	defer cancel()
	if err := h.waitHealthy(wait, p); err != nil {
		h.log.Warn("replacing recorded gateway that does not answer", "pid", r.PID, "admin", r.Admin, "err", err)
		h.retire(ctx, p)
		return false
	}
	// The policy of this control plane: its API may listen elsewhere than
	// the last one's, and the configured CIDRs may have changed.
	removed, err := remote.New(h.admin, "").WithLogger(h.log).SetPolicy(h.o.Backends)
	if err != nil {
		h.log.Warn("replacing recorded gateway that did not take the backend policy", "pid", r.PID, "err", err)
		h.retire(ctx, p)
		return false
	}
	if len(removed) > 0 {
		h.log.Warn("adopted gateway dropped routes the backend policy forbids", "pid", r.PID, "routes", removed)
	}
	h.proc, h.listen, h.metrics = p, r.Listen, r.Metrics
	h.log.Info("adopted gateway", "pid", r.PID, "listen", r.Listen, "admin", r.Admin, "metrics", r.Metrics)
	return true
}

// retire stops a recorded gateway that will not be adopted.
func (h *Handle) retire(ctx context.Context, p process) {
	if err := h.terminate(ctx, p); err != nil {
		h.log.Warn("stopping recorded gateway", "pid", p.pid, "err", err)
	}
}

// start runs a new gateway process on h's addresses and waits until its
// admin API answers.
func (h *Handle) start(ctx context.Context) (process, error) {
	out, err := openLog(h.o.LogPath)
	if err != nil {
		return process{}, err
	}
	defer out.Close() // the child has its own copy
	args := append(append([]string(nil), h.o.Command[1:]...),
		"--listen", h.listen, "--admin", h.admin, "--metrics", h.metrics, "--state", h.o.StatePath)
	if h.o.SupervisePath != "" {
		args = append(args, "--supervise", h.o.SupervisePath)
	}
	for _, c := range h.o.Backends.Allowed {
		args = append(args, "--allow-backend", c)
	}
	for _, a := range h.o.Backends.Reserved {
		args = append(args, "--reserved", a)
	}
	cmd := exec.Command(h.o.Command[0], args...)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own session: no signal for the control plane's process group or
	// terminal reaches it, and it outlives the control plane.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return process{}, fmt.Errorf("starting %s: %w", h.o.Command[0], err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit is noticed through exited
		close(exited)
	}()
	p := process{pid: cmd.Process.Pid, exited: exited}
	st, err := procfs.Read(p.pid)
	if err != nil {
		h.kill(p)
		return process{}, fmt.Errorf("starting gateway: %w", err)
	}
	p.start = st.StartTime
	wait, cancel := context.WithTimeout(ctx, h.o.ReadyTimeout)
	defer cancel()
	if err := h.waitHealthy(wait, p); err != nil {
		h.kill(p)
		return process{}, fmt.Errorf("waiting for gateway %d to answer (log: %s): %w", p.pid, h.o.LogPath, err)
	}
	h.log.Info("started gateway", "pid", p.pid, "listen", h.listen, "admin", h.admin, "metrics", h.metrics)
	return p, nil
}

// waitHealthy polls the admin API until process p answers it.
func (h *Handle) waitHealthy(ctx context.Context, p process) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		err := h.healthy(ctx, p.pid)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-p.exited:
			return fmt.Errorf("gateway process %d exited", p.pid)
		case <-t.C:
		}
		if p.exited == nil && !procfs.Running(p.pid, p.start) {
			return fmt.Errorf("gateway process %d is gone", p.pid)
		}
	}
}

// healthy asks the admin API whether it is gateway process pid.
func (h *Handle) healthy(ctx context.Context, pid int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://gateway/healthz", nil)
	if err != nil {
		return fmt.Errorf("checking gateway health: %w", err)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("checking gateway health: %w", err)
	}
	defer resp.Body.Close()
	var health gateway.Health
	if err := json.NewDecoder(resp.Body).Decode(&health); err != nil {
		return fmt.Errorf("decoding gateway health: %w", err)
	}
	if resp.StatusCode != http.StatusOK || health.Status != "ok" {
		return fmt.Errorf("gateway health: status %d %q", resp.StatusCode, health.Status)
	}
	if health.PID != pid {
		return fmt.Errorf("gateway health: answered by process %d, want %d", health.PID, pid)
	}
	return nil
}

// terminate sends SIGTERM to p, SIGKILL after stopGrace or when ctx ends,
// and waits until p has gone.
func (h *Handle) terminate(ctx context.Context, p process) error {
	if err := procfs.Signal(p.pid, p.start, syscall.SIGTERM); err != nil {
		return err
	}
	grace, cancel := context.WithTimeout(ctx, stopGrace)
	defer cancel()
	if waitGone(grace, p) {
		return nil
	}
	h.log.Warn("gateway did not exit on SIGTERM; killing it", "pid", p.pid)
	if err := procfs.Signal(p.pid, p.start, syscall.SIGKILL); err != nil {
		return err
	}
	// SIGKILL cannot be ignored; the wait is bounded all the same.
	final, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopGrace)
	defer cancel()
	if !waitGone(final, p) {
		return fmt.Errorf("gateway process %d still runs after SIGKILL", p.pid)
	}
	return nil
}

// kill ends a process that never became ready.
func (h *Handle) kill(p process) {
	if err := procfs.Signal(p.pid, p.start, syscall.SIGKILL); err != nil {
		h.log.Warn("killing gateway", "pid", p.pid, "err", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopGrace)
	defer cancel()
	waitGone(ctx, p)
}

// waitGone waits until p has exited (and, if this supervisor started it, has
// been reaped) or ctx ends, and reports whether it has gone.
func waitGone(ctx context.Context, p process) bool {
	if p.exited != nil {
		select {
		case <-p.exited:
			return true
		case <-ctx.Done():
			return false
		}
	}
	return procfs.AwaitExit(ctx, p.pid, p.start, 20*time.Millisecond)
}

func (h *Handle) record() Record {
	return Record{PID: h.proc.pid, StartTime: h.proc.start, Listen: h.listen, Admin: h.admin, Metrics: h.metrics, Supervise: h.o.SupervisePath}
}

func openLog(path string) (*os.File, error) {
	if path == "" {
		path = os.DevNull
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening gateway log: %w", err)
	}
	return f, nil
}

// chooseAddr returns addr, with a free port in place of an empty one or port
// 0, and 127.0.0.1 for an empty addr.
func chooseAddr(addr string) (string, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if port != "0" && port != "" {
		return addr, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err = net.SplitHostPort(l.Addr().String())
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, port), nil
}

// sameAddr reports whether a recorded address satisfies a wanted one: an
// empty wanted address or port 0 takes any port on the wanted host.
func sameAddr(want, recorded string) bool {
	if want == "" {
		return true
	}
	wh, wp, err := net.SplitHostPort(want)
	if err != nil {
		return false
	}
	rh, rp, err := net.SplitHostPort(recorded)
	if err != nil {
		return false
	}
	return wh == rh && (wp == "0" || wp == rp)
}
