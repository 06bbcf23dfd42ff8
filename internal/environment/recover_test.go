package environment

import (
	"slices"
	"testing"

	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/runtime"
)

// After a restart in the middle of a production change, recovering is the
// rollout controller's: this controller hands it the manifest's version
// and starts, stops and routes nothing in production itself; its garbage
// collection keeps every version until the rollout controller knows the
// app, then exactly what it wants. The runtime is a fake that records
// calls and lists what was adopted.
func TestRestartLeavesProductionToTheRollouts(t *testing.T) {
	const v0, v1, v2 = "v20260101000000", "v20260102000000", "v20260103000000"
	prod := envManifest(manifest.ProductionEnv)
	prod.Apps["web"] = appAt(v2)
	prod.Apps["web"].DeployingWorkflowName = "wf-web"
	rt := &fakeRuntime{envs: []string{manifest.ProductionEnv}}
	for _, v := range []string{v0, v1, v2} {
		rt.running = append(rt.running, runtime.Deployment{Env: manifest.ProductionEnv, App: "web", Version: v})
	}
	gw := gateway.New(gateway.Options{})
	if err := gw.SetRoute(gateway.Route{Env: manifest.ProductionEnv, App: "web", StableVersion: v1, Stable: []gateway.Backend{{Addr: "127.0.0.1:4001"}}}); err != nil {
		t.Fatal(err)
	}
	rollouts := newFakeRollouts()
	rollouts.unknown["production/web"] = true
	rollouts.stable["production/web"] = v1
	c := New(newStateRepo(t, nil, prod), rt, anyArtifact{}, gw, &reports{}, rollouts, Options{GatewayAddr: "127.0.0.1:8080"})

	running := func() []string {
		var out []string
		for _, d := range rt.Running() {
			out = append(out, d.Version)
		}
		return out
	}
	tests := []struct {
		name    string
		wanted  []string // nil: not known yet
		running []string
	}{
		{name: "rollouts do not know the app yet: every version kept", running: []string{v0, v1, v2}},
		{name: "a canary resumed: stable and canary kept", wanted: []string{v1, v2}, running: []string{v1, v2}},
		{name: "promoted: the old stable goes", wanted: []string{v2}, running: []string{v2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rollouts.mu.Lock()
			rollouts.unknown["production/web"] = tt.wanted == nil
			rollouts.wanted["production/web"] = tt.wanted
			rollouts.mu.Unlock()
			if err := c.Reconcile(t.Context()); err != nil {
				t.Fatal(err)
			}
			rollouts.waitHanded(t, "production/web "+v2+" wf-web")
			if got := running(); !slices.Equal(got, tt.running) {
				t.Fatalf("running %v, want %v", got, tt.running)
			}
			if starts := rt.callsMatching("start"); len(starts) != 0 {
				t.Fatalf("started %v in production", starts)
			}
			if r, _ := gw.Route(manifest.ProductionEnv, "web"); r.StableVersion != v1 {
				t.Fatalf("route %+v, want the rollouts' (stable %s) untouched", r, v1)
			}
			st := c.Status()
			if len(st) != 1 || st[0].Apps[1].Name != "web" || st[0].Apps[1].Version != v1 || !slices.Equal(st[0].Apps[1].Replicas, []string{"127.0.0.1:4001"}) {
				t.Fatalf("status %+v, want web at the rollouts' stable %s", st, v1)
			}
		})
	}
}
