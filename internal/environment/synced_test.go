package environment

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/runtime"
)

// preparer records the manifests it is asked to prepare, standing in for
// the Argo CD plane's Prepare (tested on a real API server in the
// server package).
type preparer struct {
	mu   sync.Mutex
	envs []string
	fail error
}

func (p *preparer) Prepare(_ context.Context, m *manifest.Manifest) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail != nil {
		return p.fail
	}
	p.envs = append(p.envs, m.EnvName+" "+m.DeployingWorkflowName)
	return nil
}

func (p *preparer) prepared() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.envs)
}

func TestSyncedEnvironmentsAreLeftToTheEngine(t *testing.T) {
	staging := withApps("pr-1", map[string]string{"web": "v2"})
	staging.Apps["postgres"] = envManifest("x").Apps["postgres"]
	prod := withApps(manifest.ProductionEnv, map[string]string{"web": "v1"})
	repo := newStateRepo(t, nil, staging, prod)
	rt := &fakeRuntime{running: []runtime.Deployment{{Env: "pr-1", App: "web", Version: "v0"}}}
	rt.envs = []string{"pr-1", "gone"}
	rollouts := newFakeRollouts()
	rep := &reports{}
	router := gateway.New(gateway.Options{})
	prep := &preparer{}
	c := New(repo, rt, anyArtifact{}, router, rep, rollouts, Options{Synced: prep})
	if err := c.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := prep.prepared()
	slices.Sort(got)
	if want := []string{"pr-1 wf-pr-1", "production wf-production"}; !slices.Equal(got, want) {
		t.Fatalf("prepared %v, want %v", got, want)
	}
	if calls := rt.callsMatching("start"); len(calls) != 0 {
		t.Fatalf("the controller started %v; the engine runs the apps", calls)
	}
	if calls := rt.callsMatching("postgres"); len(calls) != 0 {
		t.Fatalf("the controller started %v; the engine runs the database", calls)
	}
	if calls := rt.callsMatching("stop"); len(calls) != 0 {
		t.Fatalf("garbage collection stopped %v; the engine prunes its replicas", calls)
	}
	if r := rep.list(); len(r) != 0 {
		t.Fatalf("the controller reported %v; the engine's hooks report", r)
	}
	if r, ok := router.Route("pr-1", "web"); !ok || r.StableVersion != "v2" {
		t.Fatalf("route of pr-1/web = %+v, %v; want the declared v2 (jobs reach the engine's replicas by it)", r, ok)
	}
	if got, _ := rollouts.handedOver(); !slices.Equal(got, []string{"production/web v1 wf-production"}) {
		t.Fatalf("handed over %v, want production/web v1", got)
	}
	// The orphan "gone" is torn down as without the engine.
	if calls := rt.callsMatching("destroy"); !slices.Equal(calls, []string{"destroy gone"}) {
		t.Fatalf("destroyed %v, want [destroy gone]", calls)
	}

	// A failed preparation fails the pass and changes no route.
	prep.fail = errors.New("the API server said no")
	staging.Apps["web"] = appAt("v3")
	repo.put(t, staging)
	if err := c.Reconcile(t.Context()); err == nil {
		t.Fatal("a failed Prepare passed")
	}
	if r, _ := router.Route("pr-1", "web"); r.StableVersion != "v2" {
		t.Fatalf("route moved to %s although the environment was not prepared", r.StableVersion)
	}
}
