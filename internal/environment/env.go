package environment

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/reporter"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/internal/workload"
)

// isService reports whether a manifest app is a service the runtime
// provides itself rather than an app artifact; today only PostgreSQL.
func isService(a *manifest.App) bool {
	return a.Images.Code.Image == "postgres" || strings.HasSuffix(a.Images.Code.Image, "/postgres")
}

// reconcileEnv brings env to its manifest in the kept snapshot. It holds
// env's lock, so only another reconcile of env waits for it. A staging
// bring-up registers its cancel, so that a teardown of env (its manifest
// deleted meanwhile) stops it where it is.
func (c *Controller) reconcileEnv(ctx context.Context, env string) error {
	unlock := c.lockEnv(env)
	defer unlock()
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.mu.Lock()
	var m *manifest.Manifest
	if c.snap != nil {
		m = c.snap.Envs[env]
	}
	staging := m != nil && env != manifest.ProductionEnv
	if staging {
		c.bringing[env] = cancel
	}
	c.mu.Unlock()
	if m == nil {
		return nil // its manifest went meanwhile: the next key decides
	}
	p := c.newPass(m)
	if !staging && c.opts.Synced != nil {
		return p.reconcileSynced(ctx)
	}
	if !staging {
		return p.reconcileProduction(ctx)
	}
	defer func() {
		c.mu.Lock()
		delete(c.bringing, env)
		c.mu.Unlock()
	}()
	var err error
	if c.opts.Synced != nil {
		err = p.reconcileSynced(bctx)
	} else {
		err = p.reconcileStaging(bctx)
	}
	if err != nil && bctx.Err() != nil && ctx.Err() == nil {
		c.log.Info("bring-up cancelled: the environment is being torn down", "env", env)
		return nil
	}
	return err
}

// envPass is one reconcile of one environment, built once per pass: the
// manifest it brings the environment to and what it found on the way.
// Writes to the environment's state are made under the controller's mutex
// (Status and garbage collection read it); the pass reads it freely, since
// only passes of this environment write it and they hold its lock.
type envPass struct {
	c  *Controller
	m  *manifest.Manifest
	st *envState
	// sig names the manifest's versions, so that each event is recorded
	// once per manifest however often a pass is retried.
	sig string
	// failures are the apps' failures this pass reported or recorded.
	failures []string
	// refused are the (app, workflow) reports the reporter did not take
	// in this pass: they are kept for the next pass (see flush), not sent
	// again in this one, and the pass fails so that its key is retried
	// with backoff.
	refused map[[2]string]bool
}

func (c *Controller) newPass(m *manifest.Manifest) *envPass {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.envs[m.EnvName]
	if !ok {
		st = &envState{name: m.EnvName, apps: map[string]*appState{}, emitted: map[string]string{}}
		c.envs[m.EnvName] = st
	}
	st.manifest = m
	return &envPass{c: c, m: m, st: st, sig: signature(m), refused: map[[2]string]bool{}}
}

// signature names what m declares: every app's version and workflow.
func signature(m *manifest.Manifest) string {
	var b strings.Builder
	b.WriteString(m.DeployingWorkflowName)
	for _, n := range m.AppNames() {
		fmt.Fprintf(&b, ";%s=%s@%s", n, m.Apps[n].Version(), m.Workflow(n))
	}
	return b.String()
}

// set writes the environment's state under the controller's mutex.
func (p *envPass) set(f func()) {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	f()
}

// app returns the state of app name, creating it.
func (p *envPass) app(name string) *appState {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	as, ok := p.st.apps[name]
	if !ok {
		as = &appState{reported: map[string]bool{}, unsent: map[string]unsentReport{}}
		p.st.apps[name] = as
	}
	return as
}

// event records an environment event once per manifest signature.
func (p *envPass) event(typ, reason, msg string) {
	p.c.mu.Lock()
	done := p.st.emitted[reason] == p.sig
	p.st.emitted[reason] = p.sig
	p.c.mu.Unlock()
	if !done {
		p.c.events.Record(typ, events.Environment, p.st.name, reason, msg)
	}
}

// split returns m's services and apps, each in name order.
func split(m *manifest.Manifest) (services, apps []string) {
	for _, name := range m.AppNames() {
		if isService(m.Apps[name]) {
			services = append(services, name)
		} else {
			apps = append(apps, name)
		}
	}
	return services, apps
}

// reconcileStaging brings a staging environment to its manifest: services
// first, then apps in name order, then apps no longer declared are
// stopped.
func (p *envPass) reconcileStaging(ctx context.Context) error {
	services, apps := split(p.m)
	if pending := p.pending(); len(pending) > 0 {
		p.event(events.Normal, "Creating", "bringing up "+strings.Join(pending, ", "))
	}
	for _, name := range services {
		if err := p.reconcileService(ctx, name, p.m.Apps[name]); err != nil {
			// Apps cannot start without their database.
			return p.settle(err)
		}
	}
	var errs []error
	for _, name := range apps {
		if err := p.reconcileStagingApp(ctx, name, p.m.Apps[name]); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, p.removeUndeclared(ctx))
	return p.settle(errors.Join(errs...))
}

// pending lists the apps of the manifest not yet serving its version and
// not failed at it.
func (p *envPass) pending() []string {
	var out []string
	for _, name := range p.m.AppNames() {
		want := p.m.Apps[name].Version()
		as := p.app(name)
		if as.version != want && as.failed != want {
			out = append(out, name+" "+want)
		}
	}
	return out
}

// settle records how the pass left the environment: Ready once every app
// serves its manifest's version, Failed when an app failed. A pass that
// will be retried (a failure not the version's) records neither.
func (p *envPass) settle(err error) error {
	switch {
	case len(p.failures) > 0:
		p.event(events.Warning, "Failed", strings.Join(p.failures, "; "))
	case err == nil && p.serving():
		p.event(events.Normal, "Ready", "every app serves its manifest's version")
	}
	return errors.Join(err, p.unsentErr())
}

// unsentErr fails a pass that left reports the reporter did not take, so
// that the environment's key is retried with the queue's backoff rather
// than at the next poll: a pipeline waits for them.
func (p *envPass) unsentErr() error {
	if len(p.refused) == 0 {
		return nil
	}
	var names []string
	for k := range p.refused {
		names = append(names, k[0]+" to "+k[1])
	}
	sort.Strings(names)
	return fmt.Errorf("deploy reports not taken by the reporter, to be sent again: %s", strings.Join(names, ", "))
}

// serving reports whether every app of the manifest serves its version.
func (p *envPass) serving() bool {
	for _, name := range p.m.AppNames() {
		if p.app(name).version != p.m.Apps[name].Version() {
			return false
		}
	}
	return true
}

func (p *envPass) reconcileService(ctx context.Context, name string, a *manifest.App) error {
	as := p.app(name)
	p.flush(ctx, name, as)
	if err := p.c.rt.EnsurePostgres(ctx, p.st.name); err != nil {
		err = fmt.Errorf("starting postgres of %s: %w", p.st.name, err)
		if ctx.Err() == nil {
			p.retryLater(ctx, name, as, err)
		}
		return err
	}
	p.set(func() { as.version, as.entry, as.transient = a.Version(), a, 0 })
	p.report(ctx, name, as, true, serviceReport(a))
	return nil
}

// reportTransientAfter is how many passes in a row (1+2+4 s apart with the
// default backoff) a failure that is not the version's fault may last
// before it is reported as the deploy's failure.
const reportTransientAfter = 3

// retryLater records a failure that the next pass may not see again (the
// environment's, not the version's): it is reported only once it lasted
// reportTransientAfter passes, and the version is tried again.
func (p *envPass) retryLater(ctx context.Context, name string, as *appState, err error) {
	p.set(func() { as.transient++ })
	if as.transient >= reportTransientAfter {
		msg := fmt.Sprintf("%v (%d attempts)", err, as.transient)
		p.failures = append(p.failures, name+": "+msg)
		p.report(ctx, name, as, false, msg)
	}
}

// fail marks version of app failed, so that it is not tried again before
// its manifest changes, and reports it.
func (p *envPass) fail(ctx context.Context, name string, as *appState, version, msg string) {
	p.set(func() { as.failed = version })
	p.failures = append(p.failures, name+": "+msg)
	p.report(ctx, name, as, false, msg)
}

// reconcileStagingApp starts the declared version of an app in a staging
// environment and routes it as the app's only version.
func (p *envPass) reconcileStagingApp(ctx context.Context, name string, a *manifest.App) error {
	as := p.app(name)
	env, want := p.st.name, a.Version()
	// A report the reporter did not take is sent again before anything
	// else: once the app serves (or failed at) want, nothing else would.
	p.flush(ctx, name, as)
	if want == as.version || want == as.failed {
		return nil
	}
	art, err := p.c.artifacts.Resolve(name, want, build.App)
	if err != nil {
		p.fail(ctx, name, as, want, err.Error())
		return fmt.Errorf("resolving %s %s: %w", name, want, err)
	}
	// The replicas' health shows while they start; and garbage collection,
	// which may run meanwhile on a newer snapshot, keeps them until they
	// serve.
	p.set(func() { as.starting = want })
	defer p.set(func() { as.starting = "" })
	backends, err := p.c.starter.Start(ctx, env, art, p.c.opts.HealthTimeout)
	switch {
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("starting %s %s: %w", name, want, errors.Join(err, ctx.Err())) // stopped, not failed
	case errors.Is(err, workload.ErrRetry), errors.Is(err, runtime.ErrUnavailable):
		// A later pass tries again; it is reported once it persists.
		err = fmt.Errorf("starting %s %s: %w", name, want, err)
		p.retryLater(ctx, name, as, err)
		return err
	case err != nil:
		p.fail(ctx, name, as, want, err.Error())
		return fmt.Errorf("starting %s %s: %w", name, want, err)
	}
	old := as.version
	if err := p.c.router.SetRoute(gateway.Route{Env: env, App: name, StableVersion: want, Stable: backends}); err != nil {
		return fmt.Errorf("routing %s: %w", name, err)
	}
	if old != "" && old != want {
		if err := p.c.starter.Stop(ctx, env, name, old); err != nil {
			p.c.log.Warn("stopping replaced version", "env", env, "app", name, "version", old, "err", err)
		}
	}
	p.set(func() { as.version, as.entry, as.backends, as.failed, as.transient = want, a, backends, "", 0 })
	p.c.log.Info("app deployed", "env", env, "app", name, "version", want, "url", p.c.URL(env, name))
	p.report(ctx, name, as, true, fmt.Sprintf("%s %s is healthy", name, want))
	return nil
}

// removeUndeclared stops the apps of a staging environment that its
// manifest no longer declares and removes their routes.
func (p *envPass) removeUndeclared(ctx context.Context) error {
	var errs []error
	for _, name := range p.undeclaredApps() {
		as := p.st.apps[name]
		p.c.router.RemoveRoute(p.st.name, name)
		if as.version != "" && as.entry != nil && !isService(as.entry) {
			if err := p.c.starter.Stop(ctx, p.st.name, name, as.version); err != nil {
				errs = append(errs, fmt.Errorf("stopping %s %s: %w", name, as.version, err))
				continue
			}
		}
		p.set(func() { delete(p.st.apps, name) })
	}
	return errors.Join(errs...)
}

// undeclaredApps are the apps the environment's state has and its
// manifest does not, in name order.
func (p *envPass) undeclaredApps() []string {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	var out []string
	for name := range p.st.apps {
		if _, ok := p.m.Apps[name]; !ok {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// reconcileProduction provides production's services and hands every app's
// declared version to the rollout controller, which starts, routes and
// stops production's versions; an app gone from the manifest is forgotten
// there.
func (p *envPass) reconcileProduction(ctx context.Context) error {
	services, apps := split(p.m)
	for _, name := range services {
		if err := p.reconcileService(ctx, name, p.m.Apps[name]); err != nil {
			// Its apps cannot start without their database.
			return p.settleProduction(err)
		}
	}
	var errs []error
	for _, name := range apps {
		if err := p.handOver(ctx, name, p.m.Apps[name]); err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range p.undeclaredApps() {
		if as := p.st.apps[name]; as.entry == nil || !isService(as.entry) {
			p.c.rollouts.Forget(p.st.name, name)
		}
		p.set(func() { delete(p.st.apps, name) })
	}
	return p.settleProduction(errors.Join(errs...))
}

// settleProduction records production's failures (the rollouts record
// their own progress).
func (p *envPass) settleProduction(err error) error {
	if len(p.failures) > 0 {
		p.event(events.Warning, "Failed", strings.Join(p.failures, "; "))
	}
	return errors.Join(err, p.unsentErr())
}

// handOver gives the rollout controller the manifest's version of a
// production app with its artifact. A version whose artifact cannot be
// found is reported failed to the app's workflow and not handed over (nor
// looked up again) until the manifest changes.
func (p *envPass) handOver(ctx context.Context, name string, a *manifest.App) error {
	as := p.app(name)
	want := a.Version()
	p.flush(ctx, name, as)
	if want == as.failed {
		return nil
	}
	art := as.desired
	if art == nil || art.Version != want {
		resolved, err := p.c.artifacts.Resolve(name, want, build.App)
		if err != nil {
			err = fmt.Errorf("resolving %s %s for production: %w", name, want, err)
			p.fail(ctx, name, as, want, err.Error())
			return err
		}
		art = &resolved
	}
	p.set(func() { as.desired, as.entry, as.failed, as.transient = art, a, "", 0 })
	p.c.rollouts.SetDesired(rollout.Desired{
		Env: p.st.name, App: name, Version: want, Entry: a, Artifact: *art, Workflow: p.m.Workflow(name),
	})
	return nil
}

// unsentReport is a deploy report the reporter did not take yet.
type unsentReport struct {
	ok  bool
	msg string
}

// report sends an app's deploy report to the app's workflow
// (manifest.Workflow), once per workflow. A report the reporter does not
// take (its store busy, say) is kept and sent again by the next passes
// until it is taken (see flush); a newer report of the app to the same
// workflow replaces it.
func (p *envPass) report(ctx context.Context, app string, as *appState, ok bool, msg string) {
	workflow := p.m.Workflow(app)
	if workflow == "" || as.reported[workflow] {
		return
	}
	if p.c.opts.Redact != nil {
		msg = p.c.opts.Redact(msg) // a replica's log tail may print its DATABASE_URL
	}
	p.set(func() { as.unsent[workflow] = unsentReport{ok: ok, msg: msg} })
	p.flush(ctx, app, as)
}

// flush sends app's reports that the reporter has not taken yet, each
// once per pass. One taken is never sent again; one the reporter refuses
// as invalid (reporter.ErrInvalid: a workflow name it cannot take) is
// logged and given up, since no retry makes it valid; any other failure
// keeps it for the next pass, which the pass's error brings on with
// backoff.
func (p *envPass) flush(ctx context.Context, app string, as *appState) {
	workflows := make([]string, 0, len(as.unsent))
	for wf := range as.unsent {
		if !p.refused[[2]string{app, wf}] {
			workflows = append(workflows, wf)
		}
	}
	sort.Strings(workflows)
	for _, wf := range workflows {
		r := as.unsent[wf]
		err := p.c.reporter.Update(ctx, wf, app, r.ok, r.msg)
		switch {
		case err == nil:
		case errors.Is(err, reporter.ErrInvalid):
			p.c.log.Error("deploy report refused as invalid; given up", "workflow", wf, "app", app, "err", err)
		default:
			p.c.log.Warn("deploy report not taken; it is sent again", "workflow", wf, "app", app, "err", err)
			p.refused[[2]string{app, wf}] = true
			continue
		}
		p.set(func() {
			as.reported[wf] = true
			delete(as.unsent, wf)
		})
	}
}
