// Package local is the default runtime: every app replica is a process on a
// free loopback port of this machine, every environment's database its own
// PostgreSQL server, and everything of an environment lives under one
// directory, so tearing it down leaves nothing behind. Replicas are
// recorded in the environment's replicas.json (pid and process start time),
// so a restarted control plane adopts what still runs (Adopt) instead of
// restarting it, and never mistakes a reused pid for a replica.
package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/runway-cd/runway/internal/postgres"
	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/internal/sandbox"
)

var _ runtime.Runtime = (*Runtime)(nil)

// Options configure the local runtime.
type Options struct {
	// Dir holds one directory per environment.
	Dir string
	// SecretsDir holds one directory per environment with its database
	// passwords (postgres.Config.SecretsDir), readable by Runway's OS user
	// only: never under Dir, whose files app processes may own. Required;
	// created 0700. Destroy removes an environment's.
	SecretsDir string
	// Postgres configures every environment's server; its SecretsDir is
	// set per environment.
	Postgres postgres.Config
	Logger   *slog.Logger // nil: slog.Default()
	// Sandbox runs each environment's replicas and jobs as its own uid
	// with an allow-listed environment. Nil: as Runway's user, still with
	// the allow-listed environment.
	Sandbox *sandbox.Sandbox
	// AdoptHealthTimeout bounds how long Adopt waits for a recorded
	// replica to answer its health path. Zero value: 5s.
	AdoptHealthTimeout time.Duration
	// Secrets, when set, learns every database password this runtime
	// hands out, so that logs and API answers can redact it.
	Secrets interface{ Add(secrets ...string) }
}

// Runtime runs environments as local processes.
type Runtime struct {
	opts Options
	log  *slog.Logger

	// pickPort chooses each replica's port: freePort, or a given port in
	// tests of what happens when someone else took it.
	pickPort func() (int, error)

	mu   sync.Mutex
	envs map[string]*environment
}

type environment struct {
	name string
	dir  string

	mu   sync.Mutex // serialises changes to this environment
	pg   *postgres.Instance
	sets map[string]*replicaSet // by app/version
}

// New returns a runtime keeping its files in opts.Dir.
func New(opts Options) (*Runtime, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.SecretsDir == "" {
		return nil, errors.New("local runtime: a secrets dir is required")
	}
	if err := os.MkdirAll(opts.SecretsDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating secrets dir: %w", err)
	}
	if err := os.Chmod(opts.SecretsDir, 0o700); err != nil {
		return nil, fmt.Errorf("restricting secrets dir: %w", err)
	}
	// 0711: app code passes through to its environment's home, but cannot
	// list the environments.
	if err := opts.Sandbox.Dir(opts.Dir, 0o711, ""); err != nil {
		return nil, fmt.Errorf("creating runtime dir: %w", err)
	}
	if err := opts.Sandbox.Traversable(opts.Dir); err != nil {
		return nil, err
	}
	// A uid whose environment is gone from disk (a crash between removing
	// it and freeing the uid) is freed now.
	for _, env := range opts.Sandbox.Allocated() {
		if _, err := os.Stat(filepath.Join(opts.Dir, env)); errors.Is(err, fs.ErrNotExist) {
			if err := opts.Sandbox.Release(env); err != nil {
				return nil, err
			}
			opts.Logger.Info("sandbox: freed the uid of an environment no longer on disk", "env", env)
		}
	}
	return &Runtime{opts: opts, log: opts.Logger, pickPort: freePort, envs: map[string]*environment{}}, nil
}

func (r *Runtime) env(name string) *environment {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.envs[name]
	if !ok {
		e = &environment{name: name, dir: filepath.Join(r.opts.Dir, name), sets: map[string]*replicaSet{}}
		r.envs[name] = e
	}
	return e
}

// EnsurePostgres implements runtime.Runtime.
func (r *Runtime) EnsurePostgres(ctx context.Context, env string) error {
	e := r.env(env)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.pg != nil && processAlive(e.pg.PID()) {
		return nil
	}
	if _, err := r.prepareEnv(e); err != nil {
		return fmt.Errorf("preparing %s: %w", env, err)
	}
	inst, err := postgres.Start(ctx, r.postgresConfig(env), filepath.Join(e.dir, "postgres"))
	if err != nil {
		return fmt.Errorf("starting postgres of %s: %w", env, err)
	}
	e.pg = inst
	r.log.Info("postgres started", "env", env, "port", inst.Port(), "pid", inst.PID())
	return nil
}

// Database implements runtime.Runtime.
func (r *Runtime) Database(ctx context.Context, env, app string) (runtime.Database, error) {
	e := r.env(env)
	e.mu.Lock()
	pg := e.pg
	e.mu.Unlock()
	if pg == nil {
		return nil, fmt.Errorf("%w: environment %s has no postgres (its manifest declares none)", runtime.ErrUnsatisfiable, env)
	}
	name := strings.ReplaceAll(app, "-", "_")
	conn, err := pg.EnsureDatabase(ctx, name, name)
	if errors.Is(err, postgres.ErrInvalidName) {
		return nil, fmt.Errorf("creating database of %s in %s: %w: %w", app, env, runtime.ErrUnsatisfiable, err)
	}
	if err != nil {
		return nil, fmt.Errorf("creating database of %s in %s: %w", app, env, err)
	}
	if r.opts.Secrets != nil {
		r.opts.Secrets.Add(conn.Password)
	}
	return conn, nil
}

// postgresConfig is the configuration of env's server: its passwords are
// random, kept in a secrets dir of env's own.
func (r *Runtime) postgresConfig(env string) postgres.Config {
	cfg := r.opts.Postgres
	if cfg.Logger == nil {
		cfg.Logger = r.log
	}
	cfg.SecretsDir = r.secretsDir(env)
	return cfg
}

// secretsDir is where env's database passwords live.
func (r *Runtime) secretsDir(env string) string {
	return filepath.Join(r.opts.SecretsDir, env)
}

// Destroy implements runtime.Runtime.
func (r *Runtime) Destroy(ctx context.Context, env string) error {
	e := r.env(env)
	e.mu.Lock()
	var errs []error
	for key, s := range e.sets {
		if err := s.stop(ctx); err != nil {
			errs = append(errs, err)
		}
		delete(e.sets, key)
	}
	if err := r.destroyStrays(ctx, e); err != nil {
		errs = append(errs, err)
	}
	if e.pg != nil {
		if err := e.pg.Remove(ctx); err != nil {
			errs = append(errs, fmt.Errorf("removing postgres of %s: %w", env, err))
		}
		e.pg = nil
	}
	// Whatever still runs as the environment's uid (a daemon that left
	// its process group and scrubbed its environment) goes too, before
	// the uid is freed.
	if err := r.opts.Sandbox.KillAll(ctx, env); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(e.dir); err != nil {
		errs = append(errs, fmt.Errorf("removing %s: %w", e.dir, err))
	}
	if err := os.RemoveAll(r.secretsDir(env)); err != nil {
		errs = append(errs, fmt.Errorf("removing the secrets of %s: %w", env, err))
	}
	if len(errs) == 0 {
		if err := r.opts.Sandbox.Release(env); err != nil {
			errs = append(errs, err)
		}
	}
	e.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.envs, env)
	r.mu.Unlock()
	r.log.Info("environment destroyed", "env", env)
	return nil
}

// Versions implements runtime.Runtime.
func (r *Runtime) Versions(env, app string) []string {
	r.mu.Lock()
	e, ok := r.envs[env]
	r.mu.Unlock()
	if !ok {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for key, s := range e.sets {
		a, v, ok := strings.Cut(key, "/")
		if ok && a == app && s.alive() {
			out = append(out, v)
		}
	}
	sort.Strings(out)
	return out
}

// Envs implements runtime.Runtime.
func (r *Runtime) Envs() []string {
	seen := map[string]bool{}
	r.mu.Lock()
	for n := range r.envs {
		seen[n] = true
	}
	r.mu.Unlock()
	entries, _ := os.ReadDir(r.opts.Dir)
	for _, de := range entries {
		if de.IsDir() {
			seen[de.Name()] = true
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Close stops every process the runtime started, keeping files. It is for
// tests and the demo; a control plane restart leaves apps running.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	envs := make([]*environment, 0, len(r.envs))
	for _, e := range r.envs {
		envs = append(envs, e)
	}
	r.mu.Unlock()
	var errs []error
	for _, e := range envs {
		e.mu.Lock()
		for _, s := range e.sets {
			errs = append(errs, s.stop(ctx))
		}
		if e.pg != nil {
			errs = append(errs, e.pg.Stop(ctx))
		}
		e.mu.Unlock()
	}
	return errors.Join(errs...)
}
