package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/reporter"
)

const maxStepLog = 64 << 10

// run is one pipeline being executed.
type run struct {
	r  *Runner
	mu sync.Mutex // guards p
	p  *Pipeline
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
	ru.mu.Lock()
	f(ru.p)
	c := ru.p.Clone()
	ru.mu.Unlock()
	if err := ru.r.store.SavePipeline(context.WithoutCancel(ctx), c); err != nil {
		if !errors.Is(err, ErrVersionTaken) { // the version step picks the next one
			ru.r.log.Error("saving pipeline", "pipeline", c.ID, "err", err)
		}
		return err
	}
	return nil
}

type stepFunc func(ctx context.Context, log io.Writer) error

func (ru *run) steps() map[string]stepFunc {
	return map[string]stepFunc{
		StepVersion:  ru.pickVersion,
		StepBuildApp: func(ctx context.Context, w io.Writer) error { return ru.build(ctx, w, StepBuildApp, build.App) },
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
		StepPromote: func(ctx context.Context, w io.Writer) error {
			if done, err := ru.promotedEarlier(ctx, w); err != nil || done {
				return err
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

// execute runs the steps that have not succeeded yet. After a failure the
// remaining steps are skipped but teardown still runs.
func (ru *run) execute(ctx context.Context) {
	log := ru.r.log.With("pipeline", ru.p.ID)
	_ = ru.update(ctx, func(p *Pipeline) {
		if p.Phase == Queued && p.FailedStep == "" {
			p.Reason = "" // it was why it queued
		}
		p.Phase = Running
		if p.Started.IsZero() {
			p.Started = ru.r.opts.Now().UTC()
		}
	})
	// A resumed pipeline's jobs may print the tokens of its expectations.
	ru.hideToken(ctx, ru.p.ID)
	ru.hideToken(ctx, ru.productionWorkflow())
	funcs := ru.steps()
	// A pipeline resumed after a step had failed carries on failing: the
	// failed step is not run again, the rest are skipped, teardown runs.
	var failure error
	failedStep := ru.p.FailedStep
	if failedStep != "" {
		failure = &errStep{msg: ru.p.Reason}
	}
	for _, s := range ru.p.Steps {
		if failure == nil && s.Phase == Failed { // recorded before FailedStep was
			failure, failedStep = &errStep{msg: reason(s.Name, errors.New(s.Error))}, s.Name
		}
	}
	for i := range ru.p.Steps {
		name := ru.p.Steps[i].Name
		if ph := ru.p.Steps[i].Phase; ph == Succeeded || ph == Skipped || ph == Failed {
			continue
		}
		if failure != nil && name != StepTeardown {
			_ = ru.update(ctx, func(p *Pipeline) { p.Steps[i].Phase = Skipped })
			continue
		}
		if ru.r.isDraining() {
			log.Info("pipeline stopped for shutdown; it resumes at this step on restart", "step", name)
			return
		}
		err := ru.runStep(ctx, i, funcs[name])
		if errors.Is(err, errInterrupted) || ctx.Err() != nil {
			log.Info("pipeline interrupted; it resumes at this step on restart", "step", name)
			return
		}
		if err != nil && failure == nil {
			failure, failedStep = err, name
			log.Warn("step failed", "step", name, "err", err)
		}
	}
	_ = ru.update(ctx, func(p *Pipeline) {
		p.Finished = ru.r.opts.Now().UTC()
		if failure != nil {
			p.Phase, p.FailedStep, p.Reason = Failed, failedStep, ru.r.redact(reason(failedStep, failure))
		} else {
			p.Phase = Succeeded
		}
	})
	log.Info("pipeline finished", "phase", ru.p.Phase, "reason", ru.p.Reason)
}

func (ru *run) runStep(ctx context.Context, i int, f stepFunc) error {
	lb := &logBuffer{max: maxStepLog}
	name := ru.p.Steps[i].Name
	if prev := ru.p.Steps[i]; prev.Phase == Running && prev.Log != "" {
		// Run again after a restart: keep what the earlier run wrote.
		io.WriteString(lb, prev.Log)
		fmt.Fprintf(lb, "-- running again at %s after a restart\n", ru.r.opts.Now().UTC().Format(time.RFC3339))
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
			s.Started = ru.r.opts.Now().UTC()
		}
		s.Phase, s.Finished, s.Error = Running, time.Time{}, ""
	})
	ru.r.log.Info("step started", "pipeline", ru.p.ID, "step", name)
	stepCtx, cancel := ru.r.stepContext(ctx, name)
	// Everything the step writes (build output, job output) is masked
	// before it reaches the buffer that is stored and served.
	w := ru.r.opts.Redactor.Writer(lb)
	stopFlush := ru.flushLog(ctx, i, lb)
	err := f(stepCtx, w)
	if fl, ok := w.(interface{ Flush() error }); ok {
		_ = fl.Flush() // lb never fails
	}
	stopFlush()
	interrupted := err != nil && (stepCtx.Err() != nil || errors.Is(err, errInterrupted))
	cancel()
	if interrupted {
		// Interrupted (shutdown or drain): the step stays Running and runs
		// again on restart; what it wrote so far is kept.
		fmt.Fprintf(lb, "-- interrupted at %s by shutdown; this step runs again on restart\n", ru.r.opts.Now().UTC().Format(time.RFC3339))
		_ = ru.update(context.WithoutCancel(ctx), func(p *Pipeline) { p.Steps[i].Log = lb.String() })
		return errInterrupted
	}
	_ = ru.update(context.WithoutCancel(ctx), func(p *Pipeline) {
		s := &p.Steps[i]
		s.Finished, s.Log = ru.r.opts.Now().UTC(), lb.String()
		if err != nil {
			s.Phase, s.Error = Failed, ru.r.redact(err.Error())
			// Recorded with the step, so that a restart before the
			// pipeline ends still knows it failed, and why.
			if p.FailedStep == "" {
				p.FailedStep, p.Reason = name, ru.r.redact(reason(name, err))
			}
		} else {
			s.Phase = Succeeded
		}
		delete(ru.logs, name)
	})
	return err
}

// logFlushInterval is how often a running step's log is saved, so that a
// kill loses at most that much of it.
const logFlushInterval = 2 * time.Second

// flushLog saves step i's log every logFlushInterval while it runs, until
// the returned stop is called.
func (ru *run) flushLog(ctx context.Context, i int, lb *logBuffer) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(logFlushInterval)
		defer t.Stop()
		saved := ""
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if l := lb.String(); l != saved {
					saved = l
					_ = ru.update(context.WithoutCancel(ctx), func(p *Pipeline) { p.Steps[i].Log = l })
				}
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

func (ru *run) pickVersion(ctx context.Context, w io.Writer) error {
	if ru.p.Version != "" {
		fmt.Fprintf(w, "version %s (picked before a restart)\n", ru.p.Version)
		return nil
	}
	ru.r.versions.Lock()
	defer ru.r.versions.Unlock()
	for now := ru.r.opts.Now(); ; now = now.Add(time.Second) {
		v := manifest.NewVersion(now, nil)
		ru.mu.Lock()
		ru.p.Version = v
		ru.mu.Unlock()
		err := ru.update(ctx, func(p *Pipeline) {})
		if errors.Is(err, ErrVersionTaken) {
			continue
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "version %s for %s at %.12s\n", v, ru.p.App, ru.p.Commit)
		return nil
	}
}

// build builds one artifact, bounded by BuildTimeout.
func (ru *run) build(ctx context.Context, w io.Writer, step string, kind build.Kind) error {
	bctx, cancel := context.WithTimeout(ctx, ru.r.opts.BuildTimeout)
	defer cancel()
	a, err := ru.r.builder.Build(bctx, build.Request{
		App: ru.p.App, Version: ru.p.Version, RepoURL: ru.p.CloneURL, Commit: ru.p.Commit, Kind: kind, Log: w,
	})
	if err != nil && ctx.Err() == nil && errors.Is(bctx.Err(), context.DeadlineExceeded) {
		return failf("%s: deadline %s passed building the %s artifact of %s %s", step, shortDuration(ru.r.opts.BuildTimeout), kind, ru.p.App, ru.p.Version)
	}
	if err != nil {
		return failf("build of the %s artifact failed: %v", kind, err)
	}
	if a.Reused {
		fmt.Fprintf(w, "reused %s: built before from the same inputs (%s)\n", a.Digest, a.InputKey)
		return nil
	}
	fmt.Fprintf(w, "built %s\n", a.Digest)
	return nil
}

// stage writes the staging manifest: production's, with the new version
// of the app.
func (ru *run) stage(ctx context.Context, w io.Writer) error {
	env := ru.p.Version
	// Wait for a place first: production may change meanwhile.
	release, err := ru.stagingPlace(ctx, w, env)
	if err != nil {
		return err
	}
	defer release()
	prod, err := ru.production(ctx)
	if err != nil {
		return err
	}
	m := prod.Clone()
	m.EnvName = env
	m.ChangeDescription = firstLine(ru.p.Message)
	m.DeployingWorkflowName = ru.p.ID
	m.Apps[ru.p.App] = ru.appEntry(m.Apps[ru.p.App])
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	sha, err := ru.r.repo.Commit(ctx, fmt.Sprintf("stage %s %s (%s)", ru.p.App, ru.p.Version, ru.p.ID),
		gitops.Change{Path: manifest.StagingPath(env), Data: data})
	if err != nil {
		return fmt.Errorf("pushing staging manifest: %w", err)
	}
	_ = ru.update(ctx, func(p *Pipeline) { p.StagingEnv, p.StagingURL = env, ru.r.envs.URL(env, p.App) })
	ru.r.envs.Trigger()
	fmt.Fprintf(w, "pushed %s at %.12s\nstaging URL: %s\n", manifest.StagingPath(env), sha, ru.r.envs.URL(env, ru.p.App))
	return nil
}

// appEntry is the app's manifest entry for this version, keeping any
// fields of the existing entry.
func (ru *run) appEntry(prev *manifest.App) *manifest.App {
	a := &manifest.App{}
	if prev != nil {
		a = prev
	}
	a.Images.Code.Image = "runway.local/" + ru.p.App
	a.Images.Code.Tag = ru.p.Version
	a.Images.Code.Label = ru.p.Branch
	a.Images.Pipeline = &manifest.Image{Image: "runway.local/" + ru.p.App + "-pipeline", Tag: ru.p.Version, Label: ru.p.Branch}
	a.Deploy.Revision = ru.p.Commit
	a.LastChangeDescription = firstLine(ru.p.Message)
	return a
}

func (ru *run) production(ctx context.Context) (*manifest.Manifest, error) {
	data, err := ru.r.repo.ReadFile(ctx, manifest.ProductionPath)
	if err != nil {
		return nil, fmt.Errorf("reading production manifest: %w", err)
	}
	m, err := manifest.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("production manifest: %w", err)
	}
	if m.Apps == nil {
		m.Apps = map[string]*manifest.App{}
	}
	return m, nil
}

func (ru *run) submit(ctx context.Context, w io.Writer) error {
	data, err := ru.r.repo.ReadFile(ctx, manifest.StagingPath(ru.p.StagingEnv))
	if err != nil {
		return fmt.Errorf("reading staging manifest: %w", err)
	}
	m, err := manifest.Parse(data)
	if err != nil {
		return err
	}
	apps := m.AppNames()
	if err := ru.r.reporter.Submit(ctx, ru.p.ID, apps); err != nil {
		return fmt.Errorf("submitting to reporter: %w", err)
	}
	ru.hideToken(ctx, ru.p.ID)
	fmt.Fprintf(w, "expecting reports from %s for %s\n", strings.Join(apps, ", "), ru.p.ID)
	return nil
}

func (ru *run) awaitDeploy(ctx context.Context, w io.Writer) error {
	if err := ru.await(ctx, w, StepAwaitDeploy, ru.p.ID, ru.r.opts.DeployTimeout, "staging environment"); err != nil {
		return err
	}
	// Now that the environment is routed, its URL is the route's own
	// listener, which every client reaches (before, only its name was
	// known).
	env := ru.p.StagingEnv
	if u := ru.r.envs.URL(env, ru.p.App); u != "" && u != ru.p.StagingURL {
		_ = ru.update(ctx, func(p *Pipeline) { p.StagingURL = u })
		fmt.Fprintf(w, "staging URL: %s\n", u)
	}
	return nil
}

// await waits for workflow's reports; the reporter fails it when timeout
// passes, counted from the submission, and its reason names the deadline.
func (ru *run) await(ctx context.Context, w io.Writer, step, workflow string, timeout time.Duration, what string) error {
	exp, err := ru.r.reporter.Wait(ctx, workflow, timeout)
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	for _, app := range exp.Apps {
		if rep, ok := exp.Reports[app]; ok {
			fmt.Fprintf(w, "%s: success=%v %s\n", app, rep.Success, rep.Message)
		}
	}
	if exp.Phase != reporter.PhaseSucceeded {
		return failf("%s: %s not ready: %s", step, what, exp.Reason)
	}
	return nil
}

// job runs a migrations or tests job, bounded by JobTimeout.
func (ru *run) job(ctx context.Context, w io.Writer, step, env, kind string) error {
	fmt.Fprintf(w, "running %s of %s %s against %s\n", kind, ru.p.App, ru.p.Version, env)
	jctx, cancel := context.WithTimeout(ctx, ru.r.opts.JobTimeout)
	defer cancel()
	err := ru.r.envs.RunJob(jctx, env, ru.p.App, ru.p.Version, kind, w)
	if err != nil && ctx.Err() == nil && errors.Is(jctx.Err(), context.DeadlineExceeded) {
		return failf("%s: deadline %s passed running %s of %s %s in %s", step, shortDuration(ru.r.opts.JobTimeout), kind, ru.p.App, ru.p.Version, env)
	}
	if err != nil {
		return failf("%s in %s failed: %v", kind, env, err)
	}
	return nil
}

// promotedEarlier reports whether this pipeline's promotion commit already
// landed (production has the version, the staging manifest is gone): a
// promote step run again after a restart then only expects the production
// reports again, in case the restart came before that was recorded.
func (ru *run) promotedEarlier(ctx context.Context, w io.Writer) (bool, error) {
	prod, err := ru.production(ctx)
	if err != nil {
		return false, err
	}
	if cur, ok := prod.Apps[ru.p.App]; !ok || cur.Version() != ru.p.Version {
		return false, nil
	}
	if _, err := ru.r.repo.ReadFile(ctx, manifest.StagingPath(ru.p.StagingEnv)); !gitops.IsNotExist(err) {
		return false, nil // staging still there (or unreadable): promote proper decides
	}
	if err := ru.r.reporter.Submit(ctx, ru.productionWorkflow(), []string{ru.p.App}); err != nil {
		return false, fmt.Errorf("submitting to reporter: %w", err)
	}
	ru.hideToken(ctx, ru.productionWorkflow())
	ru.r.envs.Trigger()
	fmt.Fprintf(w, "production already has %s %s and the staging manifest is gone: promoted before a restart\n", ru.p.App, ru.p.Version)
	return true, nil
}

// promote writes the new version into production and deletes the staging
// manifest, in one commit.
func (ru *run) promote(ctx context.Context, w io.Writer) error {
	stagingData, err := ru.r.repo.ReadFile(ctx, manifest.StagingPath(ru.p.StagingEnv))
	if err != nil {
		return fmt.Errorf("reading staging manifest: %w", err)
	}
	staging, err := manifest.Parse(stagingData)
	if err != nil {
		return err
	}
	prod, err := ru.production(ctx)
	if err != nil {
		return err
	}
	prod.Apps[ru.p.App] = staging.Apps[ru.p.App]
	prod.ChangeDescription = firstLine(ru.p.Message)
	prod.DeployingWorkflowName = ru.productionWorkflow()
	data, err := prod.Marshal()
	if err != nil {
		return err
	}
	if err := ru.r.reporter.Submit(ctx, ru.productionWorkflow(), []string{ru.p.App}); err != nil {
		return fmt.Errorf("submitting to reporter: %w", err)
	}
	ru.hideToken(ctx, ru.productionWorkflow())
	sha, err := ru.r.repo.Commit(ctx, fmt.Sprintf("promote %s %s to production (%s)", ru.p.App, ru.p.Version, ru.p.ID),
		gitops.Change{Path: manifest.ProductionPath, Data: data},
		gitops.Change{Path: manifest.StagingPath(ru.p.StagingEnv), Delete: true})
	if err != nil {
		return fmt.Errorf("pushing promotion: %w", err)
	}
	ru.r.staging.free()
	ru.r.envs.Trigger()
	fmt.Fprintf(w, "production manifest now has %s %s; staging manifest deleted (%.12s)\n", ru.p.App, ru.p.Version, sha)
	return nil
}

func (ru *run) productionWorkflow() string { return ru.p.ID + "-production" }

func (ru *run) awaitRollout(ctx context.Context, w io.Writer) error {
	err := ru.await(ctx, w, StepAwaitRollout, ru.productionWorkflow(), ru.r.opts.RolloutTimeout, "production rollout")
	if err == nil || ctx.Err() != nil || ru.r.opts.AbortRollout == nil {
		return err
	}
	// The rollout did not end by itself (it reports its own failure, which
	// needs no abort): stop it rather than leave a canary serving.
	exp, gerr := ru.r.reporter.Get(ctx, ru.productionWorkflow())
	if _, reported := exp.Reports[ru.p.App]; gerr == nil && !reported {
		reason := fmt.Sprintf("pipeline %s stopped waiting for it: %v", ru.p.ID, err)
		if aerr := ru.r.opts.AbortRollout(manifest.ProductionEnv, ru.p.App, reason); aerr != nil {
			fmt.Fprintf(w, "aborting the rollout: %v\n", aerr)
		} else {
			fmt.Fprintf(w, "rollout of %s aborted: %s\n", ru.p.Version, reason)
		}
	}
	return err
}

// teardown deletes the staging manifest (already gone after a promotion)
// and waits until the environment no longer runs, unless a failed
// pipeline's environment is kept for debugging.
func (ru *run) teardown(ctx context.Context, w io.Writer) error {
	env := ru.p.StagingEnv
	if env == "" {
		fmt.Fprintln(w, "no staging environment was created")
		return nil
	}
	if kept, err := ru.keepForDebugging(ctx, w); err != nil || kept {
		return err
	}
	if _, err := ru.r.repo.Commit(ctx, fmt.Sprintf("tear down %s (%s)", env, ru.p.ID),
		gitops.Change{Path: manifest.StagingPath(env), Delete: true}); err != nil {
		return fmt.Errorf("deleting staging manifest: %w", err)
	}
	ru.r.staging.free()
	ru.r.envs.Trigger()
	deadline := time.Now().Add(ru.r.opts.TeardownTimeout)
	for {
		if !contains(ru.r.envs.Envs(), env) {
			fmt.Fprintf(w, "staging environment %s is gone\n", env)
			return nil
		}
		if time.Now().After(deadline) {
			return failf("%s: deadline %s passed: staging environment %s still runs after its manifest was deleted",
				StepTeardown, shortDuration(ru.r.opts.TeardownTimeout), env)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
