package rollout

import (
	"context"
	"fmt"

	"github.com/runway-cd/runway/internal/analysis"
)

// reconcilePromotion takes a promotion one step on, each step once and in
// this order, so that a kill at any point resumes correctly: all traffic to
// the canary, the canary routed as the stable version, the app record
// saved (the one place that says what runs in production), the old stable
// version stopped, success reported, the rollout finished.
func (rc *rolloutContext) reconcilePromotion(ctx context.Context) (result, error) {
	cp := rc.cp
	rc.c.analyses.stop(rc.key, analysis.ErrTerminated)
	promoted := rc.record.StableVersion == cp.CanaryVersion
	route, ok := rc.c.opts.Router.Route(rc.env, rc.app)
	routedStable := ok && route.StableVersion == cp.CanaryVersion && route.CanaryVersion == "" && len(route.Stable) > 0
	if !routedStable {
		if !promoted && cp.Weight != 100 {
			return rc.promoteWeight(ctx)
		}
		canary, err := rc.backends(ctx, cp.CanaryVersion)
		if err != nil {
			return result{}, fmt.Errorf("promoting %s: %w", rc.key, err)
		}
		if err := rc.c.opts.Router.SetRoute(rc.stableRoute(cp.CanaryVersion, canary)); err != nil {
			return result{}, fmt.Errorf("routing %s %s as stable: %w", rc.key, cp.CanaryVersion, err)
		}
		rc.log.Info("canary routed as stable", "version", cp.CanaryVersion)
		return requeueNow(), nil
	}
	if !promoted {
		// The manifest's entry now (edited by hand since the rollout
		// began, say), else the one the rollout began with.
		entry := cp.CanaryEntry
		if rc.canaryKnown() && rc.desired.Entry != nil {
			entry = rc.desired.Entry
		}
		if err := rc.saveRecord(ctx, AppRecord{StableVersion: cp.CanaryVersion, StableEntry: entry}); err != nil {
			return result{}, err
		}
		return requeueNow(), nil
	}
	if !cp.StableStopped {
		if cp.StableVersion != "" && cp.StableVersion != cp.CanaryVersion {
			if err := rc.c.opts.Workloads.Stop(ctx, rc.env, rc.app, cp.StableVersion); err != nil {
				if ctx.Err() != nil {
					return result{}, ctx.Err()
				}
				rc.log.Error("stopping the old stable version", "version", cp.StableVersion, "err", err)
			}
		}
		cp.StableStopped = true
		return rc.saveAndRequeue(ctx)
	}
	msg := fmt.Sprintf("%s %s promoted after %d steps", rc.app, cp.CanaryVersion, cp.Steps)
	if !cp.Reported {
		if err := rc.report(ctx, cp.Workflow, true, msg); err != nil {
			return backoff(), nil // sent again, after a restart too
		}
		cp.Reported = true
		return rc.saveAndRequeue(ctx)
	}
	rc.endRuns(Outcome{Phase: Successful, Reason: "terminated at promotion"})
	cp.Phase, cp.Weight, cp.Step, cp.Message, cp.Finished = Healthy, 100, cp.Steps, msg, rc.c.clock.Now().UTC()
	if err := rc.save(ctx); err != nil {
		return result{}, err
	}
	rc.setEnded(cp.CanaryVersion, cp.Workflow)
	rc.c.analyses.forget(rc.key)
	rc.log.Info("rollout complete", "version", cp.CanaryVersion)
	rc.normal(ReasonPromoted, msg)
	return result{}, nil
}

// promoteWeight sends all traffic to the canary, its route made again
// first if the gateway lost it.
func (rc *rolloutContext) promoteWeight(ctx context.Context) (result, error) {
	cp := rc.cp
	route, ok := rc.c.opts.Router.Route(rc.env, rc.app)
	if !ok || route.CanaryVersion != cp.CanaryVersion || len(route.Canary) == 0 || route.StableVersion != cp.StableVersion {
		stable, err := rc.backends(ctx, cp.StableVersion)
		if err != nil {
			return result{}, fmt.Errorf("promoting %s: %w", rc.key, err)
		}
		canary, err := rc.backends(ctx, cp.CanaryVersion)
		if err != nil {
			return result{}, fmt.Errorf("promoting %s: %w", rc.key, err)
		}
		if err := rc.c.opts.Router.SetRoute(rc.route(stable, canary, cp.Weight)); err != nil {
			return result{}, fmt.Errorf("routing the canary of %s: %w", rc.key, err)
		}
	}
	if err := rc.c.opts.Router.SetCanaryWeight(rc.env, rc.app, 100); err != nil {
		return result{}, fmt.Errorf("setting the canary weight of %s to 100: %w", rc.key, err)
	}
	cp.Weight = 100
	cp.Message = fmt.Sprintf("promoting %s: weight 100%%", cp.CanaryVersion)
	return rc.saveAndRequeue(ctx)
}
