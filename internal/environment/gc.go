package environment

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
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

// collectGarbage (the gc key) removes what Runway owns that no desired
// environment explains: processes the runtime started but never recorded,
// versions of apps that nothing wants, routes of apps no environment
// declares, and stale store rows. Environments that are not declared are
// the teardown's; environments whose manifest is invalid are left as they
// are; nothing is collected before a snapshot was read. It may run while
// environments are reconciled, so every decision to keep is taken from
// what runs now: a staging version being started or served is kept, and
// in production whatever the rollout controller wants (everything, until
// it knows). An app that runs in production although its manifest no
// longer declares it is handed to the rollout controller to forget (and,
// once the rollout controller wants none of it, stopped).
//
// A newer snapshot may be read while it runs, and passes of it may start
// and route what it declares: what runs and what is routed are therefore
// listed before the snapshot is taken (whatever a pass started or routed
// by then, it did from that snapshot or an older one), and every removal
// is decided again against the snapshot kept at that moment, with the
// environment's lock held so that no pass of it is in flight (see
// tryLockEnv: an environment being reconciled is left to the next
// collection).
func (c *Controller) collectGarbage(ctx context.Context) error {
	running := c.rt.Running()
	routes := c.router.Routes()
	if c.current() == nil {
		return nil
	}
	var errs []error
	if c.opts.Synced != nil {
		// Replicas are the engine's, which prunes them itself.
		return c.collectStore(ctx)
	}
	if _, err := c.rt.CollectStrays(ctx); err != nil {
		errs = append(errs, fmt.Errorf("collecting stray processes: %w", err))
	}
	forget := map[string]bool{} // production apps to forget
	if err := c.collectVersions(ctx, running, forget); err != nil {
		errs = append(errs, err)
	}
	c.collectRoutes(routes, forget)
	c.forgetProduction(forget)
	if err := c.collectStore(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// current is the kept snapshot now (nil before one was read).
func (c *Controller) current() *gitops.Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snap
}

// forgetProduction hands to the rollout controller to forget the
// production apps that ran or were routed undeclared, each only if the
// snapshot kept now still confirms that production's manifest does not
// declare it: a newer snapshot may have (re)added it, and a pass of it
// handed it over. Production's lock is held meanwhile, so no pass of
// production hands over an app between that check and the Forget.
func (c *Controller) forgetProduction(forget map[string]bool) {
	if len(forget) == 0 {
		return
	}
	unlock, ok := c.tryLockEnv(manifest.ProductionEnv)
	if !ok {
		c.log.Info("garbage: production is being reconciled; its undeclared apps are left to the next collection")
		return
	}
	defer unlock()
	apps := make([]string, 0, len(forget))
	for app := range forget {
		apps = append(apps, app)
	}
	sort.Strings(apps)
	for _, app := range apps {
		m := c.current().Envs[manifest.ProductionEnv]
		if m == nil {
			continue // production's manifest is missing or invalid now: nothing is confirmed
		}
		if _, declared := m.Apps[app]; declared {
			c.log.Info("garbage: a production app kept, since the state repository declares it again", "app", app)
			continue
		}
		c.log.Info("garbage: a production app no manifest declares, handed to the rollouts to forget", "app", app)
		c.rollouts.Forget(manifest.ProductionEnv, app)
	}
}

// collectVersions stops the versions of running that run in a declared
// environment although nothing wants them, and adds to forget the
// production apps that run undeclared.
func (c *Controller) collectVersions(ctx context.Context, running []runtime.Deployment, forget map[string]bool) error {
	var errs []error
	for _, d := range running {
		var err error
		if d.Env == manifest.ProductionEnv {
			err = c.collectProductionVersion(ctx, d, forget)
		} else {
			err = c.collectStagingVersion(ctx, d)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// collectProductionVersion stops d, a version running in production, when
// the rollout controller does not want it, and adds its app to forget when
// production's manifest does not declare it.
func (c *Controller) collectProductionVersion(ctx context.Context, d runtime.Deployment, forget map[string]bool) error {
	m := c.current().Envs[d.Env]
	if m == nil {
		return nil // never on a missing or invalid production manifest
	}
	if _, ok := m.Apps[d.App]; !ok {
		forget[d.App] = true
	}
	why, stray := c.unwantedInProduction(m, d)
	if !stray {
		return nil
	}
	return c.stopUnwanted(ctx, d, why)
}

// collectStagingVersion stops d, a version running in a declared staging
// environment, when nothing wants it. It decides with the environment's
// lock held and the snapshot kept then, and stops with the lock held, so
// that no pass of the environment starts that version meanwhile.
func (c *Controller) collectStagingVersion(ctx context.Context, d runtime.Deployment) error {
	unlock, ok := c.tryLockEnv(d.Env)
	if !ok {
		c.log.Debug("garbage: environment being reconciled; its versions are left to the next collection", "env", d.Env)
		return nil
	}
	defer unlock()
	m, declared := c.current().Envs[d.Env]
	if !declared {
		return nil // undeclared: the teardown's; invalid: left as it is
	}
	why, stray := c.unwantedInStaging(m, d)
	if !stray {
		return nil
	}
	return c.stopUnwanted(ctx, d, why)
}

func (c *Controller) stopUnwanted(ctx context.Context, d runtime.Deployment, why string) error {
	c.log.Info("garbage: stopping a version nothing wants", "env", d.Env, "app", d.App, "version", d.Version, "why", why)
	if err := c.starter.Stop(ctx, d.Env, d.App, d.Version); err != nil {
		return fmt.Errorf("stopping unwanted %s %s in %s: %w", d.App, d.Version, d.Env, err)
	}
	return nil
}

// unwantedInProduction says why d runs in production although the rollout
// controller does not want it, or false. Until the rollout controller
// knows the app (after a restart; an app it never ran, until it has
// forgotten it) every version stays.
func (c *Controller) unwantedInProduction(m *manifest.Manifest, d runtime.Deployment) (string, bool) {
	if a, ok := m.Apps[d.App]; ok && isService(a) {
		return "", false
	}
	wanted, known := c.rollouts.Wanted(d.Env, d.App)
	if !known || slices.Contains(wanted, d.Version) {
		return "", false
	}
	return fmt.Sprintf("the rollout runs %v", wanted), true
}

// unwantedInStaging says why d runs in a staging environment although
// nothing wants it, or false. When in doubt it keeps: an app no pass has
// brought up yet keeps every version it runs.
func (c *Controller) unwantedInStaging(m *manifest.Manifest, d runtime.Deployment) (string, bool) {
	c.mu.Lock()
	var as appState
	var known bool
	if st := c.envs[d.Env]; st != nil && st.apps[d.App] != nil {
		as, known = *st.apps[d.App], true
	}
	c.mu.Unlock()
	a, declared := m.Apps[d.App]
	switch {
	case !declared && known:
		return "", false // the environment's pass stops the apps it ran once they leave the manifest
	case !declared:
		return "the app is not in the environment's manifest", true
	case isService(a), !known, as.version == "":
		return "", false // not brought up yet
	case d.Version == a.Version(), d.Version == as.version, d.Version == as.starting:
		return "", false
	}
	return fmt.Sprintf("the manifest wants %s and %s serves", a.Version(), as.version), true
}

// collectRoutes removes the gateway routes of (env, app) pairs that no
// environment explains, and adds to forget production apps routed
// undeclared (their route is the rollout controller's). A gateway that
// cannot be listed lists nothing. A staging route is removed only with its
// environment's lock held and by the snapshot kept then: a pass of a newer
// snapshot may have just routed it.
func (c *Controller) collectRoutes(routes []gateway.Route, forget map[string]bool) {
	for _, r := range routes {
		if r.Env == manifest.ProductionEnv {
			if _, stray := c.unwantedRoute(c.current(), r.Env, r.App); stray {
				forget[r.App] = true
			}
			continue
		}
		c.collectRoute(r.Env, r.App)
	}
}

// collectRoute removes the route of app in env, a staging environment,
// if nothing wants it.
func (c *Controller) collectRoute(env, app string) {
	unlock, ok := c.tryLockEnv(env)
	if !ok {
		c.log.Debug("garbage: environment being reconciled; its routes are left to the next collection", "env", env)
		return
	}
	defer unlock()
	if why, stray := c.unwantedRoute(c.current(), env, app); stray {
		c.log.Info("garbage: removing a route nothing wants", "env", env, "app", app, "why", why)
		c.router.RemoveRoute(env, app)
	}
}

// unwantedRoute says why the route of app in env is unwanted, or false.
func (c *Controller) unwantedRoute(snap *gitops.Snapshot, env, app string) (string, bool) {
	if _, invalid := snap.Invalid[env]; invalid {
		return "", false
	}
	c.mu.Lock()
	st := c.envs[env]
	ran := st != nil && st.apps[app] != nil
	known := st != nil
	c.mu.Unlock()
	m, declared := snap.Envs[env]
	if !declared {
		if env == manifest.ProductionEnv || known {
			return "", false // never on a missing production manifest; a known environment is the teardown's
		}
		return "the environment is not declared", true
	}
	if _, ok := m.Apps[app]; ok {
		return "", false
	}
	if env != manifest.ProductionEnv && ran {
		return "", false // the environment's pass removes it with the app
	}
	return "the app is not in the environment's manifest", true
}

// collectStore ends analysis runs no rollout will finish and deletes rows
// past their retention. A run is live while its app has a canary (the
// rollout controller wants more than one version) or while the rollout
// controller does not know the app yet. Pipelines are never touched: the
// pipeline runner resumes unfinished ones.
func (c *Controller) collectStore(ctx context.Context) error {
	if c.opts.Store == nil {
		return nil
	}
	now := c.clock.Now()
	live := func(r analysis.RunRecord) bool {
		wanted, known := c.rollouts.Wanted(r.Env, r.App)
		return !known || len(wanted) > 1
	}
	var errs []error
	ended, err := c.opts.Store.AbandonAnalysisRuns(ctx, live, "no canary of the app runs", now)
	for _, name := range ended {
		c.log.Warn("garbage: analysis run abandoned", "run", name, "why", "left running, and no canary of its app runs")
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
