package argorollouts

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/oneline"
	"github.com/runway-cd/runway/internal/rollout"
)

// Argo Rollouts' own operations, as its kubectl plugin patches them
// (pkg/kubectl-argo-rollouts/cmd/{promote,abort,retry}): merge patches of
// the status subresource, and of spec.paused for a Rollout paused by hand.
const (
	unpausePatch     = `{"spec":{"paused":false}}`
	promoteFullPatch = `{"status":{"promoteFull":true}}`
	abortPatch       = `{"status":{"abort":true}}`
	retryPatch       = `{"status":{"abort":false}}`
)

// current reads app's Rollout from the API server (not the cache: a
// command acts on what is there now) and observes it.
func (c *Controller) current(ctx context.Context, env, app, verb string) (*unstructured.Unstructured, observation, error) {
	return c.currentOf(ctx, env, app, verb, observation.inProgress)
}

// currentOf is current, the rollout taken when running says so.
func (c *Controller) currentOf(ctx context.Context, env, app, verb string, running func(observation) bool) (*unstructured.Unstructured, observation, error) {
	ns := c.opts.Templates.Namespace(env)
	ro, err := c.dyn.Resource(rolloutGVR).Namespace(ns).Get(ctx, app, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, observation{}, fmt.Errorf("%s %s in %s: %w", verb, app, env, rollout.ErrNoRollout)
	case err != nil:
		return nil, observation{}, fmt.Errorf("%s %s in %s: reading its rollout: %w", verb, app, env, err)
	}
	if keyOf(ro) != key(env, app) {
		return nil, observation{}, fmt.Errorf("%s %s in %s: %w: rollout %s/%s is not Runway's", verb, app, env, rollout.ErrNoRollout, ns, app)
	}
	var rss, runs []*unstructured.Unstructured
	for _, inf := range []struct {
		inf cache.SharedIndexInformer
		out *[]*unstructured.Unstructured
	}{{c.rss, &rss}, {c.runs, &runs}} {
		_ = cache.ListAllByNamespace(inf.inf.GetIndexer(), ns, labels.Everything(), func(obj any) {
			if u, ok := obj.(*unstructured.Unstructured); ok && ownedBy(u, ro) {
				*inf.out = append(*inf.out, u)
			}
		})
	}
	o := observe(ro, rss, runs, c.opts.Redact)
	if !running(o) {
		return nil, observation{}, fmt.Errorf("%s %s in %s: %w", verb, app, env, rollout.ErrNoRollout)
	}
	return ro, o, nil
}

// inProgress reports whether a canary runs that Runway has not ended.
func (o observation) inProgress() bool {
	return o.deploying() && o.stableAtStart != "" && o.stableAtStart != o.version
}

// deploying reports whether a version rolls out (a canary or a first
// deploy) that Runway has not ended.
func (o observation) deploying() bool {
	return o.exists && o.version != "" && !o.ended && !(o.end.Version == o.version && o.end.Outcome == outcomeAborted)
}

func (c *Controller) patch(ctx context.Context, ro *unstructured.Unstructured, patch string, subresource ...string) error {
	_, err := c.dyn.Resource(rolloutGVR).Namespace(ro.GetNamespace()).Patch(ctx, ro.GetName(), types.MergePatchType, []byte(patch),
		metav1.PatchOptions{FieldManager: ManagedBy}, subresource...)
	if err != nil {
		return fmt.Errorf("patching rollout %s/%s: %w", ro.GetNamespace(), ro.GetName(), err)
	}
	return nil
}

func commandContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), commandTimeout)
}

// Promote ends the current pause, as Argo's promote does: the pause
// conditions cleared (and, on an inconclusive analysis Argo paused for,
// the step passed, as Argo's plugin does only when the current step's
// analysis run is Inconclusive, not a background one), spec.paused cleared if it was paused by hand. Outside
// a pause it is refused, so that it can not skip a step by surprise
// (Argo's own would move to the next step).
func (c *Controller) Promote(env, app string) error {
	ctx, cancel := commandContext()
	defer cancel()
	ro, o, err := c.current(ctx, env, app, "promoting")
	if err != nil {
		return err
	}
	switch {
	case o.aborted:
		return fmt.Errorf("promoting %s in %s: %w: it is being aborted", app, env, rollout.ErrNotPaused)
	case !o.paused:
		return fmt.Errorf("promoting %s in %s: %w: it is at a setWeight or analysis step; promote ends pauses", app, env, rollout.ErrNotPaused)
	}
	status := `{"status":{"pauseConditions":null}}`
	if o.inconclusive && o.controllerPause && o.stepInconclusive {
		next := min(o.currentStep+1, int64(o.steps))
		status = fmt.Sprintf(`{"status":{"pauseConditions":null,"controllerPause":false,"currentStepIndex":%d}}`, next)
	}
	if err := c.patch(ctx, ro, status, "status"); err != nil {
		return fmt.Errorf("promoting %s in %s: %w", app, env, err)
	}
	if o.specPaused {
		if err := c.patch(ctx, ro, unpausePatch); err != nil {
			return fmt.Errorf("promoting %s in %s: %w", app, env, err)
		}
	}
	c.log.Info("rollout promoted", "env", env, "app", app, "canary", o.version, "step", o.step+1)
	c.queue.Add(key(env, app))
	return nil
}

// PromoteFull skips every remaining step, pause and analysis, as Argo's
// promote --full does (status.promoteFull).
func (c *Controller) PromoteFull(env, app string) error {
	ctx, cancel := commandContext()
	defer cancel()
	ro, o, err := c.current(ctx, env, app, "promoting")
	if err != nil {
		return err
	}
	if o.aborted {
		return fmt.Errorf("promoting %s in %s: %w: it is being aborted", app, env, rollout.ErrNotPaused)
	}
	if !o.fullyPromoted {
		if err := c.patch(ctx, ro, promoteFullPatch, "status"); err != nil {
			return fmt.Errorf("promoting %s in %s: %w", app, env, err)
		}
	}
	if o.specPaused {
		if err := c.patch(ctx, ro, unpausePatch); err != nil {
			return fmt.Errorf("promoting %s in %s: %w", app, env, err)
		}
	}
	c.log.Info("rollout fully promoted", "env", env, "app", app, "canary", o.version)
	c.queue.Add(key(env, app))
	return nil
}

// Abort aborts the canary with reason, as Argo's abort does
// (status.abort); Argo puts all traffic back on stable and scales the
// canary down, and the controller then reverts the production manifest
// and reports the failure with the reason. The reason is made one line
// of at most oneline.MaxReason bytes and kept in the Rollout's
// annotations (Argo's abort carries none).
func (c *Controller) Abort(env, app, reason string) error {
	return c.abort(env, app, "", reason)
}

// AbortVersion aborts, as Abort does, the rollout of app in env only if
// its canary is version: a pipeline aborting its own change never aborts
// another's. Otherwise it returns an error wrapping rollout.ErrNoRollout.
func (c *Controller) AbortVersion(env, app, version, reason string) error {
	if version == "" {
		return fmt.Errorf("aborting %s in %s: %w: no version given", app, env, rollout.ErrNoRollout)
	}
	return c.abort(env, app, version, reason)
}

func (c *Controller) abort(env, app, version, reason string) error {
	reason = oneline.Reason(reason)
	if reason == "" {
		reason = "no reason given"
	}
	ctx, cancel := commandContext()
	defer cancel()
	// A first deploy too: one that never gets healthy is aborted (its
	// failure reported; there is nothing to revert).
	ro, o, err := c.currentOf(ctx, env, app, "aborting", observation.deploying)
	if err != nil {
		return err
	}
	if version != "" && o.version != version {
		return fmt.Errorf("aborting %s in %s: %w of %s (the running rollout is of %s)", app, env, rollout.ErrNoRollout, version, o.version)
	}
	if o.aborted {
		return nil // already aborted: it ends
	}
	r := "aborted by request: " + reason
	meta, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{annAbortReason: r}}})
	if err != nil {
		return err
	}
	if err := c.patch(ctx, ro, string(meta)); err != nil {
		return fmt.Errorf("aborting %s in %s: %w", app, env, err)
	}
	if err := c.patch(ctx, ro, abortPatch, "status"); err != nil {
		// Not aborted: no reason is left for a later abort to report.
		if rerr := c.patch(ctx, ro, `{"metadata":{"annotations":{"`+annAbortReason+`":null}}}`); rerr != nil {
			c.log.Error("removing the abort reason of a failed abort", "env", env, "app", app, "err", rerr)
		}
		return fmt.Errorf("aborting %s in %s: %w", app, env, err)
	}
	c.log.Warn("aborting rollout", "env", env, "app", app, "canary", o.version, "reason", r)
	c.event(env, app, events.Warning, "Aborting", r)
	c.queue.Add(key(env, app))
	return nil
}

// Retry is Argo's retry of an aborted Rollout (status.abort=false): the
// canary starts again from its first step. It is taken only until Runway
// has reverted the aborted change in git; after that the change is
// retried by pushing it (or running its pipeline) again.
func (c *Controller) Retry(env, app string) error {
	ctx, cancel := commandContext()
	defer cancel()
	ro, o, err := c.current(ctx, env, app, "retrying")
	if err != nil {
		return err
	}
	if !o.aborted {
		return fmt.Errorf("retrying %s in %s: %w: it is not aborted", app, env, rollout.ErrNotPaused)
	}
	if err := c.patch(ctx, ro, `{"metadata":{"annotations":{"`+annAbortReason+`":null}}}`); err != nil {
		return fmt.Errorf("retrying %s in %s: %w", app, env, err)
	}
	if err := c.patch(ctx, ro, retryPatch, "status"); err != nil {
		return fmt.Errorf("retrying %s in %s: %w", app, env, err)
	}
	c.log.Info("rollout retried", "env", env, "app", app, "canary", o.version)
	c.queue.Add(key(env, app))
	return nil
}
