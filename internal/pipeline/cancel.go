package pipeline

import (
	"context"
	"fmt"

	"github.com/runway-cd/runway/internal/oneline"
)

// Cancel stops pipeline id: the request is stored on the pipeline (a
// restart honours it), the running step is interrupted, the remaining
// steps are skipped, teardown deletes the staging manifest and waits for
// the environment to go, and the pipeline ends Cancelled with the reason
// "cancelled: <reason>". A queued pipeline with no staging environment
// ends at once. Every commit the pipeline makes is one push, never
// stopped half-way, so nothing half-written is left in the state repo.
//
// It fails with ErrNotFound for an unknown pipeline, with an error
// wrapping ErrDone for one that already ended, and with one wrapping
// ErrPromoted once the pipeline took its app's promotion: production may
// run its version then, which only an abort of the rollout undoes.
func (r *Runner) Cancel(ctx context.Context, id, reason string) error {
	reason = oneline.Reason(reason)
	if reason == "" {
		reason = "no reason given"
	}
	r.mu.Lock()
	ru, ok := r.running[id]
	if !ok {
		// Under r.mu: launch, which registers a run under it from the
		// stored record read under it, sees this request, and this never
		// saves over a run that registered meanwhile.
		defer r.mu.Unlock()
		return r.cancelStoredLocked(ctx, id, reason)
	}
	r.mu.Unlock()
	var refused error
	ended := false
	_, err := ru.updateIf(ctx, func(p *Pipeline) bool {
		switch {
		case p.Phase.Done():
			refused = ErrDone
		case p.promoted():
			refused = ErrPromoted
		case p.CancelRequested != "":
			return false // asked already: the first reason stands
		default:
			p.CancelRequested = reason
			if p.Phase == Queued && p.StagingEnv == "" {
				ru.endQueued(p)
				ended = true
			}
			return true
		}
		return false
	})
	if refused != nil {
		return fmt.Errorf("cancelling pipeline %s: %w", id, refused)
	}
	if err != nil {
		return fmt.Errorf("recording the cancellation of pipeline %s: %w", id, err)
	}
	r.log.Info("pipeline cancel requested", "pipeline", id, "reason", reason)
	ru.stop(errCancelled)
	if ended {
		r.promos.release(ru.p.App, id)
		r.event(false, id, string(Cancelled), cancelReason(reason))
	}
	return nil
}

// endQueued ends a queued pipeline that has nothing to tear down as
// Cancelled; call with ru.mu held.
func (ru *run) endQueued(p *Pipeline) {
	now := ru.r.now().UTC()
	for i := range p.Steps {
		s := &p.Steps[i]
		switch s.Phase {
		case Running:
			s.Phase, s.Finished = Cancelled, now
		case Pending:
			s.Phase = Skipped
		}
	}
	p.Phase, p.Reason, p.Finished = Cancelled, cancelReason(p.CancelRequested), now
}

// cancelStoredLocked records a cancel request for a pipeline this runner
// does not run (not resumed yet): Resume honours it. The caller holds r.mu.
func (r *Runner) cancelStoredLocked(ctx context.Context, id, reason string) error {
	p, err := r.store.GetPipeline(ctx, id)
	if err != nil {
		return fmt.Errorf("cancelling pipeline %s: %w", id, err)
	}
	switch {
	case p.Phase.Done():
		return fmt.Errorf("cancelling pipeline %s: %w", id, ErrDone)
	case p.promoted():
		return fmt.Errorf("cancelling pipeline %s: %w", id, ErrPromoted)
	case p.CancelRequested != "":
		return nil
	}
	p.CancelRequested = reason
	if err := r.store.SavePipeline(ctx, p); err != nil {
		return fmt.Errorf("recording the cancellation of pipeline %s: %w", id, err)
	}
	// Resume may have seeded it as waiting for its app's promotion: it
	// waits no more (no newer waiter is superseded by it).
	r.promos.release(p.App, id)
	r.log.Info("pipeline cancel requested; it ends when resumed", "pipeline", id, "reason", reason)
	return nil
}
