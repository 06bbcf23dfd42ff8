package rollout

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/runway-cd/runway/internal/runtime"
)

// Canary health. While a rollout progresses (steps, pauses, analyses and
// waits for a promotion alike) every pass looks at its canary's replicas,
// and the passes come at least every Options.CanaryCheck; the rollout is
// aborted when the canary cannot serve, rather than left to run
// indefinitely (Argo Rollouts issue #3765):
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
//     (kept by the data plane across control plane restarts), or the
//     canary's start not done within it.
//
// What the watch remembers between two looks is kept in memory; a
// restarted controller starts a new watch, and the runtime's Since carries
// how long a replica has been unready.

// crashLoopRestarts is how many restarts of one canary replica abort the
// rollout.
const crashLoopRestarts = 3

// notReadyReason is the abort reason of a canary that was not ready in
// time.
func notReadyReason(deadline time.Duration) string {
	return fmt.Sprintf("canary not ready within progressDeadlineSeconds (%ds)", int(deadline/time.Second))
}

// checkCanaryHealth looks at the canary's replicas once and returns why the
// rollout must be aborted, or "".
func (rc *rolloutContext) checkCanaryHealth() string {
	cp := rc.cp
	deadline := rc.spec().ProgressDeadline()
	rc.c.mu.Lock()
	w := rc.ks.watch
	if w == nil || w.version != cp.CanaryVersion || w.deadline != deadline {
		w = &canaryWatch{version: cp.CanaryVersion, deadline: deadline, notReady: map[int]time.Time{}, restarts: map[int]int{}}
		rc.ks.watch = w
	}
	rc.c.mu.Unlock()
	replicas := rc.c.opts.Workloads.Status(rc.env, rc.app, cp.CanaryVersion)
	for _, rs := range w.restarted(replicas) {
		rc.log.Warn("canary replica restarted", "canary", cp.CanaryVersion,
			"replica", rs.Index, "restarts", rs.Restarts, "lastExit", rs.LastExit)
	}
	return w.judge(replicas, rc.c.clock.Now())
}

// watchStart watches the canary while its replicas start: the start is
// cancelled (abort, with the reason as errAborted) once a replica
// crash-loops or stays unready past the deadline, or when the deadline
// passes. stop returns once the watch has ended.
func (rc *rolloutContext) watchStart(ctx context.Context, abort context.CancelCauseFunc, deadline time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		clk := rc.c.clock
		end := clk.NewTimer(deadline)
		defer end.Stop()
		tick := clk.NewTimer(rc.c.opts.CanaryCheck)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-end.C():
				abort(&errAborted{reason: notReadyReason(deadline)})
				return
			case <-tick.C():
				if reason := rc.checkCanaryHealth(); reason != "" {
					abort(&errAborted{reason: reason})
					return
				}
				tick.Reset(rc.c.opts.CanaryCheck)
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// canaryWatch is what the watch remembers between two looks.
type canaryWatch struct {
	version  string
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
