package environment

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/runtime"
)

// gcGate is a fakeRuntime whose CollectStrays can be held, so that a test
// moves the state repository and the environments on while a garbage
// collection is under way.
type gcGate struct {
	*fakeRuntime
	mu      sync.Mutex
	held    chan struct{}
	release chan struct{}
}

// hold makes the next CollectStrays wait for release; held is closed once
// it does.
func (g *gcGate) hold() (held <-chan struct{}, release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held, g.release = make(chan struct{}), make(chan struct{})
	return g.held, sync.OnceFunc(func() { close(g.release) })
}

func (g *gcGate) CollectStrays(ctx context.Context) ([]string, error) {
	g.mu.Lock()
	held, release := g.held, g.release
	g.held = nil
	g.mu.Unlock()
	if held != nil {
		close(held)
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	return nil, nil
}

// startHeldGC starts a garbage collection and returns once it is held in
// CollectStrays, with the release and a wait for its end.
func startHeldGC(t *testing.T, c *Controller, rt *gcGate) (release func(), wait func() error) {
	t.Helper()
	held, release := rt.hold()
	t.Cleanup(release)
	done := make(chan error, 1)
	go func() { done <- c.collectGarbage(context.Background()) }()
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("garbage collection never reached CollectStrays")
	}
	return release, func() error {
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("garbage collection did not end once released")
			return nil
		}
	}
}

// runAsRollout does what the rollout controller does with a handed-over
// app: it starts its version and routes it.
func runAsRollout(t *testing.T, rt *fakeRuntime, gw *gateway.Gateway, env, app, version string) {
	t.Helper()
	replicas, err := rt.Start(t.Context(), runtime.ReplicaSet{Env: env, App: app, Version: version})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.SetRoute(gateway.Route{Env: env, App: app, StableVersion: version, Stable: []gateway.Backend{{Addr: replicas[0].Addr}}}); err != nil {
		t.Fatal(err)
	}
}

// A garbage collection that began on a snapshot without api, while a
// newer snapshot adds api to production and the rollout controller starts
// and routes it, leaves api alone: it is not handed to the rollouts to
// forget (which would stop it, remove its route and clear its record).
func TestGCOnAnOldSnapshotKeepsAProductionAppAddedMeanwhile(t *testing.T) {
	prod := envManifest(manifest.ProductionEnv)
	prod.Apps["web"] = appAt("v1")
	repo := newStateRepo(t, nil, prod)
	rt := &gcGate{fakeRuntime: &fakeRuntime{}}
	rollouts := newFakeRollouts()
	gw := gateway.New(gateway.Options{})
	c := New(repo, rt, anyArtifact{}, gw, &reports{}, rollouts, Options{})
	if err := c.Reconcile(t.Context()); err != nil { // the snapshot without api
		t.Fatal(err)
	}
	runAsRollout(t, rt.fakeRuntime, gw, manifest.ProductionEnv, "web", "v1")

	release, wait := startHeldGC(t, c, rt)
	prod.Apps["api"] = appAt("v1")
	prod.Apps["api"].DeployingWorkflowName = "wf-api"
	repo.put(t, prod)
	if _, err := c.sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := c.reconcileEnvKey(t.Context(), manifest.ProductionEnv); err != nil {
		t.Fatal(err)
	}
	rollouts.waitHanded(t, "production/api v1 wf-api")
	runAsRollout(t, rt.fakeRuntime, gw, manifest.ProductionEnv, "api", "v1")
	release()
	if err := wait(); err != nil {
		t.Fatal(err)
	}

	if got := rollouts.forgot(); len(got) != 0 {
		t.Fatalf("garbage collection forgot %v; the current snapshot declares every app", got)
	}
	if _, ok := gw.Route(manifest.ProductionEnv, "api"); !ok {
		t.Fatal("api's route was removed")
	}
	if got := rt.callsMatching("stop "); len(got) != 0 {
		t.Fatalf("garbage collection stopped %v", got)
	}
}

// An app removed from production and added back while a garbage
// collection holds the snapshot without it is not forgotten: the removal
// is checked again against the snapshot kept when it is acted on.
func TestGCKeepsAProductionAppDeclaredAgainMeanwhile(t *testing.T) {
	prod := envManifest(manifest.ProductionEnv)
	prod.Apps["api"] = appAt("v1")
	prod.Apps["api"].DeployingWorkflowName = "wf-api1"
	repo := newStateRepo(t, nil, prod)
	rt := &gcGate{fakeRuntime: &fakeRuntime{}}
	rollouts := newFakeRollouts()
	rollouts.wanted["production/api"] = []string{"v1", "v2"} // stable v1, then canary v2
	gw := gateway.New(gateway.Options{})
	c := New(repo, rt, anyArtifact{}, gw, &reports{}, rollouts, Options{})
	if err := c.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	runAsRollout(t, rt.fakeRuntime, gw, manifest.ProductionEnv, "api", "v1")

	delete(prod.Apps, "api")
	repo.put(t, prod)
	if _, err := c.sync(t.Context()); err != nil { // the snapshot without api, before production's pass
		t.Fatal(err)
	}
	release, wait := startHeldGC(t, c, rt) // sees api run and routed, undeclared
	prod.Apps["api"] = appAt("v2")
	prod.Apps["api"].DeployingWorkflowName = "wf-api2"
	repo.put(t, prod)
	if _, err := c.sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := c.reconcileEnvKey(t.Context(), manifest.ProductionEnv); err != nil {
		t.Fatal(err)
	}
	rollouts.waitHanded(t, "production/api v2 wf-api2")
	release()
	if err := wait(); err != nil {
		t.Fatal(err)
	}

	if got := rollouts.forgot(); slices.Contains(got, "production/api") {
		t.Fatalf("garbage collection forgot %v after api was declared again", got)
	}
	if _, ok := gw.Route(manifest.ProductionEnv, "api"); !ok {
		t.Fatal("api's route was removed")
	}
}

// A staging environment created while a garbage collection holds a
// snapshot that does not declare it keeps its route and its replicas.
func TestGCOnAnOldSnapshotKeepsANewStagingEnvironment(t *testing.T) {
	repo := newStateRepo(t, nil, withApps("stg-a", map[string]string{"web": "v1"}))
	rt := &gcGate{fakeRuntime: &fakeRuntime{}}
	gw := gateway.New(gateway.Options{})
	c := New(repo, rt, anyArtifact{}, gw, &reports{}, newFakeRollouts(), Options{})
	if err := c.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}

	release, wait := startHeldGC(t, c, rt)
	repo.put(t, withApps("stg-b", map[string]string{"web": "v1"}))
	if _, err := c.sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := c.reconcileEnvKey(t.Context(), "stg-b"); err != nil {
		t.Fatal(err)
	}
	if _, ok := gw.Route("stg-b", "web"); !ok {
		t.Fatal("stg-b's pass did not route web")
	}
	release()
	if err := wait(); err != nil {
		t.Fatal(err)
	}

	for _, env := range []string{"stg-a", "stg-b"} {
		if _, ok := gw.Route(env, "web"); !ok {
			t.Errorf("garbage collection removed the route of web in %s", env)
		}
	}
	if got := rt.callsMatching("stop "); len(got) != 0 {
		t.Fatalf("garbage collection stopped %v", got)
	}
}

// Garbage collection leaves an environment alone while a pass of it is in
// flight (holds its lock), without waiting for it, and collects it the
// next time.
func TestGCSkipsAnEnvironmentBeingReconciled(t *testing.T) {
	rt := &fakeRuntime{}
	c := New(newStateRepo(t, nil, withApps("stg", map[string]string{"web": "v2"})), rt, anyArtifact{},
		gateway.New(gateway.Options{}), &reports{}, newFakeRollouts(), Options{})
	if err := c.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Start(t.Context(), runtime.ReplicaSet{Env: "stg", App: "web", Version: "v1"}); err != nil { // a leftover
		t.Fatal(err)
	}
	unlock := c.lockEnv("stg") // a pass of stg in flight
	if err := c.collectGarbage(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := rt.callsMatching("stop "); len(got) != 0 {
		t.Fatalf("garbage collection stopped %v while stg was being reconciled", got)
	}
	unlock()
	if err := c.collectGarbage(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := rt.callsMatching("stop "); !slices.Equal(got, []string{"stop stg web v1"}) {
		t.Fatalf("garbage collection stopped %v, want the leftover stg web v1", got)
	}
}
