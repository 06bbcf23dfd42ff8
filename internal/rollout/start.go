package rollout

import (
	"context"

	"github.com/runway-cd/runway/internal/gateway"
)

// startRun is a start of a version's replicas (a first deploy's, a
// canary's) that runs outside the workers: a start waits for the replicas'
// health, up to minutes, and a worker held by it could not take another
// app's abort. The pass that needs the start launches it and returns; the
// start enqueues the app's key when it ends, and the next pass takes its
// result. The fields after cancel are written once, under the
// controller's mutex, with done.
type startRun struct {
	version string
	cancel  context.CancelCauseFunc

	done     bool
	backends []gateway.Backend
	err      error // Start's
	// cause is why the start's context was cancelled before it ended
	// (a newer version, an abort, the canary's watch), nil if it was not.
	cause error
}

// startReplicas returns the ended start of version, taking it, or
// launches it under the controller's context (none runs) and returns
// false: the pass is over, the start's end enqueues the key. A start of
// another version still running is cancelled first.
func (rc *rolloutContext) startReplicas(version string, start func(ctx context.Context, cancel context.CancelCauseFunc) ([]gateway.Backend, error)) (*startRun, bool) {
	c, k := rc.c, rc.key
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := rc.ks.start; st != nil {
		if !st.done {
			if st.version != version {
				st.cancel(errDesiredChanged)
			}
			return nil, false
		}
		rc.ks.start = nil
		if st.version == version {
			return st, true
		}
		// The end of a start of another version: nothing to take.
	}
	runCtx := rc.runCtx
	ctx, cancel := context.WithCancelCause(runCtx)
	st := &startRun{version: version, cancel: cancel}
	rc.ks.start = st
	c.starts.Go(func() {
		defer cancel(nil)
		backends, err := start(ctx, cancel)
		cause := context.Cause(ctx)
		c.mu.Lock()
		st.backends, st.err, st.cause, st.done = backends, err, cause, true
		c.mu.Unlock()
		if runCtx.Err() == nil {
			c.queue.Add(k)
		}
	})
	return nil, false
}

// startRunning cancels the app's start under way, if any, with cause and
// reports whether one runs: the pass then leaves what the start may still
// make (replicas) alone until its end enqueues the key.
func (rc *rolloutContext) startRunning(cause error) bool {
	rc.c.mu.Lock()
	defer rc.c.mu.Unlock()
	st := rc.ks.start
	if st == nil {
		return false
	}
	if st.done {
		rc.ks.start = nil
		return false
	}
	st.cancel(cause)
	return true
}

// cancelStart cancels the start under way of ks, if any, with cause. Call
// with c.mu held.
func (ks *keyState) cancelStart(cause error) {
	if st := ks.start; st != nil && !st.done {
		st.cancel(cause)
	}
}
