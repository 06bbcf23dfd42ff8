package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/runway-cd/runway/internal/procfs"
)

// Launcher runs postmasters on behalf of instances (Config.Launcher): the
// data plane's supervisor, which keeps a server running while the control
// plane is down and restarts one that dies, on the same port with the same
// arguments. An instance does not treat such a restart as fatal:
// connections fail until the server is back, and EnsureDatabase retries
// them.
type Launcher interface {
	// Launch starts the process (or keeps it running, if it already runs
	// with the same command) and returns its handle.
	Launch(ctx context.Context, p Process) (Running, error)
	// Find returns the handle of a process this launcher already runs
	// under id (after a control plane restart), or ok false.
	Find(ctx context.Context, id string) (r Running, ok bool, err error)
}

// Process is a postmaster to run.
type Process struct {
	// ID names the process for Find: the instance dir (absolute, clean).
	// A launcher with a narrower alphabet maps it one to one.
	ID      string
	Command []string // Command[0] is the absolute path of postgres
	Dir     string
	Env     []string // the exact environment; nothing is inherited
	// UID and GID run the process when Credential is set (Runway runs as
	// root and the server as an unprivileged user).
	UID, GID   uint32
	Credential bool
	// LogPath receives stdout and stderr, opened for appending.
	LogPath string
	// Addr is "127.0.0.1:port", where the server listens.
	Addr string
	// StopSignal asks the process to exit: SIGINT, PostgreSQL's fast
	// shutdown.
	StopSignal int
}

// Running is a process a Launcher runs.
type Running interface {
	// PID is the process id of the current run; it changes with a restart.
	PID() int
	// Exited is closed once the process has exited and will not be
	// restarted.
	Exited() <-chan struct{}
	// Stop stops the process for good and returns once it has exited.
	Stop(ctx context.Context) error
}

// restartWait bounds how long a call waits for a server its launcher is
// restarting to accept connections again.
const restartWait = 30 * time.Second

// lostAttempts bounds how often EnsureDatabase starts again after losing
// its connection to a server its launcher restarts.
const lostAttempts = 3

// launcherID is the id an instance's postmaster has with its Launcher.
func launcherID(dir string) string { return filepath.Clean(dir) }

// serverArgs is the postmaster's command line for port.
func (i *Instance) serverArgs(cfg Config, port int) []string {
	return []string{
		filepath.Join(cfg.BinDir, "postgres"),
		"-D", i.dataDir,
		"-p", strconv.Itoa(port),
		"-k", i.sockDir,
		"-c", "listen_addresses=" + loopback,
	}
}

// launchWith has cfg.Launcher run the postmaster on port and waits until it
// is ready. A server that exits before, or is restarted by the launcher
// meanwhile, failed to start: it is stopped, and one that could not bind
// its port reported as errPortTaken.
func (i *Instance) launchWith(ctx context.Context, cfg Config, own owner, port int) error {
	logStart, err := prepareLog(i.logPath, own)
	if err != nil {
		return err
	}
	r, err := cfg.Launcher.Launch(ctx, Process{
		ID:         launcherID(i.dir),
		Command:    i.serverArgs(cfg, port),
		Dir:        i.dir,
		Env:        serverEnv(),
		UID:        own.uid,
		GID:        own.gid,
		Credential: own.switchUser,
		LogPath:    i.logPath,
		Addr:       net.JoinHostPort(loopback, strconv.Itoa(port)),
		StopSignal: int(syscall.SIGINT),
	})
	if err != nil {
		return fmt.Errorf("launching postgres in %s: %w", i.dir, err)
	}
	i.adoptRunning(r, port)
	return i.waitReady(ctx, logStart)
}

// adoptRunning makes r the instance's server, listening on port.
func (i *Instance) adoptRunning(r Running, port int) {
	i.running, i.port, i.pid = r, port, r.PID()
	i.exited = r.Exited()
	i.stopped = false
	i.startedAt = 0
	if st, err := procfs.Read(i.pid); err == nil {
		i.startedAt = st.StartTime
	}
}

// prepareLog creates the server log, owned by own, and returns its size:
// where this start's lines begin.
func prepareLog(path string, own owner) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("opening server log: %w", err)
	}
	defer f.Close()
	if err := own.chown(path); err != nil {
		return 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("opening server log: %w", err)
	}
	return fi.Size(), nil
}

// failedStart reports whether a launched server failed to start: it
// exited (no pid, or another one: its launcher restarted it) or it logged
// that it could not bind. A launcher that had not started it yet when
// Launch returned (pid 0) may do so now.
func (i *Instance) failedStart(logStart int64) (bool, string) {
	cur := i.running.PID()
	if i.pid == 0 && cur != 0 {
		i.pid = cur
	}
	tail := logTail(i.logPath, logStart)
	return cur != i.pid || portTaken(tail), tail
}

// stopRunning stops a launched server and makes sure the server processes
// it had go too: they lead process groups of their own, so a launcher
// killing the postmaster's group misses them.
func (i *Instance) stopRunning(ctx context.Context) error {
	pid := i.running.PID()
	kids := procfs.Children(pid)
	if err := i.running.Stop(ctx); err != nil {
		return fmt.Errorf("stopping postgres %d in %s: %w", pid, i.dir, err)
	}
	if !awaitGone(kids, killWait) {
		for _, k := range kids {
			_ = procfs.Signal(k.PID, k.StartTime, syscall.SIGKILL)
		}
		if !awaitGone(kids, killWait) {
			i.log.Warn("postgres: server processes outlived SIGKILL", "pid", pid, "dir", i.dir)
		}
	}
	return nil
}

// awaitAccepting waits until a launched server accepts the superuser, for
// at most restartWait: its launcher may be restarting it.
func (i *Instance) awaitAccepting(ctx context.Context) error {
	conn, err := i.connectRetry(ctx, "postgres")
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// connectRetry connects as the superuser; to a launched server, it tries
// again until the server accepts (or refuses the password), has exited for
// good, ctx ends or restartWait has passed.
func (i *Instance) connectRetry(ctx context.Context, database string) (*pgx.Conn, error) {
	if i.running == nil {
		return i.connect(ctx, database)
	}
	ctx, cancel := context.WithTimeout(ctx, restartWait)
	defer cancel()
	p := newPoller()
	defer p.stop()
	for {
		conn, err := i.connect(ctx, database)
		if err == nil || refusedPassword(err) {
			return conn, err
		}
		select {
		case <-i.exited:
			return nil, fmt.Errorf("postgres in %s has exited and is not restarted: %w", i.dir, err)
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for postgres in %s to accept connections: %w (last attempt: %w)", i.dir, ctx.Err(), err)
		case <-p.wait():
		}
	}
}

// lostConnection reports whether err, from a launched server, is the
// connection failing rather than the server answering with an error: the
// launcher may have restarted it, and the work can be done again.
func (i *Instance) lostConnection(ctx context.Context, err error) bool {
	var pgErr *pgconn.PgError
	return i.running != nil && ctx.Err() == nil && !errors.As(err, &pgErr) && !errors.Is(err, ErrInvalidName)
}
