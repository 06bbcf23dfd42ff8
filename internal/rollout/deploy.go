package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/workload"
)

// startAttemptsReported is after how many starts of a first version that
// failed for a reason not the version's fault the failure is reported
// (they go on, with the queue's backoff).
const startAttemptsReported = 5

// reconcileFirstDeploy starts an app's first version as its stable one,
// without a canary (Argo Rollouts does the same for a new Rollout):
// replicas started (running ones adopted: an older Runway may have started
// them), routed, recorded, reported.
func (rc *rolloutContext) reconcileFirstDeploy(ctx context.Context) (result, error) {
	d := rc.desired
	if rc.judged(d) {
		return result{}, nil
	}
	rc.starting = d.Version
	rc.publish() // the collector of unwanted versions keeps it
	backends, err := rc.c.opts.Workloads.Start(ctx, rc.env, d.Artifact, rc.c.opts.HealthTimeout)
	if ctx.Err() != nil {
		return result{}, nil // shutting down: not a verdict
	}
	if errors.Is(err, workload.ErrRetry) {
		rc.c.mu.Lock()
		rc.ks.startFails++
		n := rc.ks.startFails
		rc.c.mu.Unlock()
		rc.log.Warn("starting the first version failed; retrying", "version", d.Version, "attempt", n, "err", err)
		if n == startAttemptsReported {
			rc.report(ctx, d.Workflow, false, fmt.Sprintf("%v (%d attempts)", err, n))
		}
		return backoff(), nil
	}
	if err != nil {
		rc.log.Error("starting the first version failed", "version", d.Version, "err", err)
		rc.report(ctx, d.Workflow, false, err.Error())
		rc.setEnded(d.Version, d.Workflow)
		return result{}, nil
	}
	if err := rc.c.opts.Router.SetRoute(rc.stableRoute(d.Version, backends)); err != nil {
		return result{}, fmt.Errorf("routing %s: %w", rc.key, err)
	}
	if err := rc.saveRecord(ctx, d.Version, d.Entry); err != nil {
		return result{}, err
	}
	rc.c.mu.Lock()
	rc.ks.startFails = 0
	rc.c.mu.Unlock()
	msg := fmt.Sprintf("%s %s is healthy", rc.app, d.Version)
	rc.log.Info("first version deployed", "version", d.Version)
	rc.report(ctx, d.Workflow, true, msg)
	rc.normal("Deployed", msg)
	return result{}, nil
}

// reconcileStable keeps the stable version routed when no rollout runs (a
// gateway that restarted without its routes, a canary route left over).
func (rc *rolloutContext) reconcileStable(ctx context.Context) (result, error) {
	stable := rc.record.StableVersion
	if r, ok := rc.c.opts.Router.Route(rc.env, rc.app); ok && r.StableVersion == stable && r.CanaryVersion == "" && len(r.Stable) > 0 {
		return result{}, nil
	}
	backends, err := rc.backends(ctx, stable)
	if err != nil {
		return result{}, err
	}
	if err := rc.c.opts.Router.SetRoute(rc.stableRoute(stable, backends)); err != nil {
		return result{}, fmt.Errorf("routing %s: %w", rc.key, err)
	}
	rc.log.Info("stable version routed again", "version", stable)
	return result{}, nil
}

// stableRoute routes all of the app's traffic to version.
func (rc *rolloutContext) stableRoute(version string, backends []gateway.Backend) gateway.Route {
	return gateway.Route{Env: rc.env, App: rc.app, StableVersion: version, Stable: backends}
}

// backends returns the replicas of version to route to: those the route
// has, else the ready ones the runtime knows, else (the data plane lost
// them) those of a start, adopting any that run.
func (rc *rolloutContext) backends(ctx context.Context, version string) ([]gateway.Backend, error) {
	if r, ok := rc.c.opts.Router.Route(rc.env, rc.app); ok {
		if r.StableVersion == version && len(r.Stable) > 0 {
			return slices.Clone(r.Stable), nil
		}
		if r.CanaryVersion == version && len(r.Canary) > 0 {
			return slices.Clone(r.Canary), nil
		}
	}
	var ready []gateway.Backend
	for _, rs := range rc.c.opts.Workloads.Status(rc.env, rc.app, version) {
		if rs.Ready && rs.Addr != "" {
			ready = append(ready, gateway.Backend{Addr: rs.Addr})
		}
	}
	if len(ready) > 0 {
		return ready, nil
	}
	art, err := rc.artifact(version)
	if err != nil {
		return nil, err
	}
	backends, err := rc.c.opts.Workloads.Start(ctx, rc.env, art, rc.c.opts.HealthTimeout)
	if err != nil {
		return nil, fmt.Errorf("starting %s %s again: %w", rc.app, version, err)
	}
	return backends, nil
}

// artifact finds version's artifact: the desired one's, or the store's.
func (rc *rolloutContext) artifact(version string) (build.Artifact, error) {
	if d := rc.desired; d != nil && d.Version == version {
		return d.Artifact, nil
	}
	if rc.c.opts.Artifacts == nil {
		return build.Artifact{}, fmt.Errorf("no replica of %s %s is ready, and its artifact is not known", rc.app, version)
	}
	art, err := rc.c.opts.Artifacts.Resolve(rc.app, version, build.App)
	if err != nil {
		return build.Artifact{}, fmt.Errorf("no replica of %s %s is ready: %w", rc.app, version, err)
	}
	return art, nil
}
