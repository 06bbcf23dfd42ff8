package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/redact"
)

// commitBuilder is fakeBuilder whose app builds of the commits in gates
// wait for their gate (or their context), and which records the order in
// which app builds started.
type commitBuilder struct {
	fakeBuilder
	mu      sync.Mutex
	gates   map[string]chan struct{}
	started chan string
	order   []string
}

func newCommitBuilder(gated ...string) *commitBuilder {
	b := &commitBuilder{fakeBuilder: fakeBuilder{fail: map[build.Kind]error{}}, gates: map[string]chan struct{}{}, started: make(chan string, 16)}
	for _, c := range gated {
		b.gates[c] = make(chan struct{})
	}
	return b
}

func (b *commitBuilder) Build(ctx context.Context, req build.Request) (build.Artifact, error) {
	if req.Kind == build.App {
		b.mu.Lock()
		b.order = append(b.order, req.Commit[:1])
		gate := b.gates[req.Commit]
		b.mu.Unlock()
		b.started <- req.Commit[:1]
		if gate != nil {
			select {
			case <-gate:
			case <-ctx.Done():
				return build.Artifact{}, ctx.Err()
			}
		}
	}
	return b.fakeBuilder.Build(ctx, req)
}

func (b *commitBuilder) buildOrder() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.order, "")
}

// tick is a clock one second further at every call, so that pipelines
// started one after the other arrive in that order.
type tick struct {
	mu sync.Mutex
	t  time.Time
}

func (c *tick) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func request(c string) pipeline.Request {
	return pipeline.Request{App: "hello", CloneURL: "/x", Branch: "main", Commit: strings.Repeat(c, 40)}
}

// waitFor polls the runner until cond holds for the pipeline.
func waitFor(t *testing.T, r *pipeline.Runner, id, what string, cond func(p *pipeline.Pipeline) bool) *pipeline.Pipeline {
	t.Helper()
	for range 3000 {
		if p, err := r.Get(context.Background(), id); err == nil && cond(p) {
			return p
		}
		time.Sleep(10 * time.Millisecond)
	}
	p, _ := r.Get(context.Background(), id)
	t.Fatalf("pipeline %s never %s: %+v", id, what, p)
	return nil
}

func TestQueuedBeyondMaxRunning(t *testing.T) {
	r := newRig(t, t0)
	b := newCommitBuilder(strings.Repeat("a", 40), strings.Repeat("b", 40))
	clock := &tick{t: t0}
	runner := pipeline.New(r.db, b, r.repo, r.envs.rep, r.envs, pipeline.Options{
		DeployTimeout: time.Minute, RolloutTimeout: time.Minute, TeardownTimeout: time.Second, Now: clock.Now, MaxRunning: 1,
	})
	ctx := context.Background()
	ids := map[string]string{}
	for _, c := range []string{"a", "b", "c"} {
		id, err := runner.Start(ctx, request(c))
		if err != nil {
			t.Fatal(err)
		}
		ids[c] = id
		if c == "a" {
			<-b.started
		}
	}
	wantReason := map[string]string{"b": "queued: position 1 of 2; 1 running (limits.pipelines)", "c": "queued: position 2 of 2; 1 running (limits.pipelines)"}
	for _, c := range []string{"b", "c"} {
		// Start has recorded the queued pipeline before returning.
		stored, err := r.db.GetPipeline(ctx, ids[c])
		if err != nil {
			t.Fatal(err)
		}
		live, err := runner.Get(ctx, ids[c])
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []*pipeline.Pipeline{stored, live} {
			if want := wantReason[c]; p.Phase != pipeline.Queued || p.Reason != want || p.Step(pipeline.StepVersion).Phase != pipeline.Pending {
				t.Fatalf("pipeline %s: phase %s, reason %q, version step %s; want Queued, %q, Pending", c, p.Phase, p.Reason, p.Step(pipeline.StepVersion).Phase, want)
			}
		}
	}
	close(b.gates[strings.Repeat("a", 40)])
	if got := <-b.started; got != "b" {
		t.Fatalf("after a finished, %s started; want b (arrival order)", got)
	}
	// The queue moved: c's stored reason says so.
	const moved = "queued: position 1 of 1; 1 running (limits.pipelines)"
	if p := waitFor(t, runner, ids["c"], "moved up", func(p *pipeline.Pipeline) bool { return p.Reason == moved }); p.Phase != pipeline.Queued {
		t.Fatalf("c is %s while b runs; want Queued", p.Phase)
	}
	if stored, err := r.db.GetPipeline(ctx, ids["c"]); err != nil || stored.Reason != moved {
		t.Fatalf("stored c: %v, reason %q; want %q", err, stored.Reason, moved)
	}
	close(b.gates[strings.Repeat("b", 40)])
	runner.Wait()
	for c, id := range ids {
		p, err := r.db.GetPipeline(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if p.Phase != pipeline.Succeeded || p.Reason != "" {
			t.Fatalf("pipeline %s: %s %q; want Succeeded with no reason left", c, p.Phase, p.Reason)
		}
	}
	if got := b.buildOrder(); got != "abc" {
		t.Fatalf("build order %s, want abc", got)
	}
}

func TestQueuedSurvivesRestart(t *testing.T) {
	r := newRig(t, t0)
	b := newCommitBuilder(strings.Repeat("a", 40))
	clock := &tick{t: t0}
	opts := pipeline.Options{DeployTimeout: time.Minute, RolloutTimeout: time.Minute, TeardownTimeout: time.Second, Now: clock.Now, MaxRunning: 1}
	runner := pipeline.New(r.db, b, r.repo, r.envs.rep, r.envs, opts)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ids []string
	for _, c := range []string{"a", "b", "c"} {
		id, err := runner.Start(ctx, request(c))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		if c == "a" {
			<-b.started
		}
	}
	cancel() // the control plane stops
	runner.Wait()
	for i, want := range []pipeline.Phase{pipeline.Running, pipeline.Queued, pipeline.Queued} {
		p, err := r.db.GetPipeline(context.Background(), ids[i])
		if err != nil {
			t.Fatal(err)
		}
		if p.Phase != want {
			t.Fatalf("after the stop pipeline %d is %s, want %s", i, p.Phase, want)
		}
	}

	next := newCommitBuilder()
	restarted := pipeline.New(r.db, next, r.repo, r.envs.rep, r.envs, opts)
	if err := restarted.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	restarted.Wait()
	for i, id := range ids {
		p, err := r.db.GetPipeline(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if p.Phase != pipeline.Succeeded {
			t.Fatalf("resumed pipeline %d: %s at %s: %s", i, p.Phase, p.FailedStep, p.Reason)
		}
	}
	if got := next.buildOrder(); got != "abc" {
		t.Fatalf("build order after the restart %s, want abc (arrival order)", got)
	}
}

// gatedTests is fakeEnvs whose first staging functional tests job waits
// for gate.
type gatedTests struct {
	*fakeEnvs
	once    sync.Once
	gate    chan struct{}
	started chan struct{}
}

func (e *gatedTests) RunJob(ctx context.Context, env, app, version, kind string, log io.Writer) error {
	if kind == "tests" && env != manifest.ProductionEnv {
		first := false
		e.once.Do(func() { first = true })
		if first {
			close(e.started)
			select {
			case <-e.gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return e.fakeEnvs.RunJob(ctx, env, app, version, kind, log)
}

func TestStagingCapWaitsForAnEnvironmentToGo(t *testing.T) {
	r := newRig(t, t0)
	envs := &gatedTests{fakeEnvs: r.envs, gate: make(chan struct{}), started: make(chan struct{})}
	clock := &tick{t: t0}
	runner := pipeline.New(r.db, r.b, r.repo, r.envs.rep, envs, pipeline.Options{
		DeployTimeout: time.Minute, RolloutTimeout: time.Minute, TeardownTimeout: time.Second, Now: clock.Now, MaxStaging: 1,
	})
	ctx := context.Background()
	first, err := runner.Start(ctx, request("a"))
	if err != nil {
		t.Fatal(err)
	}
	<-envs.started // the first pipeline's staging environment exists
	second, err := runner.Start(ctx, request("b"))
	if err != nil {
		t.Fatal(err)
	}
	const want = "waiting: 1 staging environments exist (limits.stagingEnvironments)"
	p := waitFor(t, runner, second, "waited for a staging environment", func(p *pipeline.Pipeline) bool {
		return strings.Contains(p.Step(pipeline.StepStage).Log, want)
	})
	if p.Reason != want || p.Phase != pipeline.Running || p.StagingEnv != "" {
		t.Fatalf("waiting pipeline: phase %s, reason %q, staging env %q", p.Phase, p.Reason, p.StagingEnv)
	}
	if envs := stagingEnvs(t, r.repo); len(envs) != 1 {
		t.Fatalf("staging environments while one waits: %v", envs)
	}
	close(envs.gate) // the first pipeline promotes, deleting its staging manifest
	runner.Wait()
	for _, id := range []string{first, second} {
		p, err := r.db.GetPipeline(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if p.Phase != pipeline.Succeeded || p.Reason != "" {
			t.Fatalf("pipeline %s: %s %q", id, p.Phase, p.Reason)
		}
	}
	p, _ = r.db.GetPipeline(ctx, second)
	if log := p.Step(pipeline.StepStage).Log; !strings.Contains(log, "a staging environment is free") {
		t.Fatalf("stage log %q does not say the wait ended", log)
	}
}

func TestStagingCapWaitIsBounded(t *testing.T) {
	ctx := context.Background()
	const want = "waiting: 1 staging environments exist (limits.stagingEnvironments)"
	tests := []struct {
		name string
		// stop ends the wait: by the TTL passing, or by a drain.
		stop   func(t *testing.T, lr *lifetimeRig)
		assert func(t *testing.T, p *pipeline.Pipeline)
	}{
		{
			name: "the staging TTL passes",
			stop: func(t *testing.T, lr *lifetimeRig) { lr.clock.Set(t0.Add(ttl + time.Second)) },
			assert: func(t *testing.T, p *pipeline.Pipeline) {
				if p.Phase != pipeline.Failed || p.FailedStep != pipeline.StepStage || !strings.Contains(p.Reason, "waited 1h (staging TTL)") {
					t.Fatalf("pipeline %s at %s: %q", p.Phase, p.FailedStep, p.Reason)
				}
			},
		},
		{
			name: "a drain interrupts it",
			stop: func(t *testing.T, lr *lifetimeRig) {
				dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				if err := lr.runner.Drain(dctx); err != nil {
					t.Fatalf("Drain: %v", err)
				}
			},
			assert: func(t *testing.T, p *pipeline.Pipeline) {
				s := p.Step(pipeline.StepStage)
				if p.Phase != pipeline.Running || s.Phase != pipeline.Running || !strings.Contains(s.Log, "interrupted") {
					t.Fatalf("after the drain: %s, stage %s, log %q; want it to run again on restart", p.Phase, s.Phase, s.Log)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lr := newLifetimeRig(t, lifetimeEnvs{}, pipeline.Options{MaxStaging: 1})
			other := strings.Replace(prod, `"production"`, `"vother"`, 1)
			if _, err := lr.repo.Commit(ctx, "add vother", gitops.Change{Path: manifest.StagingPath("vother"), Data: []byte(other)}); err != nil {
				t.Fatal(err)
			}
			id, err := lr.runner.Start(ctx, request("a"))
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, lr.runner, id, "waited", func(p *pipeline.Pipeline) bool {
				return strings.Contains(p.Step(pipeline.StepStage).Log, want)
			})
			tt.stop(t, lr)
			lr.runner.Wait()
			p, err := lr.db.GetPipeline(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			tt.assert(t, p)
			if envs := stagingEnvs(t, lr.repo); strings.Join(envs, ",") != "vother" {
				t.Fatalf("staging environments %v, want only vother", envs)
			}
		})
	}
}

// secretJobs is fakeEnvs whose jobs print a secret.
type secretJobs struct{ *fakeEnvs }

func (e secretJobs) RunJob(ctx context.Context, env, app, version, kind string, log io.Writer) error {
	io.WriteString(log, "DATABASE_URL=postgres://app:")
	io.WriteString(log, "db-passw0rd-123@localhost/app\n")
	return e.fakeEnvs.RunJob(ctx, env, app, version, kind, log)
}

// tokenJobs is fakeEnvs whose staging jobs print the reporter token of
// the pipeline they run for (as a job printing its environment would).
type tokenJobs struct {
	*fakeEnvs
	id    chan string
	once  sync.Once
	token string
}

func (e *tokenJobs) RunJob(ctx context.Context, env, app, version, kind string, log io.Writer) error {
	if env != manifest.ProductionEnv {
		e.once.Do(func() {
			tok, err := e.rep.Token(ctx, <-e.id)
			if err != nil {
				panic(err)
			}
			e.token = tok
		})
		io.WriteString(log, "RUNWAY_REPORTER_TOKEN="+e.token+"\n")
	}
	return e.fakeEnvs.RunJob(ctx, env, app, version, kind, log)
}

func TestReporterTokenIsRedacted(t *testing.T) {
	r := newRig(t, t0)
	envs := &tokenJobs{fakeEnvs: r.envs, id: make(chan string, 1)}
	runner := pipeline.New(r.db, r.b, r.repo, r.envs.rep, envs, pipeline.Options{
		DeployTimeout: time.Minute, RolloutTimeout: time.Minute, TeardownTimeout: time.Second,
		Now: func() time.Time { return t0 }, Redactor: redact.New(),
	})
	id, err := runner.Start(context.Background(), request("a"))
	if err != nil {
		t.Fatal(err)
	}
	envs.id <- id
	runner.Wait()
	p, err := r.db.GetPipeline(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	log := p.Step(pipeline.StepStagingMigrations).Log
	if envs.token == "" || strings.Contains(log, envs.token) || !strings.Contains(log, "RUNWAY_REPORTER_TOKEN="+redact.Mask) {
		t.Fatalf("staging migrations log %q: want the reporter token masked", log)
	}
}

// printingBuilder writes its output in the given pieces, then fails with
// err if set.
type printingBuilder struct {
	fakeBuilder
	pieces []string
	err    error
}

func (b *printingBuilder) Build(ctx context.Context, req build.Request) (build.Artifact, error) {
	if req.Kind == build.App {
		for _, s := range b.pieces {
			io.WriteString(req.Log, s)
		}
		if b.err != nil {
			return build.Artifact{}, b.err
		}
	}
	return b.fakeBuilder.Build(ctx, req)
}

func TestStepLogsAreRedacted(t *testing.T) {
	const webhook, password = "whsec-0123456789abcdef", "db-passw0rd-123"
	tests := []struct {
		name    string
		builder *printingBuilder
		jobs    bool
		// step whose log must show the mask
		step string
	}{
		{name: "build output split across writes", builder: &printingBuilder{pieces: []string{"env: RUNWAY_WEBHOOK_SECRET=whsec-01234", "56789abcdef\n", "done\n"}}, step: pipeline.StepBuildApp},
		{name: "build error and reason", builder: &printingBuilder{pieces: []string{"x\n"}, err: fmt.Errorf("go: GOFLAGS=-token=%s: exit status 1", webhook)}, step: pipeline.StepBuildApp},
		{name: "job output", builder: &printingBuilder{}, jobs: true, step: pipeline.StepStagingTests},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, t0)
			red := redact.New()
			red.Add(webhook, password)
			tt.builder.fail = map[build.Kind]error{}
			var envs pipeline.Environments = r.envs
			if tt.jobs {
				envs = secretJobs{r.envs}
			}
			runner := pipeline.New(r.db, tt.builder, r.repo, r.envs.rep, envs, pipeline.Options{
				DeployTimeout: time.Minute, RolloutTimeout: time.Minute, TeardownTimeout: time.Second,
				Now: func() time.Time { return t0 }, Redactor: red,
			})
			ctx := context.Background()
			id, err := runner.Start(ctx, request("a"))
			if err != nil {
				t.Fatal(err)
			}
			runner.Wait()
			p, err := r.db.GetPipeline(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			all := p.Reason
			for _, s := range p.Steps {
				all += s.Log + s.Error
			}
			for _, secret := range []string{webhook, password} {
				if strings.Contains(all, secret) {
					t.Fatalf("secret %q in the stored pipeline: %s", secret, all)
				}
			}
			s := p.Step(tt.step)
			if !strings.Contains(s.Log+s.Error, redact.Mask) {
				t.Fatalf("step %s shows no mask: log %q, error %q", tt.step, s.Log, s.Error)
			}
			if tt.builder.err != nil && (!strings.Contains(p.Reason, redact.Mask) || !strings.Contains(s.Error, redact.Mask)) {
				t.Fatalf("reason %q / error %q not masked", p.Reason, s.Error)
			}
		})
	}
}

// A step that writes a secret's prefix that never completes: the writer
// keeps it back until the step ends, then stores it as it is.
func TestStepLogKeepsAnUnfinishedPrefix(t *testing.T) {
	r := newRig(t, t0)
	red := redact.New()
	red.Add("whsec-0123456789abcdef")
	b := &printingBuilder{fakeBuilder: fakeBuilder{fail: map[build.Kind]error{}}, pieces: []string{"last words: whsec-0123"}, err: errors.New("boom")}
	runner := pipeline.New(r.db, b, r.repo, r.envs.rep, r.envs, pipeline.Options{Now: func() time.Time { return t0 }, Redactor: red, TeardownTimeout: time.Second})
	id, err := runner.Start(context.Background(), request("a"))
	if err != nil {
		t.Fatal(err)
	}
	runner.Wait()
	p, err := r.db.GetPipeline(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if log := p.Step(pipeline.StepBuildApp).Log; !strings.Contains(log, "last words: whsec-0123") {
		t.Fatalf("build log %q lost the unfinished tail", log)
	}
}
