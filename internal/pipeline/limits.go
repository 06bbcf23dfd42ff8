package pipeline

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/runway-cd/runway/internal/manifest"
)

// Two caps bound what pushes can make Runway do at once. MaxRunning
// pipelines run; the others wait in phase Queued, in arrival order, and
// start when a slot frees (after a restart too: Resume gives the slots to
// the oldest). MaxStaging staging environments exist; a pipeline that
// would push one more waits in its push-staging-manifest step until one is
// gone, at most its staging TTL. Both say why they wait: the queued
// pipeline in its reason, the waiting step in its log and the reason.

// queuedReason is the reason of the queued pipeline at position pos
// (from 1) of n queued, with running pipelines running.
func queuedReason(pos, n, running int) string {
	return fmt.Sprintf("queued: position %d of %d; %d running (limits.pipelines)", pos, n, running)
}

// stagingReason is the log line and reason of a step waiting for a
// staging environment to go.
func stagingReason(n int) string {
	return fmt.Sprintf("waiting: %d staging environments exist (limits.stagingEnvironments)", n)
}

// slots hands out MaxRunning running slots in arrival order.
type slots struct {
	mu      sync.Mutex
	max     int
	running int
	queue   []*turn
}

// turn is a queued pipeline's place; ready is closed when it is given a
// slot.
type turn struct {
	ready chan struct{}
	ru    *run
}

func newSlots(max int) *slots { return &slots{max: max} }

// acquire takes a slot and returns nil, or, when all are taken, returns
// the caller's turn in the queue to wait on.
func (s *slots) acquire(ru *run) *turn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.max <= 0 || s.running < s.max {
		s.running++
		return nil
	}
	t := &turn{ready: make(chan struct{}), ru: ru}
	s.queue = append(s.queue, t)
	return t
}

// wait blocks until t is given a slot (true), or until ctx ends or a drain
// begins (false; t then holds no slot).
func (s *slots) wait(ctx context.Context, t *turn, draining <-chan struct{}) bool {
	select {
	case <-t.ready:
		select {
		case <-draining:
			s.release()
			return false
		default:
			return true
		}
	case <-ctx.Done():
	case <-draining:
	}
	s.mu.Lock()
	for i, q := range s.queue {
		if q == t {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			s.mu.Unlock()
			return false
		}
	}
	s.mu.Unlock()
	s.release() // given a slot meanwhile: hand it on
	return false
}

// release frees a slot: the first queued turn takes it over.
func (s *slots) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) > 0 {
		t := s.queue[0]
		s.queue = s.queue[1:]
		close(t.ready)
		return
	}
	s.running--
}

// positions returns the queued runs in order and the running count.
func (s *slots) positions() ([]*run, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*run, len(s.queue))
	for i, t := range s.queue {
		out[i] = t.ru
	}
	return out, s.running
}

// queue records the pipeline as waiting for a slot, with its position.
func (ru *run) queue(ctx context.Context) {
	_ = ru.update(ctx, func(p *Pipeline) { p.Phase = Queued })
	ru.r.requeue(ctx)
	snap := ru.snapshot()
	ru.r.log.Info("pipeline queued", "pipeline", snap.ID, "reason", snap.Reason)
	ru.r.event(false, snap.ID, "Queued", snap.Reason)
}

// requeue records every queued pipeline's position, as the queue moved.
func (r *Runner) requeue(ctx context.Context) {
	r.queueMu.Lock()
	defer r.queueMu.Unlock()
	queued, running := r.slots.positions()
	for i, ru := range queued {
		msg := queuedReason(i+1, len(queued), running)
		_, _ = ru.updateIf(ctx, func(p *Pipeline) bool {
			if p.Phase != Queued || p.FailedStep != "" || p.Reason == msg {
				return false
			}
			p.Reason = msg
			return true
		})
	}
}

// stagingPoll is how often a step waiting for a staging environment to go
// looks again at the state repo (this runner's own deletions wake it
// at once).
const stagingPoll = 2 * time.Second

// stagingCap serialises the pushes of new staging manifests, so that two
// pipelines never both take the last free place, and wakes the waiting
// ones when a staging manifest is deleted.
type stagingCap struct {
	push  sync.Mutex // held from counting to the commit
	mu    sync.Mutex
	freed chan struct{}
}

func newStagingCap() stagingCap { return stagingCap{freed: make(chan struct{})} }

// changed returns a channel closed at the next freed.
func (c *stagingCap) changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.freed
}

// free wakes the pipelines waiting for a staging environment to go.
func (c *stagingCap) free() {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.freed)
	c.freed = make(chan struct{})
}

// stagingPlace waits until env may be pushed without exceeding MaxStaging
// and returns with the push lock held: call release after the commit. The
// wait ends with a failure when the pipeline's staging TTL, counted from
// the step's first start, passes; a drain interrupts it.
func (ru *run) stagingPlace(ctx context.Context, w io.Writer, env string) (release func(), err error) {
	limit := ru.r.opts.MaxStaging
	if limit <= 0 {
		return func() {}, nil
	}
	c := &ru.r.staging
	waited := false
	for {
		freed := c.changed()
		c.push.Lock()
		n, err := ru.countStaging(ctx, env)
		if err != nil {
			c.push.Unlock()
			return nil, err
		}
		if n < limit {
			if waited {
				ru.placeFound(ctx, w, n, limit)
			}
			return c.push.Unlock, nil
		}
		c.push.Unlock()
		if !waited {
			waited = true
			msg := stagingReason(n)
			fmt.Fprintln(w, msg)
			ru.r.log.Info("pipeline waiting for a staging environment", "pipeline", ru.p.ID, "reason", msg)
			_ = ru.update(ctx, func(p *Pipeline) {
				if p.FailedStep == "" {
					p.Reason = msg
				}
			})
		}
		left := ru.stagingUntil().Sub(ru.r.now())
		if left <= 0 {
			return nil, failf("%s: waited %s (staging TTL) for one of %d staging environments to go (limits.stagingEnvironments)",
				StepStage, shortDuration(ru.r.opts.StagingTTL), n)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ru.r.draining:
			return nil, errInterrupted
		case <-freed:
		case <-ru.r.clk.After(min(stagingPoll, left)):
		}
	}
}

// placeFound records the end of a wait for a staging environment: the
// TTL of the one about to be pushed counts from now, not from when the
// wait began.
func (ru *run) placeFound(ctx context.Context, w io.Writer, n, limit int) {
	fmt.Fprintf(w, "a staging environment is free (%d of %d exist)\n", n, limit)
	now := ru.r.now().UTC()
	_ = ru.update(ctx, func(p *Pipeline) {
		if s := p.Step(StepStage); s != nil {
			s.Started = now
		}
		if p.FailedStep == "" {
			p.Reason = ""
		}
	})
}

// countStaging counts the staging environments in the state repo other
// than env.
func (ru *run) countStaging(ctx context.Context, env string) (int, error) {
	snap, err := ru.r.repo.Snapshot(ctx)
	if err != nil {
		return 0, fmt.Errorf("counting staging environments: %w", err)
	}
	n := 0
	for _, e := range stagingEnvs(snap) {
		if e != env && e != manifest.ProductionEnv {
			n++
		}
	}
	return n, nil
}

// tokenSource is the reporter's view of an expectation's bearer token,
// which environment jobs receive (RUNWAY_REPORTER_TOKEN).
type tokenSource interface {
	Token(ctx context.Context, workflow string) (string, error)
}

// hideToken adds workflow's reporter token to the Redactor, so a job that
// prints its environment does not put the token in its step log. A
// workflow not submitted yet has no token; that is no error.
func (ru *run) hideToken(ctx context.Context, workflow string) {
	ts, ok := ru.r.reporter.(tokenSource)
	if !ok || ru.r.opts.Redactor == nil {
		return
	}
	if tok, err := ts.Token(ctx, workflow); err == nil {
		ru.r.opts.Redactor.Add(tok)
	}
}
