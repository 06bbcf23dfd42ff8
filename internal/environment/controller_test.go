package environment

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/runtime"
)

// The fakes below record what the controller asks of the runtime; the real
// local runtime is exercised by its own tests and the end-to-end tests.

type fakeRuntime struct {
	mu        sync.Mutex
	envs      []string
	destroyed []string
	postgres  []string
}

func (f *fakeRuntime) EnsurePostgres(_ context.Context, env string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.postgres = append(f.postgres, env)
	return nil
}
func (f *fakeRuntime) Database(context.Context, string, string) (runtime.Database, error) {
	return nil, errors.New("not used")
}
func (f *fakeRuntime) Start(context.Context, runtime.ReplicaSet) ([]runtime.Replica, error) {
	return nil, errors.New("not used")
}
func (f *fakeRuntime) Stop(context.Context, string, string, string) error { return nil }
func (f *fakeRuntime) RunJob(context.Context, runtime.Job) error          { return nil }
func (f *fakeRuntime) Destroy(_ context.Context, env string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.destroyed = append(f.destroyed, env)
	return nil
}
func (f *fakeRuntime) Versions(string, string) ([]string, error)             { return nil, nil }
func (f *fakeRuntime) Status(string, string, string) []runtime.ReplicaStatus { return nil }
func (f *fakeRuntime) Running() []runtime.Deployment                         { return nil }
func (f *fakeRuntime) CollectStrays(context.Context) ([]string, error) {
	return nil, nil
}

func (f *fakeRuntime) Envs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.envs)
}

type fakeSnap struct {
	snap *gitops.Snapshot
	err  error
}

func (f fakeSnap) Snapshot(context.Context) (*gitops.Snapshot, error) { return f.snap, f.err }

type noArtifacts struct{}

func (noArtifacts) Resolve(app, version string, kind build.Kind) (build.Artifact, error) {
	return build.Artifact{}, build.ErrNotFound
}

type reports struct {
	mu  sync.Mutex
	got []string
}

func (r *reports) Update(_ context.Context, workflow, app string, ok bool, _ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	state := "ok"
	if !ok {
		state = "failed"
	}
	r.got = append(r.got, workflow+"/"+app+"/"+state)
	return nil
}

type noRollouts struct{}

func (noRollouts) Start(context.Context, rollout.Request) error { return nil }
func (noRollouts) Active(string, string) (rollout.Status, bool) { return rollout.Status{}, false }
func (noRollouts) Resumable(context.Context, string, string) (rollout.Checkpoint, bool, error) {
	return rollout.Checkpoint{}, false, nil
}
func (noRollouts) Settle(context.Context, string, string, string) {}

func envManifest(name string) *manifest.Manifest {
	return &manifest.Manifest{EnvName: name, DeployingWorkflowName: "wf-" + name, Apps: map[string]*manifest.App{
		"postgres": {Images: manifest.Images{Code: manifest.Image{Image: "postgres", Tag: "15"}}},
	}}
}

func TestReconcileTearsDownOnlyConfirmedAbsence(t *testing.T) {
	tests := []struct {
		name          string
		snap          fakeSnap
		running       []string
		wantDestroyed []string
		wantErr       bool
	}{
		{
			name:    "state repo unreadable: nothing is torn down",
			snap:    fakeSnap{err: errors.New("remote gone")},
			running: []string{"production", "v1"}, wantErr: true,
		},
		{
			name:    "invalid manifest: its environment is left alone",
			snap:    fakeSnap{snap: &gitops.Snapshot{Envs: map[string]*manifest.Manifest{"production": envManifest("production")}, Invalid: map[string]error{"v1": errors.New("bad json")}}},
			running: []string{"production", "v1"},
		},
		{
			name:          "manifest deleted: environment torn down",
			snap:          fakeSnap{snap: &gitops.Snapshot{Envs: map[string]*manifest.Manifest{"production": envManifest("production")}}},
			running:       []string{"production", "v1", "v2"},
			wantDestroyed: []string{"v1", "v2"},
		},
		{
			name:    "production manifest missing: production is never torn down",
			snap:    fakeSnap{snap: &gitops.Snapshot{Envs: map[string]*manifest.Manifest{}}},
			running: []string{"production"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := &fakeRuntime{envs: tt.running}
			gw := gateway.New(gateway.Options{})
			rep := &reports{}
			c := New(tt.snap, rt, noArtifacts{}, gw, rep, noRollouts{}, Options{GatewayAddr: "127.0.0.1:8080"})
			err := c.Reconcile(context.Background())
			if (err != nil) != tt.wantErr {
				t.Fatalf("Reconcile error = %v, wantErr %v", err, tt.wantErr)
			}
			if !slices.Equal(rt.destroyed, tt.wantDestroyed) {
				t.Fatalf("destroyed %v, want %v", rt.destroyed, tt.wantDestroyed)
			}
		})
	}
}

func TestReconcileReportsServicesOncePerWorkflow(t *testing.T) {
	rt := &fakeRuntime{}
	rep := &reports{}
	snap := &gitops.Snapshot{Envs: map[string]*manifest.Manifest{"v1": envManifest("v1")}}
	c := New(fakeSnap{snap: snap}, rt, noArtifacts{}, gateway.New(gateway.Options{}), rep, noRollouts{}, Options{})
	for i := 0; i < 3; i++ {
		if err := c.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(rep.got, []string{"wf-v1/postgres/ok"}) {
		t.Fatalf("reports %v, want one success for postgres", rep.got)
	}
}

func TestMissingArtifactReportsFailure(t *testing.T) {
	m := envManifest("v1")
	m.Apps["web"] = &manifest.App{Images: manifest.Images{Code: manifest.Image{Image: "runway.local/web", Tag: "v1"}}}
	rep := &reports{}
	c := New(fakeSnap{snap: &gitops.Snapshot{Envs: map[string]*manifest.Manifest{"v1": m}}}, &fakeRuntime{}, noArtifacts{},
		gateway.New(gateway.Options{}), rep, noRollouts{}, Options{})
	if err := c.Reconcile(context.Background()); err == nil {
		t.Fatal("reconcile of an app without an artifact succeeded")
	}
	if !slices.Contains(rep.got, "wf-v1/web/failed") {
		t.Fatalf("reports %v lack web's failure", rep.got)
	}
	// The failed version is not retried on every pass.
	if err := c.Reconcile(context.Background()); err != nil {
		t.Fatalf("second pass retried the failed version: %v", err)
	}
}

// flakySnap fails its first failures reads, then returns snap.
type flakySnap struct {
	snap     *gitops.Snapshot
	failures int
	mu       sync.Mutex
	reads    int
}

func (f *flakySnap) Snapshot(context.Context) (*gitops.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.reads <= f.failures {
		return nil, errors.New("remote gone")
	}
	return f.snap, nil
}

func (f *flakySnap) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

// A failed pass is retried after a backoff, not left to the poll interval
// (an hour here) or the next trigger (none here).
func TestRunRetriesFailedPass(t *testing.T) {
	snap := &flakySnap{failures: 2, snap: &gitops.Snapshot{Envs: map[string]*manifest.Manifest{"v1": envManifest("v1")}}}
	rep := &reports{}
	c := New(snap, &fakeRuntime{}, noArtifacts{}, gateway.New(gateway.Options{}), rep, noRollouts{},
		Options{PollInterval: time.Hour, RetryInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if slices.Equal(c.Envs(), []string{"v1"}) {
			if n := snap.count(); n != 3 {
				t.Fatalf("state repo read %d times, want 2 failures and 1 success", n)
			}
			return
		}
	}
	t.Fatalf("after %d reads the failed passes were not retried into a success", snap.count())
}

// dbOutageRuntime runs replicas, but cannot provide a database for the
// first outages calls, failing with err (a transient error by default): a
// fault injected where the real runtime's PostgreSQL cannot be made to fail
// on cue.
type dbOutageRuntime struct {
	versionsRuntime
	outages int
	err     error
	calls   int
}

func (f *dbOutageRuntime) Database(context.Context, string, string) (runtime.Database, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.outages {
		if f.err != nil {
			return nil, f.err
		}
		return nil, errors.New("ensuring role web: tuple concurrently updated")
	}
	return fakeDB{}, nil
}

type fakeDB struct{}

func (fakeDB) Env() []string { return []string{"DATABASE_URL=postgres://web@127.0.0.1/web"} }

// needsPostgres resolves every version to an artifact that needs a
// database.
type needsPostgres struct{}

func (needsPostgres) Resolve(app, version string, kind build.Kind) (build.Artifact, error) {
	return build.Artifact{App: app, Version: version, Kind: kind, Spec: &appspec.Spec{Needs: []string{"postgres"}}}, nil
}

// A database that cannot be provided is not the version's fault: the
// version is not marked failed, a later pass deploys it, and the failure
// is reported only once it lasted reportTransientAfter passes. A need that
// cannot be met at all fails the version at once.
func TestDatabaseFailures(t *testing.T) {
	const v = "v20260101000000"
	tests := []struct {
		name        string
		outages     int
		err         error
		wantReports []string // after the passes that fail
		wantFailed  string
	}{
		{name: "one transient failure: retried, not reported", outages: 1, wantReports: []string{"wf-v1/postgres/ok"}},
		{name: "two transient failures: retried, not reported", outages: 2, wantReports: []string{"wf-v1/postgres/ok"}},
		{name: "lasting failure: reported, still retried", outages: reportTransientAfter, wantReports: []string{"wf-v1/postgres/ok", "wf-v1/web/failed"}},
		{
			name: "need that cannot be met: the version fails at once", outages: 1,
			err:         fmt.Errorf("%w: environment v1 has no postgres", runtime.ErrUnsatisfiable),
			wantReports: []string{"wf-v1/postgres/ok", "wf-v1/web/failed"}, wantFailed: v,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := envManifest("v1")
			m.Apps["web"] = &manifest.App{Images: manifest.Images{Code: manifest.Image{Image: "runway.local/web", Tag: v}}}
			rt := &dbOutageRuntime{outages: tt.outages, err: tt.err}
			rep := &reports{}
			c := New(fakeSnap{snap: &gitops.Snapshot{Envs: map[string]*manifest.Manifest{"v1": m}}}, rt, needsPostgres{},
				gateway.New(gateway.Options{}), rep, noRollouts{}, Options{})
			for range tt.outages {
				if err := c.Reconcile(t.Context()); err == nil {
					t.Fatal("a pass whose database failed reported success")
				}
			}
			if !slices.Equal(rep.got, tt.wantReports) {
				t.Fatalf("reports %v, want %v", rep.got, tt.wantReports)
			}
			if err := c.Reconcile(t.Context()); err != nil {
				t.Fatalf("pass after the outage: %v", err)
			}
			web := c.Status()[0].Apps[1]
			if tt.wantFailed != "" {
				if web.Failed != tt.wantFailed || web.Version != "" {
					t.Fatalf("web %+v, want %s failed", web, tt.wantFailed)
				}
				return
			}
			if web.Version != v || web.Failed != "" {
				t.Fatalf("web %+v, want %s running", web, v)
			}
			if tt.outages < reportTransientAfter && !slices.Contains(rep.got, "wf-v1/web/ok") {
				t.Fatalf("reports %v lack web's success", rep.got)
			}
		})
	}
}

// blockingRuntime holds EnsurePostgres of one environment until released,
// as a staging environment whose database takes seconds to start.
type blockingRuntime struct {
	fakeRuntime
	env     string
	entered chan struct{}
	release chan struct{}
}

func (b *blockingRuntime) EnsurePostgres(ctx context.Context, env string) error {
	if env == b.env {
		close(b.entered)
		<-b.release
	}
	return b.fakeRuntime.EnsurePostgres(ctx, env)
}

// Status answers while a pass is busy creating an environment, and lists
// the environments reconciled before it.
func TestStatusDoesNotWaitForAPass(t *testing.T) {
	snap := &gitops.Snapshot{Envs: map[string]*manifest.Manifest{
		manifest.ProductionEnv: envManifest(manifest.ProductionEnv),
		"v1":                   envManifest("v1"),
	}}
	rt := &blockingRuntime{env: "v1", entered: make(chan struct{}), release: make(chan struct{})}
	c := New(fakeSnap{snap: snap}, rt, noArtifacts{}, gateway.New(gateway.Options{}), &reports{}, noRollouts{}, Options{})
	done := make(chan error, 1)
	go func() { done <- c.Reconcile(t.Context()) }()
	<-rt.entered
	got := make(chan []EnvStatus, 1)
	go func() { got <- c.Status() }()
	select {
	case st := <-got:
		if len(st) != 1 || st[0].Name != manifest.ProductionEnv {
			t.Errorf("status during the pass %+v, want production alone", st)
		}
	case <-time.After(10 * time.Second):
		t.Error("Status waited for the reconcile pass")
	}
	close(rt.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); len(st) != 2 {
		t.Fatalf("status after the pass %+v, want production and v1", st)
	}
}

// A control plane that starts while the state repository cannot be read
// lists what the gateway serves, marked adopted, instead of nothing; once
// the repository is read, it lists what it reconciled.
func TestStatusListsAdoptedRoutesUntilTheRepoIsRead(t *testing.T) {
	gw := gateway.New(gateway.Options{})
	if err := gw.SetRoute(gateway.Route{Env: manifest.ProductionEnv, App: "web", StableVersion: "v1", Stable: []gateway.Backend{{Addr: "127.0.0.1:4001"}}}); err != nil {
		t.Fatal(err)
	}
	snap := &flakySnap{failures: 1, snap: &gitops.Snapshot{Envs: map[string]*manifest.Manifest{manifest.ProductionEnv: envManifest(manifest.ProductionEnv)}}}
	c := New(snap, &fakeRuntime{}, noArtifacts{}, gw, &reports{}, noRollouts{}, Options{GatewayAddr: "127.0.0.1:8080"})
	if err := c.Reconcile(t.Context()); err == nil {
		t.Fatal("a pass with the state repo unreadable succeeded")
	}
	st := c.Status()
	if len(st) != 1 || !st[0].Adopted || len(st[0].Apps) != 1 {
		t.Fatalf("status with the repo unreadable %+v, want production adopted with web", st)
	}
	if a := st[0].Apps[0]; a.Name != "web" || a.Version != "v1" || !slices.Equal(a.Replicas, []string{"127.0.0.1:4001"}) || a.URL != "http://web.localhost:8080" {
		t.Fatalf("adopted app %+v, want web v1 at 127.0.0.1:4001", a)
	}
	if err := c.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); len(st) != 1 || st[0].Adopted {
		t.Fatalf("status after the repo was read %+v, want production reconciled", st)
	}
}

// pgOutageRuntime cannot start PostgreSQL for its first outages calls.
type pgOutageRuntime struct {
	fakeRuntime
	outages, calls int
}

func (f *pgOutageRuntime) EnsurePostgres(ctx context.Context, env string) error {
	f.calls++
	if f.calls <= f.outages {
		return errors.New("removing unfinished data dir: directory not empty")
	}
	return f.fakeRuntime.EnsurePostgres(ctx, env)
}

// A PostgreSQL server that fails to start once (an orphaned initdb still
// writing, say) does not fail the staging environment; one that keeps
// failing is reported.
func TestPostgresFailuresReportedOnlyWhenTheyLast(t *testing.T) {
	for _, outages := range []int{1, reportTransientAfter} {
		t.Run(fmt.Sprintf("%d failed passes", outages), func(t *testing.T) {
			rep := &reports{}
			c := New(fakeSnap{snap: &gitops.Snapshot{Envs: map[string]*manifest.Manifest{"v1": envManifest("v1")}}}, &pgOutageRuntime{outages: outages},
				noArtifacts{}, gateway.New(gateway.Options{}), rep, noRollouts{}, Options{})
			for range outages {
				if err := c.Reconcile(t.Context()); err == nil {
					t.Fatal("a pass whose postgres failed reported success")
				}
			}
			if err := c.Reconcile(t.Context()); err != nil {
				t.Fatal(err)
			}
			want := []string{"wf-v1/postgres/ok"}
			if outages >= reportTransientAfter {
				want = []string{"wf-v1/postgres/failed"}
			}
			if !slices.Equal(rep.got, want) {
				t.Fatalf("reports %v, want %v", rep.got, want)
			}
		})
	}
}
