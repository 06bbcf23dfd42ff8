package pipeline_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/environment"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/reporter"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/runtime"
)

// memRuntime is an in-memory runtime for the environment controller: it
// starts nothing, records the jobs it is given, and knows which
// environments exist.
type memRuntime struct {
	mu      sync.Mutex
	envs    map[string]bool
	servers []string // "env", each EnsurePostgres
	jobs    []runtime.Job
}

var _ environment.Runtime = (*memRuntime)(nil)

func (r *memRuntime) EnsurePostgres(_ context.Context, env string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.envs[env] = true
	r.servers = append(r.servers, env)
	return nil
}

type memDB struct{ env, app string }

func (d memDB) Env() []string {
	return []string{fmt.Sprintf("DATABASE_URL=postgres://%s@127.0.0.1:5432/%s?env=%s", d.app, d.app, d.env)}
}

func (r *memRuntime) Database(_ context.Context, env, app string) (runtime.Database, error) {
	return memDB{env, app}, nil
}

func (r *memRuntime) Start(_ context.Context, rs runtime.ReplicaSet) ([]runtime.Replica, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.envs[rs.Env] = true
	return []runtime.Replica{{Addr: "127.0.0.1:1"}}, nil
}

func (r *memRuntime) Stop(context.Context, string, string, string) error    { return nil }
func (r *memRuntime) Status(string, string, string) []runtime.ReplicaStatus { return nil }

func (r *memRuntime) RunJob(_ context.Context, j runtime.Job) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.jobs = append(r.jobs, j)
	return nil
}

func (r *memRuntime) Destroy(_ context.Context, env string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.envs, env)
	return nil
}

func (r *memRuntime) Envs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for e := range r.envs {
		out = append(out, e)
	}
	slices.Sort(out)
	return out
}

func (r *memRuntime) Running() []runtime.Deployment                   { return nil }
func (r *memRuntime) CollectStrays(context.Context) ([]string, error) { return nil, nil }

// stillRollouts takes production's apps and changes nothing: production's
// app keeps its version through a service's change.
type stillRollouts struct{}

func (stillRollouts) SetDesired(rollout.Desired)             {}
func (stillRollouts) Forget(string, string)                  {}
func (stillRollouts) Wanted(string, string) ([]string, bool) { return nil, false }
func (stillRollouts) Stable(string, string) string           { return "" }

// serviceRepoArtifacts: hello needs postgres; postgres's pipeline
// artifact has migrations and tests.
type serviceRepoArtifacts struct{}

func (serviceRepoArtifacts) Resolve(app, version string, kind build.Kind) (build.Artifact, error) {
	spec := &appspec.Spec{Name: app}
	if app == "postgres" {
		if kind != build.Pipeline {
			return build.Artifact{}, fmt.Errorf("postgres has no %s artifact: %w", kind, build.ErrNotFound)
		}
		spec.Migrations = &appspec.Job{Command: []string{"./migrate"}}
		spec.Tests = &appspec.Job{Command: []string{"./check"}}
	} else {
		spec.Needs = []string{"postgres"}
		spec.Run = appspec.Run{Command: []string{"./hello"}, Replicas: 1}
	}
	return build.Artifact{App: app, Version: version, Kind: kind, Dir: "/artifacts/" + app + "/" + version, Spec: spec}, nil
}

// A change of the database's own repository taken through the pipeline
// with the real environment controller and reporter: the staging
// environment comes up and reports to the pipeline, the service's jobs run
// from its pipeline artifact with the app's database, production reports
// the service at its new revision to the promoting pipeline, and staging
// is torn down.
func TestServicePipelineThroughTheEnvironmentController(t *testing.T) {
	ctx := context.Background()
	_, repo, db, rep := newStateAndStore(t, serviceProd)
	rt := &memRuntime{envs: map[string]bool{}}
	envs := environment.New(repo, rt, serviceRepoArtifacts{}, gateway.New(gateway.Options{}), rep, stillRollouts{},
		environment.Options{PollInterval: time.Hour, HealthTimeout: time.Second})
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- envs.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-ran; err != nil {
			t.Errorf("environment controller: %v", err)
		}
	})

	b := &fakeBuilder{fail: map[build.Kind]error{}}
	runner := pipeline.New(db, b, repo, rep, envs, pipeline.Options{
		DeployTimeout: time.Minute, RolloutTimeout: time.Minute, TeardownTimeout: time.Minute, Now: (&tick{t: t0}).Now,
	})
	id, err := runner.Start(ctx, serviceRequest("f"))
	if err != nil {
		t.Fatal(err)
	}
	runner.Wait()
	p, err := db.GetPipeline(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if p.Phase != pipeline.Succeeded {
		t.Fatalf("pipeline %s at %s: %s", p.Phase, p.FailedStep, p.Reason)
	}

	staging, err := rep.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if staging.Phase != reporter.PhaseSucceeded || !slices.Equal(staging.Apps, []string{"hello", "postgres"}) {
		t.Errorf("staging expectation %+v, want hello and postgres reported", staging)
	}
	prod, err := rep.Get(ctx, id+"-production")
	if err != nil {
		t.Fatal(err)
	}
	if r := prod.Reports["postgres"]; prod.Phase != reporter.PhaseSucceeded || !r.Success || !strings.Contains(r.Message, "at revision "+strings.Repeat("f", 12)) {
		t.Errorf("production expectation %+v, want postgres reported at the new revision", prod)
	}

	rt.mu.Lock()
	jobs := slices.Clone(rt.jobs)
	servers := slices.Clone(rt.servers)
	rt.mu.Unlock()
	var got []string
	for _, j := range jobs {
		got = append(got, j.Env+" "+j.App+" "+strings.Join(j.Command, " ")+" "+j.Dir)
		wantDB := "HELLO_DATABASE_URL=postgres://hello@127.0.0.1:5432/hello?env=" + j.Env
		if !slices.Contains(j.Vars, wantDB) || !slices.Contains(j.Vars, "RUNWAY_DATABASE_APPS=hello") {
			t.Errorf("job %s %s vars %q lack %q", j.Env, j.Name, j.Vars, wantDB)
		}
	}
	dirOf := "/artifacts/postgres/" + p.Version
	want := []string{
		p.Version + " postgres ./migrate " + dirOf, p.Version + " postgres ./check " + dirOf,
		"production postgres ./migrate " + dirOf, "production postgres ./check " + dirOf,
	}
	if !slices.Equal(got, want) {
		t.Errorf("jobs %q, want %q", got, want)
	}
	if !slices.Contains(servers, p.Version) || !slices.Contains(servers, manifest.ProductionEnv) {
		t.Errorf("postgres servers ensured in %v, want staging's and production's", servers)
	}
	if slices.Contains(rt.Envs(), p.Version) || slices.Contains(envs.Envs(), p.Version) {
		t.Errorf("staging %s still runs: runtime %v, controller %v", p.Version, rt.Envs(), envs.Envs())
	}
	pg := production(t, repo).Apps["postgres"]
	if pg.Deploy.Revision != p.Commit || pg.Images.Code.Tag != "15" || pg.Images.Pipeline.Tag != p.Version {
		t.Errorf("production postgres entry %s", entryJSON(t, pg))
	}
}
