package rollout

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/workload"
)

// canaryStartAttempts bounds the starts of a canary that fail for a reason
// that is not the version's fault (workload.ErrRetry) before the rollout
// is aborted; the queue's backoff waits 0.5+1+2+4 s between them.
const canaryStartAttempts = 5

// errAborted carries the reason a rollout must be aborted.
type errAborted struct{ reason string }

func (e *errAborted) Error() string { return e.reason }

// startRollout begins the rollout of the desired version over the stable
// one: its checkpoint is the rollout's existence.
func (rc *rolloutContext) startRollout(ctx context.Context) (result, error) {
	d := rc.desired
	steps := 0
	if s := d.Artifact.Spec; s != nil && s.Strategy.Canary != nil {
		steps = len(s.Strategy.Canary.Steps)
	}
	rc.cp = &Checkpoint{
		Status: Status{
			Env: rc.env, App: rc.app, StableVersion: rc.record.StableVersion, CanaryVersion: d.Version,
			Phase: Progressing, Steps: steps, Started: rc.c.clock.Now().UTC(), Message: "starting canary replicas",
		},
		Workflow: d.Workflow, StableEntry: rc.record.StableEntry, CanaryEntry: d.Entry,
	}
	rc.loaded = Checkpoint{}
	if err := rc.save(ctx); err != nil {
		return result{}, err
	}
	rc.c.mu.Lock()
	rc.ks.watch, rc.ks.startFails = nil, 0
	rc.c.mu.Unlock()
	rc.log.Info("rollout started", "canary", d.Version, "stable", rc.record.StableVersion, "steps", steps)
	rc.normal("Started", fmt.Sprintf("canary %s over %s", d.Version, rc.record.StableVersion))
	return requeueNow(), nil
}

// reconcileProgress takes a progressing rollout one action on: the canary
// started and routed, its health judged, then the background analysis and
// the current step.
func (rc *rolloutContext) reconcileProgress(ctx context.Context) (result, error) {
	if res, acted, err := rc.reconcileTrafficRouting(ctx); acted || err != nil {
		return res, err
	}
	if reason := rc.checkCanaryHealth(); reason != "" {
		return rc.abort(ctx, reason)
	}
	if rc.cp.Full {
		rc.log.Info("full promote: remaining steps skipped", "canary", rc.cp.CanaryVersion)
		return rc.beginPromotion(ctx, "full promote: remaining steps skipped")
	}
	if res, acted, err := rc.reconcileBackgroundAnalysis(ctx); acted || err != nil {
		return res, err
	}
	if rc.cp.Step >= len(rc.steps()) {
		return rc.beginPromotion(ctx, "every step passed")
	}
	return rc.reconcileStep(ctx)
}

// checkAgain requeues a rollout that waits (a pause, an analysis run) so
// its canary's health is looked at again, and no later than d if d > 0.
func (rc *rolloutContext) checkAgain(d time.Duration) result {
	check := rc.c.opts.CanaryCheck
	if d > 0 && d < check {
		check = d
	}
	return requeueAfter(check)
}

// reconcileTrafficRouting makes the gateway route the rollout as its
// checkpoint says: the canary started (when its route is missing) and
// routed beside stable at the stored weight. acted reports that the pass
// did its one action.
func (rc *rolloutContext) reconcileTrafficRouting(ctx context.Context) (res result, acted bool, err error) {
	cp := rc.cp
	route, ok := rc.c.opts.Router.Route(rc.env, rc.app)
	if !ok || route.CanaryVersion != cp.CanaryVersion || len(route.Canary) == 0 {
		res, err := rc.startCanary(ctx)
		return res, true, err
	}
	if route.StableVersion == cp.StableVersion && route.CanaryWeight == cp.Weight {
		return result{}, false, nil
	}
	stable, err := rc.backends(ctx, cp.StableVersion)
	if err != nil {
		return result{}, true, err
	}
	if err := rc.c.opts.Router.SetRoute(rc.route(stable, route.Canary, cp.Weight)); err != nil {
		return result{}, true, fmt.Errorf("routing the canary of %s: %w", rc.key, err)
	}
	return requeueNow(), true, nil
}

// route is the rollout's route: stable and canary at weight.
func (rc *rolloutContext) route(stable, canary []gateway.Backend, weight int) gateway.Route {
	return gateway.Route{
		Env: rc.env, App: rc.app, StableVersion: rc.cp.StableVersion, Stable: stable,
		CanaryVersion: rc.cp.CanaryVersion, Canary: canary, CanaryWeight: weight,
	}
}

// startCanary starts the canary's replicas (adopting running ones) within
// the spec's progress deadline, its health watched meanwhile, and routes it
// at the stored weight (0 for a new rollout).
func (rc *rolloutContext) startCanary(ctx context.Context) (result, error) {
	cp := rc.cp
	deadline := rc.spec().ProgressDeadline()
	art, timeout := rc.desired.Artifact, max(rc.c.opts.HealthTimeout, deadline)
	st, ended := rc.startReplicas(cp.CanaryVersion, func(ctx context.Context, cancel context.CancelCauseFunc) ([]gateway.Backend, error) {
		stopWatch := rc.watchStart(ctx, cancel, deadline)
		defer stopWatch()
		return rc.c.opts.Workloads.Start(ctx, rc.env, art, timeout)
	})
	if !ended {
		return result{}, nil // the start's end enqueues the key
	}
	if rc.runCtx.Err() != nil {
		return result{}, nil // shutting down: not a verdict
	}
	var ab *errAborted
	if errors.As(st.cause, &ab) {
		return rc.abort(ctx, ab.reason) // the deadline, or the watch
	}
	if st.cause != nil {
		// Cut short by an abort request or a newer version: the next
		// pass acts on it.
		return requeueNow(), nil
	}
	canary, err := st.backends, st.err
	if errors.Is(err, workload.ErrRetry) {
		n := rc.startFailed()
		if n < canaryStartAttempts {
			rc.log.Warn("starting the canary failed; retrying", "canary", cp.CanaryVersion, "attempt", n, "err", err)
			return backoff(), nil
		}
		return rc.abort(ctx, fmt.Sprintf("canary %s did not start: %v (%d attempts)", cp.CanaryVersion, err, n))
	}
	if err != nil {
		return rc.abort(ctx, fmt.Sprintf("canary %s did not start: %v", cp.CanaryVersion, err))
	}
	rc.c.mu.Lock()
	rc.ks.startFails = 0
	rc.c.mu.Unlock()
	stable, err := rc.backends(ctx, cp.StableVersion)
	if err != nil {
		return result{}, err
	}
	if err := rc.c.opts.Router.SetRoute(rc.route(stable, canary, cp.Weight)); err != nil {
		return result{}, fmt.Errorf("routing the canary of %s: %w", rc.key, err)
	}
	if cp.Step == 0 && cp.Weight == 0 {
		cp.Message = fmt.Sprintf("canary %s ready", cp.CanaryVersion)
	} else {
		cp.Message = fmt.Sprintf("canary %s routed again at step %d/%d, weight %d%%", cp.CanaryVersion, cp.Step+1, cp.Steps, cp.Weight)
	}
	if err := rc.save(ctx); err != nil {
		return result{}, err
	}
	rc.log.Info("canary routed", "canary", cp.CanaryVersion, "weight", cp.Weight)
	return requeueNow(), nil
}

// reconcileStep runs the current step.
func (rc *rolloutContext) reconcileStep(ctx context.Context) (result, error) {
	cp := rc.cp
	steps := rc.steps()
	i := cp.Step
	step := steps[i]
	switch {
	case step.SetWeight != nil:
		w := *step.SetWeight
		if err := rc.c.opts.Router.SetCanaryWeight(rc.env, rc.app, w); err != nil {
			return result{}, fmt.Errorf("setting the canary weight of %s to %d: %w", rc.key, w, err)
		}
		cp.Weight = w
		cp.Message = fmt.Sprintf("step %d/%d: weight %d%%", i+1, len(steps), w)
		rc.log.Info("canary weight set", "canary", cp.CanaryVersion, "weight", w, "step", i+1)
		return rc.completeStep(ctx)
	case step.Pause != nil:
		return rc.reconcileCanaryPause(ctx, i, step.Pause)
	case step.Analysis != nil:
		return rc.reconcileStepAnalysis(ctx, i, step.Analysis)
	}
	return rc.completeStep(ctx)
}

// completeStep moves the rollout to its next step.
func (rc *rolloutContext) completeStep(ctx context.Context) (result, error) {
	cp := rc.cp
	cp.Step++
	cp.PauseStarted, cp.PauseKind, cp.StepRun, cp.Phase = time.Time{}, "", "", Progressing
	if cp.PromoteAt <= cp.Step {
		cp.PromoteAt = 0 // it was for the step just done
	}
	if cp.RetryAt <= cp.Step {
		cp.RetryAt = 0
	}
	if err := rc.save(ctx); err != nil {
		return result{}, err
	}
	rc.normal("StepCompleted", fmt.Sprintf("step %d/%d", cp.Step, cp.Steps))
	return requeueNow(), nil
}

// beginPromotion records that the canary is to become stable; the
// analysis runs still going are terminated (Argo's terminate: they end
// Successful unless they failed).
func (rc *rolloutContext) beginPromotion(ctx context.Context, why string) (result, error) {
	cp := rc.cp
	cp.Promoting, cp.PauseKind, cp.Phase = true, "", Progressing
	cp.Message = "promoting: " + why
	rc.c.analyses.stop(rc.key, analysis.ErrTerminated)
	if err := rc.save(ctx); err != nil {
		return result{}, err
	}
	return requeueNow(), nil
}
