package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/oneline"
	"github.com/runway-cd/runway/internal/reporter"
)

// maxAbortReason bounds a whole abort reason, in bytes: Runway's words
// (such as "aborted by request: " or an analysis verdict) around a reason
// from outside, itself cut to oneline.MaxReason by Abort.
const maxAbortReason = 1024

// errSuperseded stops the analysis runs of a superseded rollout.
var errSuperseded = errors.New("superseded by a newer version")

// abort begins the abort: the reason is saved first (made one line of at
// most maxAbortReason bytes: it goes into a commit message), so a restart
// from here on finishes the abort rather than resuming the canary. The
// passes that follow carry it out (reconcileEnding).
func (rc *rolloutContext) abort(ctx context.Context, reason string) (result, error) {
	cp := rc.cp
	reason = oneline.Clean(reason, maxAbortReason)
	cp.Aborting, cp.Phase, cp.Message, cp.PauseKind = reason, Degraded, "aborted: "+reason, ""
	rc.c.analyses.stop(rc.key, &errAborted{reason: reason})
	if err := rc.save(ctx); err != nil {
		return result{}, err
	}
	rc.log.Warn("aborting rollout", "canary", cp.CanaryVersion, "reason", reason)
	rc.warning("Aborting", reason)
	return requeueNow(), nil
}

// supersede ends the rollout because the manifest moved on to d, neither
// its canary nor its stable version: traffic back to stable, canary
// stopped, its workflow told; git is left alone (it says d).
func (rc *rolloutContext) supersede(ctx context.Context, d *Desired) (result, error) {
	cp := rc.cp
	msg := fmt.Sprintf("superseded: %s %s now rolls out over %s", rc.app, d.Version, cp.StableVersion)
	cp.Superseded, cp.Phase, cp.Message, cp.PauseKind = msg, Degraded, msg, ""
	rc.c.analyses.stop(rc.key, errSuperseded)
	if err := rc.save(ctx); err != nil {
		return result{}, err
	}
	rc.log.Info("rollout superseded", "canary", cp.CanaryVersion, "next", d.Version)
	return requeueNow(), nil
}

// reconcileEnding takes an abort or a supersession one step on, each step
// once and in this order, so that a kill at any point resumes correctly:
// all traffic back on stable, the canary stopped, (abort) the production
// manifest reverted, the end reported, the rollout finished.
func (rc *rolloutContext) reconcileEnding(ctx context.Context) (result, error) {
	cp := rc.cp
	superseded := cp.Superseded != ""
	stopCause := error(errSuperseded)
	if !superseded {
		stopCause = &errAborted{reason: cp.Aborting}
	}
	rc.c.analyses.stop(rc.key, stopCause)
	if rc.startRunning(stopCause) {
		return result{}, nil // its end enqueues the key; then the canary is stopped
	}

	route, ok := rc.c.opts.Router.Route(rc.env, rc.app)
	if !ok || route.StableVersion != cp.StableVersion || route.CanaryVersion != "" || len(route.Stable) == 0 {
		stable, err := rc.backends(ctx, cp.StableVersion)
		if err != nil {
			return result{}, fmt.Errorf("routing %s back to stable: %w", rc.key, err)
		}
		if err := rc.c.opts.Router.SetRoute(rc.stableRoute(cp.StableVersion, stable)); err != nil {
			return result{}, fmt.Errorf("routing %s back to stable: %w", rc.key, err)
		}
		rc.log.Info("traffic back on stable", "stable", cp.StableVersion, "canary", cp.CanaryVersion)
	}
	if cp.Weight != 0 || cp.Phase != Degraded {
		cp.Weight, cp.Phase = 0, Degraded
		if err := rc.save(ctx); err != nil {
			return result{}, err
		}
		return requeueNow(), nil
	}
	if !cp.CanaryStopped {
		if err := rc.c.opts.Workloads.Stop(ctx, rc.env, rc.app, cp.CanaryVersion); err != nil {
			if ctx.Err() != nil {
				return result{}, ctx.Err()
			}
			rc.log.Error("stopping the canary", "canary", cp.CanaryVersion, "err", err)
		}
		cp.CanaryStopped = true
		return rc.saveAndRequeue(ctx)
	}
	if !superseded && !cp.Reverted {
		if err := rc.revert(ctx, cp.Aborting); err != nil {
			if ctx.Err() != nil {
				return result{}, ctx.Err()
			}
			rc.log.Error("reverting the production manifest", "canary", cp.CanaryVersion, "err", err)
			cp.Aborting += " (git revert failed: " + oneline.Reason(err.Error()) + ")"
			cp.Message = "aborted: " + cp.Aborting
		}
		cp.Reverted = true
		return rc.saveAndRequeue(ctx)
	}
	if !cp.Reported {
		var err error
		if superseded {
			err = rc.reportSuperseded(ctx, cp.Workflow, cp.Superseded)
		} else {
			err = rc.report(ctx, cp.Workflow, false, fmt.Sprintf("canary %s aborted: %s", cp.CanaryVersion, cp.Aborting))
		}
		if err != nil {
			return backoff(), nil // sent again, after a restart too
		}
		cp.Reported = true
		return rc.saveAndRequeue(ctx)
	}
	if superseded {
		rc.endRuns(Outcome{Phase: Error, Reason: "stopped before it ended: " + errSuperseded.Error()})
		cp.Message = cp.Superseded
	} else {
		rc.endRuns(Outcome{Phase: Error, Reason: "stopped before it ended: " + cp.Aborting})
		cp.Message = "aborted: " + cp.Aborting
	}
	cp.Finished = rc.c.clock.Now().UTC()
	if err := rc.save(ctx); err != nil {
		return result{}, err
	}
	rc.setEnded(cp.CanaryVersion, cp.Workflow)
	rc.c.analyses.forget(rc.key)
	if superseded {
		rc.log.Info("rollout superseded: ended", "canary", cp.CanaryVersion)
		rc.normal("Superseded", cp.Superseded)
	} else {
		rc.log.Warn("rollout aborted", "canary", cp.CanaryVersion, "reason", cp.Aborting)
		rc.warning(ReasonAborted, fmt.Sprintf("canary %s aborted: %s", cp.CanaryVersion, cp.Aborting))
	}
	return requeueNow(), nil // a superseding version starts next
}

func (rc *rolloutContext) saveAndRequeue(ctx context.Context) (result, error) {
	if err := rc.save(ctx); err != nil {
		return result{}, err
	}
	return requeueNow(), nil
}

// revert puts the stable version's manifest entry back into production,
// unless the manifest no longer has the canary's version of the app (it
// moved on, or a person put it back): the edit is made on the head the
// commit lands on, so no other writer's change is overwritten.
func (rc *rolloutContext) revert(ctx context.Context, reason string) error {
	cp := rc.cp
	if cp.StableEntry == nil {
		return nil
	}
	msg := fmt.Sprintf("rollback %s to %s: %s failed: %s", rc.app, cp.StableVersion, cp.CanaryVersion, reason)
	changed := false
	_, err := rc.c.opts.Repo.Update(ctx, msg, func(read func(string) ([]byte, error)) ([]gitops.Change, error) {
		changed = false
		data, err := read(manifest.ProductionPath)
		if gitops.IsNotExist(err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		m, err := manifest.Parse(data)
		if err != nil {
			return nil, fmt.Errorf("reading the production manifest: %w", err)
		}
		if cur, ok := m.Apps[rc.app]; !ok || cur.Version() != cp.CanaryVersion {
			return nil, nil
		}
		m.Apps[rc.app] = cp.StableEntry
		m.ChangeDescription = msg
		out, err := m.Marshal()
		if err != nil {
			return nil, fmt.Errorf("writing the production manifest: %w", err)
		}
		changed = true
		return []gitops.Change{{Path: manifest.ProductionPath, Data: out}}, nil
	})
	if err != nil {
		return fmt.Errorf("reverting %s to %s: %w", rc.app, cp.StableVersion, err)
	}
	if changed && rc.c.opts.Committed != nil {
		rc.c.opts.Committed()
	}
	return nil
}

// report sends a production change's end to its workflow. The message is
// one line of at most oneline.MaxReason bytes, so that no reporter limit can
// refuse it (a refused report would leave the pipeline waiting out its
// deadline). A report the reporter did not take returns its error, and the
// pass that sent it is tried again with the queue's backoff (reports are
// idempotent; what was not marked sent is sent after a restart too). A
// report refused as invalid (reporter.ErrInvalid: a workflow name it
// cannot take) is logged and given up: no retry changes that answer.
func (rc *rolloutContext) report(ctx context.Context, workflow string, ok bool, msg string) error {
	if workflow == "" {
		return nil
	}
	err := rc.c.opts.Reporter.Update(context.WithoutCancel(ctx), workflow, rc.app, ok, rc.clean(msg))
	return rc.reportErr(err, workflow, "reporting")
}

// reportSuperseded tells workflow its change was overtaken.
func (rc *rolloutContext) reportSuperseded(ctx context.Context, workflow, msg string) error {
	if workflow == "" {
		return nil
	}
	err := rc.c.opts.Reporter.Supersede(context.WithoutCancel(ctx), workflow, rc.app, rc.clean(msg))
	return rc.reportErr(err, workflow, "reporting a superseded change")
}

// reportErr is the error of a report to try again, nil if it was taken
// or refused for good.
func (rc *rolloutContext) reportErr(err error, workflow, what string) error {
	return ReportError(rc.log, err, workflow, what)
}

// ReportError is the error of a report to the reporter (what, to
// workflow) that is worth sending again, logged; nil if it was taken, or
// refused for good (reporter.ErrInvalid), which is logged too. Both
// production drivers (this controller and Argo Rollouts') judge their
// reports by it.
func ReportError(log *slog.Logger, err error, workflow, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, reporter.ErrInvalid):
		log.Error(what+": refused; not sent again", "workflow", workflow, "err", err)
		return nil
	}
	log.Error(what+"; will try again", "workflow", workflow, "err", err)
	return fmt.Errorf("%s to %s: %w", what, workflow, err)
}

func (rc *rolloutContext) clean(msg string) string {
	if rc.c.opts.Redact != nil {
		msg = rc.c.opts.Redact(msg)
	}
	return oneline.Reason(msg)
}
