package environment

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/runtime"
)

// versionsRuntime runs the versions it is told run, and records the ones
// it is asked to start.
type versionsRuntime struct {
	fakeRuntime
	running []string
	mu      sync.Mutex
	started []string
}

func (f *versionsRuntime) Versions(string, string) ([]string, error) { return f.running, nil }
func (f *versionsRuntime) Start(_ context.Context, rs runtime.ReplicaSet) ([]runtime.Replica, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = append(f.started, rs.Version)
	return []runtime.Replica{{Addr: fmt.Sprintf("127.0.0.1:%d", 10000+len(f.started))}}, nil
}

// anyArtifact resolves every version to an artifact without needs.
type anyArtifact struct{}

func (anyArtifact) Resolve(app, version string, kind build.Kind) (build.Artifact, error) {
	return build.Artifact{App: app, Version: version, Kind: kind, Spec: &appspec.Spec{}}, nil
}

// checkpointRollouts answers Resumable with one checkpoint, or an error.
type checkpointRollouts struct {
	noRollouts
	cp  *rollout.Checkpoint
	err error
}

func (r checkpointRollouts) Resumable(context.Context, string, string) (rollout.Checkpoint, bool, error) {
	if r.err != nil || r.cp == nil {
		return rollout.Checkpoint{}, false, r.err
	}
	return *r.cp, true, nil
}

func TestRecoverStable(t *testing.T) {
	const v1, v2, v3 = "v20260101000000", "v20260102000000", "v20260103000000"
	entry := &manifest.App{Images: manifest.Images{Code: manifest.Image{Image: "web", Tag: v1}}, Deploy: manifest.Deploy{Revision: "abc"}}
	cp := func(canary string, promoting bool, aborting string) *rollout.Checkpoint {
		return &rollout.Checkpoint{
			Status:      rollout.Status{Env: manifest.ProductionEnv, App: "web", StableVersion: v1, CanaryVersion: canary},
			StableEntry: entry, Promoting: promoting, Aborting: aborting,
		}
	}
	tests := []struct {
		name       string
		running    []string
		want       string
		cp         *rollout.Checkpoint
		cpErr      error
		wantStable string // "" : left to the normal path
		wantErr    bool
	}{
		{name: "mid-canary: the checkpoint's stable", running: []string{v1, v2}, want: v2, cp: cp(v2, false, ""), wantStable: v1},
		{name: "stable died meanwhile: started again, not replaced by the canary", running: []string{v2}, want: v2, cp: cp(v2, false, ""), wantStable: v1},
		{name: "manifest moved on: the checkpoint's stable, not the unanalysed canary", running: []string{v1, v2}, want: v3, cp: cp(v2, false, ""), wantStable: v1},
		{name: "mid-abort: the checkpoint's stable", running: []string{v1, v2}, want: v2, cp: cp(v2, true, "rate too low"), wantStable: v1},
		{name: "promoted: the manifest's version is stable", running: []string{v2}, want: v2, cp: cp(v2, true, "")},
		{name: "promoted, manifest moved on: the promoted canary is stable", running: []string{v1, v2}, want: v3, cp: cp(v2, true, ""), wantStable: v2},
		{name: "no checkpoint, new version not started: the running one", running: []string{v1}, want: v2, wantStable: v1},
		{name: "no checkpoint, manifest version runs: it is stable", running: []string{v1, v2}, want: v2},
		{name: "checkpoint unreadable: nothing", running: []string{v1, v2}, want: v2, cpErr: errors.New("database is locked"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := &versionsRuntime{running: tt.running}
			gw := gateway.New(gateway.Options{})
			c := New(fakeSnap{}, rt, anyArtifact{}, gw, &reports{}, checkpointRollouts{cp: tt.cp, err: tt.cpErr}, Options{GatewayAddr: "127.0.0.1:8080"})
			st := c.state(manifest.ProductionEnv)
			as := c.app(st, "web")
			err := c.recoverStable(t.Context(), st, "web", as, tt.want)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, wantErr %v", err, tt.wantErr)
			}
			if as.version != tt.wantStable {
				t.Fatalf("stable = %q, want %q", as.version, tt.wantStable)
			}
			route, routed := gw.Route(manifest.ProductionEnv, "web")
			if tt.wantStable == "" {
				if routed {
					t.Fatalf("routed %+v, want nothing (the normal path routes)", route)
				}
				return
			}
			if !routed || route.StableVersion != tt.wantStable || len(route.Canary) != 0 {
				t.Fatalf("route %+v, want %s alone", route, tt.wantStable)
			}
			if tt.cp != nil && tt.cp.StableVersion == tt.wantStable && as.entry.Deploy.Revision != "abc" {
				t.Fatalf("stable entry %+v, want the checkpoint's (with its revision)", as.entry)
			}
			if len(rt.started) != 1 || rt.started[0] != tt.wantStable {
				t.Fatalf("started %v, want the stable %s (adopted or started)", rt.started, tt.wantStable)
			}
		})
	}
}
