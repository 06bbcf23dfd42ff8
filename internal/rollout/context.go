package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/events"
)

// rolloutContext is one pass over one app: what it loaded, built once per
// pass (Argo Rollouts' rolloutContext).
type rolloutContext struct {
	c   *Controller
	ks  *keyState
	key string
	env string
	app string
	log *slog.Logger

	desired   *Desired // nil: none handed over since the start
	forgotten bool
	record    AppRecord // StableVersion "": none
	// cp is the app's unfinished rollout, nil if none; loaded is cp as
	// the store had it when loaded or last saved.
	cp     *Checkpoint
	loaded Checkpoint
	// starting is a version the pass is starting outside a rollout (a
	// first deploy): wanted while it starts.
	starting string
	// launch starts an analysis run under the controller's context (a
	// run outlives the pass that starts it).
	launch func(req AnalysisRequest)
	// runCtx is the controller's context, which a start of replicas
	// runs under (startReplicas).
	runCtx context.Context
}

// The causes a pass's I/O is cancelled with from outside: an abort
// request, or a new desired version (a canary start must not hold up its
// supersession). The pass is requeued and the next one acts on the news;
// every action is idempotent, so one cut short is done again.
var (
	errAbortRequested = errors.New("abort requested")
	errDesiredChanged = errors.New("desired version changed")
)

// reconcile runs one pass over key.
func (c *Controller) reconcile(ctx context.Context, k string) (result, error) {
	env, app := splitKey(k)
	passCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	c.mu.Lock()
	ks := c.state(k)
	ks.cancel = cancel
	rc := &rolloutContext{
		c: c, ks: ks, key: k, env: env, app: app, log: c.log.With("env", env, "app", app),
		desired: ks.desired, forgotten: ks.forgotten,
		launch: func(req AnalysisRequest) { c.analyses.launch(ctx, k, req) },
		runCtx: ctx,
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		ks.cancel = nil
		c.mu.Unlock()
	}()
	if err := rc.load(passCtx); err != nil {
		return result{}, err
	}
	res, err := rc.reconcile(passCtx)
	rc.publish()
	if cause := context.Cause(passCtx); (errors.Is(cause, errAbortRequested) || errors.Is(cause, errDesiredChanged)) && ctx.Err() == nil {
		return requeueNow(), nil
	}
	return res, err
}

// load reads the app's record and unfinished rollout.
func (rc *rolloutContext) load(ctx context.Context) error {
	rec, err := rc.c.opts.Store.GetApp(ctx, rc.env, rc.app)
	switch {
	case errors.Is(err, ErrAppNotFound):
		rec = AppRecord{Env: rc.env, App: rc.app}
	case err != nil:
		return fmt.Errorf("loading the record of %s: %w", rc.key, err)
	}
	rc.record = rec
	cps, err := rc.c.opts.Store.UnfinishedRollouts(ctx, rc.env, rc.app)
	if err != nil {
		return fmt.Errorf("loading the rollouts of %s: %w", rc.key, err)
	}
	if len(cps) == 0 {
		return nil
	}
	// One rollout runs at a time per app; an older Runway could leave
	// several unfinished. All but the newest were overtaken by it.
	for _, old := range cps[:len(cps)-1] {
		if err := rc.endOvertaken(ctx, old, cps[len(cps)-1]); err != nil {
			return err
		}
	}
	cp := cps[len(cps)-1].clone()
	rc.cp, rc.loaded = &cp, cp.clone()
	return nil
}

// endOvertaken ends a rollout an older Runway left unfinished under a
// newer one: promoted if its canary became the stable version, otherwise
// superseded. Its workflow is told first, so that a report the reporter
// did not take is sent again by the next pass.
func (rc *rolloutContext) endOvertaken(ctx context.Context, old, newer Checkpoint) error {
	old.Finished = rc.c.clock.Now().UTC()
	promoted := old.Promoting && old.Aborting == "" && old.CanaryVersion == newer.StableVersion
	if promoted {
		old.Phase, old.Weight, old.Step = Healthy, 100, old.Steps
		old.Message = fmt.Sprintf("%s %s promoted (recorded after a restart)", rc.app, old.CanaryVersion)
	} else {
		old.Phase = Degraded
		old.Message = fmt.Sprintf("superseded: %s %s now rolls out over %s", rc.app, newer.CanaryVersion, newer.StableVersion)
	}
	if !old.Reported {
		var err error
		if promoted {
			err = rc.report(ctx, old.Workflow, true, old.Message)
		} else {
			err = rc.reportSuperseded(ctx, old.Workflow, old.Message)
		}
		if err != nil {
			return fmt.Errorf("ending the overtaken rollout of %s %s: %w", rc.key, old.CanaryVersion, err)
		}
		old.Reported = true
	}
	if err := rc.c.opts.Store.SaveRollout(context.WithoutCancel(ctx), old); err != nil {
		return fmt.Errorf("ending the overtaken rollout of %s %s: %w", rc.key, old.CanaryVersion, err)
	}
	rc.c.remember(old.Status)
	return nil
}

// save writes the rollout's checkpoint, keeping the requests that commands
// wrote since this pass loaded it.
func (rc *rolloutContext) save(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx) // what was done is recorded, abort or not
	rc.ks.storeMu.Lock()
	defer rc.ks.storeMu.Unlock()
	cps, err := rc.c.opts.Store.UnfinishedRollouts(ctx, rc.env, rc.app)
	if err != nil {
		return fmt.Errorf("saving the rollout of %s %s: %w", rc.key, rc.cp.CanaryVersion, err)
	}
	if i := slices.IndexFunc(cps, func(s Checkpoint) bool { return s.CanaryVersion == rc.cp.CanaryVersion }); i >= 0 {
		mergeCommands(rc.cp, rc.loaded, cps[i])
	}
	if err := rc.c.opts.Store.SaveRollout(ctx, *rc.cp); err != nil {
		return fmt.Errorf("saving the rollout of %s %s: %w", rc.key, rc.cp.CanaryVersion, err)
	}
	rc.loaded = rc.cp.clone()
	rc.publish()
	rc.c.remember(rc.cp.Status)
	return nil
}

// saveRecord writes the app's record: rec.StableVersion (with its
// manifest entry) is what runs in production.
func (rc *rolloutContext) saveRecord(ctx context.Context, rec AppRecord) error {
	rec.Env, rec.App, rec.Updated = rc.env, rc.app, rc.c.clock.Now().UTC()
	if err := rc.c.opts.Store.SaveApp(context.WithoutCancel(ctx), rec); err != nil {
		return fmt.Errorf("saving the record of %s: %w", rc.key, err)
	}
	rc.record = rec
	rc.publish()
	return nil
}

// publish makes what the pass found visible to Wanted and Stable.
func (rc *rolloutContext) publish() {
	var wanted []string
	add := func(v string) {
		if v != "" && !slices.Contains(wanted, v) {
			wanted = append(wanted, v)
		}
	}
	add(rc.record.StableVersion)
	add(rc.starting)
	if rc.cp != nil && !rc.cp.Done() {
		add(rc.cp.StableVersion)
		add(rc.cp.CanaryVersion)
	}
	rc.c.mu.Lock()
	defer rc.c.mu.Unlock()
	if st := rc.ks.start; st != nil && !st.done {
		add(st.version)
	}
	rc.ks.known, rc.ks.stable, rc.ks.wanted = true, rc.record.StableVersion, wanted
}

// event records an event of the app's rollout.
func (rc *rolloutContext) event(typ, reason, msg string) {
	rc.c.event(rc.env, rc.app, typ, reason, msg)
}

func (rc *rolloutContext) normal(reason, msg string)  { rc.event(events.Normal, reason, msg) }
func (rc *rolloutContext) warning(reason, msg string) { rc.event(events.Warning, reason, msg) }

// canaryKnown reports whether the canary's artifact is known: the desired
// version is the canary's while the rollout progresses.
func (rc *rolloutContext) canaryKnown() bool {
	return rc.desired != nil && rc.cp != nil && rc.desired.Version == rc.cp.CanaryVersion
}

// spec is the canary's app spec (call only when canaryKnown).
func (rc *rolloutContext) spec() *appspec.Spec {
	if s := rc.desired.Artifact.Spec; s != nil {
		return s
	}
	return &appspec.Spec{}
}

// canary is the canary's strategy, nil if the spec has none.
func (rc *rolloutContext) canary() *appspec.Canary {
	return rc.spec().Strategy.Canary
}

// steps are the canary's steps.
func (rc *rolloutContext) steps() []appspec.Step {
	if cn := rc.canary(); cn != nil {
		return cn.Steps
	}
	return nil
}

// judged reports whether d is the change of the app's last ended rollout
// (or failed first deploy): it is not rolled out again.
func (rc *rolloutContext) judged(d *Desired) bool {
	rc.c.mu.Lock()
	defer rc.c.mu.Unlock()
	return rc.ks.ended == ended{d.Version, d.Workflow}
}

func (rc *rolloutContext) clearEnded() {
	rc.c.mu.Lock()
	defer rc.c.mu.Unlock()
	rc.ks.ended = ended{}
}

func (rc *rolloutContext) setEnded(version, workflow string) {
	rc.c.mu.Lock()
	defer rc.c.mu.Unlock()
	rc.ks.ended = ended{version, workflow}
	rc.ks.watch = nil
	rc.ks.startFails = 0
}

// reconcile is the pass: one action, chosen from what was loaded.
func (rc *rolloutContext) reconcile(ctx context.Context) (result, error) {
	if rc.record.StableVersion != "" && rc.record.Workflow != "" && !rc.record.Reported {
		// A first deploy recorded but not reported (a pass was killed
		// in between, or the reporter did not take it).
		return rc.reportDeployed(ctx)
	}
	if rc.forgotten {
		return rc.reconcileForget(ctx)
	}
	if rc.record.StableVersion == "" && rc.cp != nil {
		// Upgraded from a Runway that kept no app records: the
		// rollout's stable version is the app's.
		if err := rc.saveRecord(ctx, AppRecord{StableVersion: rc.cp.StableVersion, StableEntry: rc.cp.StableEntry}); err != nil {
			return result{}, err
		}
	}
	switch {
	case rc.cp != nil:
		return rc.reconcileRollout(ctx)
	case rc.desired == nil:
		return result{}, nil // nothing handed over yet
	case rc.record.StableVersion == "":
		return rc.reconcileFirstDeploy(ctx)
	case rc.desired.Version == rc.record.StableVersion:
		// The manifest is on the stable version: a version that ended
		// before (an aborted canary whose revert it now shows) may be
		// declared again, and is then rolled out again.
		rc.clearEnded()
		return rc.reconcileStable(ctx)
	case rc.judged(rc.desired):
		return result{}, nil
	}
	return rc.startRollout(ctx)
}

// reconcileRollout moves the unfinished rollout one action on.
func (rc *rolloutContext) reconcileRollout(ctx context.Context) (result, error) {
	cp := rc.cp
	if rc.record.StableVersion == cp.CanaryVersion && !cp.Promoting {
		// The record says the canary was made stable: a pass was
		// killed after that; the promotion is finished.
		cp.Promoting, cp.Aborting, cp.Superseded = true, "", ""
	}
	switch {
	case cp.ending():
		return rc.reconcileEnding(ctx)
	case cp.Promoting:
		return rc.reconcilePromotion(ctx)
	}
	if d := rc.desired; d != nil {
		switch d.Version {
		case cp.CanaryVersion:
		case cp.StableVersion:
			// The manifest went back to stable (by hand): there is
			// nothing to revert.
			cp.Reverted = true
			return rc.abort(ctx, fmt.Sprintf("the production manifest is back on %s %s", rc.app, cp.StableVersion))
		default:
			return rc.supersede(ctx, d)
		}
	}
	if !rc.canaryKnown() {
		// After a restart, before the environment controller handed
		// over the canary's artifact: SetDesired enqueues the key.
		return result{}, nil
	}
	return rc.reconcileProgress(ctx)
}
