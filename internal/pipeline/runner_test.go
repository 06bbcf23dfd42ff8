package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/reporter"
	"github.com/runway-cd/runway/internal/store/sqlite"
)

// fakeBuilder stands in for the builder: building real artifacts is
// covered by the build package and the end-to-end tests.
type fakeBuilder struct {
	mu   sync.Mutex
	fail map[build.Kind]error
	reqs []build.Request
	// hang makes every build run until its context ends.
	hang bool
}

func (b *fakeBuilder) Build(ctx context.Context, req build.Request) (build.Artifact, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reqs = append(b.reqs, req)
	if b.hang {
		<-ctx.Done()
		return build.Artifact{}, fmt.Errorf("building: %w", ctx.Err())
	}
	if err := b.fail[req.Kind]; err != nil {
		return build.Artifact{}, err
	}
	return build.Artifact{App: req.App, Version: req.Version, Kind: req.Kind, Digest: "sha256:x"}, nil
}

// fakeEnvs plays the environment controller: on every trigger it reports
// each app of the staging manifests as deployed, or failed.
type fakeEnvs struct {
	rep     *reporter.Reporter
	repo    *gitops.Repo
	jobFail map[string]error
	// silentProduction: production never reports (a rollout that hangs).
	silentProduction bool
	mu               sync.Mutex
	jobs             []string
}

func (f *fakeEnvs) Trigger() {
	ctx := context.Background()
	snap, err := f.repo.Snapshot(ctx)
	if err != nil {
		return
	}
	for _, m := range snap.Envs {
		if f.silentProduction && m.EnvName == manifest.ProductionEnv {
			continue
		}
		for _, app := range m.AppNames() {
			_ = f.rep.Update(ctx, m.Workflow(app), app, true, "up")
		}
	}
}
func (f *fakeEnvs) Envs() []string { return nil }
func (f *fakeEnvs) RunJob(_ context.Context, env, app, version, kind string, log io.Writer) error {
	f.mu.Lock()
	f.jobs = append(f.jobs, env+"/"+kind)
	f.mu.Unlock()
	io.WriteString(log, kind+" output\n")
	return f.jobFail[kind]
}
func (f *fakeEnvs) URL(env, app string) string { return "http://" + app + "." + env + ".localhost" }

const prod = `{"envname":"production","apps":{"postgres":{"images":{"code":{"image":"postgres","image_tag":"15"}}}}}`

type rig struct {
	url    string // the state repo's bare repository
	runner *pipeline.Runner
	db     *sqlite.DB
	repo   *gitops.Repo
	envs   *fakeEnvs
	b      *fakeBuilder
}

func newRig(t *testing.T, now time.Time) *rig {
	t.Helper()
	url, repo, db, rep := newStateAndStore(t, prod)
	r := &rig{url: url, db: db, repo: repo, b: &fakeBuilder{fail: map[build.Kind]error{}}}
	r.envs = &fakeEnvs{rep: rep, repo: repo, jobFail: map[string]error{}}
	r.runner = pipeline.New(db, r.b, repo, rep, r.envs, pipeline.Options{
		DeployTimeout: time.Minute, RolloutTimeout: time.Minute, TeardownTimeout: time.Second,
		Now: func() time.Time { return now },
	})
	return r
}

func TestRunner(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		setup  func(r *rig)
		assert func(t *testing.T, r *rig, p *pipeline.Pipeline)
	}{
		{
			name: "all steps succeed",
			assert: func(t *testing.T, r *rig, p *pipeline.Pipeline) {
				if p.Phase != pipeline.Succeeded {
					t.Fatalf("phase %s at %s: %s", p.Phase, p.FailedStep, p.Reason)
				}
				if p.Version != "v20261125120000" {
					t.Fatalf("version %s", p.Version)
				}
				for _, s := range p.Steps {
					if s.Phase != pipeline.Succeeded || s.Started.IsZero() || s.Finished.IsZero() {
						t.Fatalf("step %s: %+v", s.Name, s)
					}
				}
				data, err := r.repo.ReadFile(context.Background(), manifest.ProductionPath)
				if err != nil {
					t.Fatal(err)
				}
				m, _ := manifest.Parse(data)
				if got := m.Apps["hello"].Version(); got != p.Version {
					t.Fatalf("production has hello %q", got)
				}
				if m.Apps["hello"].Deploy.Revision != p.Commit || m.DeployingWorkflowName != p.ID+"-production" || m.Apps["hello"].DeployingWorkflowName != p.ID+"-production" {
					t.Fatalf("production manifest fields: %+v", m)
				}
				if strings.Join(r.envs.jobs, ",") != p.Version+"/migrations,"+p.Version+"/tests,production/migrations,production/tests" {
					t.Fatalf("jobs ran: %v", r.envs.jobs)
				}
			},
		},
		{
			name:  "build failure skips to teardown",
			setup: func(r *rig) { r.b.fail[build.App] = errors.New("compile error: x.go:1") },
			assert: func(t *testing.T, r *rig, p *pipeline.Pipeline) {
				if p.Phase != pipeline.Failed || p.FailedStep != pipeline.StepBuildApp || !strings.Contains(p.Reason, "compile error") {
					t.Fatalf("phase %s at %s: %s", p.Phase, p.FailedStep, p.Reason)
				}
				for _, s := range p.Steps[2 : len(p.Steps)-1] {
					if s.Phase != pipeline.Skipped {
						t.Fatalf("step %s is %s", s.Name, s.Phase)
					}
				}
				if s := p.Step(pipeline.StepTeardown); s.Phase != pipeline.Succeeded {
					t.Fatalf("teardown %s: %s", s.Phase, s.Error)
				}
			},
		},
		{
			name:  "failing tests keep production and delete staging",
			setup: func(r *rig) { r.envs.jobFail["tests"] = errors.New("exit status 1") },
			assert: func(t *testing.T, r *rig, p *pipeline.Pipeline) {
				if p.Phase != pipeline.Failed || p.FailedStep != pipeline.StepStagingTests {
					t.Fatalf("phase %s at %s: %s", p.Phase, p.FailedStep, p.Reason)
				}
				if log := p.Step(pipeline.StepStagingTests).Log; !strings.Contains(log, "tests output") {
					t.Fatalf("step log lacks the job output: %q", log)
				}
				snap, err := r.repo.Snapshot(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if names := snap.EnvNames(); strings.Join(names, ",") != "production" {
					t.Fatalf("environments after failure: %v", names)
				}
				if _, ok := snap.Envs["production"].Apps["hello"]; ok {
					t.Fatal("failed change reached production")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, now)
			if tt.setup != nil {
				tt.setup(r)
			}
			ctx := context.Background()
			id, err := r.runner.Start(ctx, pipeline.Request{App: "hello", Repo: "o/hello", CloneURL: "/x", Branch: "main", Commit: strings.Repeat("b", 40), Message: "change\nbody"})
			if err != nil {
				t.Fatal(err)
			}
			r.runner.Wait()
			p, err := r.db.GetPipeline(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			tt.assert(t, r, p)
		})
	}
}

func TestRolloutDeadlineAbortsTheRollout(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	r := newRig(t, now)
	r.envs.silentProduction = true
	var mu sync.Mutex
	var aborted []string
	opts := pipeline.Options{DeployTimeout: time.Minute, RolloutTimeout: 200 * time.Millisecond, TeardownTimeout: time.Second,
		Now: func() time.Time { return now },
		AbortRollout: func(env, app, version, reason string) error {
			mu.Lock()
			defer mu.Unlock()
			if version == "" {
				t.Errorf("abort of %s/%s names no version: it could abort another pipeline's rollout", env, app)
			}
			aborted = append(aborted, env+"/"+app+": "+reason)
			return nil
		}}
	rep := reporter.New(r.db, nil)
	r.envs.rep = rep
	runner := pipeline.New(r.db, r.b, r.repo, rep, r.envs, opts)
	ctx := context.Background()
	id, err := runner.Start(ctx, pipeline.Request{App: "hello", CloneURL: "/x", Branch: "main", Commit: strings.Repeat("d", 40)})
	if err != nil {
		t.Fatal(err)
	}
	runner.Wait()
	p, err := runner.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if p.Phase != pipeline.Failed || p.FailedStep != pipeline.StepAwaitRollout || !strings.Contains(p.Reason, "deadline") {
		t.Fatalf("pipeline %s at %s: %s", p.Phase, p.FailedStep, p.Reason)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(aborted) != 1 || !strings.HasPrefix(aborted[0], "production/hello: pipeline "+id) {
		t.Fatalf("aborted = %v, want one abort of production/hello naming the pipeline", aborted)
	}
}

func TestVersionsAreUniqueWithinASecond(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	r := newRig(t, now)
	r.b.fail[build.App] = errors.New("stop after version")
	ctx := context.Background()
	var ids []string
	for i := 0; i < 3; i++ {
		id, err := r.runner.Start(ctx, pipeline.Request{App: "hello", CloneURL: "/x", Branch: "main", Commit: strings.Repeat("c", 40)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	r.runner.Wait()
	seen := map[string]bool{}
	for _, id := range ids {
		p, err := r.runner.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if seen[p.Version] || p.Version == "" {
			t.Fatalf("version %q repeated or empty", p.Version)
		}
		seen[p.Version] = true
	}
}

// The runner takes its time from the injected clock.
func TestInjectedClock(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	r := newRig(t, now)
	clk := clocktesting.NewFakeClock(now.Add(time.Hour))
	runner := pipeline.New(r.db, r.b, r.repo, r.envs.rep, r.envs, pipeline.Options{
		DeployTimeout: time.Minute, RolloutTimeout: time.Minute, TeardownTimeout: time.Second, Clock: clk,
	})
	id, err := runner.Start(context.Background(), pipeline.Request{App: "hello", CloneURL: "/x", Branch: "main", Commit: strings.Repeat("f", 40)})
	if err != nil {
		t.Fatal(err)
	}
	runner.Wait()
	p, err := r.db.GetPipeline(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if p.Phase != pipeline.Succeeded || !p.Created.Equal(clk.Now()) || !p.Finished.Equal(clk.Now()) || p.Version != "v20261125130000" {
		t.Fatalf("pipeline %s created %s finished %s version %s; want Succeeded at the fake clock's %s", p.Phase, p.Created, p.Finished, p.Version, clk.Now())
	}
}

func TestGetUnknown(t *testing.T) {
	r := newRig(t, time.Now())
	if _, err := r.runner.Get(context.Background(), "nope"); !errors.Is(err, pipeline.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

// A control plane killed right after the promotion's commit runs the
// promote step again on restart: it finds production already holding the
// version and the staging manifest gone, and goes on instead of failing to
// read the staging manifest.
func TestPromoteRunAgainAfterItsCommit(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	r := newRig(t, now)
	ctx := context.Background()
	id, err := r.runner.Start(ctx, pipeline.Request{App: "hello", CloneURL: "/x", Branch: "main", Commit: strings.Repeat("e", 40)})
	if err != nil {
		t.Fatal(err)
	}
	r.runner.Wait()
	p, err := r.runner.Get(ctx, id)
	if err != nil || p.Phase != pipeline.Succeeded {
		t.Fatalf("first run: %v %+v", err, p)
	}
	// Rewind the record to "promote was running" (what a kill leaves);
	// git keeps the promotion commit.
	rewindTo(p, pipeline.StepPromote)
	if err := r.db.SavePipeline(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := r.runner.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	r.runner.Wait()
	got, err := r.runner.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Phase != pipeline.Succeeded {
		t.Fatalf("resumed pipeline %s at %s: %s", got.Phase, got.FailedStep, got.Reason)
	}
	if log := got.Step(pipeline.StepPromote).Log; !strings.Contains(log, "promoted before a restart") {
		t.Fatalf("promote log %q does not say it found its earlier commit", log)
	}
	data, err := r.repo.ReadFile(ctx, manifest.ProductionPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse(data)
	if err != nil || m.Apps["hello"].Version() != got.Version {
		t.Fatalf("production manifest %v %+v, want hello %s", err, m, got.Version)
	}
}

// newStateAndStore makes a bare state repository (url) whose production
// manifest is prod, a clone of it, and a SQLite store with a reporter on it,
// all in a temp dir and closed with the test.
func newStateAndStore(t *testing.T, prod string) (url string, repo *gitops.Repo, db *sqlite.DB, rep *reporter.Reporter) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	url = filepath.Join(dir, "state.git")
	if err := gitops.InitBare(url, "main"); err != nil {
		t.Fatal(err)
	}
	if _, err := gitops.CommitDir(ctx, url, "main", fstest.MapFS{manifest.ProductionPath: {Data: []byte(prod)}}, "seed"); err != nil {
		t.Fatal(err)
	}
	repo, err := gitops.Open(ctx, url, filepath.Join(dir, "clone"), "main", nil)
	if err != nil {
		t.Fatal(err)
	}
	if db, err = sqlite.Open(ctx, filepath.Join(dir, "runway.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return url, repo, db, reporter.New(db, nil)
}
