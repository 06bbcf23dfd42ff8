package environment

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/runtime"
)

// GarbageStore is the durable state garbage collection prunes.
type GarbageStore interface {
	// AbandonAnalysisRuns ends the runs left Running that live does not
	// claim, in phase Error with reason "abandoned: " + why.
	AbandonAnalysisRuns(ctx context.Context, live func(analysis.RunRecord) bool, why string, now time.Time) ([]string, error)
	// PruneBefore deletes webhook deliveries and reporter rows older than
	// cutoff and says how many rows went.
	PruneBefore(ctx context.Context, cutoff time.Time) (int64, error)
}

// storeRetention is how long rows that only matter for a while are kept:
// webhook deliveries (GitHub redelivers within hours) and reporter
// expectations and reports (a pipeline waits on them for at most its
// deploy timeout). A month leaves time to look into a past pipeline.
const storeRetention = 30 * 24 * time.Hour

// routeLister is a router that can list its routes (the gateway and its
// remote client both can); without it routes are not collected.
type routeLister interface {
	Routes() []gateway.Route
}

// collectGarbage removes what Runway owns that no desired environment
// explains: processes the runtime started but never recorded, versions of
// apps that nothing wants, routes of apps no environment declares, and
// stale store rows. Environments that are not declared are the teardown's;
// environments whose manifest is invalid are left as they are. It runs at
// the end of a pass whose snapshot was read, under the pass lock, so every
// app has had its reconcile (and a restart mid-canary its recovery) first.
func (c *Controller) collectGarbage(ctx context.Context, snap *gitops.Snapshot) error {
	var errs []error
	if _, err := c.rt.CollectStrays(ctx); err != nil {
		errs = append(errs, fmt.Errorf("collecting stray processes: %w", err))
	}
	if err := c.collectVersions(ctx, snap); err != nil {
		errs = append(errs, err)
	}
	c.collectRoutes(ctx, snap)
	if err := c.collectStore(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// collectVersions stops the versions that run in a declared environment
// although neither its manifest, nor what the controller serves, nor an
// active or resumable rollout wants them.
func (c *Controller) collectVersions(ctx context.Context, snap *gitops.Snapshot) error {
	var errs []error
	for _, d := range c.rt.Running() {
		m, declared := snap.Envs[d.Env]
		if !declared {
			continue
		}
		why, stray := c.unwanted(ctx, m, d)
		if !stray {
			continue
		}
		c.log.Info("garbage: stopping a version nothing wants", "env", d.Env, "app", d.App, "version", d.Version, "why", why)
		if err := c.rt.Stop(ctx, d.Env, d.App, d.Version); err != nil {
			errs = append(errs, fmt.Errorf("stopping unwanted %s %s in %s: %w", d.App, d.Version, d.Env, err))
		}
	}
	return errors.Join(errs...)
}

// unwanted says why d runs although nothing wants it, or false. When in
// doubt it keeps: an app this pass did not settle (its environment's
// database failed, say) keeps every version it runs.
func (c *Controller) unwanted(ctx context.Context, m *manifest.Manifest, d runtime.Deployment) (string, bool) {
	c.mu.Lock()
	st := c.envs[d.Env]
	c.mu.Unlock()
	var as *appState
	if st != nil {
		as = st.apps[d.App]
	}
	a, declared := m.Apps[d.App]
	var why string
	switch {
	case !declared && as != nil:
		return "", false // reconcileEnv stops the apps it ran once they leave the manifest
	case !declared:
		why = "the app is not in the environment's manifest"
	case isService(a), as == nil:
		return "", false
	case as.version == "":
		return "", false // not settled: after a restart mid-canary both versions may still be needed
	case d.Version == a.Version(), d.Version == as.version:
		return "", false
	default:
		why = fmt.Sprintf("the manifest wants %s and %s serves", a.Version(), as.version)
	}
	if s, ok := c.rollouts.Active(d.Env, d.App); ok && (d.Version == s.StableVersion || d.Version == s.CanaryVersion) {
		return "", false
	}
	cp, ok, err := c.rollouts.Resumable(ctx, d.Env, d.App)
	if err != nil || ok && (d.Version == cp.StableVersion || d.Version == cp.CanaryVersion) {
		return "", false // wanted by a rollout that resumes, or not known
	}
	return why, true
}

// collectRoutes removes the gateway routes of (env, app) pairs that no
// environment explains. A gateway that cannot be listed lists nothing.
func (c *Controller) collectRoutes(_ context.Context, snap *gitops.Snapshot) {
	l, ok := c.router.(routeLister)
	if !ok {
		return
	}
	for _, r := range l.Routes() {
		why, stray := c.unwantedRoute(snap, r.Env, r.App)
		if !stray {
			continue
		}
		c.log.Info("garbage: removing a route nothing wants", "env", r.Env, "app", r.App, "why", why)
		c.router.RemoveRoute(r.Env, r.App)
	}
}

// unwantedRoute says why the route of app in env is unwanted, or false.
func (c *Controller) unwantedRoute(snap *gitops.Snapshot, env, app string) (string, bool) {
	if _, invalid := snap.Invalid[env]; invalid {
		return "", false
	}
	m, declared := snap.Envs[env]
	if !declared {
		if env == manifest.ProductionEnv {
			return "", false // never on a missing production manifest
		}
		return "the environment is not declared", true
	}
	if _, ok := m.Apps[app]; ok {
		return "", false
	}
	c.mu.Lock()
	st := c.envs[env]
	c.mu.Unlock()
	if st != nil && st.apps[app] != nil {
		return "", false // reconcileEnv removes it with the app
	}
	return "the app is not in the environment's manifest", true
}

// collectStore ends analysis runs no rollout will finish and deletes rows
// past their retention. Pipelines are never touched: the pipeline runner
// resumes unfinished ones.
func (c *Controller) collectStore(ctx context.Context) error {
	if c.opts.Store == nil {
		return nil
	}
	now := time.Now()
	live := func(r analysis.RunRecord) bool {
		if _, ok := c.rollouts.Active(r.Env, r.App); ok {
			return true
		}
		_, ok, err := c.rollouts.Resumable(ctx, r.Env, r.App)
		return ok || err != nil // when not known, keep it
	}
	var errs []error
	ended, err := c.opts.Store.AbandonAnalysisRuns(ctx, live, "no rollout of the app runs or can resume", now)
	for _, name := range ended {
		c.log.Warn("garbage: analysis run abandoned", "run", name, "why", "left running, and no rollout of its app runs or can resume")
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("abandoning analysis runs: %w", err))
	}
	n, err := c.opts.Store.PruneBefore(ctx, now.Add(-storeRetention))
	if n > 0 {
		c.log.Info("garbage: old store rows deleted", "rows", n, "olderThan", storeRetention.String(), "what", "webhook deliveries, reporter expectations and reports")
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("pruning store: %w", err))
	}
	return errors.Join(errs...)
}
