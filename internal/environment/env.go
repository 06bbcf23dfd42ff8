package environment

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/runtime"
)

// isService reports whether a manifest app is a service the runtime
// provides itself rather than an app artifact; today only PostgreSQL.
func isService(a *manifest.App) bool {
	return a.Images.Code.Image == "postgres" || strings.HasSuffix(a.Images.Code.Image, "/postgres")
}

// reconcileEnv brings one environment to its manifest: services first,
// then apps in name order, then apps no longer declared are stopped.
func (c *Controller) reconcileEnv(ctx context.Context, m *manifest.Manifest) error {
	st := c.state(m.EnvName)
	st.workflow = m.DeployingWorkflowName
	var services, apps []string
	for _, name := range m.AppNames() {
		if isService(m.Apps[name]) {
			services = append(services, name)
		} else {
			apps = append(apps, name)
		}
	}
	var errs []error
	for _, name := range services {
		if err := c.reconcileService(ctx, st, name, m.Apps[name]); err != nil {
			// Apps cannot start without their database.
			return err
		}
	}
	for _, name := range apps {
		if err := c.reconcileApp(ctx, st, name, m.Apps[name]); err != nil {
			errs = append(errs, err)
		}
	}
	for name, as := range st.apps {
		if _, ok := m.Apps[name]; ok {
			continue
		}
		c.router.RemoveRoute(st.name, name)
		if as.version != "" {
			if err := c.rt.Stop(ctx, st.name, name, as.version); err != nil {
				errs = append(errs, err)
			}
		}
		delete(st.apps, name)
	}
	return errors.Join(errs...)
}

func (c *Controller) app(st *envState, name string) *appState {
	as, ok := st.apps[name]
	if !ok {
		as = &appState{reported: map[string]bool{}}
		st.apps[name] = as
	}
	return as
}

func (c *Controller) reconcileService(ctx context.Context, st *envState, name string, a *manifest.App) error {
	as := c.app(st, name)
	if err := c.rt.EnsurePostgres(ctx, st.name); err != nil {
		c.retryLater(ctx, st, name, as, err)
		return err
	}
	as.version, as.entry, as.transient = a.Version(), a, 0
	c.report(ctx, st, name, as, true, "postgres is up")
	return nil
}

// reportTransientAfter is how many passes in a row (1+2+4 s apart with the
// default backoff) a failure that is not the version's fault may last
// before it is reported as the deploy's failure.
const reportTransientAfter = 3

// retryLater records a failure that the next pass may not see again (the
// environment's, not the version's): it is reported only once it lasted
// reportTransientAfter passes.
func (c *Controller) retryLater(ctx context.Context, st *envState, name string, as *appState, err error) {
	as.transient++
	if as.transient >= reportTransientAfter {
		c.report(ctx, st, name, as, false, fmt.Sprintf("%v (%d attempts)", err, as.transient))
	}
}

// reconcileApp starts the declared version, or hands a new production
// version of a running app to a canary rollout.
func (c *Controller) reconcileApp(ctx context.Context, st *envState, name string, a *manifest.App) error {
	as := c.app(st, name)
	want := a.Version()
	if want == as.version || want == as.failed {
		return nil
	}
	if st.name == manifest.ProductionEnv && as.version == "" {
		if err := c.recoverStable(ctx, st, name, as, want); err != nil {
			return err
		}
	}
	if st.name == manifest.ProductionEnv && as.version != "" {
		return c.startRollout(ctx, st, name, as, a)
	}
	art, err := c.artifacts.Resolve(name, want, build.App)
	if err != nil {
		as.failed = want
		c.report(ctx, st, name, as, false, err.Error())
		return err
	}
	as.starting = want
	c.publish() // the replicas' health shows while they start
	backends, err := c.startReplicas(ctx, st.name, art, c.opts.HealthTimeout)
	as.starting = ""
	if errors.Is(err, errNotTheVersion) {
		// The next pass tries again; it is reported once it persists.
		err = fmt.Errorf("starting %s %s: %w", name, want, err)
		c.retryLater(ctx, st, name, as, err)
		return err
	}
	if err != nil {
		as.failed = want
		c.report(ctx, st, name, as, false, err.Error())
		return err
	}
	old := as.version
	if err := c.router.SetRoute(gateway.Route{Env: st.name, App: name, StableVersion: want, Stable: backends}); err != nil {
		return fmt.Errorf("routing %s: %w", name, err)
	}
	if old != "" {
		if err := c.rt.Stop(ctx, st.name, name, old); err != nil {
			c.log.Warn("stopping replaced version", "env", st.name, "app", name, "version", old, "err", err)
		}
	}
	as.version, as.entry, as.backends, as.failed, as.transient = want, a, backends, "", 0
	if st.name == manifest.ProductionEnv {
		c.rollouts.Settle(ctx, st.name, name, want)
	}
	c.log.Info("app deployed", "env", st.name, "app", name, "version", want, "url", c.URL(st.name, name))
	c.report(ctx, st, name, as, true, fmt.Sprintf("%s %s is healthy", name, want))
	return nil
}

// recoverStable handles a control plane that restarted while production
// was changing version. The rollout's checkpoint, if one is unfinished,
// says what was stable: that version is routed as stable again (started
// if it died meanwhile) and the manifest's version goes through a canary,
// resumed from the checkpoint when it is the same canary; nothing is
// promoted without analysis. A checkpoint that had passed every step makes
// its canary the stable version. Without a checkpoint, a manifest version
// already running is the stable one; otherwise the newest other version
// running is. A checkpoint that cannot be read stops the app's recovery
// for this pass.
func (c *Controller) recoverStable(ctx context.Context, st *envState, name string, as *appState, want string) error {
	running, err := c.rt.Versions(st.name, name)
	if err != nil {
		// Not knowing what runs is not "nothing runs": that would put
		// the manifest's version in production without a canary.
		return fmt.Errorf("recovering %s: %w", name, err)
	}
	cp, found, err := c.rollouts.Resumable(ctx, st.name, name)
	if err != nil {
		return fmt.Errorf("recovering %s: %w", name, err)
	}
	var stable string
	switch {
	case found && cp.Promoting && cp.Aborting == "":
		if cp.CanaryVersion == want {
			return nil // it was promoted: the manifest's version is stable
		}
		stable = cp.CanaryVersion
	case found:
		stable = cp.StableVersion
	case slices.Contains(running, want):
		return nil // no rollout was under way: want is stable, others are garbage
	default:
		for _, v := range running {
			if v != want {
				stable = v // versions sort by time: the newest other one
			}
		}
	}
	if stable == "" || stable == want {
		return nil
	}
	art, err := c.artifacts.Resolve(name, stable, build.App)
	if err != nil {
		return fmt.Errorf("recovering stable %s %s: %w", name, stable, err)
	}
	backends, err := c.startReplicas(ctx, st.name, art, c.opts.HealthTimeout)
	if err != nil {
		return fmt.Errorf("recovering stable %s %s: %w", name, stable, err)
	}
	if err := c.router.SetRoute(gateway.Route{Env: st.name, App: name, StableVersion: stable, Stable: backends}); err != nil {
		return fmt.Errorf("routing %s: %w", name, err)
	}
	// The entry written back to git if the canary is aborted; the
	// rollout's checkpoint has the full one, with its git revision.
	entry := &manifest.App{Images: manifest.Images{Code: manifest.Image{Image: "runway.local/" + name, Tag: stable}}}
	if found && cp.StableVersion == stable && cp.StableEntry != nil {
		entry = cp.StableEntry
	}
	as.version, as.entry, as.backends = stable, entry, backends
	c.log.Warn("restarted during a rollout: stable version recovered", "app", name, "stable", stable, "canary", want, "checkpoint", found)
	return nil
}

// errNotTheVersion marks a failure to start a version that is not the
// version's fault (its database could not be provided, say): the version is
// not marked failed and no failure is reported, so a later pass retries.
var errNotTheVersion = errors.New("retried on the next pass")

// startReplicas runs an artifact's replicas in env, with its database
// settings when it needs one.
func (c *Controller) startReplicas(ctx context.Context, env string, art build.Artifact, healthTimeout time.Duration) ([]gateway.Backend, error) {
	vars, err := c.appVars(ctx, env, art)
	if err != nil && !errors.Is(err, runtime.ErrUnsatisfiable) {
		return nil, fmt.Errorf("%w: %w", errNotTheVersion, err)
	}
	if err != nil {
		return nil, err
	}
	run := art.Spec.Run
	for k, v := range run.Env {
		vars = append(vars, k+"="+v)
	}
	readiness, liveness := run.Probes()
	replicas, err := c.rt.Start(ctx, runtime.ReplicaSet{
		Env: env, App: art.App, Version: art.Version, Dir: art.Dir, Command: run.Command,
		PortEnv: run.PortEnv, HealthPath: readiness.Path, Replicas: run.Replicas, Vars: vars,
		Readiness: readiness, Liveness: liveness,
		HealthTimeout: healthTimeout,
	})
	if err != nil {
		return nil, err
	}
	backends := make([]gateway.Backend, len(replicas))
	for i, r := range replicas {
		backends[i] = gateway.Backend{Addr: r.Addr}
	}
	return backends, nil
}

// appVars are the variables every process of an app gets in env.
func (c *Controller) appVars(ctx context.Context, env string, art build.Artifact) ([]string, error) {
	var vars []string
	for _, need := range art.Spec.Needs {
		if need != "postgres" {
			continue
		}
		db, err := c.rt.Database(ctx, env, art.App)
		if err != nil {
			return nil, err
		}
		vars = append(vars, db.Env()...)
	}
	return vars, nil
}

func (c *Controller) startRollout(ctx context.Context, st *envState, name string, as *appState, a *manifest.App) error {
	if s, ok := c.rollouts.Active(st.name, name); ok {
		if s.CanaryVersion != a.Version() {
			c.log.Warn("a rollout is in progress; the new version waits for it", "app", name, "rolling", s.CanaryVersion, "waiting", a.Version())
		}
		return nil
	}
	art, err := c.artifacts.Resolve(name, a.Version(), build.App)
	if err != nil {
		as.failed = a.Version()
		c.report(ctx, st, name, as, false, err.Error())
		return err
	}
	req := rollout.Request{
		Env: st.name, App: name, Workflow: st.workflow,
		StableVersion: as.version, Stable: as.backends, StableEntry: as.entry,
		CanaryVersion: a.Version(), Artifact: art,
		Target: &canaryTarget{c: c, st: st, name: name, art: art, entry: a},
	}
	return c.rollouts.Start(ctx, req)
}

// report sends an app's deploy report once per workflow.
func (c *Controller) report(ctx context.Context, st *envState, app string, as *appState, ok bool, msg string) {
	if st.workflow == "" || as.reported[st.workflow] {
		return
	}
	if c.opts.Redact != nil {
		msg = c.opts.Redact(msg) // a replica's log tail may print its DATABASE_URL
	}
	if err := c.reporter.Update(ctx, st.workflow, app, ok, msg); err != nil {
		c.log.Error("reporting", "workflow", st.workflow, "app", app, "err", err)
		return
	}
	as.reported[st.workflow] = true
}

// URL is an app's address in an environment: the gateway's listener of
// the app's route (http://127.0.0.1:PORT, which every client reaches as it
// is), or, for a gateway without one, its name on the shared listener.
func (c *Controller) URL(env, app string) string {
	if r, ok := c.router.Route(env, app); ok && r.Listen != "" {
		return "http://" + r.Listen
	}
	return c.HostURL(env, app)
}

// HostURL is an app's address in an environment by name on the gateway's
// shared listener: http://<app>.<env>.<domain>:PORT (production:
// http://<app>.<domain>:PORT). Clients that resolve *.localhost (browsers,
// curl) reach it as it is; others need the gateway's address to dial.
func (c *Controller) HostURL(env, app string) string {
	port := c.opts.GatewayAddr
	if i := strings.LastIndex(port, ":"); i >= 0 {
		port = port[i:]
	}
	return "http://" + c.router.Host(env, app) + port
}

// canaryTarget lets the rollout controller start and settle the canary's
// replicas, which this controller owns.
type canaryTarget struct {
	c     *Controller
	st    *envState
	name  string
	art   build.Artifact
	entry *manifest.App
}

// StartCanary starts the canary's replicas. A failure that is not the
// version's fault is tried again a few times before the rollout is told,
// since it would abort the rollout.
func (t *canaryTarget) StartCanary(ctx context.Context) ([]gateway.Backend, error) {
	wait := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		// The canary may take its progress deadline to become ready;
		// the rollout bounds ctx by it.
		backends, err := t.c.startReplicas(ctx, t.st.name, t.art, max(t.c.opts.HealthTimeout, t.art.Spec.ProgressDeadline()))
		if !errors.Is(err, errNotTheVersion) || attempt == canaryStartAttempts {
			return backends, err
		}
		t.c.log.Warn("starting the canary failed; retrying", "app", t.name, "version", t.art.Version, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return nil, errors.Join(err, ctx.Err())
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// canaryStartAttempts bounds StartCanary's retries: 0.5+1+2+4 s of waiting.
const canaryStartAttempts = 5

// Promoted makes the canary the stable version and stops the old one.
func (t *canaryTarget) Promoted(ctx context.Context, backends []gateway.Backend) error {
	t.c.pass.Lock()
	as := t.c.app(t.st, t.name)
	old := as.version
	as.version, as.entry, as.backends, as.failed = t.art.Version, t.entry, backends, ""
	t.c.publish()
	t.c.pass.Unlock()
	if old != "" && old != t.art.Version {
		return t.c.rt.Stop(ctx, t.st.name, t.name, old)
	}
	return nil
}

// CanaryStatus says how the canary's replicas are doing: the rollout
// aborts a canary that crash-loops or never becomes ready.
func (t *canaryTarget) CanaryStatus(context.Context) []runtime.ReplicaStatus {
	return t.c.rt.Status(t.st.name, t.name, t.art.Version)
}

// Aborted stops the canary's replicas and remembers the version as failed
// so the next pass does not start it again before git is reverted.
func (t *canaryTarget) Aborted(ctx context.Context) error {
	t.c.pass.Lock()
	t.c.app(t.st, t.name).failed = t.art.Version
	t.c.publish()
	t.c.pass.Unlock()
	return t.c.rt.Stop(ctx, t.st.name, t.name, t.art.Version)
}
