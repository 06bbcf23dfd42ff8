package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// errForgotten cuts short a start of an app that left the manifest.
var errForgotten = errors.New("the app left the manifest")

// reconcileForget takes down an app that left the production manifest:
// an unfinished rollout ended (its workflow told it was superseded), every
// version stopped, the route removed, the record cleared.
func (rc *rolloutContext) reconcileForget(ctx context.Context) (result, error) {
	rc.c.analyses.forget(rc.key)
	if rc.startRunning(errForgotten) {
		return result{}, nil // its end enqueues the key; then what it started is stopped
	}
	versions := []string{rc.record.StableVersion}
	rc.c.mu.Lock()
	if dep := rc.ks.deploying; dep != nil {
		versions = append(versions, dep.version) // its start may have left replicas
	}
	rc.c.mu.Unlock()
	if cp := rc.cp; cp != nil {
		versions = append(versions, cp.StableVersion, cp.CanaryVersion)
	}
	for i, v := range versions {
		if v == "" || slices.Contains(versions[:i], v) {
			continue
		}
		if err := rc.c.opts.Workloads.Stop(ctx, rc.env, rc.app, v); err != nil {
			if ctx.Err() != nil {
				return result{}, ctx.Err()
			}
			return result{}, fmt.Errorf("stopping %s %s: %w", rc.key, v, err)
		}
	}
	rc.c.opts.Router.RemoveRoute(rc.env, rc.app)
	msg := fmt.Sprintf("superseded: %s left the %s manifest", rc.app, rc.env)
	if err := rc.supersedeDeploy(ctx, "", msg); err != nil {
		return backoff(), nil
	}
	if cp := rc.cp; cp != nil {
		if !cp.Reported {
			if err := rc.reportSuperseded(ctx, cp.Workflow, msg); err != nil {
				return backoff(), nil
			}
			cp.Reported = true
		}
		rc.endRuns(Outcome{Phase: Error, Reason: "stopped before it ended: " + msg})
		cp.Phase, cp.Weight, cp.Message, cp.Superseded, cp.Finished = Degraded, 0, msg, msg, rc.c.clock.Now().UTC()
		if err := rc.save(ctx); err != nil {
			return result{}, err
		}
		rc.setEnded(cp.CanaryVersion, cp.Workflow)
		rc.normal("Superseded", msg)
		rc.cp = nil
	}
	if rc.record.StableVersion != "" {
		if err := rc.saveRecord(ctx, AppRecord{}); err != nil {
			return result{}, err
		}
	}
	rc.log.Info("app removed from production", "versions", versions)
	return result{}, nil
}
