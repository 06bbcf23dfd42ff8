// Package local is the default runtime: every app replica is a process on a
// free loopback port of this machine, every environment's database its own
// PostgreSQL server, and everything of an environment lives under one
// directory, so tearing it down leaves nothing behind.
//
// The runtime does not run replicas itself: it declares them to a
// supervisor (internal/supervisor, the local kubelet), which starts them,
// probes them and restarts them when they exit, also while no control plane
// runs. The runtime is the supervisor's client, as a Kubernetes control
// plane is the kubelet's: Start declares a replica set and waits for it to
// be ready, Stop removes it, Status and Versions read what the supervisor
// reports, and a restarted control plane adopts what the supervisor runs
// (Adopt). The supervisor is the data plane's (Options.Supervisor) or,
// without one, in-process, with its state in the runtime dir.
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
	"github.com/runway-cd/runway/internal/supervisor"
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
	// set per environment, and its Launcher is the runtime's supervisor.
	Postgres postgres.Config
	Logger   *slog.Logger // nil: slog.Default()
	// Sandbox runs each environment's replicas and jobs as its own uid
	// with an allow-listed environment. Nil: as Runway's user, still with
	// the allow-listed environment.
	Sandbox *sandbox.Sandbox
	// AdoptHealthTimeout bounds how long Adopt waits for a replica the
	// supervisor is still starting to become ready. Zero value: 5s.
	AdoptHealthTimeout time.Duration
	// Supervisor runs the replicas and the servers (workloads
	// "<env>/<app>/<version>/<index>" and "<env>/postgres", grouped by
	// environment). Nil: the runtime starts one in-process, its state in
	// Dir/.supervisor.json (a file where every directory is an
	// environment; root's, 0600: the specs hold database passwords), so a
	// runtime started again on Dir adopts what it left running; Close then
	// stops everything, Detach leaves it running. With a supervisor given
	// (the data plane's), Close stops nothing it runs: its owner decides.
	Supervisor Supervisor
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

	supMu sync.Mutex
	// own is the in-process supervisor (opts.Supervisor nil), nil until
	// first used and after Detach.
	own *supervisor.Supervisor
	// quit is closed by Detach and Close: what watches the supervisor for
	// this runtime ends.
	quit chan struct{}
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
	r := &Runtime{opts: opts, log: opts.Logger, pickPort: freePort, envs: map[string]*environment{}, quit: make(chan struct{})}
	if _, err := r.supervisor(); err != nil {
		return nil, err
	}
	return r, nil
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

// holds reports whether the runtime has registered env (it started, adopted
// or prepared something of it).
func (r *Runtime) holds(env string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.envs[env]
	return ok
}

// peek returns the environment name to read, locked, or, when the runtime
// holds nothing of it, a bare one (a read registers no environment).
func (r *Runtime) peek(name string) (e *environment, unlock func()) {
	r.mu.Lock()
	e, ok := r.envs[name]
	r.mu.Unlock()
	if !ok {
		return &environment{name: name, dir: filepath.Join(r.opts.Dir, name), sets: map[string]*replicaSet{}}, func() {}
	}
	e.mu.Lock()
	return e, e.mu.Unlock
}

// EnsurePostgres implements runtime.Databases. The server is the
// supervisor's workload "<env>/postgres": one the supervisor already runs
// is adopted rather than started again.
func (r *Runtime) EnsurePostgres(ctx context.Context, env string) error {
	if err := checkEnv(env); err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	sup, err := r.supervisor()
	if err != nil {
		return fmt.Errorf("starting postgres of %s: %w", env, err)
	}
	e := r.env(env)
	e.mu.Lock()
	defer e.mu.Unlock()
	_, supervised, err := sup.GetContext(ctx, postgresID(env))
	if err != nil {
		return fmt.Errorf("starting postgres of %s: asking the supervisor: %w", env, err)
	}
	if e.pg != nil && supervised {
		return nil
	}
	if _, err := r.prepareEnv(e); err != nil {
		return fmt.Errorf("preparing %s: %w", env, err)
	}
	dir := filepath.Join(e.dir, "postgres")
	cfg := r.postgresConfig(env, sup)
	if supervised {
		inst, err := postgres.Adopt(ctx, cfg, dir)
		if err == nil {
			e.pg = inst
			r.log.Info("postgres adopted from the supervisor", "env", env, "port", inst.Port(), "pid", inst.PID())
			return nil
		}
		r.log.Info("postgres the supervisor runs could not be adopted; starting it again", "env", env, "err", err)
	}
	inst, err := postgres.Start(ctx, cfg, dir)
	if err != nil {
		return fmt.Errorf("starting postgres of %s: %w", env, err)
	}
	e.pg = inst
	r.log.Info("postgres started", "env", env, "port", inst.Port(), "pid", inst.PID())
	return nil
}

// Database implements runtime.Databases.
func (r *Runtime) Database(ctx context.Context, env, app string) (runtime.Database, error) {
	if err := checkApp(env, app); err != nil {
		return nil, fmt.Errorf("creating a database: %w", err)
	}
	e, unlock := r.peek(env) // asking registers no environment
	pg := e.pg
	unlock()
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
// random, kept in a secrets dir of env's own, and the supervisor runs it.
func (r *Runtime) postgresConfig(env string, sup Supervisor) postgres.Config {
	cfg := r.opts.Postgres
	if cfg.Logger == nil {
		cfg.Logger = r.log
	}
	cfg.SecretsDir = r.secretsDir(env)
	r.supMu.Lock()
	quit := r.quit
	r.supMu.Unlock()
	cfg.Launcher = pgLauncher{sup: sup, env: env, quit: quit}
	return cfg
}

// secretsDir is where env's database passwords live.
func (r *Runtime) secretsDir(env string) string {
	return filepath.Join(r.opts.SecretsDir, env)
}

// Destroy implements runtime.Environments. Replicas are removed before the
// database they use; the supervisor drains each through the gateway first.
func (r *Runtime) Destroy(ctx context.Context, env string) error {
	if err := checkEnv(env); err != nil {
		return fmt.Errorf("destroying: %w", err)
	}
	sup, err := r.supervisor()
	if err != nil {
		return fmt.Errorf("destroying %s: %w", env, err)
	}
	e := r.env(env)
	e.mu.Lock()
	var errs []error
	list, err := sup.ListContext(ctx, env)
	if err != nil {
		e.mu.Unlock()
		return fmt.Errorf("destroying %s: listing its workloads: %w", env, err)
	}
	if err := removeWorkloads(ctx, sup, replicaIDs(list, env, "", "")); err != nil {
		errs = append(errs, fmt.Errorf("removing the replicas of %s: %w", env, err))
	}
	clear(e.sets)
	if err := r.destroyStrays(ctx, sup, e); err != nil {
		errs = append(errs, err)
	}
	if e.pg != nil {
		if err := e.pg.Remove(ctx); err != nil {
			errs = append(errs, fmt.Errorf("removing postgres of %s: %w", env, err))
		}
		e.pg = nil
	}
	if _, ok, err := sup.GetContext(ctx, postgresID(env)); err != nil {
		errs = append(errs, fmt.Errorf("asking the supervisor for the server of %s: %w", env, err))
	} else if ok {
		if err := sup.Remove(ctx, postgresID(env)); err != nil {
			errs = append(errs, fmt.Errorf("removing postgres of %s: %w", env, err))
		}
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

// Versions implements runtime.Replicas: the versions of app whose replicas
// are all known to the supervisor, whatever their state. A replica in
// BackOff still counts: the supervisor is restarting it, and production
// keeps its version meanwhile.
func (r *Runtime) Versions(env, app string) ([]string, error) {
	if err := checkApp(env, app); err != nil {
		return nil, fmt.Errorf("listing versions: %w", err)
	}
	sup, err := r.supervisor()
	if err != nil {
		return nil, fmt.Errorf("listing the versions of %s in %s: %w", app, env, err)
	}
	e, unlock := r.peek(env)
	defer unlock()
	list, err := sup.ListContext(context.Background(), env)
	if err != nil {
		return nil, fmt.Errorf("listing the versions of %s in %s: %w", app, env, err)
	}
	var out []string
	for _, v := range e.views(list) {
		if v.app == app && v.complete() {
			out = append(out, v.version)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Envs implements runtime.Environments. A directory whose name is no valid
// environment name is not one the runtime made: it is not listed (and
// Destroy refuses it).
func (r *Runtime) Envs() []string {
	seen := map[string]bool{}
	r.mu.Lock()
	for n := range r.envs {
		if runtime.ValidName(n) { // an adopted one may not be
			seen[n] = true
		}
	}
	r.mu.Unlock()
	entries, _ := os.ReadDir(r.opts.Dir)
	for _, de := range entries {
		if de.IsDir() && runtime.ValidName(de.Name()) {
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

// Close stops what the runtime runs, keeping files: every replica, then
// every server (all forgotten by the supervisor, so nothing restarts
// them), and with the in-process supervisor anything else it supervises.
// Close is for tests, the demo and a server configured to stop its data
// plane on exit; a control plane restart leaves apps running (Detach).
func (r *Runtime) Close(ctx context.Context) error {
	if d := r.opts.Postgres.TemplateDir; d != "" {
		defer postgres.StopRefills(d)
	}
	r.supMu.Lock()
	own := r.own
	r.own = nil
	close(r.quit)
	r.quit = make(chan struct{})
	r.supMu.Unlock()
	r.mu.Lock()
	envs := make([]*environment, 0, len(r.envs))
	for _, e := range r.envs {
		envs = append(envs, e)
	}
	r.mu.Unlock()
	var errs []error
	var sup Supervisor = own
	if own == nil {
		sup = r.opts.Supervisor
	}
	var servers []string
	if sup != nil {
		all, err := sup.ListContext(ctx, "")
		errs = append(errs, err)
		var replicas []string
		for _, st := range all {
			if _, ok := parseReplicaID(st.ID); ok {
				replicas = append(replicas, st.ID)
			} else if st.ID == postgresID(st.Group) && own == nil {
				servers = append(servers, st.ID)
			}
		}
		errs = append(errs, removeWorkloads(ctx, sup, replicas))
	}
	for _, e := range envs {
		e.mu.Lock()
		clear(e.sets)
		if e.pg != nil && own != nil {
			errs = append(errs, e.pg.Stop(ctx))
		}
		e.pg = nil
		e.mu.Unlock()
	}
	if own != nil {
		errs = append(errs, own.StopAll(ctx))
		own.Close()
	} else if sup != nil {
		errs = append(errs, removeWorkloads(ctx, sup, servers))
	}
	return errors.Join(errs...)
}

// checkEnv and checkApp refuse an invalid environment or app name before
// anything is created: every name becomes a path element and a workload
// ID.
func checkEnv(env string) error { return runtime.CheckName("environment", env) }

func checkApp(env, app string) error {
	return errors.Join(checkEnv(env), runtime.CheckName("app", app))
}
