package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/manifest"
)

const maxStepLog = 64 << 10

// run is one pipeline being executed.
type run struct {
	r *Runner
	// stop ends the run's context; Cancel stops it with errCancelled.
	stop   context.CancelCauseFunc
	saveMu sync.Mutex // serialises saves, so the last change is the one stored
	mu     sync.Mutex // guards p
	p      *Pipeline
	// logs of running steps, by name
	logs map[string]*logBuffer
}

func (ru *run) snapshot() *Pipeline {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	c := ru.p.Clone()
	for i := range c.Steps {
		if lb, ok := ru.logs[c.Steps[i].Name]; ok {
			c.Steps[i].Log = lb.String()
		}
	}
	return c
}

// update changes the pipeline under the lock and stores it.
func (ru *run) update(ctx context.Context, f func(p *Pipeline)) error {
	_, err := ru.updateIf(ctx, func(p *Pipeline) bool { f(p); return true })
	return err
}

// updateIf changes the pipeline under the lock when f says it changed it,
// and then stores it.
func (ru *run) updateIf(ctx context.Context, f func(p *Pipeline) bool) (bool, error) {
	ru.saveMu.Lock()
	defer ru.saveMu.Unlock()
	ru.mu.Lock()
	if !f(ru.p) {
		ru.mu.Unlock()
		return false, nil
	}
	c := ru.p.Clone()
	ru.mu.Unlock()
	if err := ru.r.store.SavePipeline(context.WithoutCancel(ctx), c); err != nil {
		if !errors.Is(err, ErrVersionTaken) { // the version step picks the next one
			ru.r.log.Error("saving pipeline", "pipeline", c.ID, "err", err)
		}
		return true, err
	}
	return true, nil
}

// cancelRequested reports whether Cancel was called for the pipeline
// (before a restart too).
func (ru *run) cancelRequested() bool {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	return ru.p.CancelRequested != ""
}

type stepFunc func(ctx context.Context, log io.Writer) error

func (ru *run) steps() map[string]stepFunc {
	return map[string]stepFunc{
		StepVersion: ru.pickVersion,
		StepBuildApp: func(ctx context.Context, w io.Writer) error {
			if ru.p.isService() {
				fmt.Fprintf(w, "%s is a %s service's repository: it has no app image; only its pipeline artifact is built\n", ru.p.App, ru.p.Service)
				return errSkipped
			}
			return ru.build(ctx, w, StepBuildApp, build.App)
		},
		StepBuildPipeline: func(ctx context.Context, w io.Writer) error {
			return ru.build(ctx, w, StepBuildPipeline, build.Pipeline)
		},
		StepStage: ru.stage,
		// Steps needing the staging environment fail once it expired.
		StepSubmit:      ru.beforeExpiry(ru.submit),
		StepAwaitDeploy: ru.untilExpiry(ru.awaitDeploy),
		StepStagingMigrations: ru.untilExpiry(func(ctx context.Context, w io.Writer) error {
			return ru.job(ctx, w, StepStagingMigrations, ru.p.StagingEnv, "migrations")
		}),
		StepStagingTests: ru.untilExpiry(func(ctx context.Context, w io.Writer) error {
			return ru.job(ctx, w, StepStagingTests, ru.p.StagingEnv, "tests")
		}),
		// A promotion that landed before a restart is found first: the
		// staging environment may have expired since, and that is fine.
		// Then the app's promotion is waited for, in commit order.
		StepPromote: func(ctx context.Context, w io.Writer) error {
			if done, err := ru.promotedEarlier(ctx, w); err != nil || done {
				return err
			}
			if !ru.snapshot().Promoting {
				if err := ru.awaitPromotion(ctx, w); err != nil {
					return err
				}
			}
			return ru.beforeExpiry(ru.promote)(ctx, w)
		},
		StepAwaitRollout: ru.awaitRollout,
		StepProductionMigrations: func(ctx context.Context, w io.Writer) error {
			return ru.job(ctx, w, StepProductionMigrations, manifest.ProductionEnv, "migrations")
		},
		StepProductionTests: func(ctx context.Context, w io.Writer) error {
			return ru.job(ctx, w, StepProductionTests, manifest.ProductionEnv, "tests")
		},
		StepTeardown: ru.teardown,
	}
}

// execute runs the steps that have not ended yet. After a failure, a
// supersession or a cancellation the remaining steps are skipped but
// teardown still runs. Steps run under rctx (which Cancel ends), teardown
// under ctx; when ctx ends the pipeline stops where it is, to resume on
// restart.
func (ru *run) execute(ctx, rctx context.Context) {
	log := ru.r.log.With("pipeline", ru.p.ID)
	defer ru.r.promos.release(ru.p.App, ru.p.ID)
	started, _ := ru.updateIf(ctx, func(p *Pipeline) bool {
		if p.Phase.Done() { // cancelled while queued
			return false
		}
		if p.Phase == Queued && p.FailedStep == "" {
			p.Reason = "" // it was why it queued
		}
		p.Phase = Running
		if p.Started.IsZero() {
			p.Started = ru.r.now().UTC()
		}
		return true
	})
	if !started {
		return
	}
	ru.r.event(false, ru.p.ID, "Started", fmt.Sprintf("%s at commit %.12s", ru.p.App, ru.p.Commit))
	// A resumed pipeline's jobs may print the tokens of its expectations.
	ru.hideToken(ctx, ru.p.ID)
	ru.hideToken(ctx, ru.productionWorkflow())
	funcs := ru.steps()
	failedStep, end := ru.endSoFar()
	for i := range ru.p.Steps {
		name := ru.p.Steps[i].Name
		if ru.p.Steps[i].Phase.Done() {
			continue
		}
		if end == nil && ru.cancelRequested() {
			end = errCancelled
		}
		if end != nil && name != StepTeardown {
			_ = ru.update(ctx, func(p *Pipeline) {
				s := &p.Steps[i]
				if s.Phase == Running && errors.Is(end, errCancelled) { // running at a kill
					s.Phase, s.Finished = Cancelled, ru.r.now().UTC()
					return
				}
				s.Phase = Skipped
			})
			if name == StepProductionTests {
				// Ended after its promotion (failed, superseded): the
				// next change need not wait for this one's teardown.
				ru.r.promos.release(ru.p.App, ru.p.ID)
			}
			continue
		}
		if ru.r.isDraining() {
			log.Info("pipeline stopped for shutdown; it resumes at this step on restart", "step", name)
			return
		}
		parent := rctx
		if name == StepTeardown {
			parent = ctx
		}
		err := ru.runStep(parent, i, funcs[name])
		var sup *errSuperseded
		switch {
		case errors.Is(err, errCancelled):
			if end == nil {
				end = errCancelled
			}
			if name == StepProductionTests {
				ru.r.promos.release(ru.p.App, ru.p.ID)
			}
			continue
		case errors.Is(err, errInterrupted) || ctx.Err() != nil:
			log.Info("pipeline interrupted; it resumes at this step on restart", "step", name)
			return
		case errors.As(err, &sup):
			if end == nil {
				end = sup
			}
		case err != nil && end == nil:
			end, failedStep = err, name
			log.Warn("step failed", "step", name, "err", err)
		}
		if name == StepProductionTests {
			ru.r.promos.release(ru.p.App, ru.p.ID)
		}
	}
	ru.finish(ctx, end, failedStep)
}

// endSoFar is how a resumed pipeline already ended, if it did: a failed,
// superseded or cancelled step, or a stored cancel request.
func (ru *run) endSoFar() (failedStep string, end error) {
	p := ru.p
	if p.FailedStep != "" {
		return p.FailedStep, &errStep{msg: p.Reason}
	}
	for _, s := range p.Steps {
		switch s.Phase {
		case Failed: // recorded before FailedStep was
			return s.Name, &errStep{msg: reason(s.Name, errors.New(s.Error))}
		case Superseded:
			return "", &errSuperseded{msg: p.Reason}
		case Cancelled:
			return "", errCancelled
		}
	}
	if p.CancelRequested != "" {
		return "", errCancelled
	}
	return "", nil
}

// finish records the pipeline's end.
func (ru *run) finish(ctx context.Context, end error, failedStep string) {
	var sup *errSuperseded
	_ = ru.update(ctx, func(p *Pipeline) {
		p.Finished = ru.r.now().UTC()
		switch {
		case end == nil:
			p.Phase = Succeeded
		case errors.Is(end, errCancelled):
			p.Phase, p.Reason = Cancelled, cancelReason(p.CancelRequested)
		case errors.As(end, &sup):
			p.Phase, p.Reason = Superseded, ru.r.redact(sup.msg)
		default:
			p.Phase, p.FailedStep, p.Reason = Failed, failedStep, ru.r.redact(reason(failedStep, end))
		}
	})
	snap := ru.snapshot()
	ru.r.log.Info("pipeline finished", "pipeline", snap.ID, "phase", snap.Phase, "reason", snap.Reason)
	ru.r.event(snap.Phase == Failed, snap.ID, string(snap.Phase), snap.Reason)
}

func (ru *run) runStep(ctx context.Context, i int, f stepFunc) error {
	lb := &logBuffer{max: maxStepLog}
	name := ru.p.Steps[i].Name
	if prev := ru.p.Steps[i]; prev.Phase == Running && prev.Log != "" {
		// Run again after a restart: keep what the earlier run wrote.
		io.WriteString(lb, prev.Log)
		fmt.Fprintf(lb, "-- running again at %s after a restart\n", ru.r.now().UTC().Format(time.RFC3339))
	}
	ru.mu.Lock()
	if ru.logs == nil {
		ru.logs = map[string]*logBuffer{}
	}
	ru.logs[name] = lb
	ru.mu.Unlock()
	_ = ru.update(ctx, func(p *Pipeline) {
		s := &p.Steps[i]
		// A step run again after a restart keeps its first start, which
		// the staging TTL counts from.
		if s.Phase != Running || s.Started.IsZero() {
			s.Started = ru.r.now().UTC()
		}
		s.Phase, s.Finished, s.Error = Running, time.Time{}, ""
	})
	ru.r.log.Info("step started", "pipeline", ru.p.ID, "step", name)
	ru.r.event(false, ru.p.ID, "StepStarted", name)
	stepCtx, cancel := ru.r.stepContext(ctx, name)
	// Everything the step writes (build output, job output) is masked
	// before it reaches the buffer that is stored and served.
	w := ru.r.opts.Redactor.Writer(lb)
	stopFlush := ru.flushLog(ctx, i, name, lb)
	err := f(stepCtx, w)
	if fl, ok := w.(interface{ Flush() error }); ok {
		_ = fl.Flush() // lb never fails
	}
	stopFlush()
	cancelled := err != nil && (errors.Is(err, errCancelled) || errors.Is(context.Cause(stepCtx), errCancelled))
	interrupted := !cancelled && err != nil && (stepCtx.Err() != nil || errors.Is(err, errInterrupted))
	cancel()
	if interrupted {
		// Interrupted (shutdown or drain): the step stays Running and runs
		// again on restart; what it wrote so far is kept.
		fmt.Fprintf(lb, "-- interrupted at %s by shutdown; this step runs again on restart\n", ru.r.now().UTC().Format(time.RFC3339))
		_ = ru.update(context.WithoutCancel(ctx), func(p *Pipeline) { p.Steps[i].Log = lb.String() })
		return errInterrupted
	}
	var sup *errSuperseded
	superseded := errors.As(err, &sup)
	skipped := errors.Is(err, errSkipped)
	if skipped {
		err = nil
	}
	if cancelled {
		fmt.Fprintf(lb, "-- cancelled at %s\n", ru.r.now().UTC().Format(time.RFC3339))
		err = errCancelled
	}
	var ended Phase
	_ = ru.update(context.WithoutCancel(ctx), func(p *Pipeline) {
		s := &p.Steps[i]
		s.Finished, s.Log = ru.r.now().UTC(), lb.String()
		switch {
		case cancelled:
			s.Phase = Cancelled
		case superseded:
			// Recorded with the step, so that a restart before the
			// pipeline ends still knows why.
			s.Phase, p.Reason = Superseded, ru.r.redact(sup.msg)
		case skipped:
			s.Phase = Skipped
		case err != nil:
			s.Phase, s.Error = Failed, ru.r.redact(err.Error())
			// Recorded with the step, so that a restart before the
			// pipeline ends still knows it failed, and why.
			if p.FailedStep == "" {
				p.FailedStep, p.Reason = name, ru.r.redact(reason(name, err))
			}
		default:
			s.Phase = Succeeded
		}
		delete(ru.logs, name)
		ended = s.Phase
	})
	ru.stepEnded(name, ended, err)
	return err
}

// stepEnded records a step's end as an event: StepSucceeded, StepFailed
// (with the error), StepSkipped, StepCancelled or StepSuperseded.
func (ru *run) stepEnded(name string, phase Phase, err error) {
	msg := name
	if phase == Failed && err != nil {
		msg += ": " + ru.r.redact(err.Error())
	}
	ru.r.event(phase == Failed, ru.p.ID, "Step"+string(phase), msg)
}

// logFlushInterval is how often a running step's log is saved, so that a
// kill loses at most that much of it.
const logFlushInterval = 2 * time.Second

// flushLog saves step i's log every logFlushInterval while it runs, until
// the returned stop is called. Each save that changed the log is told by a
// StepLog event, so that followers of the log know to read it again.
func (ru *run) flushLog(ctx context.Context, i int, name string, lb *logBuffer) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		saved := ""
		for {
			select {
			case <-done:
				return
			case <-ru.r.clk.After(logFlushInterval):
				if l := lb.String(); l != saved {
					saved = l
					if ru.update(context.WithoutCancel(ctx), func(p *Pipeline) { p.Steps[i].Log = l }) == nil {
						ru.r.event(false, ru.p.ID, "StepLog", name)
					}
				}
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// errCancelled is the cause a cancelled pipeline's steps are stopped with.
var errCancelled = errors.New("pipeline cancelled")

// cancelReason is a cancelled pipeline's reason.
func cancelReason(requested string) string { return "cancelled: " + requested }
