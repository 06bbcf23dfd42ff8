package pipeline

import (
	"context"
	"errors"
	"fmt"
)

// waitSteps only wait for others (the reporter, the rollout): stopping
// one loses nothing, its wait starts again on restart with the deadline
// counted from the stored submission. Every other step does work a drain
// lets it finish.
var waitSteps = map[string]bool{StepAwaitDeploy: true, StepAwaitRollout: true}

// Drain is the first half of a graceful shutdown (SIGTERM): no pipeline
// starts another step, steps that only wait stop at once, and steps doing
// work (a build, a push, migrations, tests) may finish. It returns when
// every pipeline has reached such a checkpoint, or with ctx's error when
// ctx ends first; then cancel the pipelines' context, and the steps still
// running are interrupted and run again on the next start.
func (r *Runner) Drain(ctx context.Context) error {
	r.drainOnce.Do(func() { close(r.draining) })
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		r.mu.Lock()
		n := len(r.running)
		r.mu.Unlock()
		return fmt.Errorf("draining pipelines: %d still at a step doing work: %w", n, ctx.Err())
	}
}

// isDraining reports whether Drain was called.
func (r *Runner) isDraining() bool {
	select {
	case <-r.draining:
		return true
	default:
		return false
	}
}

// stepContext is the context a step runs under: a wait step's also ends
// when a drain begins.
func (r *Runner) stepContext(ctx context.Context, step string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if waitSteps[step] {
		go func() {
			select {
			case <-r.draining:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	return ctx, cancel
}

// errInterrupted ends a step stopped by a shutdown or a drain: not a
// failure, the step runs again on restart.
var errInterrupted = errors.New("interrupted by shutdown")
