package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/appspec"
)

// analysisRuns is the analysis run controller inside the rollout
// controller, as Argo Rollouts has an AnalysisRun controller beside the
// Rollout one: a pass launches a run, the run goes on in its own goroutine
// under the controller's context, and its end is recorded here and
// enqueues the rollout's key; the next pass reads it into the status.
type analysisRuns struct {
	analyzer Analyzer
	log      *slog.Logger
	enqueue  func(key string)

	mu   sync.Mutex
	runs map[string]*analysisRun // by run name
	wg   sync.WaitGroup
}

type analysisRun struct {
	key    string
	cancel context.CancelCauseFunc
	ended  bool
	out    Outcome
}

// errRolloutEnded stops the runs of a rollout that no longer waits for
// them.
var errRolloutEnded = errors.New("rollout ended")

// launch starts req's run under ctx (the controller's) unless the run is
// known already.
func (a *analysisRuns) launch(ctx context.Context, key string, req AnalysisRequest) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.runs[req.Name]; ok {
		return
	}
	runCtx, cancel := context.WithCancelCause(ctx)
	r := &analysisRun{key: key, cancel: cancel}
	a.runs[req.Name] = r
	a.wg.Go(func() {
		defer cancel(nil)
		out, err := a.analyzer.Analyze(runCtx, req)
		if err != nil {
			cause := context.Cause(runCtx)
			switch {
			case ctx.Err() != nil:
				// A shutdown: no verdict; the run resumes after the
				// restart from its stored measurements.
				return
			case errors.Is(cause, analysis.ErrTerminated):
				out = Outcome{Phase: Successful, Reason: "terminated at promotion"}
			case cause != nil:
				out = Outcome{Phase: Error, Reason: "stopped before it ended: " + cause.Error()}
			default:
				out = Outcome{Phase: Error, Reason: err.Error()}
			}
		}
		a.log.Info("analysis run ended", "key", key, "run", req.Name, "phase", out.Phase, "reason", out.Reason)
		a.mu.Lock()
		r.ended, r.out = true, out
		a.mu.Unlock()
		a.enqueue(key)
	})
}

// outcome returns the end of the named run: known is false if this
// controller never launched it (it was launched before a restart), ended
// false while it runs.
func (a *analysisRuns) outcome(name string) (out Outcome, known, ended bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.runs[name]
	if !ok {
		return Outcome{}, false, false
	}
	return r.out, true, r.ended
}

// stop cancels the runs of key with cause: analysis.ErrTerminated at a
// promotion, the abort's reason at an abort.
func (a *analysisRuns) stop(key string, cause error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.runs {
		if r.key == key {
			r.cancel(cause)
		}
	}
}

// forget drops the runs of a rollout that ended.
func (a *analysisRuns) forget(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, r := range a.runs {
		if r.key == key {
			r.cancel(errRolloutEnded)
			delete(a.runs, name)
		}
	}
}

// wait returns once every run's goroutine has returned.
func (a *analysisRuns) wait() { a.wg.Wait() }

// analysisRequest is the request of the named run of templates with args,
// beside the arguments every run gets.
func (rc *rolloutContext) analysisRequest(name string, templates []appspec.TemplateRef, args []appspec.Arg, resume bool) AnalysisRequest {
	cp := rc.cp
	all := map[string]string{
		"app": rc.app, "env": rc.env, "version": cp.CanaryVersion,
		"canary-version": cp.CanaryVersion, "stable-version": cp.StableVersion,
	}
	for _, a := range args {
		all[a.Name] = a.Value
	}
	return AnalysisRequest{Name: name, Templates: templates, Args: all, Artifact: rc.desired.Artifact, Resume: resume}
}

// newRun names a new analysis run of the rollout (what is its kind:
// "step2", "background") and lists it Running. The caller saves, then
// launches it: a restart in between resumes the name, which starts afresh.
func (rc *rolloutContext) newRun(what string) string {
	cp := rc.cp
	cp.Runs++
	var name string
	if what == "background" {
		name = fmt.Sprintf("%s-%s-background-%d", rc.app, cp.CanaryVersion, cp.Runs)
	} else {
		name = fmt.Sprintf("%s-%s-%s-%d", rc.app, cp.CanaryVersion, what, cp.Runs)
	}
	cp.Analyses = append(cp.Analyses, Run{Name: name, Phase: Running})
	return name
}

// followRun returns the named run's entry of the status, with the run's
// end recorded once it ended. A run listed Running that this controller
// does not know was launched before a restart: it is launched again with
// Resume, continuing from its stored measurements (or giving its stored
// verdict).
func (rc *rolloutContext) followRun(ctx context.Context, name string, templates []appspec.TemplateRef, args []appspec.Arg) (Run, error) {
	cp := rc.cp
	i := slices.IndexFunc(cp.Analyses, func(r Run) bool { return r.Name == name })
	if i < 0 {
		// A checkpoint of an older Runway lists runs once they ended.
		cp.Analyses = append(cp.Analyses, Run{Name: name, Phase: Running})
		i = len(cp.Analyses) - 1
	}
	if cp.Analyses[i].Phase != Running {
		return cp.Analyses[i], nil
	}
	out, known, ended := rc.c.analyses.outcome(name)
	if !known {
		rc.launch(rc.analysisRequest(name, templates, args, true))
		return cp.Analyses[i], nil
	}
	if !ended {
		return cp.Analyses[i], nil
	}
	cp.Analyses[i] = Run{Name: name, Phase: out.Phase, Reason: out.Reason}
	if err := rc.save(ctx); err != nil {
		return Run{}, err
	}
	return cp.Analyses[i], nil
}

// endRuns gives every run still listed Running its end: the one it had if
// it ended, else def (the rollout ends without it).
func (rc *rolloutContext) endRuns(def Outcome) {
	for i, r := range rc.cp.Analyses {
		if r.Phase != Running {
			continue
		}
		out, _, ended := rc.c.analyses.outcome(r.Name)
		if !ended {
			out = def
		}
		rc.cp.Analyses[i] = Run{Name: r.Name, Phase: out.Phase, Reason: out.Reason}
	}
}

// reconcileStepAnalysis runs an analysis step: a run is started, its end
// awaited; Successful goes on, Failed or Error aborts, Inconclusive pauses
// until a person promotes (go on), retries (a fresh run) or aborts.
func (rc *rolloutContext) reconcileStepAnalysis(ctx context.Context, i int, a *appspec.StepAnalysis) (result, error) {
	cp := rc.cp
	n := len(rc.steps())
	if cp.StepRun == "" {
		return rc.startStepRun(ctx, i, a)
	}
	r, err := rc.followRun(ctx, cp.StepRun, a.Templates, a.Args)
	if err != nil {
		return result{}, err
	}
	switch r.Phase {
	case Running:
		return rc.checkAgain(0), nil
	case Successful:
		return rc.completeStep(ctx)
	case Inconclusive:
		switch {
		case cp.RetryAt == i+1:
			cp.RetryAt = 0
			return rc.startStepRun(ctx, i, a) // the inconclusive run stays listed
		case cp.PromoteAt == i+1:
			return rc.completeStep(ctx)
		}
		msg := fmt.Sprintf("step %d/%d: analysis %s inconclusive (%s); paused until promoted, retried or aborted", i+1, n, r.Name, r.Reason)
		if err := rc.enterPause(ctx, pauseInconclusive, msg); err != nil {
			return result{}, err
		}
		return rc.checkAgain(0), nil
	}
	return rc.abort(ctx, fmt.Sprintf("analysis %s %s: %s", r.Name, r.Phase, r.Reason))
}

// startStepRun starts a fresh run of step i's analysis.
func (rc *rolloutContext) startStepRun(ctx context.Context, i int, a *appspec.StepAnalysis) (result, error) {
	cp := rc.cp
	name := rc.newRun(fmt.Sprintf("step%d", i+1))
	cp.StepRun = name
	cp.Message = fmt.Sprintf("step %d/%d: analysis %s", i+1, len(rc.steps()), name)
	rc.leavePause()
	if err := rc.save(ctx); err != nil {
		return result{}, err
	}
	rc.launch(rc.analysisRequest(name, a.Templates, a.Args, false))
	return rc.checkAgain(0), nil
}

// reconcileBackgroundAnalysis runs the background analysis beside the
// steps from its startingStep on: Failed or Error aborts, Inconclusive
// pauses the steps until a person promotes (the steps go on without it),
// retries (a fresh background run) or aborts; Successful needs nothing
// more. acted reports that the pass did its one action (or holds the steps).
func (rc *rolloutContext) reconcileBackgroundAnalysis(ctx context.Context) (res result, acted bool, err error) {
	cp := rc.cp
	cn := rc.canary()
	if cn == nil || cn.Analysis == nil || cp.BackgroundDone || cp.Step < cn.Analysis.StartingStep {
		return result{}, false, nil
	}
	bg := cn.Analysis
	if cp.BackgroundRun == "" {
		res, err := rc.startBackgroundRun(ctx, bg)
		return res, true, err
	}
	r, err := rc.followRun(ctx, cp.BackgroundRun, bg.Templates, bg.Args)
	if err != nil {
		return result{}, true, err
	}
	switch r.Phase {
	case Running:
		return result{}, false, nil
	case Successful:
		cp.BackgroundDone = true
		if err := rc.save(ctx); err != nil {
			return result{}, true, err
		}
		return requeueNow(), true, nil
	case Inconclusive:
		if cp.PauseKind == pauseBackground {
			switch {
			case cp.RetryAt == cp.Step+1:
				cp.RetryAt = 0
				res, err := rc.startBackgroundRun(ctx, bg)
				return res, true, err
			case cp.PromoteAt == cp.Step+1:
				cp.PromoteAt, cp.BackgroundDone = 0, true
				rc.leavePause()
				if err := rc.save(ctx); err != nil {
					return result{}, true, err
				}
				return requeueNow(), true, nil
			}
		}
		msg := fmt.Sprintf("background analysis inconclusive (%s: %s); paused until promoted, retried or aborted", r.Name, r.Reason)
		if err := rc.enterPause(ctx, pauseBackground, msg); err != nil {
			return result{}, true, err
		}
		return rc.checkAgain(0), true, nil
	}
	res, err = rc.abort(ctx, fmt.Sprintf("background analysis %s %s: %s", r.Name, r.Phase, r.Reason))
	return res, true, err
}

// startBackgroundRun starts a fresh background run.
func (rc *rolloutContext) startBackgroundRun(ctx context.Context, bg *appspec.BackgroundAnalysis) (result, error) {
	cp := rc.cp
	name := rc.newRun("background")
	cp.BackgroundRun = name
	if cp.PauseKind == pauseBackground {
		rc.leavePause()
	}
	if err := rc.save(ctx); err != nil {
		return result{}, err
	}
	rc.launch(rc.analysisRequest(name, bg.Templates, bg.Args, false))
	return requeueNow(), nil
}
