package environment

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/runtime"
)

// perAppDBs is fakeRuntime whose databases are each app's own.
type perAppDBs struct{ *fakeRuntime }

func (r perAppDBs) Database(ctx context.Context, env, app string) (runtime.Database, error) {
	if _, err := r.fakeRuntime.Database(ctx, env, app); err != nil {
		return nil, err
	}
	r.record("database " + env + " " + app)
	return appDB(app), nil
}

type appDB string

func (d appDB) Env() []string {
	return []string{"PGUSER=" + string(d), "DATABASE_URL=postgres://" + string(d) + "@127.0.0.1:5432/" + string(d)}
}

// serviceArtifacts: postgres's pipeline artifact has migrations; web and
// api-x need postgres, static does not; gone has no artifact.
type serviceArtifacts struct{}

func (serviceArtifacts) Resolve(app, version string, kind build.Kind) (build.Artifact, error) {
	art := build.Artifact{App: app, Version: version, Kind: kind, Dir: "/artifacts/" + app + "/" + version, Spec: &appspec.Spec{Name: app}}
	switch app {
	case "postgres":
		art.Spec.Migrations = &appspec.Job{Command: []string{"./migrate"}}
		art.Spec.Tests = &appspec.Job{Command: []string{"./check"}}
	case "web", "api-x":
		art.Spec.Needs = []string{"postgres"}
	case "gone":
		return build.Artifact{}, build.ErrNotFound
	}
	return art, nil
}

// serviceManifest is env with the database service at a revision of its
// repository and apps web, api-x, static and gone.
func serviceManifest(env, revision, pipelineTag string) *manifest.Manifest {
	m := withApps(env, map[string]string{"web": "v1", "api-x": "v1", "static": "v1", "gone": "v1"})
	m.Apps["postgres"] = &manifest.App{
		Images: manifest.Images{Code: manifest.Image{Image: "postgres", Tag: "15"},
			Pipeline: &manifest.Image{Image: "runway.local/postgres-pipeline", Tag: pipelineTag}},
		Deploy: manifest.Deploy{Revision: revision},
	}
	return m
}

// A service's job runs from its pipeline artifact with the database of
// every app of the environment that needs one, each under the app's
// prefix, and with no app URL and no plain database settings; in staging
// and in production alike.
func TestServiceJobGetsTheAppsDatabases(t *testing.T) {
	for _, env := range []string{"v2", manifest.ProductionEnv} {
		t.Run(env, func(t *testing.T) {
			rt := perAppDBs{&fakeRuntime{}}
			m := serviceManifest(env, strings.Repeat("a", 40), "v2")
			c := New(newStateRepo(t, nil, m), rt, serviceArtifacts{}, gateway.New(gateway.Options{}), &reports{}, newFakeRollouts(), Options{GatewayAddr: "127.0.0.1:9090"})
			_ = c.Reconcile(t.Context()) // fails: gone has no artifact
			var log strings.Builder
			if err := c.RunJob(t.Context(), env, "postgres", "v2", "migrations", &log); err != nil {
				t.Fatalf("RunJob: %v", err)
			}
			if len(rt.jobs) != 1 {
				t.Fatalf("%d jobs run, want 1", len(rt.jobs))
			}
			j := rt.jobs[0]
			if j.Dir != "/artifacts/postgres/v2" || strings.Join(j.Command, " ") != "./migrate" || j.App != "postgres" || j.Env != env {
				t.Errorf("job %+v, want postgres's migrations from its pipeline artifact", j)
			}
			for _, want := range []string{
				"WEB_PGUSER=web", "WEB_DATABASE_URL=postgres://web@127.0.0.1:5432/web",
				"API_X_PGUSER=api-x", "API_X_DATABASE_URL=postgres://api-x@127.0.0.1:5432/api-x",
				"RUNWAY_DATABASE_APPS=api-x web", "RUNWAY_ENV=" + env, "RUNWAY_APP=postgres", "RUNWAY_VERSION=v2",
			} {
				if !slices.Contains(j.Vars, want) {
					t.Errorf("job vars %q lack %q", j.Vars, want)
				}
			}
			for _, v := range j.Vars {
				if strings.HasPrefix(v, "DATABASE_URL=") || strings.HasPrefix(v, "PG") || strings.HasPrefix(v, "RUNWAY_APP_URL=") ||
					strings.HasPrefix(v, "STATIC_") || strings.HasPrefix(v, "GONE_") || strings.HasPrefix(v, "POSTGRES_") {
					t.Errorf("job var %q: a service's job gets only the databases of the apps that need one", v)
				}
			}
			if got := rt.callsMatching("database " + env + " postgres"); len(got) != 0 {
				t.Errorf("a database was made for the service itself: %v", got)
			}
			if !strings.Contains(log.String(), "gone v1 has no artifact") {
				t.Errorf("job log %q does not say gone's database was left out", log.String())
			}
		})
	}
}

// A service's new revision in production is reported to the promoting
// pipeline's workflow by the first pass that sees it, once; the server is
// kept (no restart, no teardown) and nothing of the service goes to the
// rollout controller, whose apps are handed over unchanged.
func TestServiceRevisionReportedToItsWorkflow(t *testing.T) {
	rt := perAppDBs{&fakeRuntime{}}
	first := serviceManifest(manifest.ProductionEnv, strings.Repeat("a", 40), "v1")
	first.Apps["postgres"].DeployingWorkflowName = "p1-production"
	repo := newStateRepo(t, nil, first)
	rep := &reports{}
	rollouts := newFakeRollouts()
	c := New(repo, rt, serviceArtifacts{}, gateway.New(gateway.Options{}), rep, rollouts, Options{})
	_ = c.Reconcile(t.Context()) // gone fails
	if got := rep.list(); !slices.Contains(got, "p1-production/postgres/ok") {
		t.Fatalf("reports %v, want postgres ok to p1-production", got)
	}
	handed, _ := rollouts.handedOver()

	second := serviceManifest(manifest.ProductionEnv, strings.Repeat("b", 40), "v2")
	second.Apps["postgres"].DeployingWorkflowName = "p2-production"
	repo.put(t, second)
	for range 2 {
		_ = c.Reconcile(t.Context())
	}
	var pg []string
	for _, r := range rep.list() {
		if strings.Contains(r, "/postgres/") {
			pg = append(pg, r)
		}
	}
	if want := []string{"p1-production/postgres/ok", "p2-production/postgres/ok"}; !slices.Equal(pg, want) {
		t.Fatalf("postgres reports %v, want %v", pg, want)
	}
	if got := rt.callsMatching("destroy"); len(got) != 0 {
		t.Fatalf("production torn down for a service's revision: %v", got)
	}
	after, _ := rollouts.handedOver()
	if !slices.Equal(after, handed) || slices.ContainsFunc(after, func(h string) bool { return strings.HasPrefix(h, "production/postgres ") }) {
		t.Fatalf("handed to the rollouts %v after the revision (before %v): want no change and no postgres", after, handed)
	}
	if got := c.workflowOf(manifest.ProductionEnv, "postgres"); got != "p2-production" {
		t.Fatalf("postgres's workflow %q, want p2-production for its production jobs' reports", got)
	}
}

// A service's staging environment, as its pipeline writes it (production's
// apps, the service at the new revision, every app reporting to the
// pipeline), comes up with the service first and every app reporting to
// the pipeline.
func TestServiceStagingReportsToThePipeline(t *testing.T) {
	rt := perAppDBs{&fakeRuntime{}}
	m := serviceManifest("v3", strings.Repeat("c", 40), "v3")
	delete(m.Apps, "gone")
	m.DeployingWorkflowName = "postgres-abcde"
	rep := &reports{}
	c := New(newStateRepo(t, nil, m), rt, serviceArtifacts{}, gateway.New(gateway.Options{}), rep, newFakeRollouts(), Options{})
	if err := c.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := rep.list()
	slices.Sort(got)
	want := []string{"postgres-abcde/api-x/ok", "postgres-abcde/postgres/ok", "postgres-abcde/static/ok", "postgres-abcde/web/ok"}
	if !slices.Equal(got, want) {
		t.Fatalf("reports %v, want %v", got, want)
	}
	calls := rt.callsMatching("")
	if len(calls) == 0 || calls[0] != "postgres v3" {
		t.Fatalf("runtime calls %v, want the server started first", calls)
	}
	var log strings.Builder
	if err := c.RunJob(t.Context(), "v3", "postgres", "v3", "tests", &log); err != nil {
		t.Fatal(err)
	}
	if len(rt.jobs) != 1 || strings.Join(rt.jobs[0].Command, " ") != "./check" {
		t.Fatalf("jobs %+v, want postgres's tests", rt.jobs)
	}
}
