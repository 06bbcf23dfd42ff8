package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/reporter"
)

func (ru *run) pickVersion(ctx context.Context, w io.Writer) error {
	if ru.p.Version != "" {
		fmt.Fprintf(w, "version %s (picked before a restart)\n", ru.p.Version)
		return nil
	}
	ru.r.versions.Lock()
	defer ru.r.versions.Unlock()
	for now := ru.r.now(); ; now = now.Add(time.Second) {
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
		SpecKind: ru.p.specKind(),
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

// stage writes the staging manifest: production's, as it is at the head
// the commit lands on, with the new version of the app. The edit is made
// again on a new head after a lost race, so a change pushed meanwhile (by
// another pipeline or by hand) is kept.
func (ru *run) stage(ctx context.Context, w io.Writer) error {
	env := ru.p.Version
	// Wait for a place first: production may change meanwhile.
	release, err := ru.stagingPlace(ctx, w, env)
	if err != nil {
		return err
	}
	defer release()
	// Recorded before the commit: whatever happens to the push, teardown
	// deletes the manifest if it is there.
	_ = ru.update(ctx, func(p *Pipeline) { p.StagingEnv, p.StagingURL = env, ru.stagingURL(env) })
	edit := func(read func(string) ([]byte, error)) ([]gitops.Change, error) {
		prod, err := parseProduction(read)
		if err != nil {
			return nil, err
		}
		m := prod.Clone()
		m.EnvName = env
		m.ChangeDescription = firstLine(ru.p.Message)
		m.DeployingWorkflowName = ru.p.ID
		// Every app of a staging environment reports to this pipeline.
		for _, a := range m.Apps {
			a.DeployingWorkflowName = ""
		}
		var entry *manifest.App
		if ru.p.isService() {
			if entry, err = ru.serviceEntry(m.Apps[ru.p.App]); err != nil {
				return nil, err
			}
		} else {
			entry = ru.appEntry(m.Apps[ru.p.App])
		}
		m.Apps[ru.p.App] = entry
		data, err := m.Marshal()
		if err != nil {
			return nil, err
		}
		return []gitops.Change{{Path: manifest.StagingPath(env), Data: data}}, nil
	}
	pctx, done := ru.r.pushContext(ctx)
	sha, err := ru.r.repo.Update(pctx, fmt.Sprintf("stage %s %s (%s)", ru.p.App, ru.p.Version, ru.p.ID), edit)
	if err := done(StepStage, "the staging manifest", err); err != nil {
		return err
	}
	if err != nil {
		return fmt.Errorf("pushing staging manifest: %w", err)
	}
	ru.r.envs.Trigger()
	fmt.Fprintf(w, "pushed %s at %.12s\n", manifest.StagingPath(env), sha)
	if u := ru.stagingURL(env); u != "" {
		fmt.Fprintf(w, "staging URL: %s\n", u)
	}
	return nil
}

// stagingURL is the app's URL in env; a service has none (it serves no
// HTTP through the gateway).
func (ru *run) stagingURL(env string) string {
	if ru.p.isService() {
		return ""
	}
	return ru.r.envs.URL(env, ru.p.App)
}

// parseProduction reads the production manifest through read (a Repo
// edit's view of the head).
func parseProduction(read func(string) ([]byte, error)) (*manifest.Manifest, error) {
	data, err := read(manifest.ProductionPath)
	if err != nil {
		return nil, fmt.Errorf("reading production manifest: %w", err)
	}
	return parseManifest(data, "production manifest")
}

func parseManifest(data []byte, what string) (*manifest.Manifest, error) {
	m, err := manifest.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if m.Apps == nil {
		m.Apps = map[string]*manifest.App{}
	}
	return m, nil
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
	if _, err := ru.await(ctx, w, StepAwaitDeploy, ru.p.ID, ru.r.opts.DeployTimeout, "staging environment"); err != nil {
		return err
	}
	// Now that the environment is routed, its URL is the route's own
	// listener, which every client reaches (before, only its name was
	// known).
	env := ru.p.StagingEnv
	if u := ru.stagingURL(env); u != "" && u != ru.p.StagingURL {
		_ = ru.update(ctx, func(p *Pipeline) { p.StagingURL = u })
		fmt.Fprintf(w, "staging URL: %s\n", u)
	}
	return nil
}

// await waits for workflow's reports; the reporter fails it when timeout
// passes, counted from the submission, and its reason names the deadline.
func (ru *run) await(ctx context.Context, w io.Writer, step, workflow string, timeout time.Duration, what string) (reporter.Expectation, error) {
	exp, err := ru.r.reporter.Wait(ctx, workflow, timeout)
	if err != nil {
		return exp, fmt.Errorf("waiting for %s: %w", what, err)
	}
	for _, app := range exp.Apps {
		if rep, ok := exp.Reports[app]; ok {
			fmt.Fprintf(w, "%s: success=%v %s\n", app, rep.Success, rep.Message)
		}
	}
	if exp.Phase != reporter.PhaseSucceeded {
		return exp, failf("%s: %s not ready: %s", step, what, exp.Reason)
	}
	return exp, nil
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
	if cur, ok := prod.Apps[ru.p.App]; !ok || ru.p.entryVersion(cur) != ru.p.Version {
		return false, nil
	}
	if _, err := ru.r.repo.ReadFile(ctx, manifest.StagingPath(ru.p.StagingEnv)); !gitops.IsNotExist(err) {
		return false, nil // staging still there (or unreadable): promote proper decides
	}
	if err := ru.r.reporter.Submit(ctx, ru.productionWorkflow(), []string{ru.p.App}); err != nil {
		return false, fmt.Errorf("submitting to reporter: %w", err)
	}
	ru.hideToken(ctx, ru.productionWorkflow())
	ru.r.promos.took(ru.p.App, entrantOf(ru.p))
	_ = ru.update(ctx, func(p *Pipeline) { p.Promoting = true })
	ru.r.envs.Trigger()
	fmt.Fprintf(w, "production already has %s %s and the staging manifest is gone: promoted before a restart\n", ru.p.App, ru.p.Version)
	return true, nil
}

// promote writes the new version into production and deletes the staging
// manifest, in one commit made from the head it lands on: production's
// other apps and any hand-made change stay as they are there.
func (ru *run) promote(ctx context.Context, w io.Writer) error {
	workflow := ru.productionWorkflow()
	stagingPath := manifest.StagingPath(ru.p.StagingEnv)
	edit := func(read func(string) ([]byte, error)) ([]gitops.Change, error) {
		stagingData, err := read(stagingPath)
		if err != nil {
			return nil, fmt.Errorf("reading staging manifest: %w", err)
		}
		staging, err := parseManifest(stagingData, "staging manifest")
		if err != nil {
			return nil, err
		}
		entry, ok := staging.Apps[ru.p.App]
		if !ok {
			return nil, fmt.Errorf("staging manifest %s has no app %s", stagingPath, ru.p.App)
		}
		prod, err := parseProduction(read)
		if err != nil {
			return nil, err
		}
		// At the head the commit lands on: production may have moved
		// since the gate let this pipeline go (by hand, by a runner that
		// does not know this one's order).
		if err := ru.notBehind(ctx, w, prod); err != nil {
			return nil, err
		}
		if ru.p.isService() {
			// Only what the change is: production's entry of the
			// service otherwise stays as it is at this head.
			if entry, err = ru.serviceEntry(prod.Apps[ru.p.App]); err != nil {
				return nil, err
			}
		}
		entry.DeployingWorkflowName = workflow
		prod.Apps[ru.p.App] = entry
		prod.ChangeDescription = firstLine(ru.p.Message)
		prod.DeployingWorkflowName = workflow // for readers of the manifest-wide one
		data, err := prod.Marshal()
		if err != nil {
			return nil, err
		}
		return []gitops.Change{{Path: manifest.ProductionPath, Data: data}, {Path: stagingPath, Delete: true}}, nil
	}
	// Refused before anything is expected of production, when it can be
	// told already (the edit asks again at the head it lands on).
	if ru.r.opts.Ancestry != nil {
		prod, err := ru.production(ctx)
		if err != nil {
			return err
		}
		if err := ru.notBehind(ctx, w, prod); err != nil {
			return err
		}
	}
	if err := ru.r.reporter.Submit(ctx, workflow, []string{ru.p.App}); err != nil {
		return fmt.Errorf("submitting to reporter: %w", err)
	}
	ru.hideToken(ctx, workflow)
	pctx, done := ru.r.pushContext(ctx)
	sha, err := ru.r.repo.Update(pctx, fmt.Sprintf("promote %s %s to production (%s)", ru.p.App, ru.p.Version, ru.p.ID), edit)
	if err := done(StepPromote, "the promotion", err); err != nil {
		return err
	}
	if err != nil {
		return fmt.Errorf("pushing promotion: %w", err)
	}
	// Only now does it supersede the older changes: a promotion that
	// failed before landing holds nobody back.
	ru.r.promos.landed(ru.p.App, entrantOf(ru.p))
	ru.r.staging.free()
	ru.r.envs.Trigger()
	fmt.Fprintf(w, "production manifest now has %s %s; staging manifest deleted (%.12s)\n", ru.p.App, ru.p.Version, sha)
	return nil
}

// notBehind refuses, with a supersession, to promote over production's
// entry of the app when its revision is this pipeline's commit or a
// descendant of it (Options.Ancestry): production already runs this change
// or a newer one, and promoting would move it back. Production's entry of
// this pipeline's own version (a promotion made before a restart) is no
// reason. A history that cannot be read is written to the log and lets
// the promotion go, as without Ancestry.
func (ru *run) notBehind(ctx context.Context, w io.Writer, prod *manifest.Manifest) error {
	anc := ru.r.opts.Ancestry
	cur, ok := prod.Apps[ru.p.App]
	if anc == nil || !ok || cur.Deploy.Revision == "" || ru.p.entryVersion(cur) == ru.p.Version {
		return nil
	}
	rev, commit := cur.Deploy.Revision, ru.p.Commit
	if rev == commit {
		return &errSuperseded{msg: fmt.Sprintf("superseded: production already has %s %s at commit %.12s, this change's own commit",
			ru.p.App, ru.p.entryVersion(cur), rev)}
	}
	newer, err := anc.IsAncestor(ctx, ru.p.CloneURL, commit, rev)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fmt.Fprintf(w, "could not tell whether production's %s revision %.12s is newer than %.12s (%v); promoting\n", ru.p.App, rev, commit, err)
		ru.r.log.Warn("ordering production's revision and the pipeline's commit failed; promoting", "pipeline", ru.p.ID,
			"revision", rev, "commit", commit, "err", err)
		return nil
	}
	if newer {
		return &errSuperseded{msg: fmt.Sprintf("superseded: production already has %s %s at commit %.12s, newer than this change's %.12s",
			ru.p.App, ru.p.entryVersion(cur), rev, commit)}
	}
	return nil
}

// pushTimeout bounds each push to the state repository (staging manifest,
// promotion, teardown): a push is not stopped by a cancel, so that it
// lands whole or not at all, but a remote that hangs must not hold the
// repository's lock, the staging places' push lock and the pipeline
// forever (Drain and Wait wait for it). On the runner's clock.
const pushTimeout = 2 * time.Minute

// errPushTimeout is the cause a push's context ends with at pushTimeout.
var errPushTimeout = errors.New("push deadline passed")

// pushContext is the context of one push: not ended by ctx (a cancel or a
// shutdown), ended at pushTimeout. done, called with the push's error,
// releases it and turns a push ended by the deadline into the step's
// failure naming what was pushed; for any other outcome it returns nil.
func (r *Runner) pushContext(ctx context.Context) (context.Context, func(step, what string, err error) error) {
	pctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	t := r.clk.NewTimer(pushTimeout)
	stopped := make(chan struct{})
	go func() {
		select {
		case <-t.C():
			cancel(errPushTimeout)
		case <-stopped:
		}
	}()
	return pctx, func(step, what string, err error) error {
		t.Stop()
		close(stopped)
		timedOut := errors.Is(context.Cause(pctx), errPushTimeout)
		cancel(nil)
		if err != nil && timedOut {
			return failf("%s: deadline %s passed pushing %s to the state repository: %v", step, shortDuration(pushTimeout), what, err)
		}
		return nil
	}
}

func (ru *run) productionWorkflow() string { return ru.p.ID + "-production" }

// awaitRollout waits for the production rollout's report. A report that
// says the rollout was superseded (reporter.OutcomeSuperseded) ends the
// pipeline Superseded, with the report's message as its reason.
func (ru *run) awaitRollout(ctx context.Context, w io.Writer) error {
	what := "production rollout"
	if ru.p.isService() {
		// No canary: the production pass reports the service once it saw
		// the new revision (see service.go).
		what = "production's " + ru.p.App + " service"
		fmt.Fprintf(w, "%s is a service: no canary; waiting for production to report it at revision %.12s\n", ru.p.App, ru.p.Commit)
	}
	exp, err := ru.await(ctx, w, StepAwaitRollout, ru.productionWorkflow(), ru.r.opts.RolloutTimeout, what)
	if rep, ok := exp.Reports[ru.p.App]; ok && exp.Phase == reporter.PhaseFailed && rep.Outcome == reporter.OutcomeSuperseded {
		msg := rep.Message
		if msg == "" {
			msg = fmt.Sprintf("rollout of %s %s superseded by a newer version", ru.p.App, ru.p.Version)
		}
		return &errSuperseded{msg: msg}
	}
	if err == nil || ctx.Err() != nil || ru.r.opts.AbortRollout == nil || ru.p.isService() {
		return err // a service has no rollout to abort
	}
	// The rollout did not end by itself (it reports its own failure, which
	// needs no abort): stop it rather than leave a canary serving.
	exp, gerr := ru.r.reporter.Get(ctx, ru.productionWorkflow())
	if _, reported := exp.Reports[ru.p.App]; gerr == nil && !reported {
		reason := fmt.Sprintf("pipeline %s stopped waiting for it: %v", ru.p.ID, err)
		if aerr := ru.r.opts.AbortRollout(manifest.ProductionEnv, ru.p.App, ru.p.Version, reason); aerr != nil {
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
	// A delete and nothing else: what else the state repo holds, a
	// hand-made change included, stays. Deleting a manifest already gone
	// commits nothing.
	pctx, done := ru.r.pushContext(ctx)
	_, err := ru.r.repo.Commit(pctx, fmt.Sprintf("tear down %s (%s)", env, ru.p.ID),
		gitops.Change{Path: manifest.StagingPath(env), Delete: true})
	if err := done(StepTeardown, "the deletion of the staging manifest", err); err != nil {
		return err
	}
	if err != nil {
		return fmt.Errorf("deleting staging manifest: %w", err)
	}
	ru.r.staging.free()
	ru.r.envs.Trigger()
	deadline := ru.r.clk.NewTimer(ru.r.opts.TeardownTimeout)
	defer deadline.Stop()
	for {
		if !contains(ru.r.envs.Envs(), env) {
			fmt.Fprintf(w, "staging environment %s is gone\n", env)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C():
			return failf("%s: deadline %s passed: staging environment %s still runs after its manifest was deleted",
				StepTeardown, shortDuration(ru.r.opts.TeardownTimeout), env)
		case <-ru.r.clk.After(50 * time.Millisecond):
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
