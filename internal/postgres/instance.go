package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/runway-cd/runway/internal/procfs"
)

const (
	// superuser is the role initdb creates; it connects only over the
	// socket, with the password kept in the secrets dir.
	superuser = "runway"
	loopback  = "127.0.0.1"
	// portAttempts bounds retries when a free port is taken before the
	// server binds it.
	portAttempts = 5
	// readyPoll is how often Start checks whether the server accepts
	// connections.
	readyPoll = 10 * time.Millisecond
)

// errPortTaken says the server could not bind its port; Start retries.
var errPortTaken = errors.New("port taken")

// Instance is one running PostgreSQL server and its directory:
// dir/data (the cluster), dir/sock (its unix socket, unless the path would
// be too long), dir/postgres.log and dir/instance.json; and its secrets
// dir, outside dir.
type Instance struct {
	dir        string
	dataDir    string
	sockDir    string
	ownsSock   bool // sockDir was made outside dir and must be deleted by Remove
	secretsDir string
	password   string // the superuser's
	// initialPassword is the superuser's password in a cluster copied
	// from a template until secure replaces it; "" otherwise.
	initialPassword string
	logPath         string
	port            int
	pid             int
	log             *slog.Logger
	exited          <-chan struct{} // closed once the postmaster has been reaped (or, launched, will not be restarted)
	running         Running         // the postmaster, when a Launcher runs it
	mu              sync.Mutex      // serialises Stop and Remove
	stopped         bool
	removed         bool
	startedAt       uint64
}

// Start initialises dir (when dir/data is absent) and starts a server on a
// free 127.0.0.1 port, in its own process group. It returns once the server
// accepts connections; ctx bounds that wait, and the server is stopped if ctx
// ends first. It records pid, port, socket dir and process start time in
// dir/instance.json. The superuser's password is read from cfg.SecretsDir,
// or generated there for a new cluster, and the server's pg_hba.conf is
// Runway's own (see hbaContent); a cluster initialised before passwords
// existed (trusted socket connections) is upgraded: its superuser gets a
// password and its pg_hba.conf is rewritten.
//
// With cfg.TemplateDir, a new cluster is a copy of a template (see
// Config.TemplateDir) whose superuser password is replaced by the
// instance's own as soon as the server first accepts connections. With
// cfg.Launcher, the launcher runs the server (see Launcher); Start still
// returns once it accepts connections.
func Start(ctx context.Context, cfg Config, dir string) (*Instance, error) {
	cfg, err := cfg.withDefaults(ctx)
	if err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("resolving instance dir: %w", err)
	}
	password, err := superuserPassword(cfg, dir)
	if err != nil {
		return nil, err
	}
	own, err := resolveOwner(cfg)
	if err != nil {
		return nil, err
	}
	if err := prepareDir(dir, own, cfg.Logger); err != nil {
		return nil, err
	}
	sock, err := prepareSocketDir(dir, own, cfg.Logger)
	if err != nil {
		return nil, err
	}
	inst := &Instance{
		dir:        dir,
		dataDir:    filepath.Join(dir, "data"),
		sockDir:    sock.path,
		ownsSock:   sock.outside,
		secretsDir: cfg.SecretsDir,
		password:   password,
		logPath:    filepath.Join(dir, "postgres.log"),
		log:        cfg.Logger,
	}
	if err := inst.initialiseAndLaunch(ctx, cfg, own); err != nil {
		if sock.created {
			_ = os.RemoveAll(sock.path)
		}
		return nil, err
	}
	inst.log.Info("postgres: started", "dir", dir, "port", inst.port, "pid", inst.pid)
	return inst, nil
}

// Host is the address apps connect to.
func (i *Instance) Host() string { return loopback }

// Port is the TCP port the server listens on.
func (i *Instance) Port() int { return i.port }

// PID is the postmaster's process id. With a Launcher it is the current
// run's: a restart changes it.
func (i *Instance) PID() int {
	if i.running != nil {
		return i.running.PID()
	}
	return i.pid
}

// Exited is closed once the server has exited, or with a Launcher, once it
// has exited and its launcher will not restart it. A server that a
// launcher is restarting has not exited: its PID is about to change.
func (i *Instance) Exited() <-chan struct{} { return i.exited }

// Dir is the instance directory (absolute).
func (i *Instance) Dir() string { return i.dir }

// prepareDir creates dir, hands it to the owner and makes it reachable.
func prepareDir(dir string, own owner, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating instance dir: %w", err)
	}
	if err := own.chown(dir); err != nil {
		return err
	}
	return own.makeReachable(dir, log)
}

// initialiseAndLaunch runs initdb if needed, starts the server, records it
// and locks its authentication down.
func (i *Instance) initialiseAndLaunch(ctx context.Context, cfg Config, own owner) error {
	if err := ensureInitialised(ctx, cfg, own, i.dir, i.password); err != nil {
		return err
	}
	i.initialPassword = initialPassword(cfg.SecretsDir)
	if err := i.launchOnFreePort(ctx, cfg, own); err != nil {
		return err
	}
	if err := i.writeRecord(); err != nil {
		_ = i.Stop(context.WithoutCancel(ctx))
		return err
	}
	if err := i.secure(ctx); err != nil {
		_ = i.Stop(context.WithoutCancel(ctx))
		return err
	}
	return nil
}

// launchOnFreePort starts the server on a free port, trying another port
// when one is taken between choosing and binding it.
func (i *Instance) launchOnFreePort(ctx context.Context, cfg Config, own owner) error {
	var err error
	for range portAttempts {
		var port int
		if port, err = freePort(); err != nil {
			return err
		}
		if cfg.Launcher != nil {
			err = i.launchWith(ctx, cfg, own, port)
		} else {
			err = i.launch(ctx, cfg, own, port)
		}
		if !errors.Is(err, errPortTaken) {
			return err
		}
		i.log.Info("postgres: port taken, retrying", "port", port)
	}
	return fmt.Errorf("starting PostgreSQL in %s: %w after %d attempts", i.dir, err, portAttempts)
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// launch starts the postmaster on port and waits until it is ready.
func (i *Instance) launch(ctx context.Context, cfg Config, own owner, port int) error {
	logStart, err := prepareLog(i.logPath, own)
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(i.logPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("opening server log: %w", err)
	}
	defer logFile.Close()
	args := i.serverArgs(cfg, port)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = i.dir
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = own.sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	i.port, i.pid = port, cmd.Process.Pid
	exited := make(chan struct{})
	i.exited = exited
	i.stopped = false
	go func() {
		_ = cmd.Wait() // reaps the postmaster; Stop and waitReady watch exited
		close(exited)
	}()
	if st, err := procfs.Read(i.pid); err != nil {
		i.log.Warn("postgres: reading process start time", "pid", i.pid, "err", err)
	} else {
		i.startedAt = st.StartTime
	}
	return i.waitReady(ctx, logStart)
}

// waitReady returns once the server accepts a connection, or an error when
// it exits first (with the tail of its log) or ctx ends (after stopping it).
// It checks soon after the start, then less and less often (newPoller).
func (i *Instance) waitReady(ctx context.Context, logStart int64) error {
	p := newPoller()
	defer p.stop()
	for {
		err := i.ping(ctx)
		if err == nil {
			return nil
		}
		if refusedPassword(err) {
			_ = i.Stop(context.WithoutCancel(ctx))
			return i.refusedError(err)
		}
		if i.running != nil {
			if failed, tail := i.failedStart(logStart); failed {
				_ = i.Stop(context.WithoutCancel(ctx))
				return i.startupError(tail)
			}
		}
		select {
		case <-i.exited:
			return i.startupError(logTail(i.logPath, logStart))
		case <-ctx.Done():
			_ = i.Stop(context.WithoutCancel(ctx))
			return fmt.Errorf("waiting for postgres to accept connections: %w", ctx.Err())
		case <-p.wait():
		}
	}
}

// startupError is errPortTaken if the server's log (tail) says it could
// not bind its port, else an error quoting the log.
func (i *Instance) startupError(tail string) error {
	if portTaken(tail) {
		return errPortTaken
	}
	return fmt.Errorf("postgres exited during startup; log %s ends:\n%s", i.logPath, tail)
}

// portTaken reports whether a server's log says it could not listen.
func portTaken(tail string) bool {
	return strings.Contains(tail, "could not bind") || strings.Contains(tail, "could not create any TCP/IP sockets")
}

// serverEnv is this process' environment without PG* variables, which
// would otherwise steer the server's tools.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

// logTail returns the last lines written to the log since offset (all of
// it when the log is shorter than offset: it was replaced).
func logTail(path string, offset int64) string {
	const maxTail = 2048
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(reading log: %v)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(reading log: %v)", err)
	}
	size := fi.Size()
	if offset > size {
		offset = 0
	}
	from := max(offset, size-maxTail)
	b := make([]byte, size-from)
	n, err := f.ReadAt(b, from)
	if err != nil && n < len(b) && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("(reading log: %v)", err)
	}
	b = b[:n]
	if from > offset {
		if nl := bytes.IndexByte(b, '\n'); nl >= 0 {
			b = b[nl+1:]
		}
	}
	return strings.TrimSpace(string(b))
}
