package rollout

import (
	"context"
	"fmt"
	"time"

	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/oneline"
)

// commandTimeout bounds a command's store reads and writes (the commands
// come from the API, whose signatures have no context).
const commandTimeout = 30 * time.Second

// command lets do change the app's unfinished rollout as the store has it,
// saves it when do changed it, and enqueues the app's key: the next pass
// acts on the request. verb names the command in errors.
func (c *Controller) command(env, app, verb string, do func(cp *Checkpoint) (changed bool, err error)) error {
	k := key(env, app)
	c.mu.Lock()
	ks := c.state(k)
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	ks.storeMu.Lock()
	defer ks.storeMu.Unlock()
	cps, err := c.opts.Store.UnfinishedRollouts(ctx, env, app)
	if err != nil {
		return fmt.Errorf("%s %s in %s: %w", verb, app, env, err)
	}
	if len(cps) == 0 {
		return fmt.Errorf("%s %s in %s: %w", verb, app, env, ErrNoRollout)
	}
	cp := cps[len(cps)-1].clone()
	changed, err := do(&cp)
	if err != nil {
		return fmt.Errorf("%s %s in %s: %w", verb, app, env, err)
	}
	if changed {
		if err := c.opts.Store.SaveRollout(ctx, cp); err != nil {
			return fmt.Errorf("%s %s in %s: %w", verb, app, env, err)
		}
		c.remember(cp.Status)
	}
	c.queue.Add(k)
	return nil
}

// refuseEnding is the error of a command a rollout that is ending or
// being promoted cannot take.
func refuseEnding(cp *Checkpoint) error {
	switch {
	case cp.ending():
		return fmt.Errorf("%w: it is being aborted", ErrNotPaused)
	case cp.Promoting:
		return fmt.Errorf("%w: it is being promoted", ErrNotPaused)
	}
	return nil
}

// paused reports whether the rollout waits in a pause (timed, indefinite
// or inconclusive); a checkpoint of an older Runway says so by its phase.
func paused(cp *Checkpoint) bool { return cp.PauseKind != "" || cp.Phase == Paused }

// Promote ends the current pause (timed, indefinite or inconclusive), as
// Argo Rollouts' promote does. Outside a pause it is refused, so it can not
// skip a later pause by surprise.
func (c *Controller) Promote(env, app string) error {
	return c.command(env, app, "promoting", func(cp *Checkpoint) (bool, error) {
		if err := refuseEnding(cp); err != nil {
			return false, err
		}
		if !paused(cp) {
			return false, fmt.Errorf("%w: it is at a setWeight or analysis step; promote ends pauses", ErrNotPaused)
		}
		cp.PromoteAt = cp.Step + 1
		return true, nil
	})
}

// PromoteFull skips every remaining step, pause and analysis, as Argo
// Rollouts' promote --full does: the canary goes to 100% and becomes
// stable.
func (c *Controller) PromoteFull(env, app string) error {
	return c.command(env, app, "promoting", func(cp *Checkpoint) (bool, error) {
		if cp.ending() {
			return false, refuseEnding(cp)
		}
		if cp.Promoting || cp.Full {
			return false, nil
		}
		cp.Full = true
		return true, nil
	})
}

// Retry runs the analysis of a rollout paused on an inconclusive result
// again, as a fresh run; earlier runs stay readable. An aborted rollout is
// not retried here: its git change was reverted, so it is retried by
// pushing (or re-running) the change.
func (c *Controller) Retry(env, app string) error {
	return c.command(env, app, "retrying", func(cp *Checkpoint) (bool, error) {
		if err := refuseEnding(cp); err != nil {
			return false, err
		}
		if cp.PauseKind != pauseInconclusive && cp.PauseKind != pauseBackground {
			return false, fmt.Errorf("%w: it is not paused on an inconclusive analysis", ErrNotPaused)
		}
		cp.RetryAt = cp.Step + 1
		return true, nil
	})
}

// Abort aborts the rollout with reason, whatever step it is at, and
// cancels what the app's pass in flight waits for (a canary's start, say):
// the abort is the next pass. The reason comes from outside (an operator,
// a pipeline's error): it is made one line and cut to oneline.MaxReason
// bytes (oneline.Reason) before it reaches the status, the reporter or the
// revert's commit message, so it can neither forge commit trailers nor be
// refused for its length. A rollout already ending is left to end; one
// being promoted can no longer be aborted.
func (c *Controller) Abort(env, app, reason string) error {
	return c.abort(env, app, "", reason)
}

// AbortVersion aborts, as Abort does, the rollout of app in env only if
// its canary is version: a pipeline aborting its own change can never
// abort another pipeline's rollout. Otherwise (no rollout, or the
// rollout of another version) it returns an error wrapping ErrNoRollout.
func (c *Controller) AbortVersion(env, app, version, reason string) error {
	if version == "" {
		return fmt.Errorf("aborting %s in %s: %w: no version given", app, env, ErrNoRollout)
	}
	return c.abort(env, app, version, reason)
}

// abort is Abort, of the rollout of version only unless version is "".
func (c *Controller) abort(env, app, version, reason string) error {
	reason = oneline.Reason(reason)
	if reason == "" {
		reason = "no reason given"
	}
	var began string
	err := c.command(env, app, "aborting", func(cp *Checkpoint) (bool, error) {
		if version != "" && cp.CanaryVersion != version {
			return false, fmt.Errorf("%w of %s (the running rollout is of %s)", ErrNoRollout, version, cp.CanaryVersion)
		}
		if cp.ending() {
			return false, nil
		}
		if cp.Promoting {
			return false, fmt.Errorf("%w: it is being promoted", ErrNotPaused)
		}
		r := oneline.Clean("aborted by request: "+reason, maxAbortReason)
		cp.Aborting, cp.Phase, cp.Message = r, Degraded, "aborted: "+r
		began = r
		return true, nil
	})
	if err != nil || began == "" {
		return err
	}
	k := key(env, app)
	c.mu.Lock()
	if ks := c.keys[k]; ks != nil {
		if ks.cancel != nil {
			ks.cancel(errAbortRequested)
		}
		ks.cancelStart(errAbortRequested)
	}
	c.mu.Unlock()
	c.analyses.stop(k, &errAborted{reason: began})
	c.log.Warn("aborting rollout", "env", env, "app", app, "reason", began)
	c.event(env, app, events.Warning, "Aborting", began)
	return nil
}
