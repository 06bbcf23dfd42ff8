package argorollouts

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/oneline"
	"github.com/runway-cd/runway/internal/rollout"
)

// outsideTimeout bounds what a pass does outside the cluster (a git
// revert, a report): it is not cancelled with the pass (a revert or a
// report half done is worse than one done late), but it does not hang it.
const outsideTimeout = 2 * time.Minute

// boundedContext is ctx without its cancellation, with outsideTimeout.
func boundedContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), outsideTimeout)
}

// maxAbortReason bounds an abort reason, in bytes (it goes into a commit
// message), as Runway's own canary does.
const maxAbortReason = 1024

// finishPromoted reports the version Argo made stable, then records so.
func (p *pass) finishPromoted(ctx context.Context) (result, error) {
	o := p.obs
	msg := fmt.Sprintf("%s %s promoted after %d steps", p.app, o.version, o.steps)
	if o.stableAtStart == "" || o.stableAtStart == o.version {
		msg = fmt.Sprintf("%s %s is healthy", p.app, o.version)
	}
	if err := p.report(ctx, o.workflow, true, msg); err != nil {
		return backoff(), nil // sent again, after a restart too
	}
	if err := p.recordEnd(ctx, endRecord{Version: o.version, Workflow: o.workflow, Outcome: outcomePromoted, Reported: true,
		Message: msg, Finished: p.c.clock.Now().UTC()}); err != nil {
		return result{}, err
	}
	p.log.Info("rollout complete", "version", o.version)
	p.normal(rollout.ReasonPromoted, msg)
	return result{}, nil
}

// abortReason is why the canary was aborted: the request's reason, else
// the failing analysis (metric and value), else Argo's message.
func (p *pass) abortReason() string {
	o := p.obs
	var reason string
	switch {
	case o.end.Version == o.version && o.end.Outcome == outcomeAborted && o.end.Message != "":
		return o.end.Message
	case o.abortReason != "":
		reason = o.abortReason
	case o.failure != "":
		reason = o.failure
	case o.message != "":
		reason = o.message
	default:
		reason = "aborted by Argo Rollouts"
	}
	return oneline.Clean(clean(reason, p.c.opts.Redact), maxAbortReason)
}

// finishAborted takes the end of an aborted canary one step on, each step
// once and in this order, so that a restart resumes it: (Argo has put
// all traffic back on stable and scales the canary down) the production
// manifest reverted, then the failure reported.
func (p *pass) finishAborted(ctx context.Context) (result, error) {
	o := p.obs
	reason := p.abortReason()
	end := endRecord{Version: o.version, Workflow: o.workflow, Outcome: outcomeAborted, Message: reason}
	if o.end.Version == o.version && o.end.Outcome == outcomeAborted {
		end = o.end
	}
	if !end.Reverted {
		if o.stableAtStart != "" && o.stableAtStart != o.version {
			if err := p.revert(ctx, o.version, o.stableAtStart, o.stableEntry, reason); err != nil {
				if ctx.Err() != nil {
					return result{}, ctx.Err()
				}
				p.log.Error("reverting the production manifest", "canary", o.version, "err", err)
				end.Message += " (git revert failed: " + oneline.Reason(err.Error()) + ")"
			}
		}
		end.Reverted = true
		if err := p.recordEnd(ctx, end); err != nil {
			return result{}, err
		}
		p.log.Warn("aborting rollout", "canary", o.version, "reason", end.Message)
		p.warning("Aborting", end.Message)
		return result{}, nil // the annotation's change enqueues the key
	}
	msg := fmt.Sprintf("canary %s aborted: %s", o.version, end.Message)
	if o.stableAtStart == "" || o.stableAtStart == o.version {
		msg = fmt.Sprintf("%s %s failed: %s", p.app, o.version, end.Message)
	}
	if err := p.report(ctx, o.workflow, false, msg); err != nil {
		return backoff(), nil
	}
	end.Reported, end.Finished = true, p.c.clock.Now().UTC()
	if err := p.recordEnd(ctx, end); err != nil {
		return result{}, err
	}
	p.log.Warn("rollout aborted", "canary", o.version, "reason", end.Message)
	p.warning(rollout.ReasonAborted, msg)
	return result{}, nil
}

// endBackOnStable ends the canary whose manifest went back on the stable
// version by hand: there is nothing to revert; its workflow is told.
func (p *pass) endBackOnStable(ctx context.Context) (result, error) {
	o := p.obs
	reason := fmt.Sprintf("the production manifest is back on %s %s", p.app, o.stableVersion)
	if err := p.report(ctx, o.workflow, false, fmt.Sprintf("canary %s aborted: %s", o.version, reason)); err != nil {
		return backoff(), nil
	}
	if err := p.recordEnd(ctx, endRecord{Version: o.version, Workflow: o.workflow, Outcome: outcomeAborted, Reverted: true, Reported: true,
		Message: reason, Finished: p.c.clock.Now().UTC()}); err != nil {
		return result{}, err
	}
	p.warning(rollout.ReasonAborted, fmt.Sprintf("canary %s aborted: %s", o.version, reason))
	return requeueNow(), nil
}

// supersede ends the canary the manifest moved on from (to d, neither it
// nor the stable version): its workflow is told; git is left alone (it
// says d). Argo takes the Rollout to d's template next.
func (p *pass) supersede(ctx context.Context, d *rollout.Desired) (result, error) {
	o := p.obs
	msg := fmt.Sprintf("superseded: %s %s now rolls out over %s", p.app, d.Version, o.stableVersion)
	if err := p.reportSuperseded(ctx, o.workflow, msg); err != nil {
		return backoff(), nil
	}
	if err := p.recordEnd(ctx, endRecord{Version: o.version, Workflow: o.workflow, Outcome: outcomeSuperseded, Reported: true,
		Message: msg, Finished: p.c.clock.Now().UTC()}); err != nil {
		return result{}, err
	}
	p.log.Info("rollout superseded", "canary", o.version, "next", d.Version)
	p.normal("Superseded", msg)
	return requeueNow(), nil
}

// retryChange rolls the aborted version out again for a new workflow
// (the same change pushed again): Argo's retry, the Rollout now reporting
// to the new workflow.
func (p *pass) retryChange(ctx context.Context, d *rollout.Desired) (result, error) {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{
		annWorkflow: d.Workflow, annEnd: nil, annAbortReason: nil,
	}}})
	if err != nil {
		return result{}, err
	}
	// Argo's retry first: until the end is cleared the canary stays
	// ended, so a failure between the two is retried, never taken for an
	// abort still to revert (which would undo the re-push).
	client := p.c.dyn.Resource(rolloutGVR).Namespace(p.ns)
	if _, err := client.Patch(ctx, p.app, types.MergePatchType, []byte(retryPatch), metav1.PatchOptions{FieldManager: ManagedBy}, "status"); err != nil {
		return result{}, fmt.Errorf("retrying %s %s: %w", p, d.Version, err)
	}
	if _, err := client.Patch(ctx, p.app, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: ManagedBy}); err != nil {
		return result{}, fmt.Errorf("retrying %s %s: %w", p, d.Version, err)
	}
	p.c.reopen(p.env, p.app, d.Version)
	p.log.Info("aborted version rolled out again", "version", d.Version, "workflow", d.Workflow)
	return result{}, nil
}

// recordEnd writes e into the Rollout's annotations.
func (p *pass) recordEnd(ctx context.Context, e endRecord) error {
	s, err := encodeJSON(e)
	if err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{annEnd: s}}})
	if err != nil {
		return err
	}
	_, err = p.c.dyn.Resource(rolloutGVR).Namespace(p.ns).Patch(context.WithoutCancel(ctx), p.app, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: ManagedBy})
	if err != nil {
		return fmt.Errorf("recording the end of %s %s: %w", p, e.Version, err)
	}
	p.obs.end, p.obs.ended = e, e.done()
	if s, ok := p.obs.status(p.env, p.app, p.c.clock.Now().UTC()); ok {
		p.c.remember(s)
	}
	return nil
}

// revert puts the stable version's manifest entry back into production,
// unless the manifest no longer has the canary's version of the app (it
// moved on, or a person put it back): the edit is made on the head the
// commit lands on, so no other writer's change is overwritten.
func (p *pass) revert(ctx context.Context, canary, stable string, entry *manifest.App, reason string) error {
	if entry == nil {
		p.log.Warn("no manifest entry of the stable version recorded: the production manifest is not reverted", "canary", canary, "stable", stable)
		return nil
	}
	msg := fmt.Sprintf("rollback %s to %s: %s failed: %s", p.app, stable, canary, reason)
	changed := false
	ctx, cancel := boundedContext(ctx)
	defer cancel()
	_, err := p.c.opts.Repo.Update(ctx, msg, func(read func(string) ([]byte, error)) ([]gitops.Change, error) {
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
		if cur, ok := m.Apps[p.app]; !ok || cur.Version() != canary {
			return nil, nil
		}
		m.Apps[p.app] = entry
		m.ChangeDescription = msg
		out, err := m.Marshal()
		if err != nil {
			return nil, fmt.Errorf("writing the production manifest: %w", err)
		}
		changed = true
		return []gitops.Change{{Path: manifest.ProductionPath, Data: out}}, nil
	})
	if err != nil {
		return fmt.Errorf("reverting %s to %s: %w", p.app, stable, err)
	}
	if changed {
		p.log.Info("production manifest reverted", "canary", canary, "stable", stable)
		if p.c.opts.Committed != nil {
			p.c.opts.Committed()
		}
	}
	return nil
}

// report sends a production change's end to its workflow, as one line of
// at most oneline.MaxReason bytes. A report the reporter did not take
// returns its error (the pass is tried again with backoff); one refused
// as invalid is logged and given up.
func (p *pass) report(ctx context.Context, workflow string, ok bool, msg string) error {
	if workflow == "" || p.c.opts.Synced {
		return nil // Synced: Argo CD's hooks report
	}
	ctx, cancel := boundedContext(ctx)
	defer cancel()
	err := p.c.opts.Reporter.Update(ctx, workflow, p.app, ok, oneline.Reason(clean(msg, p.c.opts.Redact)))
	return p.reportErr(err, workflow, "reporting")
}

func (p *pass) reportSuperseded(ctx context.Context, workflow, msg string) error {
	if workflow == "" {
		return nil
	}
	ctx, cancel := boundedContext(ctx)
	defer cancel()
	err := p.c.opts.Reporter.Supersede(ctx, workflow, p.app, oneline.Reason(clean(msg, p.c.opts.Redact)))
	return p.reportErr(err, workflow, "reporting a superseded change")
}

func (p *pass) reportErr(err error, workflow, what string) error {
	return rollout.ReportError(p.log, err, workflow, what)
}
