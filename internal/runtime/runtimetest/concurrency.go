package runtimetest

import (
	"errors"
	"io"
	"slices"
	"sync"
	"testing"

	"github.com/runway-cd/runway/internal/runtime"
)

// testConcurrentChanges: Starts of different environments and versions at
// the same time all succeed with replicas of their own, and two Starts of
// the same version at once give the same replicas; then a Destroy, a Stop,
// a Start and a job of different environments at once each do their own
// part and nothing else.
func (s *suite) testConcurrentChanges(t *testing.T) {
	ctx := testContext(t)
	rt := s.newRuntime(t)
	sets := []runtime.ReplicaSet{
		s.replicaSet("env-a", "web", "v1", 2), s.replicaSet("env-a", "web", "v1", 2),
		s.replicaSet("env-a", "web", "v2", 1), s.replicaSet("env-b", "web", "v1", 1),
		s.replicaSet("env-c", "api", "v1", 1), s.replicaSet("env-d", "web", "v1", 2),
	}
	got := make([][]runtime.Replica, len(sets))
	errs := make([]error, len(sets))
	var wg sync.WaitGroup
	for i, rs := range sets {
		wg.Go(func() { got[i], errs[i] = rt.Start(ctx, rs) })
	}
	wg.Wait()
	addrs := map[string]string{}
	for i, rs := range sets {
		if errs[i] != nil {
			t.Fatalf("Start %s/%s/%s: %v", rs.Env, rs.App, rs.Version, errs[i])
		}
		if len(got[i]) != rs.Replicas {
			t.Fatalf("Start %s/%s/%s = %+v, want %d replicas", rs.Env, rs.App, rs.Version, got[i], rs.Replicas)
		}
		key := rs.Env + "/" + rs.App + "/" + rs.Version
		for _, r := range got[i] {
			if other, ok := addrs[r.Addr]; ok && other != key {
				t.Errorf("%s and %s share address %s", other, key, r.Addr)
			}
			addrs[r.Addr] = key
			if env := getInfo(t, r.Addr).Env; !hasVar(env, "RUNWAY_ENV="+rs.Env) || !hasVar(env, "RUNWAY_VERSION="+rs.Version) {
				t.Errorf("the replica at %s, started for %s, is another's", r.Addr, key)
			}
		}
	}
	if len(got[0]) == len(got[1]) {
		for i := range got[0] {
			if got[0][i] != got[1][i] {
				t.Errorf("two Starts of env-a/web/v1 at once = %+v and %+v, want the same replicas", got[0], got[1])
				break
			}
		}
	}
	if st := rt.Status("env-a", "web", "v1"); len(st) != 2 {
		t.Errorf("Status of env-a/web/v1 = %+v, want 2 replicas (none started twice)", st)
	}

	// Environments torn down, changed and brought up side by side.
	kept := instancesOf(t, got[3])
	var errD, errS, errE, errJ error
	var started []runtime.Replica
	wg.Go(func() { errD = rt.Destroy(ctx, "env-d") })
	wg.Go(func() { errS = rt.Stop(ctx, "env-a", "web", "v2") })
	wg.Go(func() { started, errE = rt.Start(ctx, s.replicaSet("env-e", "web", "v1", 1)) })
	wg.Go(func() {
		errJ = rt.RunJob(ctx, runtime.Job{Env: "env-c", App: "api", Name: "tests", Dir: s.h.Program.Dir, Command: s.command("job"), Log: io.Discard})
	})
	wg.Wait()
	if err := errors.Join(errD, errS, errE, errJ); err != nil {
		t.Fatalf("Destroy, Stop, Start and RunJob of different environments at once: %v", err)
	}
	s.assertStopped(t, "env-d after its Destroy", got[5])
	s.assertStopped(t, "env-a/web/v2 after its Stop", got[2])
	assertServing(t, "env-b", got[3], kept)
	getInfo(t, started[0].Addr)
	want := []runtime.Deployment{
		{Env: "env-a", App: "web", Version: "v1"}, {Env: "env-b", App: "web", Version: "v1"},
		{Env: "env-c", App: "api", Version: "v1"}, {Env: "env-e", App: "web", Version: "v1"},
	}
	if got := rt.Running(); !slices.Equal(got, want) {
		t.Errorf("Running = [%s], want [%s]", deployments(got), deployments(want))
	}
	if got := rt.Envs(); !slices.Equal(got, []string{"env-a", "env-b", "env-c", "env-e"}) {
		t.Errorf("Envs = %v, want [env-a env-b env-c env-e]", got)
	}
}
