package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/runway-cd/runway/internal/procfs"
)

// ErrNotRunning says the server recorded in an instance dir does not run
// (any more): no record, the process is gone, its pid now belongs to
// another process, or it does not accept connections.
var ErrNotRunning = errors.New("postgres not running")

// adoptPoll is how often an adopted server is checked for having exited;
// it is not a child, so nothing else tells.
const adoptPoll = 200 * time.Millisecond

// Adopt takes over the server that an earlier Start (possibly by another
// process) recorded in dir/instance.json, without restarting it. It adopts
// the server only if the recorded pid runs with the recorded start time and
// the server accepts connections; otherwise it returns an error wrapping
// ErrNotRunning and signals nothing, since the pid may have been reused.
// The returned Instance supports EnsureDatabase, Stop and Remove; a
// goroutine polls /proc until the server exits, since a process that is
// not a child cannot be waited for. Like Start, it reads the superuser's
// password from cfg.SecretsDir and upgrades a server that still trusts
// socket connections; a server that refuses the password is an error, not
// ErrNotRunning.
//
// With cfg.Launcher, the launcher is asked for the process it runs under
// the instance dir (Process.ID) instead of checking the recorded pid, which
// a restart changes; ErrNotRunning when it runs none. A server it is
// restarting is waited for (up to about 30s).
func Adopt(ctx context.Context, cfg Config, dir string) (*Instance, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolving instance dir: %w", err)
	}
	rec, err := readRecord(dir)
	if err != nil {
		return nil, fmt.Errorf("adopting postgres in %s: %w: %w", dir, ErrNotRunning, err)
	}
	if cfg.Launcher != nil {
		return adoptLaunched(ctx, cfg, log, dir, rec)
	}
	proc, err := recordedProcess(rec)
	if err != nil {
		return nil, fmt.Errorf("adopting postgres in %s: %w", dir, err)
	}
	inst, err := recordedInstance(cfg, log, dir, rec)
	if err != nil {
		return nil, err
	}
	inst.pid, inst.startedAt = rec.PID, rec.StartTime
	if err := inst.ping(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("adopting postgres in %s: %w", dir, err)
		}
		if refusedPassword(err) {
			return nil, fmt.Errorf("adopting: %w", inst.refusedError(err))
		}
		return nil, fmt.Errorf("adopting postgres in %s: %w: %w", dir, ErrNotRunning, err)
	}
	if err := inst.secure(ctx); err != nil {
		return nil, fmt.Errorf("adopting postgres in %s: %w", dir, err)
	}
	exited := make(chan struct{})
	inst.exited = exited
	go watchExit(proc, exited)
	log.Info("postgres: adopted", "dir", dir, "port", inst.port, "pid", inst.pid)
	return inst, nil
}

// recordedInstance is the instance rec describes, not yet attached to a
// process.
func recordedInstance(cfg Config, log *slog.Logger, dir string, rec record) (*Instance, error) {
	password, err := superuserPassword(Config{SecretsDir: cfg.SecretsDir, Logger: log}, dir)
	if err != nil {
		return nil, fmt.Errorf("adopting postgres in %s: %w", dir, err)
	}
	return &Instance{
		dir:             dir,
		dataDir:         filepath.Join(dir, "data"),
		sockDir:         rec.SocketDir,
		ownsSock:        rec.SocketDir != filepath.Join(dir, "sock") && previousSocketDir(dir) == rec.SocketDir,
		secretsDir:      cfg.SecretsDir,
		password:        password,
		initialPassword: initialPassword(cfg.SecretsDir),
		logPath:         filepath.Join(dir, "postgres.log"),
		port:            rec.Port,
		log:             log,
	}, nil
}

// adoptLaunched adopts the server cfg.Launcher runs for dir; rec gives its
// port and socket dir, which restarts keep.
func adoptLaunched(ctx context.Context, cfg Config, log *slog.Logger, dir string, rec record) (*Instance, error) {
	r, ok, err := cfg.Launcher.Find(ctx, launcherID(dir))
	if err != nil {
		return nil, fmt.Errorf("adopting postgres in %s: asking its launcher: %w", dir, err)
	}
	if !ok {
		return nil, fmt.Errorf("adopting postgres in %s: %w: its launcher runs no process %s", dir, ErrNotRunning, launcherID(dir))
	}
	if rec.Port <= 0 || rec.SocketDir == "" {
		return nil, fmt.Errorf("adopting postgres in %s: %w: record has port %d and socket dir %q", dir, ErrNotRunning, rec.Port, rec.SocketDir)
	}
	inst, err := recordedInstance(cfg, log, dir, rec)
	if err != nil {
		return nil, err
	}
	inst.adoptRunning(r, rec.Port)
	if err := inst.awaitAccepting(ctx); err != nil {
		switch {
		case refusedPassword(err):
			return nil, fmt.Errorf("adopting: %w", inst.refusedError(err))
		case ctx.Err() != nil:
			return nil, fmt.Errorf("adopting postgres in %s: %w", dir, err)
		}
		// Not on the recorded port, or not coming back: a Start launches
		// it again.
		return nil, fmt.Errorf("adopting postgres in %s: %w: %w", dir, ErrNotRunning, err)
	}
	if err := inst.secure(ctx); err != nil {
		return nil, fmt.Errorf("adopting postgres in %s: %w", dir, err)
	}
	log.Info("postgres: adopted from its launcher", "dir", dir, "port", inst.port, "pid", inst.PID())
	return inst, nil
}

// recordedProcess checks that the recorded server still runs as the same
// process: same pid and same start time, not exited.
func recordedProcess(rec record) (procfs.Stat, error) {
	if rec.PID <= 0 || rec.StartTime == 0 {
		return procfs.Stat{}, fmt.Errorf("%w: record has pid %d and start time %d", ErrNotRunning, rec.PID, rec.StartTime)
	}
	st, err := procfs.Read(rec.PID)
	if err != nil {
		return procfs.Stat{}, fmt.Errorf("%w: %w", ErrNotRunning, err)
	}
	if st.StartTime != rec.StartTime {
		return procfs.Stat{}, fmt.Errorf("%w: pid %d started at %d, recorded %d: another process", ErrNotRunning, rec.PID, st.StartTime, rec.StartTime)
	}
	if !running(st) {
		return procfs.Stat{}, fmt.Errorf("%w: pid %d has exited", ErrNotRunning, rec.PID)
	}
	return st, nil
}

// watchExit closes exited once p no longer runs. An adopted server is not
// this process' child, so it cannot be waited for; /proc is polled.
func watchExit(p procfs.Stat, exited chan<- struct{}) {
	tick := time.NewTicker(adoptPoll)
	defer tick.Stop()
	for running(p) {
		<-tick.C
	}
	close(exited)
}
