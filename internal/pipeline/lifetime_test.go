package pipeline_test

import (
	"context"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"

	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/pipeline"
)

// clock is a settable clock for the runner and the reaper.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// lifetimeEnvs is fakeEnvs with the ways a staging environment can keep a
// pipeline waiting.
type lifetimeEnvs struct {
	*fakeEnvs
	silent    bool     // nothing ever reports
	blockJobs bool     // jobs run until their context ends
	stay      []string // Envs lists these forever
}

func (e *lifetimeEnvs) Trigger() {
	if !e.silent {
		e.fakeEnvs.Trigger()
	}
}

func (e *lifetimeEnvs) RunJob(ctx context.Context, env, app, version, kind string, log io.Writer) error {
	if e.blockJobs {
		<-ctx.Done()
		return ctx.Err()
	}
	return e.fakeEnvs.RunJob(ctx, env, app, version, kind, log)
}

func (e *lifetimeEnvs) Envs() []string { return e.stay }

const ttl = time.Hour

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// lifetimeRig is a rig whose runner has a settable clock, a one-hour TTL,
// and its reaper.
type lifetimeRig struct {
	*rig
	clock  *clock
	envs   *lifetimeEnvs
	runner *pipeline.Runner
	reaper *pipeline.Reaper
}

func newLifetimeRig(t *testing.T, envs lifetimeEnvs, opts pipeline.Options) *lifetimeRig {
	t.Helper()
	r := newRig(t, t0)
	lr := &lifetimeRig{rig: r, clock: &clock{t: t0}, envs: &envs}
	lr.envs.fakeEnvs = r.envs
	opts.StagingTTL, opts.Now = ttl, lr.clock.Now
	if opts.DeployTimeout == 0 {
		opts.DeployTimeout = time.Minute
	}
	if opts.TeardownTimeout == 0 {
		opts.TeardownTimeout = time.Minute
	}
	lr.runner = pipeline.New(r.db, r.b, r.repo, r.envs.rep, lr.envs, opts)
	lr.reaper = pipeline.NewReaper(lr.runner, r.repo, r.db)
	return lr
}

// resume stores p (a record as a kill left it), restarts the runner's
// pipelines at the given time and returns p's stored result.
func (lr *lifetimeRig) resume(t *testing.T, p *pipeline.Pipeline, at time.Time) *pipeline.Pipeline {
	t.Helper()
	ctx := context.Background()
	if err := lr.db.SavePipeline(ctx, p); err != nil {
		t.Fatal(err)
	}
	lr.clock.Set(at)
	if err := lr.runner.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	lr.runner.Wait()
	got, err := lr.db.GetPipeline(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// run takes one change through the runner and returns the stored result.
func (lr *lifetimeRig) run(t *testing.T) *pipeline.Pipeline {
	t.Helper()
	ctx := context.Background()
	id, err := lr.runner.Start(ctx, pipeline.Request{App: "hello", Repo: "o/hello", CloneURL: "/x", Branch: "main", Commit: strings.Repeat("e", 40), Message: "change"})
	if err != nil {
		t.Fatal(err)
	}
	lr.runner.Wait()
	p, err := lr.db.GetPipeline(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// stagingEnvs lists the staging manifests in the state repo, parsed or not.
func stagingEnvs(t *testing.T, repo *gitops.Repo) []string {
	t.Helper()
	snap, err := repo.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for env := range snap.Envs {
		if env != manifest.ProductionEnv {
			names = append(names, env)
		}
	}
	for env := range snap.Invalid {
		names = append(names, env)
	}
	sort.Strings(names)
	return names
}

// headMessage is the state repo's last commit message.
func headMessage(t *testing.T, url string) string {
	t.Helper()
	repo, err := git.PlainOpen(url)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := repo.Head()
	if err != nil {
		t.Fatal(err)
	}
	c, err := repo.CommitObject(ref.Hash())
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(c.Message)
}

func TestKeepOnFailure(t *testing.T) {
	version := "v20261125120000"
	tests := []struct {
		name  string
		keep  bool
		setup func(lr *lifetimeRig)
		// kept: the staging environment outlives the pipeline.
		kept      bool
		wantPhase pipeline.Phase
	}{
		{name: "failed and kept", keep: true, setup: func(lr *lifetimeRig) { lr.rig.envs.jobFail["tests"] = io.ErrUnexpectedEOF }, kept: true, wantPhase: pipeline.Failed},
		{name: "failed, keeping off", setup: func(lr *lifetimeRig) { lr.rig.envs.jobFail["tests"] = io.ErrUnexpectedEOF }, wantPhase: pipeline.Failed},
		{name: "succeeded: nothing kept", keep: true, wantPhase: pipeline.Succeeded},
		{
			name: "failed after the promotion deleted staging: nothing to keep", keep: true, wantPhase: pipeline.Failed,
			// Production never reports: the rollout wait fails after the
			// promotion deleted the staging manifest.
			setup: func(lr *lifetimeRig) { lr.rig.envs.silentProduction = true },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lr := newLifetimeRig(t, lifetimeEnvs{}, pipeline.Options{KeepOnFailure: tt.keep, RolloutTimeout: 200 * time.Millisecond})
			if tt.setup != nil {
				tt.setup(lr)
			}
			p := lr.run(t)
			if p.Phase != tt.wantPhase {
				t.Fatalf("pipeline %s at %s (%s), want %s", p.Phase, p.FailedStep, p.Reason, tt.wantPhase)
			}
			td := p.Step(pipeline.StepTeardown)
			if td.Phase != pipeline.Succeeded {
				t.Fatalf("teardown %s: %s", td.Phase, td.Error)
			}
			envs := stagingEnvs(t, lr.repo)
			if !tt.kept {
				if len(envs) != 0 || !p.StagingKeptUntil.IsZero() {
					t.Fatalf("staging envs %v, kept until %s: want torn down", envs, p.StagingKeptUntil)
				}
				return
			}
			until := t0.Add(ttl)
			if strings.Join(envs, ",") != version || !p.StagingKeptUntil.Equal(until) {
				t.Fatalf("staging envs %v, kept until %s: want %s kept until %s", envs, p.StagingKeptUntil, version, until)
			}
			for _, want := range []string{"kept for debugging until " + until.Format(time.RFC3339), p.StagingURL} {
				if !strings.Contains(td.Log, want) {
					t.Fatalf("teardown log %q lacks %q", td.Log, want)
				}
			}
			// Within its TTL the reaper leaves it; past it, it goes.
			lr.clock.Set(until)
			if got, err := lr.reaper.Reap(context.Background()); err != nil || len(got) != 0 {
				t.Fatalf("reap at the TTL: %v, %v; want nothing expired", got, err)
			}
			lr.clock.Set(until.Add(time.Second))
			got, err := lr.reaper.Reap(context.Background())
			if err != nil || len(got) != 1 || got[0].Env != version || got[0].Pipeline != p.ID {
				t.Fatalf("reap past the TTL: %+v, %v; want %s of %s expired", got, err, version, p.ID)
			}
			if envs := stagingEnvs(t, lr.repo); len(envs) != 0 {
				t.Fatalf("staging envs after expiry: %v", envs)
			}
			if msg, want := headMessage(t, lr.repo.URL()), "expire staging environment "+version+": TTL 1h passed"; msg != want {
				t.Fatalf("commit message %q, want %q", msg, want)
			}
		})
	}
}

func TestReap(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	manifestOf := func(env string) []byte {
		return []byte(strings.Replace(prod, `"production"`, `"`+env+`"`, 1))
	}
	tests := []struct {
		name string
		// files are staging manifests committed (now) by env name;
		// pipelines have the env as version and staged at the time.
		files     map[string][]byte
		pipelines map[string]time.Time
		clock     time.Time
		want      []string // expired
	}{
		{
			name:  "a pipeline's environment past its TTL",
			files: map[string][]byte{"va": manifestOf("va")}, pipelines: map[string]time.Time{"va": t0},
			clock: t0.Add(ttl + time.Second), want: []string{"va"},
		},
		{
			name:  "a pipeline's environment within its TTL",
			files: map[string][]byte{"va": manifestOf("va")}, pipelines: map[string]time.Time{"va": t0},
			clock: t0.Add(ttl - time.Second),
		},
		{
			name:  "a manifest no pipeline explains is aged by its commit",
			files: map[string][]byte{"vx": manifestOf("vx"), "vy": manifestOf("vy")}, pipelines: map[string]time.Time{"vy": now.Add(ttl)},
			clock: now.Add(ttl + time.Minute), want: []string{"vx"},
		},
		{
			name:  "a recent manifest no pipeline explains",
			files: map[string][]byte{"vx": manifestOf("vx")},
			clock: now.Add(ttl - time.Minute),
		},
		{
			name:  "an invalid manifest expires too",
			files: map[string][]byte{"vbad": []byte(`{"envname":`), "vx": manifestOf("vx")}, pipelines: map[string]time.Time{"vx": now.Add(ttl)},
			clock: now.Add(ttl + time.Minute), want: []string{"vbad"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lr := newLifetimeRig(t, lifetimeEnvs{}, pipeline.Options{})
			var all []string
			for env, data := range tt.files {
				if _, err := lr.repo.Commit(ctx, "add "+env, gitops.Change{Path: manifest.StagingPath(env), Data: data}); err != nil {
					t.Fatal(err)
				}
				all = append(all, env)
			}
			for env, staged := range tt.pipelines {
				p := &pipeline.Pipeline{ID: "p-" + env, App: "hello", Version: env, StagingEnv: env, Phase: pipeline.Running, Created: staged.Add(-time.Minute),
					Steps: []pipeline.Step{{Name: pipeline.StepStage, Phase: pipeline.Succeeded, Started: staged}}}
				if err := lr.db.SavePipeline(ctx, p); err != nil {
					t.Fatal(err)
				}
			}
			lr.clock.Set(tt.clock)
			got, err := lr.reaper.Reap(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range got {
				names = append(names, e.Env)
			}
			if strings.Join(names, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("expired %v, want %v", names, tt.want)
			}
			var left []string
			for _, env := range all {
				if !contains(tt.want, env) {
					left = append(left, env)
				}
			}
			sort.Strings(left)
			if envs := stagingEnvs(t, lr.repo); strings.Join(envs, ",") != strings.Join(left, ",") {
				t.Fatalf("staging manifests left %v, want %v", envs, left)
			}
			if _, err := lr.repo.ReadFile(ctx, manifest.ProductionPath); err != nil {
				t.Fatalf("production manifest: %v", err)
			}
		})
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

func TestReapDeletesNothingWhenStateRepoUnreadable(t *testing.T) {
	ctx := context.Background()
	lr := newLifetimeRig(t, lifetimeEnvs{}, pipeline.Options{})
	data := []byte(strings.Replace(prod, `"production"`, `"vold"`, 1))
	if _, err := lr.repo.Commit(ctx, "add vold", gitops.Change{Path: manifest.StagingPath("vold"), Data: data}); err != nil {
		t.Fatal(err)
	}
	lr.clock.Set(time.Now().Add(10 * ttl))
	url := lr.repo.URL()
	if err := os.Rename(url, url+".away"); err != nil {
		t.Fatal(err)
	}
	got, err := lr.reaper.Reap(ctx)
	if err == nil || len(got) != 0 {
		t.Fatalf("reap with the state repo gone: %v, %v; want an error and nothing expired", got, err)
	}
	if err := os.Rename(url+".away", url); err != nil {
		t.Fatal(err)
	}
	if envs := stagingEnvs(t, lr.repo); strings.Join(envs, ",") != "vold" {
		t.Fatalf("staging manifests %v after a failed read, want vold kept", envs)
	}
}

func TestReaperRunsAtStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	lr := newLifetimeRig(t, lifetimeEnvs{}, pipeline.Options{})
	data := []byte(strings.Replace(prod, `"production"`, `"vold"`, 1))
	if _, err := lr.repo.Commit(ctx, "add vold", gitops.Change{Path: manifest.StagingPath("vold"), Data: data}); err != nil {
		t.Fatal(err)
	}
	lr.clock.Set(time.Now().Add(10 * ttl))
	done := make(chan struct{})
	go func() {
		defer close(done)
		lr.reaper.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	for len(stagingEnvs(t, lr.repo)) != 0 {
		time.Sleep(20 * time.Millisecond) // the test's own timeout bounds this
	}
}

func TestExpiryFailsTheWaitingStep(t *testing.T) {
	version := "v20261125120000"
	tests := []struct {
		name string
		envs lifetimeEnvs
		step string
	}{
		{name: "waiting for deploy reports", envs: lifetimeEnvs{silent: true}, step: pipeline.StepAwaitDeploy},
		{name: "running migrations", envs: lifetimeEnvs{blockJobs: true}, step: pipeline.StepStagingMigrations},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			lr := newLifetimeRig(t, tt.envs, pipeline.Options{})
			id, err := lr.runner.Start(ctx, pipeline.Request{App: "hello", CloneURL: "/x", Branch: "main", Commit: strings.Repeat("f", 40)})
			if err != nil {
				t.Fatal(err)
			}
			for {
				p, err := lr.runner.Get(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if s := p.Step(tt.step); s.Phase == pipeline.Running {
					break
				}
				if p.Phase.Done() {
					t.Fatalf("pipeline ended %s (%s) before reaching %s", p.Phase, p.Reason, tt.step)
				}
				time.Sleep(10 * time.Millisecond) // the test's own timeout bounds this
			}
			lr.clock.Set(t0.Add(ttl + time.Minute))
			got, err := lr.reaper.Reap(ctx)
			if err != nil || len(got) != 1 || got[0].Env != version {
				t.Fatalf("reap: %+v, %v", got, err)
			}
			lr.runner.Wait()
			p, err := lr.db.GetPipeline(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if p.Phase != pipeline.Failed || p.FailedStep != tt.step || !strings.Contains(p.Reason, "staging environment "+version+" expired after TTL 1h") {
				t.Fatalf("pipeline %s at %s: %q; want Failed at %s with the expiry", p.Phase, p.FailedStep, p.Reason, tt.step)
			}
			if s := p.Step(pipeline.StepTeardown); s.Phase != pipeline.Succeeded {
				t.Fatalf("teardown %s: %s", s.Phase, s.Error)
			}
		})
	}
}

func TestResumedPipelineWithExpiredEnvironmentFailsAtOnce(t *testing.T) {
	lr := newLifetimeRig(t, lifetimeEnvs{silent: true}, pipeline.Options{DeployTimeout: time.Hour})
	p := &pipeline.Pipeline{ID: "hello-old", App: "hello", Version: "vold", StagingEnv: "vold", Phase: pipeline.Running, Created: t0}
	for _, n := range pipeline.StepNames {
		p.Steps = append(p.Steps, pipeline.Step{Name: n, Phase: pipeline.Succeeded, Started: t0, Finished: t0})
		if n == pipeline.StepSubmit {
			break
		}
	}
	for _, n := range pipeline.StepNames[len(p.Steps):] {
		p.Steps = append(p.Steps, pipeline.Step{Name: n, Phase: pipeline.Pending})
	}
	got := lr.resume(t, p, t0.Add(2*ttl)) // the control plane was down past the TTL
	if got.Phase != pipeline.Failed || got.FailedStep != pipeline.StepAwaitDeploy || !strings.Contains(got.Reason, "staging environment vold expired after TTL 1h") {
		t.Fatalf("pipeline %s at %s: %q", got.Phase, got.FailedStep, got.Reason)
	}
}

func TestDeadlines(t *testing.T) {
	version := "v20261125120000"
	tests := []struct {
		name  string
		envs  lifetimeEnvs
		opts  pipeline.Options
		hang  bool // builds never end
		step  string
		words []string // in the reason
	}{
		{
			name: "build", hang: true, opts: pipeline.Options{BuildTimeout: 200 * time.Millisecond},
			step: pipeline.StepBuildApp, words: []string{pipeline.StepBuildApp, "deadline 200ms passed", "app artifact of hello " + version},
		},
		{
			name: "deploy reports", envs: lifetimeEnvs{silent: true}, opts: pipeline.Options{DeployTimeout: 200 * time.Millisecond},
			step: pipeline.StepAwaitDeploy, words: []string{pipeline.StepAwaitDeploy, "deadline 200ms passed", "hello"},
		},
		{
			name: "migrations job", envs: lifetimeEnvs{blockJobs: true}, opts: pipeline.Options{JobTimeout: 200 * time.Millisecond},
			step: pipeline.StepStagingMigrations, words: []string{pipeline.StepStagingMigrations, "deadline 200ms passed", "migrations of hello " + version},
		},
		{
			name: "teardown", envs: lifetimeEnvs{stay: []string{version}}, opts: pipeline.Options{TeardownTimeout: 200 * time.Millisecond},
			step: pipeline.StepTeardown, words: []string{pipeline.StepTeardown, "deadline 200ms passed", version + " still runs"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lr := newLifetimeRig(t, tt.envs, tt.opts)
			lr.b.hang = tt.hang
			p := lr.run(t)
			if p.Phase != pipeline.Failed || p.FailedStep != tt.step {
				t.Fatalf("pipeline %s at %s (%s), want Failed at %s", p.Phase, p.FailedStep, p.Reason, tt.step)
			}
			for _, w := range tt.words {
				if !strings.Contains(p.Reason, w) {
					t.Fatalf("reason %q lacks %q", p.Reason, w)
				}
			}
		})
	}
}

// push-staging-manifest run again after a restart keeps its first start, so
// the staging TTL does not start over.
func TestStageRunAgainKeepsItsStart(t *testing.T) {
	lr := newLifetimeRig(t, lifetimeEnvs{}, pipeline.Options{})
	const version = "v20261125115900"
	p := &pipeline.Pipeline{ID: "hello-again", App: "hello", Version: version, Branch: "main", Commit: strings.Repeat("f", 40), Phase: pipeline.Running, Created: t0}
	for _, n := range pipeline.StepNames {
		switch n {
		case pipeline.StepVersion, pipeline.StepBuildApp, pipeline.StepBuildPipeline:
			p.Steps = append(p.Steps, pipeline.Step{Name: n, Phase: pipeline.Succeeded, Started: t0, Finished: t0})
		case pipeline.StepStage:
			p.Steps = append(p.Steps, pipeline.Step{Name: n, Phase: pipeline.Running, Started: t0, Log: "pushing\n"})
		default:
			p.Steps = append(p.Steps, pipeline.Step{Name: n, Phase: pipeline.Pending})
		}
	}
	got := lr.resume(t, p, t0.Add(ttl/2)) // the control plane was down for half the TTL
	if got.Phase != pipeline.Succeeded {
		t.Fatalf("pipeline %s at %s: %s", got.Phase, got.FailedStep, got.Reason)
	}
	if s := got.Step(pipeline.StepStage); !s.Started.Equal(t0) || !strings.Contains(s.Log, "running again") {
		t.Fatalf("push-staging-manifest started %s with log %q, want its first start %s and both runs in the log", s.Started, s.Log, t0)
	}
}

// A pipeline killed after a step failed, before it was recorded Failed,
// carries on failing on resume: the failed step is not run again (it might
// pass this time and leave the pipeline Succeeded with nothing deployed).
func TestResumeAfterAFailedStep(t *testing.T) {
	const failure = "build of the app artifact failed: compile error"
	tests := []struct {
		name       string
		failedStep string // recorded on the pipeline too (older records lack it)
		wantReason string
	}{
		{name: "failure recorded on the pipeline", failedStep: pipeline.StepBuildApp, wantReason: failure},
		{name: "failure recorded on the step only", wantReason: pipeline.StepBuildApp + ": " + failure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lr := newLifetimeRig(t, lifetimeEnvs{}, pipeline.Options{})
			p := &pipeline.Pipeline{ID: "hello-failed", App: "hello", Version: "v20261125115900", Branch: "main", Commit: strings.Repeat("f", 40),
				Phase: pipeline.Running, Created: t0, FailedStep: tt.failedStep}
			if tt.failedStep != "" {
				p.Reason = failure
			}
			for _, n := range pipeline.StepNames {
				switch n {
				case pipeline.StepVersion:
					p.Steps = append(p.Steps, pipeline.Step{Name: n, Phase: pipeline.Succeeded, Started: t0, Finished: t0})
				case pipeline.StepBuildApp:
					p.Steps = append(p.Steps, pipeline.Step{Name: n, Phase: pipeline.Failed, Started: t0, Finished: t0, Error: failure})
				case pipeline.StepTeardown:
					p.Steps = append(p.Steps, pipeline.Step{Name: n, Phase: pipeline.Running, Started: t0})
				default:
					p.Steps = append(p.Steps, pipeline.Step{Name: n, Phase: pipeline.Skipped})
				}
			}
			got := lr.resume(t, p, t0)
			if got.Phase != pipeline.Failed || got.FailedStep != pipeline.StepBuildApp || got.Reason != tt.wantReason {
				t.Fatalf("pipeline %s at %s (%q), want Failed at %s (%q)", got.Phase, got.FailedStep, got.Reason, pipeline.StepBuildApp, tt.wantReason)
			}
			if len(lr.b.reqs) != 0 {
				t.Fatalf("the failed build ran again: %d build requests", len(lr.b.reqs))
			}
			if s := got.Step(pipeline.StepTeardown); s.Phase != pipeline.Succeeded {
				t.Fatalf("teardown %s: %s", s.Phase, s.Error)
			}
		})
	}
}

// A promotion whose commit landed before a restart is found even when the
// control plane came back after the staging TTL: the change is in
// production, so the pipeline goes on rather than failing at promote.
func TestPromoteRunAgainAfterTheTTL(t *testing.T) {
	lr := newLifetimeRig(t, lifetimeEnvs{}, pipeline.Options{})
	p := lr.run(t)
	if p.Phase != pipeline.Succeeded {
		t.Fatalf("first run: %s at %s: %s", p.Phase, p.FailedStep, p.Reason)
	}
	rewindTo(p, pipeline.StepPromote)
	got := lr.resume(t, p, t0.Add(2*ttl))
	if got.Phase != pipeline.Succeeded || !strings.Contains(got.Step(pipeline.StepPromote).Log, "promoted before a restart") {
		t.Fatalf("resumed past the TTL: %s at %s (%s); promote log %q", got.Phase, got.FailedStep, got.Reason, got.Step(pipeline.StepPromote).Log)
	}
}

// rewindTo turns a finished pipeline's record back into what a kill leaves
// while step runs: that step Running, the later ones Pending.
func rewindTo(p *pipeline.Pipeline, step string) {
	p.Phase, p.Finished = pipeline.Running, time.Time{}
	rewind := false
	for i := range p.Steps {
		s := &p.Steps[i]
		if s.Name == step {
			rewind = true
			s.Phase, s.Finished, s.Log = pipeline.Running, time.Time{}, ""
			continue
		}
		if rewind {
			*s = pipeline.Step{Name: s.Name, Phase: pipeline.Pending}
		}
	}
}
