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
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/runway-cd/runway/internal/postgres"
	"github.com/runway-cd/runway/internal/runtime"
)

var _ runtime.Runtime = (*Runtime)(nil)

// Options configure the local runtime.
type Options struct {
	// Dir holds one directory per environment.
	Dir string
	// Secret derives the database passwords; it must stay the same across
	// restarts.
	Secret   []byte
	Postgres postgres.Config
	Logger   *slog.Logger // nil: slog.Default()
	// AdoptHealthTimeout bounds how long Adopt waits for a recorded
	// replica to answer its health path. Zero value: 5s.
	AdoptHealthTimeout time.Duration
}

// Runtime runs environments as local processes.
type Runtime struct {
	opts Options
	log  *slog.Logger

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
	if len(opts.Secret) == 0 {
		return nil, errors.New("local runtime: a secret is required")
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating runtime dir: %w", err)
	}
	return &Runtime{opts: opts, log: opts.Logger, envs: map[string]*environment{}}, nil
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
	cfg := r.opts.Postgres
	if cfg.Logger == nil {
		cfg.Logger = r.log
	}
	inst, err := postgres.Start(ctx, cfg, filepath.Join(e.dir, "postgres"))
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
	conn, err := pg.EnsureDatabase(ctx, name, name, r.password(env, app))
	if errors.Is(err, postgres.ErrInvalidName) {
		return nil, fmt.Errorf("creating database of %s in %s: %w: %w", app, env, runtime.ErrUnsatisfiable, err)
	}
	if err != nil {
		return nil, fmt.Errorf("creating database of %s in %s: %w", app, env, err)
	}
	return conn, nil
}

// password is derived, not stored: the same after a restart, different per
// environment and app, and never written to disk or logs.
func (r *Runtime) password(env, app string) string {
	m := hmac.New(sha256.New, r.opts.Secret)
	m.Write([]byte("postgres/" + env + "/" + app))
	return hex.EncodeToString(m.Sum(nil))[:32]
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
	if err := os.RemoveAll(e.dir); err != nil {
		errs = append(errs, fmt.Errorf("removing %s: %w", e.dir, err))
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
