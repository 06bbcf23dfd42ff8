package server

import (
	"testing"

	"github.com/runway-cd/runway/internal/gateway"
)

// TestKubeRouter: a staging route answers with its version's replicas as
// they are now (a rescheduled pod's new IP, not the one it was set with);
// production, which has no route of the controller's, answers with Argo
// Rollouts' stable version's replicas; nothing else is invented.
func TestKubeRouter(t *testing.T) {
	ready := map[string][]string{
		"v1/web/v1":         {"127.1.0.7:8080"},
		"production/web/v0": {"127.1.0.3:8080", "127.1.0.4:8080"},
	}
	stable := map[string]string{"production/web": "v0"}
	r := &kubeRouter{
		ns:     func(env string) string { return "runway-" + env },
		ready:  func(env, app, version string) []string { return ready[env+"/"+app+"/"+version] },
		stable: func(env, app string) string { return stable[env+"/"+app] },
	}
	if err := r.SetRoute(gateway.Route{Env: "v1", App: "web", StableVersion: "v1", Stable: []gateway.Backend{{Addr: "127.1.0.2:8080"}}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		env, app   string
		wantOK     bool
		wantListen string
		wantN      int
	}{
		{"v1", "web", true, "127.1.0.7:8080", 1},
		{"production", "web", true, "127.1.0.3:8080", 2},
		{"production", "api", false, "", 0},
		{"v2", "web", false, "", 0},
	}
	for _, tt := range tests {
		got, ok := r.Route(tt.env, tt.app)
		if ok != tt.wantOK || got.Listen != tt.wantListen || len(got.Stable) != tt.wantN {
			t.Errorf("Route(%s, %s) = %+v, %v; want listen %q, %d backends, %v", tt.env, tt.app, got, ok, tt.wantListen, tt.wantN, tt.wantOK)
		}
	}
	ready["v1/web/v1"] = nil // its pod is being replaced
	if got, ok := r.Route("v1", "web"); !ok || got.StableVersion != "v1" {
		t.Errorf("Route of a route whose pods are being replaced = %+v, %v; want the route as set", got, ok)
	}
	if got := r.Routes(); len(got) != 1 || got[0].Env != "v1" {
		t.Errorf("Routes = %+v, want only the staging route set", got)
	}
	r.RemoveEnv("v1")
	if _, ok := r.Route("v1", "web"); ok {
		t.Error("Route after RemoveEnv still answers")
	}
	if got := r.Host("v1", "web"); got != "web.runway-v1.svc.cluster.local" {
		t.Errorf("Host = %q", got)
	}
}
