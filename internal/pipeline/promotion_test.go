package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"

	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/pipeline"
)

// rolloutEnvs is fakeEnvs whose production rollouts of hello report only
// once the test releases the pipeline (the canary takes its time), or
// report as superseded.
type rolloutEnvs struct {
	*fakeEnvs
	mu         sync.Mutex
	released   map[string]bool // pipeline ids whose rollout reports
	superseded map[string]string
	// releaseAll lets every rollout report.
	releaseAll bool
	// blockStagingTests makes staging functional tests run until their
	// context ends.
	blockStagingTests bool
}

func newRolloutEnvs(f *fakeEnvs) *rolloutEnvs {
	return &rolloutEnvs{fakeEnvs: f, released: map[string]bool{}, superseded: map[string]string{}}
}

func (e *rolloutEnvs) Trigger() {
	ctx := context.Background()
	snap, err := e.repo.Snapshot(ctx)
	if err != nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, m := range snap.Envs {
		for _, app := range m.AppNames() {
			wf := m.Workflow(app)
			if m.EnvName == manifest.ProductionEnv && app == "hello" {
				id := strings.TrimSuffix(wf, "-production")
				if msg, ok := e.superseded[id]; ok {
					_ = e.rep.Supersede(ctx, wf, app, msg)
					continue
				}
				if !e.released[id] && !e.releaseAll {
					continue
				}
			}
			_ = e.rep.Update(ctx, wf, app, true, "up")
		}
	}
}

// release lets pipeline id's production rollout report.
func (e *rolloutEnvs) release(id string) {
	e.mu.Lock()
	e.released[id] = true
	e.mu.Unlock()
	e.Trigger()
}

func (e *rolloutEnvs) RunJob(ctx context.Context, env, app, version, kind string, log io.Writer) error {
	if e.blockStagingTests && kind == "tests" && env != manifest.ProductionEnv {
		<-ctx.Done()
		return ctx.Err()
	}
	return e.fakeEnvs.RunJob(ctx, env, app, version, kind, log)
}

// promotionRig is a rig whose pipelines arrive a second apart, with
// gated rollouts and an event recorder.
type promotionRig struct {
	*rig
	envs   *rolloutEnvs
	events *events.Recorder
	opts   pipeline.Options
	runner *pipeline.Runner
}

func newPromotionRig(t *testing.T, opts pipeline.Options) *promotionRig {
	t.Helper()
	r := newRig(t, t0)
	pr := &promotionRig{rig: r, envs: newRolloutEnvs(r.envs), events: events.New(nil, nil)}
	opts.DeployTimeout, opts.RolloutTimeout, opts.TeardownTimeout = time.Minute, time.Minute, time.Second
	opts.Now, opts.Events = (&tick{t: t0}).Now, pr.events
	pr.opts = opts
	pr.runner = pipeline.New(r.db, r.b, r.repo, r.envs.rep, pr.envs, opts)
	return pr
}

func (pr *promotionRig) start(t *testing.T, ctx context.Context, c string) string {
	t.Helper()
	req := request(c)
	req.Message = "change " + c
	id, err := pr.runner.Start(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (pr *promotionRig) stored(t *testing.T, id string) *pipeline.Pipeline {
	t.Helper()
	p, err := pr.db.GetPipeline(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitStored polls the store until cond holds for the pipeline.
func (pr *promotionRig) waitStored(t *testing.T, id, what string, cond func(p *pipeline.Pipeline) bool) {
	t.Helper()
	for range 3000 {
		if p, err := pr.db.GetPipeline(context.Background(), id); err == nil && cond(p) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("stored pipeline %s never %s: %+v", id, what, pr.stored(t, id))
}

// reasons lists the pipeline events of id, by reason, in order.
func (pr *promotionRig) reasons(id string) []string {
	evs, _ := pr.events.Since(0, 0)
	var out []string
	for _, e := range evs {
		if e.Kind == events.Pipeline && e.Name == id && !strings.HasPrefix(e.Reason, "Step") {
			out = append(out, e.Reason)
		}
	}
	return out
}

// inWaitRollout is when p holds its promotion and waits for its rollout.
func inWaitRollout(p *pipeline.Pipeline) bool {
	return p.Step(pipeline.StepAwaitRollout).Phase == pipeline.Running
}

// waitingBehind is when p waits at promote for holder.
func waitingBehind(holder string) func(p *pipeline.Pipeline) bool {
	return func(p *pipeline.Pipeline) bool {
		return strings.HasPrefix(p.Reason, "waiting to promote: "+holder+" (")
	}
}

// history is hello's version in the production manifest at each commit
// that changed it, oldest first.
func history(t *testing.T, url string) []string {
	t.Helper()
	repo, err := git.PlainOpen(url)
	if err != nil {
		t.Fatal(err)
	}
	head, err := repo.Head()
	if err != nil {
		t.Fatal(err)
	}
	c, err := repo.CommitObject(head.Hash())
	if err != nil {
		t.Fatal(err)
	}
	var versions []string
	for c != nil {
		v := ""
		if f, err := c.File(manifest.ProductionPath); err == nil {
			data, _ := f.Contents()
			if m, err := manifest.Parse([]byte(data)); err == nil && m.Apps["hello"] != nil {
				v = m.Apps["hello"].Version()
			}
		}
		versions = append(versions, v)
		if c.NumParents() == 0 {
			break
		}
		if c, err = c.Parent(0); err != nil {
			t.Fatal(err)
		}
	}
	slices.Reverse(versions)
	versions = slices.Compact(versions)
	if len(versions) > 0 && versions[0] == "" {
		versions = versions[1:]
	}
	return versions
}

func production(t *testing.T, repo *gitops.Repo) *manifest.Manifest {
	t.Helper()
	data, err := repo.ReadFile(context.Background(), manifest.ProductionPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Three changes of one app: the oldest holds the promotion while the two
// others pass staging and wait; when it frees, the newest goes and the
// middle one is superseded, its staging torn down, nothing of it promoted.
func TestPromotionsInCommitOrder(t *testing.T) {
	pr := newPromotionRig(t, pipeline.Options{})
	ctx := context.Background()
	a := pr.start(t, ctx, "a")
	waitFor(t, pr.runner, a, "held the promotion", inWaitRollout)
	b := pr.start(t, ctx, "b")
	c := pr.start(t, ctx, "c")
	for _, id := range []string{b, c} {
		p := waitFor(t, pr.runner, id, "waited behind "+a, waitingBehind(a))
		want := fmt.Sprintf("waiting to promote: %s (%s) is rolling out", a, pr.stored(t, a).Version)
		if p.Reason != want || !strings.Contains(p.Step(pipeline.StepPromote).Log, want) || p.Step(pipeline.StepPromote).Phase != pipeline.Running {
			t.Fatalf("%s while %s rolls out: reason %q, promote %s log %q; want %q", id, a, p.Reason, p.Step(pipeline.StepPromote).Phase, p.Step(pipeline.StepPromote).Log, want)
		}
		// The live pipeline changes before it is stored.
		pr.waitStored(t, id, "stored its reason", func(p *pipeline.Pipeline) bool { return p.Reason == want })
	}
	if got := production(t, pr.repo).Apps["hello"].Version(); got != pr.stored(t, a).Version {
		t.Fatalf("production has hello %s while only %s promoted", got, a)
	}
	pr.envs.release(a)
	waitFor(t, pr.runner, c, "promoted", inWaitRollout)
	pr.envs.release(c)
	pr.runner.Wait()

	pa, pb, pc := pr.stored(t, a), pr.stored(t, b), pr.stored(t, c)
	if pa.Phase != pipeline.Succeeded || pc.Phase != pipeline.Succeeded {
		t.Fatalf("a %s (%s), c %s (%s); want both Succeeded", pa.Phase, pa.Reason, pc.Phase, pc.Reason)
	}
	wantReason := fmt.Sprintf("superseded by %s (%s, commit %s)", c, pc.Version, strings.Repeat("c", 12))
	if pb.Phase != pipeline.Superseded || !strings.HasPrefix(pb.Reason, wantReason) {
		t.Fatalf("b %s: %q; want Superseded, %q...", pb.Phase, pb.Reason, wantReason)
	}
	if s := pb.Step(pipeline.StepPromote); s.Phase != pipeline.Superseded {
		t.Fatalf("b's promote step %s", s.Phase)
	}
	for _, name := range []string{pipeline.StepAwaitRollout, pipeline.StepProductionMigrations, pipeline.StepProductionTests} {
		if s := pb.Step(name); s.Phase != pipeline.Skipped {
			t.Fatalf("b's step %s is %s, want Skipped", name, s.Phase)
		}
	}
	if s := pb.Step(pipeline.StepTeardown); s.Phase != pipeline.Succeeded {
		t.Fatalf("b's teardown %s: %s", s.Phase, s.Error)
	}
	if envs := stagingEnvs(t, pr.repo); len(envs) != 0 {
		t.Fatalf("staging environments left: %v", envs)
	}
	if got, want := history(t, pr.url), []string{pa.Version, pc.Version}; !slices.Equal(got, want) {
		t.Fatalf("production history of hello %v, want %v (commit order, b never)", got, want)
	}
	m := production(t, pr.repo)
	if m.Apps["hello"].DeployingWorkflowName != c+"-production" || m.DeployingWorkflowName != c+"-production" {
		t.Fatalf("production workflows: app %q, manifest %q", m.Apps["hello"].DeployingWorkflowName, m.DeployingWorkflowName)
	}
	if got := pr.reasons(b); !slices.Equal(got, []string{"Started", "Superseded"}) {
		t.Fatalf("b's events %v", got)
	}
	if got := pr.reasons(c); !slices.Equal(got, []string{"Started", "Promoting", "Succeeded"}) {
		t.Fatalf("c's events %v", got)
	}
	// Every step of c started and ended in an event, in order, so that a
	// follower (runway logs -f, the dashboard) needs no polling.
	evs, _ := pr.events.Since(0, 0)
	open := map[string]bool{}
	for _, e := range evs {
		if e.Kind != events.Pipeline || e.Name != c {
			continue
		}
		switch e.Reason {
		case "StepStarted":
			open[e.Message] = true
		case "StepSucceeded", "StepSkipped":
			if !open[e.Message] && e.Reason == "StepSucceeded" {
				t.Errorf("step %q succeeded without having started", e.Message)
			}
			delete(open, e.Message)
		}
	}
	if len(open) != 0 {
		t.Errorf("steps of c started and never ended in an event: %v", open)
	}
	if !slices.ContainsFunc(evs, func(e events.Event) bool {
		return e.Name == c && e.Reason == "StepSucceeded" && e.Message == pipeline.StepPromote
	}) {
		t.Error("no StepSucceeded event for c's promote step")
	}
}

// Five changes of one app at once: each ends Succeeded or Superseded,
// production ends on the newest, and its history moves forward only.
func TestFiveChangesAtOnce(t *testing.T) {
	pr := newPromotionRig(t, pipeline.Options{})
	pr.envs.releaseAll = true
	ctx := context.Background()
	var ids []string
	for _, c := range []string{"a", "b", "c", "d", "e"} {
		ids = append(ids, pr.start(t, ctx, c))
	}
	pr.runner.Wait()
	var versions []string
	for _, id := range ids {
		p := pr.stored(t, id)
		if p.Phase != pipeline.Succeeded && p.Phase != pipeline.Superseded {
			t.Fatalf("%s: %s at %s: %s", id, p.Phase, p.FailedStep, p.Reason)
		}
		versions = append(versions, p.Version)
	}
	hist := history(t, pr.url)
	if len(hist) == 0 || hist[len(hist)-1] != versions[len(versions)-1] {
		t.Fatalf("production history %v does not end on the newest %s", hist, versions[len(versions)-1])
	}
	last := -1
	for _, v := range hist {
		i := slices.Index(versions, v)
		if i <= last {
			t.Fatalf("production history %v out of commit order %v", hist, versions)
		}
		last = i
	}
	if envs := stagingEnvs(t, pr.repo); len(envs) != 0 {
		t.Fatalf("staging environments %v", envs)
	}
}

// A pipeline that reaches promote after a newer one of the same app
// promoted is superseded at once; a newer one still in staging holds no
// older one back.
func TestPromotionAfterANewerOne(t *testing.T) {
	pr := newPromotionRig(t, pipeline.Options{})
	b := newCommitBuilder(strings.Repeat("a", 40))
	pr.runner = pipeline.New(pr.db, b, pr.repo, pr.envs.rep, pr.envs, pr.opts)
	ctx := context.Background()
	old := pr.start(t, ctx, "a") // its build waits for the gate
	<-b.started
	newer := pr.start(t, ctx, "b")
	<-b.started
	waitFor(t, pr.runner, newer, "promoted", inWaitRollout)
	pr.envs.release(newer)
	waitFor(t, pr.runner, newer, "ended", func(p *pipeline.Pipeline) bool { return p.Phase.Done() })
	close(b.gates[strings.Repeat("a", 40)])
	pr.runner.Wait()
	po, pn := pr.stored(t, old), pr.stored(t, newer)
	if pn.Phase != pipeline.Succeeded {
		t.Fatalf("newer: %s %s", pn.Phase, pn.Reason)
	}
	if po.Phase != pipeline.Superseded || !strings.Contains(po.Reason, newer) || !strings.Contains(po.Reason, strings.Repeat("b", 12)) {
		t.Fatalf("older: %s %q; want Superseded naming %s and its commit", po.Phase, po.Reason, newer)
	}
	if got := history(t, pr.url); !slices.Equal(got, []string{pn.Version}) {
		t.Fatalf("production history %v, want only %s", got, pn.Version)
	}

	// The other way round: the older one promotes while a newer one is
	// still in staging.
	pr2 := newPromotionRig(t, pipeline.Options{})
	b2 := newCommitBuilder(strings.Repeat("d", 40))
	pr2.runner = pipeline.New(pr2.db, b2, pr2.repo, pr2.envs.rep, pr2.envs, pr2.opts)
	first := pr2.start(t, ctx, "c")
	<-b2.started
	second := pr2.start(t, ctx, "d") // held in its build
	<-b2.started
	waitFor(t, pr2.runner, first, "promoted", inWaitRollout)
	pr2.envs.release(first)
	waitFor(t, pr2.runner, first, "ended", func(p *pipeline.Pipeline) bool { return p.Phase.Done() })
	close(b2.gates[strings.Repeat("d", 40)])
	waitFor(t, pr2.runner, second, "promoted", inWaitRollout)
	pr2.envs.release(second)
	pr2.runner.Wait()
	p1, p2 := pr2.stored(t, first), pr2.stored(t, second)
	if p1.Phase != pipeline.Succeeded || p2.Phase != pipeline.Succeeded {
		t.Fatalf("first %s %q, second %s %q; want both Succeeded", p1.Phase, p1.Reason, p2.Phase, p2.Reason)
	}
	if got := history(t, pr2.url); !slices.Equal(got, []string{p1.Version, p2.Version}) {
		t.Fatalf("production history %v", got)
	}
}

// A restart while two pipelines wait behind a third's rollout keeps the
// order: the holder finishes, the newest waiting one promotes, the other
// is superseded.
func TestPromotionWaitSurvivesRestart(t *testing.T) {
	pr := newPromotionRig(t, pipeline.Options{})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	a := pr.start(t, ctx, "a")
	waitFor(t, pr.runner, a, "held the promotion", inWaitRollout)
	b := pr.start(t, ctx, "b")
	c := pr.start(t, ctx, "c")
	waitFor(t, pr.runner, b, "waited", waitingBehind(a))
	waitFor(t, pr.runner, c, "waited", waitingBehind(a))
	stop() // the control plane stops
	pr.runner.Wait()
	for _, id := range []string{b, c} {
		if p := pr.stored(t, id); p.Phase != pipeline.Running || p.Step(pipeline.StepPromote).Phase != pipeline.Running || p.Promoting {
			t.Fatalf("after the stop %s: %s, promote %s, promoting %v", id, p.Phase, p.Step(pipeline.StepPromote).Phase, p.Promoting)
		}
	}

	restarted := pipeline.New(pr.db, pr.b, pr.repo, pr.envs.rep, pr.envs, pr.opts)
	if err := restarted.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{b, c} {
		waitFor(t, restarted, id, "waited again", waitingBehind(a))
	}
	pr.envs.release(a)
	waitFor(t, restarted, c, "promoted", inWaitRollout)
	pr.envs.release(c)
	restarted.Wait()
	pa, pb, pc := pr.stored(t, a), pr.stored(t, b), pr.stored(t, c)
	if pa.Phase != pipeline.Succeeded || pc.Phase != pipeline.Succeeded || pb.Phase != pipeline.Superseded {
		t.Fatalf("after the restart: a %s, b %s (%s), c %s; want Succeeded, Superseded, Succeeded", pa.Phase, pb.Phase, pb.Reason, pc.Phase)
	}
	if got, want := history(t, pr.url), []string{pa.Version, pc.Version}; !slices.Equal(got, want) {
		t.Fatalf("production history %v, want %v", got, want)
	}
}

// A rollout reported as superseded (by its code, not its text) ends the
// pipeline Superseded with the report's message; nothing waits out a
// deadline.
func TestRolloutSupersededByReport(t *testing.T) {
	pr := newPromotionRig(t, pipeline.Options{})
	ctx := context.Background()
	id := pr.start(t, ctx, "a")
	waitFor(t, pr.runner, id, "promoted", inWaitRollout)
	const msg = "rollout of v1 overtaken by v2 (hello-zzzzz)"
	pr.envs.mu.Lock()
	pr.envs.superseded[id] = msg
	pr.envs.mu.Unlock()
	pr.envs.Trigger()
	pr.runner.Wait()
	p := pr.stored(t, id)
	if p.Phase != pipeline.Superseded || p.Reason != msg || p.FailedStep != "" {
		t.Fatalf("pipeline %s at %q: %q; want Superseded, %q", p.Phase, p.FailedStep, p.Reason, msg)
	}
	if s := p.Step(pipeline.StepAwaitRollout); s.Phase != pipeline.Superseded {
		t.Fatalf("wait-rollout %s", s.Phase)
	}
	if s := p.Step(pipeline.StepProductionTests); s.Phase != pipeline.Skipped {
		t.Fatalf("production tests %s", s.Phase)
	}
	if s := p.Step(pipeline.StepTeardown); s.Phase != pipeline.Succeeded {
		t.Fatalf("teardown %s", s.Phase)
	}
}

func TestCancel(t *testing.T) {
	ctx := context.Background()
	t.Run("in staging", func(t *testing.T) {
		pr := newPromotionRig(t, pipeline.Options{})
		pr.envs.blockStagingTests = true
		id := pr.start(t, ctx, "a")
		waitFor(t, pr.runner, id, "ran its staging tests", func(p *pipeline.Pipeline) bool {
			return p.Step(pipeline.StepStagingTests).Phase == pipeline.Running
		})
		version := pr.stored(t, id).Version
		if envs := stagingEnvs(t, pr.repo); !slices.Equal(envs, []string{version}) {
			t.Fatalf("staging environments %v", envs)
		}
		if err := pr.runner.Cancel(ctx, id, "wrong\nbranch"); err != nil {
			t.Fatal(err)
		}
		pr.runner.Wait()
		p := pr.stored(t, id)
		if p.Phase != pipeline.Cancelled || p.Reason != "cancelled: wrong branch" || p.CancelRequested != "wrong branch" {
			t.Fatalf("pipeline %s: %q (requested %q)", p.Phase, p.Reason, p.CancelRequested)
		}
		if s := p.Step(pipeline.StepStagingTests); s.Phase != pipeline.Cancelled {
			t.Fatalf("staging tests %s", s.Phase)
		}
		if s := p.Step(pipeline.StepPromote); s.Phase != pipeline.Skipped {
			t.Fatalf("promote %s", s.Phase)
		}
		if s := p.Step(pipeline.StepTeardown); s.Phase != pipeline.Succeeded {
			t.Fatalf("teardown %s: %s", s.Phase, s.Error)
		}
		if envs := stagingEnvs(t, pr.repo); len(envs) != 0 {
			t.Fatalf("staging environments after the cancel: %v", envs)
		}
		if _, ok := production(t, pr.repo).Apps["hello"]; ok {
			t.Fatal("a cancelled change reached production")
		}
		if got := pr.reasons(id); !slices.Equal(got, []string{"Started", "Cancelled"}) {
			t.Fatalf("events %v", got)
		}
		if err := pr.runner.Cancel(ctx, id, "again"); !errors.Is(err, pipeline.ErrDone) {
			t.Fatalf("cancelling a cancelled pipeline: %v, want ErrDone", err)
		}
	})
	t.Run("queued", func(t *testing.T) {
		pr := newPromotionRig(t, pipeline.Options{MaxRunning: 1})
		b := newCommitBuilder(strings.Repeat("a", 40))
		pr.runner = pipeline.New(pr.db, b, pr.repo, pr.envs.rep, pr.envs, pr.opts)
		first := pr.start(t, ctx, "a")
		<-b.started
		queued := pr.start(t, ctx, "b")
		if err := pr.runner.Cancel(ctx, queued, "not needed"); err != nil {
			t.Fatal(err)
		}
		// At once: stored and live.
		for _, p := range []*pipeline.Pipeline{pr.stored(t, queued), must(pr.runner.Get(ctx, queued))} {
			if p.Phase != pipeline.Cancelled || p.Reason != "cancelled: not needed" {
				t.Fatalf("queued pipeline after Cancel: %s %q", p.Phase, p.Reason)
			}
			for _, s := range p.Steps {
				if s.Phase != pipeline.Skipped {
					t.Fatalf("step %s is %s", s.Name, s.Phase)
				}
			}
		}
		close(b.gates[strings.Repeat("a", 40)])
		waitFor(t, pr.runner, first, "promoted", inWaitRollout)
		pr.envs.release(first)
		pr.runner.Wait()
		if got := b.buildOrder(); got != "a" {
			t.Fatalf("builds %q: the cancelled pipeline ran", got)
		}
		if p := pr.stored(t, first); p.Phase != pipeline.Succeeded {
			t.Fatalf("first: %s %q", p.Phase, p.Reason)
		}
		if got := pr.reasons(queued); !slices.Equal(got, []string{"Queued", "Cancelled"}) {
			t.Fatalf("events %v", got)
		}
	})
	t.Run("refused after promote", func(t *testing.T) {
		pr := newPromotionRig(t, pipeline.Options{})
		id := pr.start(t, ctx, "a")
		waitFor(t, pr.runner, id, "promoted", inWaitRollout)
		err := pr.runner.Cancel(ctx, id, "too late")
		if !errors.Is(err, pipeline.ErrPromoted) || !strings.Contains(err.Error(), "abort its rollout instead") {
			t.Fatalf("Cancel after promote: %v, want ErrPromoted", err)
		}
		pr.envs.release(id)
		pr.runner.Wait()
		if p := pr.stored(t, id); p.Phase != pipeline.Succeeded || p.CancelRequested != "" {
			t.Fatalf("pipeline %s, cancel requested %q", p.Phase, p.CancelRequested)
		}
		if err := pr.runner.Cancel(ctx, "hello-nope", "x"); !errors.Is(err, pipeline.ErrNotFound) {
			t.Fatalf("unknown: %v", err)
		}
	})
	t.Run("waiting to promote", func(t *testing.T) {
		pr := newPromotionRig(t, pipeline.Options{})
		a := pr.start(t, ctx, "a")
		waitFor(t, pr.runner, a, "promoted", inWaitRollout)
		b := pr.start(t, ctx, "b")
		waitFor(t, pr.runner, b, "waited", waitingBehind(a))
		if err := pr.runner.Cancel(ctx, b, "changed my mind"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, pr.runner, b, "ended", func(p *pipeline.Pipeline) bool { return p.Phase.Done() })
		pr.envs.release(a)
		pr.runner.Wait()
		if p := pr.stored(t, b); p.Phase != pipeline.Cancelled || p.Step(pipeline.StepPromote).Phase != pipeline.Cancelled {
			t.Fatalf("b %s, promote %s", p.Phase, p.Step(pipeline.StepPromote).Phase)
		}
		if envs := stagingEnvs(t, pr.repo); len(envs) != 0 {
			t.Fatalf("staging environments %v", envs)
		}
		if got := history(t, pr.url); !slices.Equal(got, []string{pr.stored(t, a).Version}) {
			t.Fatalf("production history %v", got)
		}
	})
	t.Run("a restart honours it", func(t *testing.T) {
		pr := newPromotionRig(t, pipeline.Options{})
		pr.envs.blockStagingTests = true
		runCtx, stop := context.WithCancel(ctx)
		defer stop()
		id := pr.start(t, runCtx, "a")
		waitFor(t, pr.runner, id, "ran its staging tests", func(p *pipeline.Pipeline) bool {
			return p.Step(pipeline.StepStagingTests).Phase == pipeline.Running
		})
		stop()
		pr.runner.Wait()
		// Not run by any runner now: the request is stored, and the next
		// start honours it.
		if err := pr.runner.Cancel(ctx, id, "stored while stopped"); err != nil {
			t.Fatal(err)
		}
		if p := pr.stored(t, id); p.Phase != pipeline.Running || p.CancelRequested != "stored while stopped" {
			t.Fatalf("stored: %s, requested %q", p.Phase, p.CancelRequested)
		}
		restarted := pipeline.New(pr.db, pr.b, pr.repo, pr.envs.rep, pr.envs, pr.opts)
		if err := restarted.Resume(ctx); err != nil {
			t.Fatal(err)
		}
		restarted.Wait()
		got := pr.stored(t, id)
		if got.Phase != pipeline.Cancelled || got.Reason != "cancelled: stored while stopped" || got.Step(pipeline.StepStagingTests).Phase != pipeline.Cancelled {
			t.Fatalf("resumed: %s %q, staging tests %s", got.Phase, got.Reason, got.Step(pipeline.StepStagingTests).Phase)
		}
		if envs := stagingEnvs(t, pr.repo); len(envs) != 0 {
			t.Fatalf("staging environments %v", envs)
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// handRepo is the state repo with a person's commit landing while the
// pipeline's push of the given kind is in flight (after its edit read the
// head, before its push): the push loses the race and is made again.
type handRepo struct {
	*gitops.Repo
	person *gitops.Repo
	mu     sync.Mutex
	hands  map[string]gitops.Edit // by message prefix, used once
}

func (h *handRepo) Update(ctx context.Context, message string, edit gitops.Edit) (string, error) {
	return h.Repo.Update(ctx, message, func(read func(string) ([]byte, error)) ([]gitops.Change, error) {
		changes, err := edit(read)
		h.mu.Lock()
		var hand gitops.Edit
		for prefix, e := range h.hands {
			if strings.HasPrefix(message, prefix) {
				hand = e
				delete(h.hands, prefix)
			}
		}
		h.mu.Unlock()
		if hand != nil {
			if _, herr := h.person.Update(ctx, "by hand", hand); herr != nil {
				return nil, herr
			}
		}
		return changes, err
	})
}

// editProduction is a hand edit of the production manifest.
func editProduction(f func(m *manifest.Manifest)) gitops.Edit {
	return func(read func(string) ([]byte, error)) ([]gitops.Change, error) {
		data, err := read(manifest.ProductionPath)
		if err != nil {
			return nil, err
		}
		m, err := manifest.Parse(data)
		if err != nil {
			return nil, err
		}
		f(m)
		out, err := m.Marshal()
		return []gitops.Change{{Path: manifest.ProductionPath, Data: out}}, err
	}
}

// Hand-made commits to production, landing while the pipeline stages and
// while it promotes, are kept, and the pipeline succeeds; each app's
// entry names its own deploying workflow.
func TestHandCommitsDuringAPipelineAreKept(t *testing.T) {
	pr := newPromotionRig(t, pipeline.Options{})
	ctx := context.Background()
	person, err := gitops.Open(ctx, pr.url, filepath.Join(t.TempDir(), "person"), "main", nil)
	if err != nil {
		t.Fatal(err)
	}
	repo := &handRepo{Repo: pr.repo, person: person, hands: map[string]gitops.Edit{
		"stage ": editProduction(func(m *manifest.Manifest) { m.Apps["postgres"].Images.Code.Tag = "16" }),
		"promote ": editProduction(func(m *manifest.Manifest) {
			m.Apps["notes"] = &manifest.App{DeployingWorkflowName: "notes-xxxxx-production"}
			m.Apps["notes"].Images.Code.Image, m.Apps["notes"].Images.Code.Tag = "runway.local/notes", "v1"
		}),
	}}
	pr.runner = pipeline.New(pr.db, pr.b, repo, pr.envs.rep, pr.envs, pr.opts)
	id := pr.start(t, ctx, "a")
	waitFor(t, pr.runner, id, "promoted", inWaitRollout)
	pr.envs.release(id)
	pr.runner.Wait()
	p := pr.stored(t, id)
	if p.Phase != pipeline.Succeeded {
		t.Fatalf("pipeline %s at %s: %s", p.Phase, p.FailedStep, p.Reason)
	}
	if len(repo.hands) != 0 {
		t.Fatalf("hand commits not made: %v", repo.hands)
	}
	m := production(t, pr.repo)
	if got := m.Apps["postgres"].Version(); got != "16" {
		t.Fatalf("postgres %s: the hand commit during stage was lost", got)
	}
	if n := m.Apps["notes"]; n == nil || n.DeployingWorkflowName != "notes-xxxxx-production" {
		t.Fatalf("notes %+v: the hand commit during promote was lost or its workflow overwritten", n)
	}
	if h := m.Apps["hello"]; h.Version() != p.Version || h.DeployingWorkflowName != id+"-production" {
		t.Fatalf("hello %s with workflow %q", h.Version(), h.DeployingWorkflowName)
	}
	if envs := stagingEnvs(t, pr.repo); len(envs) != 0 {
		t.Fatalf("staging environments %v", envs)
	}
}
