package environment

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/runtime"
)

func TestReconcileTearsDownOnlyConfirmedAbsence(t *testing.T) {
	prod := envManifest(manifest.ProductionEnv)
	tests := []struct {
		name          string
		repo          func(t *testing.T) *stateRepo
		running       []string
		wantDestroyed []string
		wantErr       bool
	}{
		{
			name: "state repo unreadable: nothing is torn down",
			repo: func(t *testing.T) *stateRepo {
				r := newStateRepo(t, nil, prod, envManifest("v1"))
				r.cutOff(t)
				return r
			},
			running: []string{"production", "v1", "v2"}, wantErr: true,
		},
		{
			name: "invalid manifest: its environment is left alone",
			repo: func(t *testing.T) *stateRepo {
				return newStateRepo(t, map[string]string{manifest.StagingPath("v1"): "{bad json"}, prod)
			},
			running: []string{"production", "v1"},
		},
		{
			name:          "manifest deleted: environment torn down",
			repo:          func(t *testing.T) *stateRepo { return newStateRepo(t, nil, prod) },
			running:       []string{"production", "v1", "v2"},
			wantDestroyed: []string{"destroy v1", "destroy v2"},
		},
		{
			name:    "production manifest missing: production is never torn down",
			repo:    func(t *testing.T) *stateRepo { return newStateRepo(t, nil) },
			running: []string{"production"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := &fakeRuntime{envs: tt.running}
			rec := events.New(nil, nil)
			c := New(tt.repo(t), rt, noArtifacts{}, gateway.New(gateway.Options{}), &reports{}, newFakeRollouts(),
				Options{GatewayAddr: "127.0.0.1:8080", Events: rec})
			err := c.Reconcile(t.Context())
			if (err != nil) != tt.wantErr {
				t.Fatalf("Reconcile error = %v, wantErr %v", err, tt.wantErr)
			}
			if got := rt.callsMatching("destroy"); !slices.Equal(got, tt.wantDestroyed) {
				t.Fatalf("destroyed %v, want %v", got, tt.wantDestroyed)
			}
			var want []string
			for _, d := range tt.wantDestroyed {
				env := d[len("destroy "):]
				want = append(want, env+" TearingDown", env+" TornDown")
			}
			var got []string
			for _, e := range envEvents(rec, "") {
				if strings.HasSuffix(e, " TearingDown") || strings.HasSuffix(e, " TornDown") {
					got = append(got, e)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("teardown events %v, want %v", got, want)
			}
		})
	}
}

func TestReconcileReportsServicesOncePerWorkflow(t *testing.T) {
	rep := &reports{}
	c := New(newStateRepo(t, nil, envManifest("v1")), &fakeRuntime{}, noArtifacts{}, gateway.New(gateway.Options{}), rep, newFakeRollouts(), Options{})
	for range 3 {
		if err := c.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if got := rep.list(); !slices.Equal(got, []string{"wf-v1/postgres/ok"}) {
		t.Fatalf("reports %v, want one success for postgres", got)
	}
}

func TestMissingArtifactReportsFailure(t *testing.T) {
	for _, env := range []string{"v1", manifest.ProductionEnv} {
		t.Run(env, func(t *testing.T) {
			m := envManifest(env)
			m.Apps["web"] = appAt("v1")
			m.Apps["web"].DeployingWorkflowName = "wf-web"
			rep := &reports{}
			rollouts := newFakeRollouts()
			arts := &someArtifacts{missing: map[string]bool{"web": true}}
			rec := events.New(nil, nil)
			c := New(newStateRepo(t, nil, m), &fakeRuntime{}, arts, gateway.New(gateway.Options{}), rep, rollouts, Options{Events: rec})
			if err := c.Reconcile(t.Context()); err == nil {
				t.Fatal("reconcile of an app without an artifact succeeded")
			}
			// The app's own workflow gets its report, the manifest's the
			// service's.
			if got := rep.list(); !slices.Equal(got, []string{"wf-" + env + "/postgres/ok", "wf-web/web/failed"}) {
				t.Fatalf("reports %v, want postgres ok to wf-%s, web failed to wf-web", got, env)
			}
			if got, _ := rollouts.handedOver(); len(got) != 0 {
				t.Fatalf("handed %v to the rollouts, want nothing without an artifact", got)
			}
			// The failed version is not retried on every pass.
			if err := c.Reconcile(t.Context()); err != nil {
				t.Fatalf("second pass retried the failed version: %v", err)
			}
			if arts.lookups != 1 {
				t.Fatalf("artifact looked up %d times, want once", arts.lookups)
			}
			if got := envEvents(rec, env); !slices.Contains(got, env+" Failed") || slices.Contains(got, env+" Ready") {
				t.Fatalf("events %v, want Failed and not Ready", got)
			}
			if st := c.Status(); len(st) != 1 || st[0].Apps[1].Name != "web" || st[0].Apps[1].Failed != "v1" {
				t.Fatalf("status %+v, want web v1 failed", st)
			}
		})
	}
}

// A failed read of the state repository is retried after a backoff, not
// left to the poll interval (a thousand hours here) or the next trigger
// (none here). The clock is a fake one: the retries come as it is stepped.
func TestRunRetriesFailedSync(t *testing.T) {
	repo := newStateRepo(t, nil, envManifest("v1"))
	restore := repo.cutOff(t)
	reads := countReads(repo)
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	c := New(reads, &fakeRuntime{}, noArtifacts{}, gateway.New(gateway.Options{}), &reports{}, newFakeRollouts(),
		Options{PollInterval: 1000 * time.Hour, RetryInterval: time.Second, Clock: clk})
	run(t, c)
	stepUntil(t, clk, time.Second, "two failed reads", func() bool {
		_, fails, _ := reads.counts()
		return fails == 2
	})
	restore()
	stepUntil(t, clk, time.Second, "v1 reconciled", func() bool { return slices.Equal(c.Envs(), []string{"v1"}) })
	if n, fails, _ := reads.counts(); n != 3 || fails != 2 {
		t.Fatalf("state repo read %d times (%d failed), want 2 failures and 1 success", n, fails)
	}
}

// A database that cannot be provided is not the version's fault: the
// version is not marked failed, a later pass deploys it, and the failure
// is reported only once it lasted reportTransientAfter passes. A need that
// cannot be met at all fails the version at once. The runtime is a fake:
// the real one's PostgreSQL cannot be made to fail on cue.
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
			m.Apps["web"] = appAt(v)
			calls := 0
			rt := &fakeRuntime{onDatabase: func(context.Context, string, string) error {
				calls++
				if calls > tt.outages {
					return nil
				}
				if tt.err != nil {
					return tt.err
				}
				return errOutage
			}}
			rep := &reports{}
			c := New(newStateRepo(t, nil, m), rt, needsPostgres{}, gateway.New(gateway.Options{}), rep, newFakeRollouts(), Options{})
			for range tt.outages {
				if err := c.Reconcile(t.Context()); err == nil {
					t.Fatal("a pass whose database failed reported success")
				}
			}
			if got := rep.list(); !slices.Equal(got, tt.wantReports) {
				t.Fatalf("reports %v, want %v", got, tt.wantReports)
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
			if tt.outages < reportTransientAfter && !slices.Contains(rep.list(), "wf-v1/web/ok") {
				t.Fatalf("reports %v lack web's success", rep.list())
			}
		})
	}
}

// Status answers while a staging environment is being created, and lists
// the environments reconciled meanwhile.
func TestStatusDoesNotWaitForABringUp(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	rt := &fakeRuntime{onPostgres: func(ctx context.Context, env string) error {
		if env == "v1" {
			close(entered)
			select {
			case <-release:
			case <-ctx.Done(): // the test failed and stops the controller
				return ctx.Err()
			}
		}
		return nil
	}}
	rec := events.New(nil, nil)
	c := New(newStateRepo(t, nil, envManifest(manifest.ProductionEnv), envManifest("v1")), rt, noArtifacts{},
		gateway.New(gateway.Options{}), &reports{}, newFakeRollouts(), Options{PollInterval: 1000 * time.Hour, Events: rec})
	run(t, c)
	<-entered
	// Production is listed as soon as its key is done; v1 is listed
	// without its postgres while it blocks.
	poll(t, "production listed", func() bool {
		st := c.Status()
		return len(st) == 2 && st[0].Name == manifest.ProductionEnv && len(st[0].Apps) > 0 && st[0].Apps[0].Version == "15"
	})
	if st := c.Status(); st[1].Name != "v1" || len(st[1].Apps) > 0 && st[1].Apps[0].Version != "" {
		t.Fatalf("status during v1's bring-up %+v, want v1 without postgres yet", st)
	}
	close(release)
	waitEvent(t, rec, 0, "v1", "Ready")
	if st := c.Status(); len(st) != 2 || len(st[1].Apps) == 0 || st[1].Apps[0].Version != "15" {
		t.Fatalf("status after the bring-up %+v, want production and v1 with postgres", st)
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
	prod := envManifest(manifest.ProductionEnv)
	prod.Apps["web"] = appAt("v1")
	repo := newStateRepo(t, nil, prod)
	restore := repo.cutOff(t)
	rollouts := newFakeRollouts()
	c := New(repo, &fakeRuntime{}, anyArtifact{}, gw, &reports{}, rollouts, Options{GatewayAddr: "127.0.0.1:8080"})
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
	restore()
	rollouts.stable["production/web"] = "v1" // the rollout controller's stable version
	if err := c.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	st = c.Status()
	if len(st) != 1 || st[0].Adopted {
		t.Fatalf("status after the repo was read %+v, want production reconciled", st)
	}
	// A production app is what the rollout controller serves: its stable
	// version, with the replicas of its route.
	if a := st[0].Apps[1]; a.Name != "web" || a.Version != "v1" || !slices.Equal(a.Replicas, []string{"127.0.0.1:4001"}) || a.URL != "http://web.localhost:8080" {
		t.Fatalf("production app %+v, want web v1 at 127.0.0.1:4001", a)
	}
}

// A PostgreSQL server that fails to start once (an orphaned initdb still
// writing, say) does not fail the staging environment; one that keeps
// failing is reported. The runtime is a fake that fails on cue.
func TestPostgresFailuresReportedOnlyWhenTheyLast(t *testing.T) {
	for _, outages := range []int{1, reportTransientAfter} {
		t.Run(fmt.Sprintf("%d failed passes", outages), func(t *testing.T) {
			calls := 0
			rt := &fakeRuntime{onPostgres: func(context.Context, string) error {
				if calls++; calls <= outages {
					return errors.New("removing unfinished data dir: directory not empty")
				}
				return nil
			}}
			rep := &reports{}
			rec := events.New(nil, nil)
			c := New(newStateRepo(t, nil, envManifest("v1")), rt, noArtifacts{}, gateway.New(gateway.Options{}), rep, newFakeRollouts(), Options{Events: rec})
			for range outages {
				if err := c.Reconcile(t.Context()); err == nil {
					t.Fatal("a pass whose postgres failed reported success")
				}
			}
			if err := c.Reconcile(t.Context()); err != nil {
				t.Fatal(err)
			}
			want, wantEvents := []string{"wf-v1/postgres/ok"}, []string{"v1 Creating", "v1 Ready"}
			if outages >= reportTransientAfter {
				want, wantEvents = []string{"wf-v1/postgres/failed"}, []string{"v1 Creating", "v1 Failed", "v1 Ready"}
			}
			if got := rep.list(); !slices.Equal(got, want) {
				t.Fatalf("reports %v, want %v", got, want)
			}
			if got := envEvents(rec, "v1"); !slices.Equal(got, wantEvents) {
				t.Fatalf("events %v, want %v", got, wantEvents)
			}
		})
	}
}

// An environment's events say where it is, each once however often its
// pass runs: Creating, then Ready (or Failed); TearingDown, then TornDown
// once its manifest is gone.
func TestEnvironmentEvents(t *testing.T) {
	repo := newStateRepo(t, nil, withApps("ok", map[string]string{"web": "v1"}), withApps("bad", map[string]string{"web": "v1", "api": "v1"}))
	rec := events.New(nil, nil)
	c := New(repo, &fakeRuntime{}, &someArtifacts{missing: map[string]bool{"api": true}}, gateway.New(gateway.Options{}), &reports{}, newFakeRollouts(), Options{Events: rec})
	for range 3 {
		_ = c.Reconcile(t.Context())
	}
	repo.remove(t, "ok")
	if err := c.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, want := envEvents(rec, "ok"), []string{"ok Creating", "ok Ready", "ok TearingDown", "ok TornDown"}; !slices.Equal(got, want) {
		t.Errorf("events of ok %v, want %v", got, want)
	}
	if got, want := envEvents(rec, "bad"), []string{"bad Creating", "bad Failed"}; !slices.Equal(got, want) {
		t.Errorf("events of bad %v, want %v", got, want)
	}
	// A new version is a new bring-up.
	repo.put(t, withApps("bad", map[string]string{"web": "v2"}))
	if err := c.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, want := envEvents(rec, "bad"), []string{"bad Creating", "bad Failed", "bad Creating", "bad Ready"}; !slices.Equal(got, want) {
		t.Errorf("events of bad after its change %v, want %v", got, want)
	}
}

// While a staging environment's replicas take their time to start, the
// other keys are served: an orphan is torn down and production's versions
// are handed to the rollouts, before that start returns. The runtime is a
// fake whose Start blocks on a channel for one environment.
func TestKeysDoNotWaitForASlowBringUp(t *testing.T) {
	prod := withApps(manifest.ProductionEnv, map[string]string{"web": "v1"})
	repo := newStateRepo(t, nil, prod, withApps("slow", map[string]string{"api": "v1"}))
	entered, release, returned := make(chan struct{}), make(chan struct{}), make(chan struct{})
	rt := &fakeRuntime{envs: []string{"gone"}, onStart: func(ctx context.Context, rs runtime.ReplicaSet) error {
		if rs.Env != "slow" {
			return nil
		}
		close(entered)
		defer close(returned)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	rec := events.New(nil, nil)
	rollouts := newFakeRollouts()
	c := New(repo, rt, anyArtifact{}, gateway.New(gateway.Options{}), &reports{}, rollouts,
		Options{PollInterval: 1000 * time.Hour, MaxParallel: 1, Events: rec})
	run(t, c)
	<-entered
	waitEvent(t, rec, 0, "gone", "TornDown")
	rollouts.waitHanded(t, "production/web v1 wf-production")
	// A production change and a new orphan while slow still starts.
	prod.Apps["web"] = appAt("v2")
	repo.put(t, prod)
	rt.mu.Lock()
	rt.envs = append(rt.envs, "gone2")
	rt.mu.Unlock()
	seq, _ := rec.Since(0, 0)
	c.Trigger()
	rollouts.waitHanded(t, "production/web v2 wf-production")
	waitEvent(t, rec, seq[len(seq)-1].Seq, "gone2", "TornDown")
	select {
	case <-returned:
		t.Fatal("slow's start returned before it was released")
	default:
	}
	close(release)
	waitEvent(t, rec, 0, "slow", "Ready")
}

// N staging environments, more than MaxParallel, are brought up side by
// side, MaxParallel at a time and never more. The runtime is a fake that
// counts the Starts in flight and holds them until released.
func TestParallelBringUps(t *testing.T) {
	const n, maxParallel = 5, 2
	var ms []*manifest.Manifest
	for i := range n {
		ms = append(ms, withApps(fmt.Sprintf("s%d", i), map[string]string{"web": "v1"}))
	}
	repo := newStateRepo(t, nil, ms...)
	var mu sync.Mutex
	inFlight, most := 0, 0
	wake := make(chan struct{})
	release := make(chan struct{})
	rt := &fakeRuntime{onStart: func(ctx context.Context, rs runtime.ReplicaSet) error {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		close(wake)
		wake = make(chan struct{})
		mu.Unlock()
		defer func() {
			mu.Lock()
			inFlight--
			mu.Unlock()
		}()
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	rec := events.New(nil, nil)
	c := New(repo, rt, anyArtifact{}, gateway.New(gateway.Options{}), &reports{}, newFakeRollouts(),
		Options{PollInterval: 1000 * time.Hour, MaxParallel: maxParallel, Events: rec})
	run(t, c)
	until(t, "MaxParallel starts in flight", func() (bool, <-chan struct{}) {
		mu.Lock()
		defer mu.Unlock()
		return inFlight == maxParallel, wake
	})
	// Both bring-up workers are held: no other environment began.
	creating := 0
	for _, e := range envEvents(rec, "") {
		if strings.HasSuffix(e, " Creating") {
			creating++
		}
	}
	if creating != maxParallel {
		t.Fatalf("%d environments creating, want %d: %v", creating, maxParallel, envEvents(rec, ""))
	}
	close(release)
	for i := range n {
		waitEvent(t, rec, 0, fmt.Sprintf("s%d", i), "Ready")
	}
	mu.Lock()
	defer mu.Unlock()
	if most != maxParallel {
		t.Fatalf("at most %d starts in flight, want %d", most, maxParallel)
	}
}

// A read of the state repository that fails changes nothing, even where a
// read that succeeds would: an environment that runs undeclared is left
// running until a read confirms it is not declared.
func TestSnapshotErrorChangesNothing(t *testing.T) {
	repo := newStateRepo(t, nil, withApps("v1", map[string]string{"web": "v1"}))
	reads := countReads(repo)
	rt := &fakeRuntime{}
	rec := events.New(nil, nil)
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	c := New(reads, rt, anyArtifact{}, gateway.New(gateway.Options{}), &reports{}, newFakeRollouts(),
		Options{PollInterval: 1000 * time.Hour, Events: rec, Clock: clk})
	run(t, c)
	waitEvent(t, rec, 0, "v1", "Ready")
	restore := repo.cutOff(t)
	rt.mu.Lock()
	rt.envs = append(rt.envs, "stray")
	rt.mu.Unlock()
	c.Trigger()
	until(t, "a failed read", func() (bool, <-chan struct{}) {
		_, fails, wake := reads.counts()
		return fails == 1, wake
	})
	if got := rt.callsMatching("destroy"); len(got) != 0 {
		t.Fatalf("destroyed %v after a failed read", got)
	}
	if got := envEvents(rec, ""); !slices.Equal(got, []string{"v1 Creating", "v1 Ready"}) {
		t.Fatalf("events %v after a failed read, want only v1's bring-up", got)
	}
	if st := c.Status(); len(st) != 1 || st[0].Name != "v1" || st[0].Apps[0].Version != "v1" {
		t.Fatalf("status %+v after a failed read, want v1 serving", st)
	}
	restore()
	c.Trigger()
	waitEvent(t, rec, 0, "stray", "TornDown")
}

// Every app of production is handed to the rollout controller with its
// own workflow (the app's deploying_workflow_name, else the manifest's),
// its manifest entry and artifact; this controller starts no version
// there. An app gone from the manifest is forgotten.
func TestProductionHandsEveryAppToRollouts(t *testing.T) {
	prod := envManifest(manifest.ProductionEnv)
	prod.DeployingWorkflowName = "wf-old"
	for app, wf := range map[string]string{"web": "wf-web", "api": "wf-api", "cron": ""} {
		prod.Apps[app] = appAt("v1")
		prod.Apps[app].DeployingWorkflowName = wf
	}
	repo := newStateRepo(t, nil, prod)
	rt := &fakeRuntime{}
	rollouts := newFakeRollouts()
	c := New(repo, rt, anyArtifact{}, gateway.New(gateway.Options{}), &reports{}, rollouts, Options{})
	if err := c.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	got, _ := rollouts.handedOver()
	slices.Sort(got)
	if want := []string{"production/api v1 wf-api", "production/cron v1 wf-old", "production/web v1 wf-web"}; !slices.Equal(got, want) {
		t.Fatalf("handed %v, want %v", got, want)
	}
	d := rollouts.desired["production/web"]
	if d.Artifact.App != "web" || d.Artifact.Version != "v1" || d.Entry == nil || d.Entry.Version() != "v1" {
		t.Fatalf("web handed as %+v, want its v1 artifact and entry", d)
	}
	if starts := rt.callsMatching("start"); len(starts) != 0 {
		t.Fatalf("the environment controller started %v in production", starts)
	}
	delete(prod.Apps, "api")
	prod.Apps["web"] = appAt("v2")
	prod.Apps["web"].DeployingWorkflowName = "wf-web2"
	repo.put(t, prod)
	if err := c.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	rollouts.waitHanded(t, "production/web v2 wf-web2")
	if got := rollouts.forgot(); !slices.Equal(got, []string{"production/api"}) {
		t.Fatalf("forgot %v, want production/api", got)
	}
}
