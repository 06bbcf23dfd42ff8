package rollout

import (
	"errors"
	"fmt"

	"github.com/runway-cd/runway/internal/oneline"
)

// ErrNotPaused is returned by Promote and Retry for a rollout that is not
// in a state they act on.
var ErrNotPaused = errors.New("rollout not paused")

// act finds the running rollout of app in env and lets do act on it under
// its lock; verb names the action in errors.
func (c *Controller) act(env, app, verb string, do func(r *rollout) error) error {
	c.mu.Lock()
	r, ok := c.active[key(env, app)]
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("%s %s in %s: %w", verb, app, env, ErrNoRollout)
	}
	r.mu.Lock()
	err := do(r)
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%s %s in %s: %w", verb, app, env, err)
	}
	return nil
}

// Promote ends the current pause (timed, indefinite or inconclusive), as
// Argo Rollouts' promote does. Outside a pause it is refused, so it can not
// skip a later pause by surprise.
func (c *Controller) Promote(env, app string) error {
	return c.act(env, app, "promoting", func(r *rollout) error {
		if !r.paused {
			return fmt.Errorf("%w: it is at a setWeight or analysis step; promote ends pauses", ErrNotPaused)
		}
		signal(r.promote)
		return nil
	})
}

// PromoteFull skips every remaining step, pause and analysis, as Argo
// Rollouts' promote --full does: the canary goes to 100% and becomes
// stable.
func (c *Controller) PromoteFull(env, app string) error {
	return c.act(env, app, "promoting", func(r *rollout) error {
		r.full = true
		if r.cancelStep != nil {
			r.cancelStep(errSkip)
		}
		return nil
	})
}

// Retry runs the analysis of a rollout paused on an inconclusive result
// again, as a fresh run; earlier runs stay readable. An aborted rollout is
// not retried here: its git change was reverted, so it is retried by
// pushing (or re-running) the change.
func (c *Controller) Retry(env, app string) error {
	return c.act(env, app, "retrying", func(r *rollout) error {
		if !r.retryable {
			return fmt.Errorf("%w: it is not paused on an inconclusive analysis", ErrNotPaused)
		}
		signal(r.retry)
		return nil
	})
}

// Abort aborts the rollout with reason, whatever step it is at. The reason
// comes from outside (an operator, a pipeline's error): it is made one line
// and cut to oneline.MaxReason bytes (oneline.Reason) before it reaches the
// status, the reporter or the revert's commit message, so it can neither
// forge commit trailers nor be refused for its length.
func (c *Controller) Abort(env, app, reason string) error {
	reason = oneline.Reason(reason)
	if reason == "" {
		reason = "no reason given"
	}
	return c.act(env, app, "aborting", func(r *rollout) error {
		if r.cancel == nil {
			return ErrNoRollout // not started yet
		}
		r.cancel(&errAborted{reason: "aborted by request: " + reason})
		return nil
	})
}

// signal sends on a one-slot channel without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
