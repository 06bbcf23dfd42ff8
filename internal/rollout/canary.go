package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/oneline"
)

// rollout is one canary in progress.
type rollout struct {
	c       *Controller
	req     Request
	steps   []appspec.Step
	canary  []gateway.Backend
	promote chan struct{}
	retry   chan struct{}
	runs    int // analysis runs started, for unique run names
	// bgInconclusive carries the reason a background analysis ended
	// Inconclusive; the steps pause on it.
	bgInconclusive chan string

	mu        sync.Mutex
	status    Status
	cancel    context.CancelCauseFunc // aborts the rollout, set by run
	paused    bool                    // in a pause step or an inconclusive pause
	retryable bool                    // paused on an inconclusive analysis
	// full is set by a full promote: skip every remaining step.
	full       bool
	cancelStep context.CancelCauseFunc // cancels the running step
	saveMu     sync.Mutex              // orders checkpoint writes

	// Checkpointed state (see Checkpoint).
	resume       *Checkpoint // what a restarted rollout resumes from
	pauseStarted time.Time
	stepRun      string
	bgRun        string
	aborting     string
	promoting    bool
}

func (r *rollout) snapshot() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.status
	s.Analyses = append([]Run(nil), r.status.Analyses...)
	return s
}

// errAborted carries the reason a rollout stops.
type errAborted struct{ reason string }

func (e *errAborted) Error() string { return e.reason }

func (r *rollout) run(ctx context.Context) {
	log := r.c.log.With("env", r.req.Env, "app", r.req.App, "canary", r.req.CanaryVersion, "stable", r.req.StableVersion)
	log.Info("rollout started", "steps", len(r.steps))
	shutdown := ctx
	ctx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	r.mu.Lock()
	r.cancel = abort
	aborting := r.aborting
	r.mu.Unlock()
	if aborting != "" {
		// Killed in the middle of an abort: finish it.
		r.abortRollout(ctx, aborting)
		log.Warn("rollout aborted", "reason", aborting)
		return
	}
	err := r.progress(ctx, abort)
	if shutdown.Err() != nil {
		// Shutting down: leave the canary as it is; it is not a verdict.
		log.Info("rollout interrupted by shutdown", "step", r.snapshot().Step)
		return
	}
	var ab *errAborted
	if cause := context.Cause(ctx); errors.As(cause, &ab) {
		err = ab // an abort request wins over whatever the step was doing
	}
	if err != nil {
		reason := err.Error()
		r.abortRollout(ctx, reason)
		log.Warn("rollout aborted", "reason", reason)
		return
	}
	r.update(ctx, func(r *rollout) { r.promoting = true })
	if err := r.promoteRollout(context.WithoutCancel(ctx)); err != nil {
		r.abortRollout(ctx, "promoting: "+err.Error())
		log.Error("rollout failed at promotion", "err", err)
		return
	}
	log.Info("rollout complete", "version", r.req.CanaryVersion)
}

// progress starts the canary and walks the steps, with the background
// analysis (if any) beside them and the canary's health watched all along
// (abort is the rollout's cancel).
func (r *rollout) progress(ctx context.Context, abort context.CancelCauseFunc) error {
	deadline := r.req.Artifact.Spec.ProgressDeadline()
	stopWatch := r.watchCanary(ctx, abort, deadline)
	defer stopWatch()
	startCtx, cancelStart := context.WithTimeoutCause(ctx, deadline, &errAborted{reason: notReadyReason(deadline)})
	canary, err := r.req.Target.StartCanary(startCtx)
	cause := context.Cause(startCtx)
	cancelStart()
	if err != nil {
		var ab *errAborted
		if errors.As(cause, &ab) {
			return ab // the deadline, or the watch, ended the start
		}
		return &errAborted{reason: fmt.Sprintf("canary %s did not start: %v", r.req.CanaryVersion, err)}
	}
	r.canary = canary
	// A resumed rollout routes the weight it had; a new one starts at 0.
	if err := r.c.router.SetRoute(r.route(r.snapshot().Weight)); err != nil {
		return fmt.Errorf("routing canary: %w", err)
	}
	r.mu.Lock()
	resume, promoting := r.resume, r.promoting
	r.mu.Unlock()
	if promoting {
		return nil // every step had passed before a restart
	}
	first := 0
	if resume != nil {
		first = resume.Step
	}
	// The steps run under stepsCtx, which a failing background analysis
	// cancels with its verdict; the background analysis runs under bgCtx,
	// terminated (Argo's terminate: Successful unless it failed) once the
	// steps are done.
	stepsCtx, abortSteps := context.WithCancelCause(ctx)
	defer abortSteps(nil)
	bgCtx, stopBackground := context.WithCancelCause(ctx)
	var bg sync.WaitGroup
	endBackground := func() {
		stopBackground(analysis.ErrTerminated)
		bg.Wait()
	}
	defer endBackground()
	verdict := func(err error) error {
		if cause := context.Cause(stepsCtx); cause != nil && !errors.Is(cause, context.Canceled) {
			return cause
		}
		return err
	}
	bgSpec := r.req.Artifact.Spec.Strategy.Canary
	// holdOnInconclusive pauses for a person when the background analysis
	// ended Inconclusive: promote goes on without it, retry starts a fresh
	// background run.
	holdOnInconclusive := func() error {
		select {
		case reason := <-r.bgInconclusive:
			err := r.pauseFor(stepsCtx, "background analysis inconclusive ("+reason+"); paused until promoted, retried or aborted", 0, true)
			if errors.Is(err, errRetry) {
				r.startBackground(bgCtx, abortSteps, &bg, bgSpec.Analysis, false)
				return nil
			}
			return err
		default:
			return nil
		}
	}
	for i, step := range r.steps {
		if i < first {
			continue
		}
		if r.skipping() {
			break
		}
		if bgSpec != nil && bgSpec.Analysis != nil && (bgSpec.Analysis.StartingStep == i || i == first && resume != nil && bgSpec.Analysis.StartingStep < i) {
			r.startBackground(bgCtx, abortSteps, &bg, bgSpec.Analysis, true)
		}
		if err := holdOnInconclusive(); err != nil {
			return verdict(err)
		}
		if resume == nil || i != first {
			r.update(ctx, func(r *rollout) {
				r.status.Step, r.stepRun, r.pauseStarted = i, "", time.Time{}
			})
		}
		err := r.runStep(stepsCtx, i, step)
		r.mu.Lock()
		r.resume = nil // the resumed step is done with
		r.mu.Unlock()
		if err != nil {
			return verdict(err)
		}
	}
	if r.skipping() {
		r.c.log.Info("full promote: remaining steps skipped", "app", r.req.App, "canary", r.req.CanaryVersion)
		endBackground()
		return verdict(nil)
	}
	if err := holdOnInconclusive(); err != nil {
		return verdict(err)
	}
	endBackground()
	return verdict(nil)
}

// errSkip is the cause a full promote cancels the current step with.
var errSkip = errors.New("skipped by a full promote")

// runStep runs one step under its own context, which a full promote
// cancels; a step cancelled that way is not a failure.
func (r *rollout) runStep(ctx context.Context, i int, step appspec.Step) error {
	stepCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r.mu.Lock()
	r.cancelStep = cancel
	r.mu.Unlock()
	err := r.step(stepCtx, i, step)
	if err != nil && errors.Is(context.Cause(stepCtx), errSkip) && ctx.Err() == nil {
		return nil
	}
	return err
}

func (r *rollout) skipping() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.full
}

func (r *rollout) step(ctx context.Context, i int, step appspec.Step) error {
	switch {
	case step.SetWeight != nil:
		w := *step.SetWeight
		if err := r.c.router.SetCanaryWeight(r.req.Env, r.req.App, w); err != nil {
			return fmt.Errorf("setting weight %d: %w", w, err)
		}
		r.update(ctx, func(r *rollout) {
			r.status.Weight = w
			r.status.Message = fmt.Sprintf("step %d/%d: weight %d%%", i+1, len(r.steps), w)
		})
		r.c.log.Info("canary weight set", "app", r.req.App, "weight", w, "step", i+1)
		return nil
	case step.Pause != nil:
		d := step.Pause.Duration.Duration
		if d == 0 {
			return r.pause(ctx, fmt.Sprintf("step %d/%d: paused until promoted", i+1, len(r.steps)), 0)
		}
		// A resumed timed pause waits only what was left of it.
		r.mu.Lock()
		if r.pauseStarted.IsZero() {
			r.pauseStarted = time.Now().UTC()
		}
		left := d - time.Since(r.pauseStarted)
		r.mu.Unlock()
		r.save(ctx)
		if left <= 0 {
			return nil
		}
		return r.pause(ctx, fmt.Sprintf("step %d/%d: pause %s", i+1, len(r.steps), d), left)
	case step.Analysis != nil:
		for {
			out, name, err := r.stepAnalysis(ctx, i, step.Analysis)
			if err != nil {
				return err
			}
			switch out.Phase {
			case Successful:
				return nil
			case Inconclusive:
				err := r.pauseFor(ctx, fmt.Sprintf("step %d/%d: analysis %s inconclusive (%s); paused until promoted, retried or aborted", i+1, len(r.steps), name, out.Reason), 0, true)
				if errors.Is(err, errRetry) {
					continue // a fresh run; the inconclusive one stays readable
				}
				return err
			default:
				return &errAborted{reason: fmt.Sprintf("analysis %s %s: %s", name, out.Phase, out.Reason)}
			}
		}
	}
	return nil
}

// stepAnalysis runs the step's analysis; a resumed step continues the run
// it had started, and a retry starts a fresh one.
func (r *rollout) stepAnalysis(ctx context.Context, i int, a *appspec.StepAnalysis) (Outcome, string, error) {
	r.mu.Lock()
	name, resume := r.stepRun, r.stepRun != "" && r.resume != nil
	if !resume {
		r.runs++
		name = fmt.Sprintf("%s-%s-step%d-%d", r.req.App, r.req.CanaryVersion, i+1, r.runs)
	}
	r.stepRun = name
	r.status.Message = fmt.Sprintf("step %d/%d: analysis %s", i+1, len(r.steps), name)
	r.resume = nil // a retry after this run is a fresh run
	r.mu.Unlock()
	r.save(ctx)
	out, err := r.analyze(ctx, name, a.Templates, a.Args, resume)
	return out, name, err
}

// errRetry ends a pause whose analysis is to be run again.
var errRetry = errors.New("retry requested")

// pause waits d, or until promoted when d is 0; an abort ends it.
func (r *rollout) pause(ctx context.Context, msg string, d time.Duration) error {
	return r.pauseFor(ctx, msg, d, false)
}

// pauseFor is pause; with retryable set a retry request ends it with
// errRetry, otherwise retries are ignored.
func (r *rollout) pauseFor(ctx context.Context, msg string, d time.Duration, retryable bool) error {
	phase := Progressing
	if d == 0 {
		phase = Paused
	}
	// A promote or retry sent before this pause began is stale.
	select {
	case <-r.promote:
	default:
	}
	select {
	case <-r.retry:
	default:
	}
	r.mu.Lock()
	r.status.Message, r.status.Phase, r.paused, r.retryable = msg, phase, true, retryable
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.status.Phase, r.paused, r.retryable = Progressing, false, false
		r.mu.Unlock()
	}()
	var timer <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	var retryCh chan struct{}
	if retryable {
		retryCh = r.retry
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer:
	case <-r.promote:
	case <-retryCh:
		return errRetry
	}
	return nil
}

func (r *rollout) analyze(ctx context.Context, name string, templates []appspec.TemplateRef, args []appspec.Arg, resume bool) (Outcome, error) {
	all := map[string]string{
		"app": r.req.App, "env": r.req.Env, "version": r.req.CanaryVersion,
		"canary-version": r.req.CanaryVersion, "stable-version": r.req.StableVersion,
	}
	for _, a := range args {
		all[a.Name] = a.Value
	}
	out, err := r.c.analyzer.Analyze(ctx, AnalysisRequest{Name: name, Templates: templates, Args: all, Artifact: r.req.Artifact, Resume: resume})
	if err != nil {
		if ctx.Err() != nil {
			return Outcome{}, ctx.Err()
		}
		out = Outcome{Phase: Error, Reason: err.Error()}
	}
	r.update(ctx, func(r *rollout) {
		run := Run{Name: name, Phase: out.Phase, Reason: out.Reason}
		// A resumed run may have been listed before the restart.
		if i := slices.IndexFunc(r.status.Analyses, func(a Run) bool { return a.Name == name }); i >= 0 {
			r.status.Analyses[i] = run
			return
		}
		r.status.Analyses = append(r.status.Analyses, run)
	})
	return out, nil
}

// startBackground runs the background analysis until the steps end; a
// failure cancels the steps with the reason.
func (r *rollout) startBackground(ctx context.Context, cancel context.CancelCauseFunc, wg *sync.WaitGroup, a *appspec.BackgroundAnalysis, mayResume bool) {
	r.mu.Lock()
	name, resume := r.bgRun, mayResume && r.bgRun != "" && r.resume != nil
	if !resume {
		r.runs++
		name = fmt.Sprintf("%s-%s-background-%d", r.req.App, r.req.CanaryVersion, r.runs)
	}
	r.bgRun = name
	r.mu.Unlock()
	r.save(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		out, err := r.analyze(ctx, name, a.Templates, a.Args, resume)
		if err != nil || out.Phase == Successful {
			return
		}
		if out.Phase == Inconclusive {
			select {
			case r.bgInconclusive <- name + ": " + out.Reason:
			default:
			}
			return
		}
		cancel(&errAborted{reason: fmt.Sprintf("background analysis %s %s: %s", name, out.Phase, out.Reason)})
	}()
}

func (r *rollout) route(weight int) gateway.Route {
	return gateway.Route{
		Env: r.req.Env, App: r.req.App,
		StableVersion: r.req.StableVersion, Stable: r.req.Stable,
		CanaryVersion: r.req.CanaryVersion, Canary: r.canary, CanaryWeight: weight,
	}
}

// promoteRollout makes the canary stable: all traffic to it, old stable
// stopped, success reported.
func (r *rollout) promoteRollout(ctx context.Context) error {
	if err := r.c.router.SetCanaryWeight(r.req.Env, r.req.App, 100); err != nil {
		return err
	}
	route := gateway.Route{Env: r.req.Env, App: r.req.App, StableVersion: r.req.CanaryVersion, Stable: r.canary}
	if err := r.c.router.SetRoute(route); err != nil {
		return err
	}
	if err := r.req.Target.Promoted(ctx, r.canary); err != nil {
		return err
	}
	msg := fmt.Sprintf("%s %s promoted after %d steps", r.req.App, r.req.CanaryVersion, len(r.steps))
	// Reported before the checkpoint says so: a restart in between
	// reports again (reports are idempotent) rather than never.
	r.reportEnd(ctx, true, msg)
	r.update(ctx, func(r *rollout) {
		r.status.Phase, r.status.Weight, r.status.Step, r.status.Message, r.status.Finished = Healthy, 100, len(r.steps), msg, time.Now().UTC()
	})
	return nil
}

// maxAbortReason bounds a whole abort reason, in bytes: Runway's words
// (such as "aborted by request: " or an analysis verdict) around a reason
// from outside, itself cut to oneline.MaxReason by Abort.
const maxAbortReason = 1024

// abortRollout sends all traffic back to stable first, then stops the
// canary, reports the failure and reverts git. The reason is made one line
// of at most maxAbortReason bytes first: it goes into a commit message.
func (r *rollout) abortRollout(ctx context.Context, reason string) {
	ctx = context.WithoutCancel(ctx)
	reason = oneline.Clean(reason, maxAbortReason)
	r.c.log.Warn("aborting rollout", "app", r.req.App, "canary", r.req.CanaryVersion, "reason", reason)
	// Recorded first: a restart from here on finishes the abort (routing
	// back again) rather than resuming the canary at its weight.
	r.update(ctx, func(r *rollout) {
		r.status.Phase, r.status.Weight, r.status.Message, r.aborting = Degraded, 0, "aborted: "+reason, reason
	})
	route := gateway.Route{Env: r.req.Env, App: r.req.App, StableVersion: r.req.StableVersion, Stable: r.req.Stable}
	if err := r.c.router.SetRoute(route); err != nil {
		r.c.log.Error("routing back to stable", "err", err)
	}
	if err := r.req.Target.Aborted(ctx); err != nil {
		r.c.log.Error("stopping canary", "err", err)
	}
	if err := r.revert(ctx, reason); err != nil {
		r.c.log.Error("reverting production manifest", "err", err)
		reason += " (git revert failed: " + oneline.Reason(err.Error()) + ")"
	}
	r.reportEnd(ctx, false, fmt.Sprintf("canary %s aborted: %s", r.req.CanaryVersion, reason))
	r.update(ctx, func(r *rollout) { r.status.Finished, r.status.Message = time.Now().UTC(), "aborted: "+reason })
}

// reportEnd reports the rollout's end. The message is one line of at most
// oneline.MaxReason bytes, so that no reporter limit can refuse it (a
// refused report would leave the pipeline waiting out its deadline).
func (r *rollout) reportEnd(ctx context.Context, ok bool, msg string) {
	if r.req.Workflow == "" {
		return
	}
	if err := r.c.reporter.Update(ctx, r.req.Workflow, r.req.App, ok, oneline.Reason(msg)); err != nil {
		r.c.log.Error("reporting rollout end", "err", err)
	}
}

// revert puts the stable version's manifest entry back into production,
// unless the manifest has moved on to yet another version.
func (r *rollout) revert(ctx context.Context, reason string) error {
	data, err := r.c.repo.ReadFile(ctx, manifest.ProductionPath)
	if err != nil {
		return err
	}
	m, err := manifest.Parse(data)
	if err != nil {
		return err
	}
	cur, ok := m.Apps[r.req.App]
	if !ok || cur.Version() != r.req.CanaryVersion || r.req.StableEntry == nil {
		return nil
	}
	m.Apps[r.req.App] = r.req.StableEntry
	m.ChangeDescription = fmt.Sprintf("rollback %s to %s: %s failed: %s", r.req.App, r.req.StableVersion, r.req.CanaryVersion, reason)
	out, err := m.Marshal()
	if err != nil {
		return err
	}
	_, err = r.c.repo.Commit(ctx, m.ChangeDescription, gitops.Change{Path: manifest.ProductionPath, Data: out})
	return err
}
