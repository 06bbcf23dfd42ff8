package runtimetest

import (
	"errors"
	"slices"
	"testing"

	"github.com/runway-cd/runway/internal/runtime"
)

// testOutage: while the runtime cannot tell what runs, every method that
// would read or change it fails instead of taking "nothing runs" for an
// answer: Versions does not say "none", Start does not start the version
// again, Stop, Destroy and CollectStrays do not claim success. What runs
// goes on running, and once the outage ends the runtime is right again.
func (s *suite) testOutage(t *testing.T) {
	if s.h.Outage == nil {
		t.Skip("the harness cannot cut the runtime off from what it runs")
	}
	ctx := testContext(t)
	rt := s.newRuntime(t)
	rs := s.replicaSet("env-a", "web", "v1", 2)
	replicas := start(t, ctx, rt, rs)
	instances := instancesOf(t, replicas)

	restore := s.h.Outage(t, rt)
	restored := false
	t.Cleanup(func() {
		if !restored {
			restore()
		}
	})
	if got, err := rt.Versions("env-a", "web"); err == nil {
		t.Errorf("Versions during an outage = %v, nil; want an error, never a guess", got)
	}
	if got, err := rt.Start(ctx, rs); err == nil || !errors.Is(err, runtime.ErrUnavailable) {
		t.Errorf("Start during an outage = %+v, %v; want an error wrapping runtime.ErrUnavailable (retried, not the version's fault)", got, err)
	}
	if err := rt.Stop(ctx, "env-a", "web", "v1"); err == nil || !errors.Is(err, runtime.ErrUnavailable) {
		t.Errorf("Stop during an outage = %v; want an error wrapping runtime.ErrUnavailable", err)
	}
	if err := rt.Destroy(ctx, "env-a"); err == nil {
		t.Error("Destroy during an outage succeeded")
	}
	if got, err := rt.CollectStrays(ctx); err == nil || len(got) != 0 {
		t.Errorf("CollectStrays during an outage = %q, %v; want an error and nothing stopped", got, err)
	}
	for _, d := range rt.Running() {
		if d.Env == "env-a" && d.Version != "v1" {
			t.Errorf("Running during an outage lists %s/%s/%s, which never ran", d.Env, d.App, d.Version)
		}
	}
	assertServing(t, "during the outage", replicas, instances)

	restore()
	restored = true
	if got := versions(t, rt, "env-a", "web"); !slices.Equal(got, []string{"v1"}) {
		t.Errorf("Versions after the outage = %v, want [v1]", got)
	}
	if again := start(t, ctx, rt, rs); !slices.Equal(again, replicas) {
		t.Errorf("Start after the outage = %+v, want the replicas that ran on %+v", again, replicas)
	}
	if got, err := rt.CollectStrays(ctx); err != nil || len(got) != 0 {
		t.Errorf("CollectStrays after the outage = %q, %v; want nothing stopped", got, err)
	}
	assertServing(t, "after the outage", replicas, instances)
	if got := rt.Envs(); !slices.Equal(got, []string{"env-a"}) {
		t.Errorf("Envs after the outage = %v, want [env-a]", got)
	}
}
