// Package environment is the environment controller: it makes what runs
// match what the state repository declares. Every manifest file is one
// environment; each app of it runs at its manifest's version, services
// first; apps report to the reporter once healthy; an environment whose
// manifest is gone is torn down. In production a new version of a running
// app goes to the rollout controller for a canary instead.
package environment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/runtime"
)

// Snapshotter reads the state repository.
type Snapshotter interface {
	Snapshot(ctx context.Context) (*gitops.Snapshot, error)
}

// Artifacts finds built artifacts.
type Artifacts interface {
	Resolve(app, version string, kind build.Kind) (build.Artifact, error)
}

// Router is the gateway's routing table.
type Router interface {
	SetRoute(r gateway.Route) error
	Route(env, app string) (gateway.Route, bool)
	RemoveRoute(env, app string)
	RemoveEnv(env string)
	Host(env, app string) string
}

// Reporter receives the apps' deploy reports.
type Reporter interface {
	Update(ctx context.Context, workflow, app string, success bool, message string) error
}

// Rollouts runs canaries in production.
type Rollouts interface {
	Start(ctx context.Context, req rollout.Request) error
	Active(env, app string) (rollout.Status, bool)
	// Resumable is the unfinished rollout of app a restart interrupted;
	// an error means it is not known.
	Resumable(ctx context.Context, env, app string) (rollout.Checkpoint, bool, error)
	// Settle ends unfinished rollouts of app once version runs alone.
	Settle(ctx context.Context, env, app, version string)
}

// Options configure the controller.
type Options struct {
	// PollInterval is the fallback re-read of the state repository when no
	// trigger came. Zero value: 30s.
	PollInterval time.Duration
	// RetryInterval is the first wait before a failed pass is retried;
	// it doubles on each failure up to PollInterval. Zero value: 1s.
	RetryInterval time.Duration
	// GatewayAddr is the gateway's host:port, for the URLs given to jobs.
	GatewayAddr string
	// ReporterURL is the API's base URL (scheme, host and port, no path),
	// given to jobs as RUNWAY_REPORTER_URL with their workflow's reporter
	// token. Empty: jobs get no reporter variables.
	ReporterURL string
	// HealthTimeout bounds a replica set's wait for health. Zero: 60s.
	HealthTimeout time.Duration
	Logger        *slog.Logger
	// Store is pruned of stale rows at the end of every pass. nil: store
	// rows are not collected.
	Store GarbageStore
	// Redact removes secrets from the replicas' log tails shown by
	// Status. Nil: log tails are left out.
	Redact func(string) string
}

// Controller reconciles environments.
type Controller struct {
	repo      Snapshotter
	rt        runtime.Runtime
	artifacts Artifacts
	router    Router
	reporter  Reporter
	rollouts  Rollouts
	opts      Options
	log       *slog.Logger
	trigger   chan struct{}

	// pass serialises reconcile passes with the rollout callbacks that
	// change app state.
	pass sync.Mutex
	mu   sync.Mutex // guards envs
	envs map[string]*envState
	// status is what Status answers, published under pass.
	status atomic.Pointer[[]EnvStatus]
	// synced is set once a pass has read the state repository; until then
	// Status also lists what the gateway was found serving.
	synced bool
}

// envState is what runs in one environment.
type envState struct {
	name     string
	workflow string
	apps     map[string]*appState
}

// appState is what runs of one app.
type appState struct {
	version  string        // the version serving as stable
	entry    *manifest.App // its manifest entry, for rollbacks
	backends []gateway.Backend
	// failed is the version that failed to start, so it is not retried on
	// every pass; a new manifest version clears it.
	failed string
	// reported remembers (workflow) reports already sent for this app.
	reported map[string]bool
	// transient counts the passes in a row that failed for a reason that
	// is not the version's (see retryLater).
	transient int
	// starting is the version whose replicas are being started, shown
	// with their health while the start waits for them.
	starting string
}

// New returns a controller.
func New(repo Snapshotter, rt runtime.Runtime, artifacts Artifacts, router Router, reporter Reporter, rollouts Rollouts, opts Options) *Controller {
	if opts.PollInterval == 0 {
		opts.PollInterval = 30 * time.Second
	}
	if opts.RetryInterval == 0 {
		opts.RetryInterval = time.Second
	}
	if opts.HealthTimeout == 0 {
		opts.HealthTimeout = 60 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Controller{
		repo: repo, rt: rt, artifacts: artifacts, router: router, reporter: reporter, rollouts: rollouts,
		opts: opts, log: opts.Logger, trigger: make(chan struct{}, 1), envs: map[string]*envState{},
	}
}

// Trigger asks for a reconcile pass now: the pipeline calls it right after
// it pushes to the state repository.
func (c *Controller) Trigger() {
	select {
	case c.trigger <- struct{}{}:
	default:
	}
}

// Run reconciles on every trigger and every poll interval until ctx ends.
// A pass that failed is retried sooner, after a backoff that starts at
// RetryInterval and doubles up to the poll interval, as Argo CD retries a
// failed sync.
func (c *Controller) Run(ctx context.Context) error {
	ticker := time.NewTicker(c.opts.PollInterval)
	defer ticker.Stop()
	// Until the first pass publishes, list what the gateway serves.
	c.pass.Lock()
	c.publish()
	c.pass.Unlock()
	var backoff time.Duration
	for {
		err := c.Reconcile(ctx)
		var retry <-chan time.Time
		switch {
		case err == nil:
			backoff = 0
		case ctx.Err() == nil:
			backoff = min(max(2*backoff, c.opts.RetryInterval), c.opts.PollInterval)
			c.log.Error("reconcile failed", "err", err, "retryIn", backoff)
			retry = time.After(backoff)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.trigger:
		case <-ticker.C:
		case <-retry:
		}
	}
}

// Reconcile makes one pass: read the state repository, tear down what it
// no longer declares, create or update what it does, then collect what
// nothing explains (see collectGarbage).
func (c *Controller) Reconcile(ctx context.Context) error {
	c.pass.Lock()
	defer c.pass.Unlock()
	defer c.publish()
	snap, err := c.repo.Snapshot(ctx)
	if err != nil {
		// Never act on absence we could not confirm.
		return fmt.Errorf("reading state repo (nothing changed): %w", err)
	}
	c.synced = true
	for env, perr := range snap.Invalid {
		c.log.Warn("manifest invalid; environment left as it is", "env", env, "err", perr)
	}
	var errs []error
	for _, env := range c.orphans(snap) {
		if err := c.teardown(ctx, env); err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range snap.EnvNames() {
		if err := c.reconcileEnv(ctx, snap.Envs[name]); err != nil {
			errs = append(errs, fmt.Errorf("environment %s: %w", name, err))
		}
		c.publish() // production is listed before a slow staging environment is ready
	}
	errs = append(errs, c.collectGarbage(ctx, snap))
	return errors.Join(errs...)
}

// orphans are environments that run (or have files) but that the snapshot
// neither declares nor reports invalid. Production is never an orphan.
func (c *Controller) orphans(snap *gitops.Snapshot) []string {
	seen := map[string]bool{}
	c.mu.Lock()
	for n := range c.envs {
		seen[n] = true
	}
	c.mu.Unlock()
	for _, n := range c.rt.Envs() {
		seen[n] = true
	}
	var out []string
	for n := range seen {
		_, declared := snap.Envs[n]
		_, invalid := snap.Invalid[n]
		if declared || invalid {
			continue
		}
		if n == manifest.ProductionEnv {
			c.log.Warn("production manifest is missing; production left running")
			continue
		}
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (c *Controller) teardown(ctx context.Context, env string) error {
	start := time.Now()
	c.router.RemoveEnv(env)
	if err := c.rt.Destroy(ctx, env); err != nil {
		return fmt.Errorf("tearing down %s: %w", env, err)
	}
	c.mu.Lock()
	delete(c.envs, env)
	c.mu.Unlock()
	c.log.Info("environment torn down", "env", env, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// Envs returns the names of the environments the controller runs.
func (c *Controller) Envs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.envs))
	for n := range c.envs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// state returns the record of env, creating it.
func (c *Controller) state(env string) *envState {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.envs[env]
	if !ok {
		s = &envState{name: env, apps: map[string]*appState{}}
		c.envs[env] = s
	}
	return s
}

// EnvStatus is an environment as the API shows it.
type EnvStatus struct {
	Name     string      `json:"name"`
	Workflow string      `json:"workflow,omitempty"`
	Apps     []AppStatus `json:"apps"`
	// Adopted marks an environment listed as the gateway serves it: the
	// control plane started but has not read the state repository since,
	// so the environment is not reconciled yet.
	Adopted bool `json:"adopted,omitempty"`
}

// AppStatus is an app of an environment as the API shows it.
type AppStatus struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	URL     string `json:"url,omitempty"`
	// HostURL is the same app by name on the gateway's shared listener.
	HostURL  string   `json:"hostURL,omitempty"`
	Replicas []string `json:"replicas,omitempty"`
	// Health is each replica's state as the runtime sees it now:
	// readiness, restarts, the last exit and the end of its log.
	Health []runtime.ReplicaStatus `json:"health,omitempty"`
	// Starting is a version whose replicas are being started (a staging
	// environment coming up); Health is theirs while Version is empty.
	Starting string `json:"startingVersion,omitempty"`
	Failed   string `json:"failedVersion,omitempty"`
}

// Status lists the environments and what runs in them, as of the last
// environment reconciled: it never waits for a pass (which may be creating
// a staging environment for seconds). Callers must not modify the result.
func (c *Controller) Status() []EnvStatus {
	st := c.status.Load()
	if st == nil {
		return nil
	}
	// Replica health is read now, not at the last pass: a replica may have
	// been restarted by the data plane since.
	out := make([]EnvStatus, len(*st))
	for i, es := range *st {
		es.Apps = slices.Clone(es.Apps)
		for j := range es.Apps {
			a := &es.Apps[j]
			switch {
			case a.Version != "" && len(a.Replicas) > 0:
				a.Health = c.rt.Status(es.Name, a.Name, a.Version)
			case a.Starting != "":
				a.Health = c.rt.Status(es.Name, a.Name, a.Starting)
			default:
				continue
			}
			for k := range a.Health {
				if c.opts.Redact == nil {
					a.Health[k].LogTail = ""
				} else {
					a.Health[k].LogTail = c.opts.Redact(a.Health[k].LogTail)
				}
			}
		}
		out[i] = es
	}
	return out
}

// publish makes what runs now the answer of Status. The caller holds pass.
func (c *Controller) publish() {
	var out []EnvStatus
	for _, name := range c.Envs() {
		c.mu.Lock()
		st := c.envs[name]
		c.mu.Unlock()
		if st == nil {
			continue
		}
		es := EnvStatus{Name: name, Workflow: st.workflow}
		names := make([]string, 0, len(st.apps))
		for n := range st.apps {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			as := st.apps[n]
			a := AppStatus{Name: n, Version: as.version, Failed: as.failed, Starting: as.starting}
			for _, b := range as.backends {
				a.Replicas = append(a.Replicas, b.Addr)
			}
			if len(as.backends) > 0 {
				a.URL, a.HostURL = c.URL(name, n), c.HostURL(name, n)
			}
			es.Apps = append(es.Apps, a)
		}
		out = append(out, es)
	}
	if !c.synced {
		out = append(out, c.adopted()...)
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	}
	c.status.Store(&out)
}

// adopted lists what the gateway serves in environments not reconciled yet.
func (c *Controller) adopted() []EnvStatus {
	l, ok := c.router.(routeLister)
	if !ok {
		return nil
	}
	var out []EnvStatus
	for _, r := range l.Routes() { // sorted by env, then app
		c.mu.Lock()
		_, known := c.envs[r.Env]
		c.mu.Unlock()
		if known {
			continue
		}
		if len(out) == 0 || out[len(out)-1].Name != r.Env {
			out = append(out, EnvStatus{Name: r.Env, Adopted: true})
		}
		a := AppStatus{Name: r.App, Version: r.StableVersion, URL: c.URL(r.Env, r.App), HostURL: c.HostURL(r.Env, r.App)}
		for _, b := range r.Stable {
			a.Replicas = append(a.Replicas, b.Addr)
		}
		out[len(out)-1].Apps = append(out[len(out)-1].Apps, a)
	}
	return out
}
