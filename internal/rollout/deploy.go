package rollout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/workload"
)

// startAttemptsReported is after how many starts of a first version that
// failed for a reason not the version's fault (the queue's backoff waits
// 0.5+1+2+4 s between them) the first deploy is given up: its failure
// reported, as a failure that is the version's fault is at once, and the
// version not started again for the same change (a canary is aborted
// after as many, canaryStartAttempts).
const startAttemptsReported = 5

// firstDeploy is a first deploy of an app under way (started, not yet
// deployed nor given up): told it was superseded if a newer version
// overtakes it.
type firstDeploy struct{ version, workflow string }

// unsentReport is the failure of a first deploy given up that the
// reporter did not take: a later pass sends it again.
type unsentReport struct{ workflow, msg string }

// reconcileFirstDeploy starts an app's first version as its stable one,
// without a canary (Argo Rollouts does the same for a new Rollout):
// replicas started (running ones adopted: an older Runway may have started
// them), routed, recorded, reported.
func (rc *rolloutContext) reconcileFirstDeploy(ctx context.Context) (result, error) {
	d := rc.desired
	if err := rc.sendUnsent(ctx); err != nil {
		return backoff(), nil
	}
	if err := rc.supersedeDeploy(ctx, d.Version, fmt.Sprintf("superseded: %s %s is deployed in its place", rc.app, d.Version)); err != nil {
		return backoff(), nil
	}
	if rc.judged(d) {
		return result{}, nil
	}
	rc.c.mu.Lock()
	rc.ks.deploying = &firstDeploy{d.Version, d.Workflow}
	rc.c.mu.Unlock()
	rc.starting = d.Version // the collector of unwanted versions keeps it
	art, timeout := d.Artifact, rc.c.opts.HealthTimeout
	st, ended := rc.startReplicas(d.Version, func(ctx context.Context, _ context.CancelCauseFunc) ([]gateway.Backend, error) {
		return rc.c.opts.Workloads.Start(ctx, rc.env, art, timeout)
	})
	switch {
	case !ended:
		rc.publish()
		return result{}, nil // the start's end enqueues the key
	case rc.runCtx.Err() != nil:
		return result{}, nil // shutting down: not a verdict
	case st.cause != nil:
		// Cut short by a newer version: the next pass tells this
		// one's workflow it was superseded.
		return requeueNow(), nil
	}
	backends, err := st.backends, st.err
	if errors.Is(err, workload.ErrRetry) {
		n := rc.startFailed()
		if n < startAttemptsReported {
			rc.log.Warn("starting the first version failed; retrying", "version", d.Version, "attempt", n, "err", err)
			return backoff(), nil
		}
		return rc.failFirstDeploy(ctx, d, fmt.Sprintf("%v (%d attempts)", err, n))
	}
	if err != nil {
		return rc.failFirstDeploy(ctx, d, err.Error())
	}
	if err := rc.c.opts.Router.SetRoute(rc.stableRoute(d.Version, backends)); err != nil {
		return result{}, fmt.Errorf("routing %s: %w", rc.key, err)
	}
	// The record keeps the workflow until it is told: a restart from
	// here on reports the deploy (reportDeployed).
	if err := rc.saveRecord(ctx, AppRecord{StableVersion: d.Version, StableEntry: d.Entry, Workflow: d.Workflow, Reported: d.Workflow == ""}); err != nil {
		return result{}, err
	}
	rc.c.mu.Lock()
	rc.ks.startFails, rc.ks.deploying = 0, nil
	rc.c.mu.Unlock()
	return rc.reportDeployed(ctx)
}

// reportDeployed reports the app's first version (the record's stable
// one) deployed, unless the record says it was, and records so.
func (rc *rolloutContext) reportDeployed(ctx context.Context) (result, error) {
	rec := rc.record
	msg := fmt.Sprintf("%s %s is healthy", rc.app, rec.StableVersion)
	if !rec.Reported {
		if err := rc.report(ctx, rec.Workflow, true, msg); err != nil {
			return backoff(), nil
		}
		rec.Reported = true
		if err := rc.saveRecord(ctx, rec); err != nil {
			return result{}, err
		}
	}
	rc.log.Info("first version deployed", "version", rec.StableVersion)
	rc.normal("Deployed", msg)
	return requeueNow(), nil
}

// failFirstDeploy gives the first version up: its failure reported, and
// the version not started again for the same change.
func (rc *rolloutContext) failFirstDeploy(ctx context.Context, d *Desired, reason string) (result, error) {
	rc.log.Error("starting the first version failed", "version", d.Version, "err", reason)
	rc.setEnded(d.Version, d.Workflow)
	rc.c.mu.Lock()
	rc.ks.deploying = nil
	if d.Workflow != "" {
		rc.ks.unsent = &unsentReport{workflow: d.Workflow, msg: reason}
	}
	rc.c.mu.Unlock()
	if err := rc.sendUnsent(ctx); err != nil {
		return backoff(), nil
	}
	return result{}, nil
}

// sendUnsent sends the failure of a first deploy given up that the
// reporter did not take.
func (rc *rolloutContext) sendUnsent(ctx context.Context) error {
	rc.c.mu.Lock()
	u := rc.ks.unsent
	rc.c.mu.Unlock()
	if u == nil {
		return nil
	}
	if err := rc.report(ctx, u.workflow, false, u.msg); err != nil {
		return err
	}
	rc.c.mu.Lock()
	if rc.ks.unsent == u {
		rc.ks.unsent = nil
	}
	rc.c.mu.Unlock()
	return nil
}

// supersedeDeploy tells the workflow of a first deploy that is not of
// version (a newer version overtook it, or the app left the manifest)
// that it was superseded, with msg: it will never be deployed.
func (rc *rolloutContext) supersedeDeploy(ctx context.Context, version, msg string) error {
	rc.c.mu.Lock()
	dep := rc.ks.deploying
	rc.c.mu.Unlock()
	if dep == nil || dep.version == version {
		return nil
	}
	if dep.workflow != "" && (rc.desired == nil || dep.workflow != rc.desired.Workflow) {
		if err := rc.reportSuperseded(ctx, dep.workflow, msg); err != nil {
			return err
		}
		rc.log.Info("first deploy superseded", "version", dep.version, "next", version)
		rc.normal("Superseded", msg)
	}
	rc.c.mu.Lock()
	if rc.ks.deploying == dep {
		rc.ks.deploying, rc.ks.startFails = nil, 0
	}
	rc.c.mu.Unlock()
	return nil
}

// reconcileStable keeps the stable version routed when no rollout runs (a
// gateway that restarted without its routes, a canary route left over),
// and the record's entry the manifest's (edited by hand at the same
// version): an abort of the next canary writes it back to git.
func (rc *rolloutContext) reconcileStable(ctx context.Context) (result, error) {
	stable := rc.record.StableVersion
	if e := rc.desired.Entry; e != nil && !sameEntry(e, rc.record.StableEntry) {
		rec := rc.record
		rec.StableEntry = e
		if err := rc.saveRecord(ctx, rec); err != nil {
			return result{}, err
		}
		rc.log.Info("stable version's manifest entry updated", "version", stable)
	}
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

// sameEntry reports whether a and b are the same manifest entry.
func sameEntry(a, b *manifest.App) bool {
	if a == nil || b == nil {
		return a == b
	}
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
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

// startFailed counts a replica start that failed for a reason that is not
// the version's (workload.ErrRetry) and says how many did in a row.
func (rc *rolloutContext) startFailed() int {
	rc.c.mu.Lock()
	defer rc.c.mu.Unlock()
	rc.ks.startFails++
	return rc.ks.startFails
}
