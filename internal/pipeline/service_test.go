package pipeline_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/pipeline"
)

// serviceProd is a production manifest with the database service and an
// app on it, with fields Runway does not know.
const serviceProd = `{"envname":"production","apps":{
 "postgres":{"images":{"code":{"image":"postgres","image_tag":"15","label":"stable"}},"deploy":{"revision":"` + oldRevision + `"},"settings":{"max_connections":50}},
 "hello":{"images":{"code":{"image":"runway.local/hello","image_tag":"v1"},"pipeline":{"image":"runway.local/hello-pipeline","image_tag":"v1"}},"deploy":{"revision":"1111111111111111111111111111111111111111"}}
}}`

const oldRevision = "0000000000000000000000000000000000000000"

// serviceEnvs is fakeEnvs that keeps every staging manifest it saw and
// records each job with its app and version. Production reports postgres
// only for the pipelines released (all when releaseAll), as a production
// pass that has not seen the change yet would not.
type serviceEnvs struct {
	*fakeEnvs
	mu         sync.Mutex
	staged     []*manifest.Manifest
	jobCalls   []string // "env app version kind"
	released   map[string]bool
	releaseAll bool
}

func (e *serviceEnvs) Trigger() {
	ctx := context.Background()
	snap, err := e.repo.Snapshot(ctx)
	if err != nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, m := range snap.Envs {
		if m.EnvName != manifest.ProductionEnv && !slices.ContainsFunc(e.staged, func(s *manifest.Manifest) bool { return s.EnvName == m.EnvName }) {
			e.staged = append(e.staged, m.Clone())
		}
		for _, app := range m.AppNames() {
			wf := m.Workflow(app)
			if m.EnvName == manifest.ProductionEnv && !e.releaseAll && !e.released[strings.TrimSuffix(wf, "-production")] {
				continue
			}
			_ = e.rep.Update(ctx, wf, app, true, "up")
		}
	}
}

func (e *serviceEnvs) release(id string) {
	e.mu.Lock()
	e.released[id] = true
	e.mu.Unlock()
	e.Trigger()
}

func (e *serviceEnvs) RunJob(ctx context.Context, env, app, version, kind string, log io.Writer) error {
	e.mu.Lock()
	e.jobCalls = append(e.jobCalls, strings.Join([]string{env, app, version, kind}, " "))
	e.mu.Unlock()
	return e.fakeEnvs.RunJob(ctx, env, app, version, kind, log)
}

// newServiceRig is a rig whose production manifest is prod and whose
// environments are serviceEnvs.
func newServiceRig(t *testing.T, prod string) (*rig, *serviceEnvs) {
	t.Helper()
	url, repo, db, rep := newStateAndStore(t, prod)
	r := &rig{url: url, db: db, repo: repo, b: &fakeBuilder{fail: map[build.Kind]error{}}}
	r.envs = &fakeEnvs{rep: rep, repo: repo, jobFail: map[string]error{}}
	envs := &serviceEnvs{fakeEnvs: r.envs, released: map[string]bool{}}
	r.runner = pipeline.New(db, r.b, repo, rep, envs, pipeline.Options{
		DeployTimeout: time.Minute, RolloutTimeout: time.Minute, TeardownTimeout: time.Second,
		Now: (&tick{t: t0}).Now,
	})
	return r, envs
}

func serviceRequest(c string) pipeline.Request {
	return pipeline.Request{App: "postgres", Service: pipeline.ServicePostgres, Repo: "o/db", CloneURL: "/db", Branch: "main",
		Commit: strings.Repeat(c, 40), Message: "schema " + c + "\nbody"}
}

// entryJSON is an app's entry as the manifest writes it.
func entryJSON(t *testing.T, a *manifest.App) string {
	t.Helper()
	b, err := a.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A service's repository runs the method with only the service entry's
// revision and pipeline artifact changing: no app build, staging is
// production with that one change, the jobs are the service's, production
// gets the revision and nothing else; a hand-made change of the service's
// image made meanwhile is kept.
func TestServicePipeline(t *testing.T) {
	r, envs := newServiceRig(t, serviceProd)
	envs.releaseAll = true
	ctx := context.Background()
	before := production(t, r.repo)
	// While the change is in staging (at its staging tests), a person
	// upgrades the server by hand: the promotion must not undo it.
	handUpgrade := func() {
		m := production(t, r.repo)
		m.Apps["postgres"].Images.Code.Tag = "16"
		data, err := m.Marshal()
		if err != nil {
			t.Error(err)
			return
		}
		if _, err := r.repo.Commit(ctx, "upgrade postgres by hand", gitops.Change{Path: manifest.ProductionPath, Data: data}); err != nil {
			t.Error(err)
		}
	}
	hooked := &hookedJobs{serviceEnvs: envs, onStagingTests: handUpgrade}
	runner := pipeline.New(r.db, r.b, r.repo, r.envs.rep, hooked, pipeline.Options{
		DeployTimeout: time.Minute, RolloutTimeout: time.Minute, TeardownTimeout: time.Second, Now: (&tick{t: t0}).Now,
	})
	id, err := runner.Start(ctx, serviceRequest("a"))
	if err != nil {
		t.Fatal(err)
	}
	runner.Wait()
	p, err := r.db.GetPipeline(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if p.Phase != pipeline.Succeeded {
		t.Fatalf("pipeline %s at %s: %s", p.Phase, p.FailedStep, p.Reason)
	}
	if p.Service != pipeline.ServicePostgres || p.StagingURL != "" {
		t.Errorf("pipeline service %q staging URL %q, want postgres and none", p.Service, p.StagingURL)
	}
	for _, s := range p.Steps {
		want := pipeline.Succeeded
		if s.Name == pipeline.StepBuildApp {
			want = pipeline.Skipped
		}
		if s.Phase != want {
			t.Errorf("step %s %s, want %s: %s", s.Name, s.Phase, want, s.Error)
		}
	}
	if log := p.Step(pipeline.StepBuildApp).Log; !strings.Contains(log, "no app image") {
		t.Errorf("build-app log %q does not say why it was skipped", log)
	}
	r.b.mu.Lock()
	reqs := slices.Clone(r.b.reqs)
	r.b.mu.Unlock()
	if len(reqs) != 1 || reqs[0].Kind != build.Pipeline || reqs[0].SpecKind != appspec.KindService || reqs[0].App != "postgres" || reqs[0].Commit != strings.Repeat("a", 40) {
		t.Errorf("builds %+v, want only the pipeline artifact of postgres", reqs)
	}

	// Staging: production's manifest with only the service entry's
	// revision and pipeline tag changed.
	envs.mu.Lock()
	staged := slices.Clone(envs.staged)
	envs.mu.Unlock()
	if len(staged) != 1 {
		t.Fatalf("staging manifests seen %d, want 1", len(staged))
	}
	st := staged[0]
	pg := st.Apps["postgres"]
	if code := pg.Images.Code; code.Image != "postgres" || code.Tag != "15" || code.Label != "stable" || pg.Deploy.Revision != p.Commit ||
		pg.Images.Pipeline == nil || pg.Images.Pipeline.Tag != p.Version || pg.Images.Pipeline.Image != "runway.local/postgres-pipeline" {
		t.Errorf("staging postgres entry %s", entryJSON(t, pg))
	}
	if !strings.Contains(entryJSON(t, pg), `"max_connections":50`) {
		t.Errorf("staging postgres entry lost a field Runway does not know: %s", entryJSON(t, pg))
	}
	if got, want := entryJSON(t, st.Apps["hello"]), entryJSON(t, before.Apps["hello"]); got != want {
		t.Errorf("staging hello entry %s, want production's %s", got, want)
	}
	if st.DeployingWorkflowName != p.ID || len(st.Apps) != 2 {
		t.Errorf("staging manifest workflow %q apps %v", st.DeployingWorkflowName, st.AppNames())
	}

	// The jobs are the service's, from its pipeline artifact.
	envs.mu.Lock()
	jobs := slices.Clone(envs.jobCalls)
	envs.mu.Unlock()
	want := []string{
		p.Version + " postgres " + p.Version + " migrations", p.Version + " postgres " + p.Version + " tests",
		"production postgres " + p.Version + " migrations", "production postgres " + p.Version + " tests",
	}
	if !slices.Equal(jobs, want) {
		t.Errorf("jobs %q, want %q", jobs, want)
	}

	// Production: the revision and the pipeline tag, and the hand-made
	// upgrade kept; the app untouched.
	after := production(t, r.repo)
	pg = after.Apps["postgres"]
	if pg.Images.Code.Image != "postgres" || pg.Images.Code.Tag != "16" || pg.Deploy.Revision != p.Commit ||
		pg.Images.Pipeline == nil || pg.Images.Pipeline.Tag != p.Version || pg.DeployingWorkflowName != p.ID+"-production" {
		t.Errorf("production postgres entry %s", entryJSON(t, pg))
	}
	if got, want := entryJSON(t, after.Apps["hello"]), entryJSON(t, before.Apps["hello"]); got != want {
		t.Errorf("production hello entry %s, want it unchanged %s", got, want)
	}
	if snap, err := r.repo.Snapshot(ctx); err != nil || strings.Join(snap.EnvNames(), ",") != "production" {
		t.Errorf("environments after the pipeline: %v %v", err, snap)
	}
}

// hookedJobs calls onStagingTests before the staging tests run.
type hookedJobs struct {
	*serviceEnvs
	onStagingTests func()
}

func (h *hookedJobs) RunJob(ctx context.Context, env, app, version, kind string, log io.Writer) error {
	if kind == "tests" && env != manifest.ProductionEnv && h.onStagingTests != nil {
		h.onStagingTests()
	}
	return h.serviceEnvs.RunJob(ctx, env, app, version, kind, log)
}

// A repository configured as postgres's cannot take over an entry of
// production that runs something else.
func TestServicePipelineRefusesAnAppEntry(t *testing.T) {
	r, envs := newServiceRig(t, serviceProd)
	envs.releaseAll = true
	ctx := context.Background()
	req := serviceRequest("b")
	req.App = "hello"
	id, err := r.runner.Start(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	r.runner.Wait()
	p, err := r.db.GetPipeline(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if p.Phase != pipeline.Failed || p.FailedStep != pipeline.StepStage || !strings.Contains(p.Reason, "not postgres") {
		t.Fatalf("pipeline %s at %s: %s; want a failed stage saying the entry is not postgres", p.Phase, p.FailedStep, p.Reason)
	}
	if got := production(t, r.repo).Apps["hello"].Images.Code.Image; got != "runway.local/hello" {
		t.Fatalf("production hello image %q changed", got)
	}
}

// A production manifest without the service gets its entry from the
// first change of the service's repository, with the default server
// image.
func TestServicePipelineAddsTheService(t *testing.T) {
	r, envs := newServiceRig(t, `{"envname":"production","apps":{}}`)
	envs.releaseAll = true
	ctx := context.Background()
	id, err := r.runner.Start(ctx, serviceRequest("c"))
	if err != nil {
		t.Fatal(err)
	}
	r.runner.Wait()
	p, err := r.db.GetPipeline(ctx, id)
	if err != nil || p.Phase != pipeline.Succeeded {
		t.Fatalf("pipeline %v %+v", err, p)
	}
	pg := production(t, r.repo).Apps["postgres"]
	if pg == nil || pg.Images.Code.Image != "postgres" || pg.Images.Code.Tag != "15" || pg.Deploy.Revision != p.Commit {
		t.Fatalf("production postgres entry %+v", pg)
	}
}

// The promotion gate holds for a service as for an app: a second change
// that passed staging waits while the first is in production, and
// production's history has them in commit order. A promotion found landed
// after a restart is recognised by the pipeline tag (a service's code tag
// never changes).
func TestServicePromotionsInCommitOrder(t *testing.T) {
	r, envs := newServiceRig(t, serviceProd)
	ctx := context.Background()
	first, err := r.runner.Start(ctx, serviceRequest("d"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, r.runner, first, "in wait-rollout", inWaitRollout)
	second, err := r.runner.Start(ctx, serviceRequest("e"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, r.runner, second, "waiting behind the first", waitingBehind(first))
	envs.release(first)
	waitFor(t, r.runner, second, "in wait-rollout", inWaitRollout)
	envs.release(second)
	r.runner.Wait()
	for _, id := range []string{first, second} {
		if p, err := r.db.GetPipeline(ctx, id); err != nil || p.Phase != pipeline.Succeeded {
			t.Fatalf("pipeline %s: %v %+v", id, err, p)
		}
	}
	if got, want := serviceHistory(t, r.url), []string{oldRevision, strings.Repeat("d", 40), strings.Repeat("e", 40)}; !slices.Equal(got, want) {
		t.Fatalf("production's postgres revisions %v, want %v", got, want)
	}

	p, err := r.db.GetPipeline(ctx, second)
	if err != nil {
		t.Fatal(err)
	}
	rewindTo(p, pipeline.StepPromote)
	if err := r.db.SavePipeline(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := r.runner.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	r.runner.Wait()
	got, err := r.db.GetPipeline(ctx, second)
	if err != nil || got.Phase != pipeline.Succeeded || !strings.Contains(got.Step(pipeline.StepPromote).Log, "promoted before a restart") {
		t.Fatalf("resumed pipeline %v %+v", err, got)
	}
	if got := serviceHistory(t, r.url); len(got) != 3 {
		t.Fatalf("production's postgres revisions %v after the resume, want no new promotion", got)
	}
}

// serviceHistory is postgres's revision in the production manifest at each
// commit that changed it, oldest first.
func serviceHistory(t *testing.T, url string) []string {
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
	var revs []string
	for range 1000 {
		if f, err := c.File(manifest.ProductionPath); err == nil {
			data, _ := f.Contents()
			if m, err := manifest.Parse([]byte(data)); err == nil && m.Apps["postgres"] != nil {
				revs = append(revs, m.Apps["postgres"].Deploy.Revision)
			}
		}
		if c.NumParents() == 0 {
			break
		}
		if c, err = c.Parent(0); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
	}
	slices.Reverse(revs)
	return slices.Compact(revs)
}
