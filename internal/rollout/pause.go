package rollout

import (
	"context"
	"fmt"

	"github.com/runway-cd/runway/internal/appspec"
)

// reconcileCanaryPause runs a pause step: with a duration it waits that
// long from when it began (a restart waits only what is left), without one
// until promoted. Promote ends either.
func (rc *rolloutContext) reconcileCanaryPause(ctx context.Context, i int, p *appspec.Pause) (result, error) {
	cp := rc.cp
	n := len(rc.steps())
	if cp.PromoteAt == i+1 {
		return rc.completeStep(ctx)
	}
	d := p.Duration.Duration
	if d <= 0 {
		if err := rc.enterPause(ctx, pauseIndefinite, fmt.Sprintf("step %d/%d: paused until promoted", i+1, n)); err != nil {
			return result{}, err
		}
		return rc.checkAgain(0), nil
	}
	if cp.PauseStarted.IsZero() {
		cp.PauseStarted = rc.c.clock.Now().UTC() // saved by enterPause
	}
	if err := rc.enterPause(ctx, pauseTimed, fmt.Sprintf("step %d/%d: pause %s", i+1, n, d)); err != nil {
		return result{}, err
	}
	left := d - rc.c.clock.Since(cp.PauseStarted)
	if left <= 0 {
		return rc.completeStep(ctx)
	}
	return rc.checkAgain(left), nil
}

// enterPause pauses the rollout on kind, once: the status says why and a
// Paused event is recorded. A timed pause keeps the phase Progressing, as
// Argo Rollouts does; the others wait for a person.
func (rc *rolloutContext) enterPause(ctx context.Context, kind, msg string) error {
	cp := rc.cp
	if cp.PauseKind == kind {
		return nil
	}
	cp.PauseKind, cp.Message, cp.Phase = kind, msg, Paused
	if kind == pauseTimed {
		cp.Phase = Progressing
	}
	if err := rc.save(ctx); err != nil {
		return err
	}
	rc.log.Info("rollout paused", "canary", cp.CanaryVersion, "step", cp.Step+1, "why", msg)
	reason := ReasonPaused
	if kind == pauseTimed {
		reason = ReasonPausing
	}
	rc.normal(reason, msg)
	return nil
}

// leavePause ends the pause the rollout is in (not saved).
func (rc *rolloutContext) leavePause() {
	rc.cp.PauseKind, rc.cp.Phase = "", Progressing
}
