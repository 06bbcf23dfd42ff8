package rollout

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/runway-cd/runway/internal/runtime"
)

// Canary health. While a rollout progresses (steps, pauses, analyses and
// waits for a promotion alike) its canary replicas are looked at every
// Controller.canaryCheck, and the rollout is aborted when the canary cannot
// serve, rather than left to run indefinitely (Argo Rollouts issue #3765):
//
//   - crash-looping: a replica restarted crashLoopRestarts times. The
//     runtime restarts an exited replica at once, then after 1s, 2s, ...
//     (Kubernetes' CrashLoopBackOff); the third restart is where the
//     kubelet's backoff is well under way. A canary's replicas are started
//     by its rollout, so their restart counts are restarts since it
//     started, and they survive a control plane restart (the data plane
//     keeps them).
//   - not ready: a replica continuously not ready for longer than the
//     spec's progressDeadlineSeconds, counted from the runtime's Since
//     (kept by the data plane across control plane restarts), or
//     StartCanary not done within it.
//
// A resumed rollout runs progress again, so the watch resumes with it;
// nothing of it is checkpointed.

// crashLoopRestarts is how many restarts of one canary replica abort the
// rollout.
const crashLoopRestarts = 3

// defaultCanaryCheck is how often the canary's replicas are looked at.
const defaultCanaryCheck = time.Second

// notReadyReason is the abort reason of a canary that was not ready in
// time.
func notReadyReason(deadline time.Duration) string {
	return fmt.Sprintf("canary not ready within progressDeadlineSeconds (%ds)", int(deadline/time.Second))
}

// watchCanary looks at the canary's replicas until stop is called, and
// aborts the rollout (abort is the rollout's cancel) with the reason once
// one of them crash-loops or stays unready past the deadline. stop
// returns once the watch has ended: after it, the watch aborts nothing.
func (r *rollout) watchCanary(ctx context.Context, abort context.CancelCauseFunc, deadline time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		w := canaryWatch{deadline: deadline, notReady: map[int]time.Time{}, restarts: map[int]int{}}
		t := time.NewTicker(cmp.Or(r.c.canaryCheck, defaultCanaryCheck))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			replicas := r.req.Target.CanaryStatus(ctx)
			if ctx.Err() != nil {
				return // stopped while asking: its answer judges nothing
			}
			for _, rs := range w.restarted(replicas) {
				r.c.log.Warn("canary replica restarted", "app", r.req.App, "canary", r.req.CanaryVersion,
					"replica", rs.Index, "restarts", rs.Restarts, "lastExit", rs.LastExit)
			}
			if reason := w.judge(replicas, time.Now()); reason != "" {
				abort(&errAborted{reason: reason})
				return
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// canaryWatch is what the watch remembers between two looks.
type canaryWatch struct {
	deadline time.Duration
	// notReady is, per replica index, since when it has been seen
	// continuously not ready.
	notReady map[int]time.Time
	// restarts is the last restart count seen per replica.
	restarts map[int]int
}

// restarted returns the replicas whose restart count went up since the
// last look.
func (w *canaryWatch) restarted(replicas []runtime.ReplicaStatus) []runtime.ReplicaStatus {
	var out []runtime.ReplicaStatus
	for _, rs := range replicas {
		if rs.Restarts > w.restarts[rs.Index] {
			out = append(out, rs)
		}
		w.restarts[rs.Index] = rs.Restarts
	}
	return out
}

// judge returns why the canary must be aborted, or "" if it may go on.
func (w *canaryWatch) judge(replicas []runtime.ReplicaStatus, now time.Time) string {
	for _, rs := range replicas {
		if rs.Restarts >= crashLoopRestarts {
			return fmt.Sprintf("canary replica %d crash-looping: restarted %d times, last exit %q", rs.Index, rs.Restarts, rs.LastExit)
		}
	}
	seen := map[int]bool{}
	for _, rs := range replicas {
		seen[rs.Index] = true
		if rs.Ready || rs.State == runtime.ReplicaStopping {
			delete(w.notReady, rs.Index)
			continue
		}
		// Since is never before the replica became unready, but it moves
		// with every change of state (Starting, BackOff, ...): the
		// earliest unready moment seen is kept.
		since := now
		if s, ok := w.notReady[rs.Index]; ok {
			since = s
		}
		if !rs.Since.IsZero() && rs.Since.Before(since) {
			since = rs.Since
		}
		w.notReady[rs.Index] = since
		if d := now.Sub(since); d > w.deadline {
			return fmt.Sprintf("%s: replica %d %s and not ready for %s", notReadyReason(w.deadline), rs.Index, rs.State, d.Round(time.Second))
		}
	}
	for i := range w.notReady {
		if !seen[i] {
			delete(w.notReady, i) // gone from the runtime's view
		}
	}
	return ""
}
