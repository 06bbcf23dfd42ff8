package runtimetest

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/runway-cd/runway/internal/runtime"
)

// testDestroy: Destroy removes every replica of an environment and the
// environment itself, leaves other environments and strangers running,
// and succeeds again, or for an environment that never existed.
func (s *suite) testDestroy(t *testing.T) {
	ctx := testContext(t)
	rt := s.newRuntime(t)
	doomed := append(start(t, ctx, rt, s.replicaSet("env-a", "web", "v1", 2)),
		start(t, ctx, rt, s.replicaSet("env-a", "api", "v1", 1))...)
	if err := rt.RunJob(ctx, runtime.Job{Env: "env-a", App: "web", Name: "migrations", Dir: s.h.Program.Dir,
		Command: s.command("job"), Log: io.Discard}); err != nil {
		t.Fatalf("RunJob: %v", err)
	}
	kept := start(t, ctx, rt, s.replicaSet("env-b", "web", "v1", 1))
	keptInstances := instancesOf(t, kept)
	stranger := s.h.Unrelated(t, "env-a")
	if got := rt.Envs(); !slices.Equal(got, []string{"env-a", "env-b"}) {
		t.Fatalf("Envs before Destroy = %v, want [env-a env-b]", got)
	}

	if err := rt.Destroy(ctx, "env-a"); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	s.assertStopped(t, "after Destroy", doomed)
	if got := rt.Envs(); !slices.Equal(got, []string{"env-b"}) {
		t.Errorf("Envs after Destroy = %v, want [env-b]", got)
	}
	for _, app := range []string{"web", "api"} {
		if got := versions(t, rt, "env-a", app); len(got) != 0 {
			t.Errorf("Versions(env-a, %s) after Destroy = %v", app, got)
		}
	}
	want := []runtime.Deployment{{Env: "env-b", App: "web", Version: "v1"}}
	if got := rt.Running(); !slices.Equal(got, want) {
		t.Errorf("Running after Destroy = [%s], want [%s]", deployments(got), deployments(want))
	}
	assertServing(t, "env-b after destroying env-a", kept, keptInstances)
	if !stranger() {
		t.Error("Destroy stopped a process it did not start")
	}

	for _, env := range []string{"env-a", "env-never"} {
		if err := rt.Destroy(ctx, env); err != nil {
			t.Errorf("Destroy(%s) of nothing: %v", env, err)
		}
	}
	if got := rt.Envs(); !slices.Equal(got, []string{"env-b"}) {
		t.Errorf("Envs after destroying nothing = %v, want [env-b]", got)
	}
}

// hostileNames are names no environment, app or version may have: a
// method given one must refuse it before it creates anything.
var hostileNames = []struct{ name, value string }{
	{"parent dir", "../escape"},
	{"nested", "a/../../escape"},
	{"dot dot", ".."},
	{"dot", "."},
	{"space", "my env"},
	{"empty", ""},
	{"very long", strings.Repeat("a", 300)},
	{"option", "-rf"},
	{"upper case", "Web"},
	{"NUL", "a\x00b"},
	{"newline", "a\nb"},
}

// testHostileNames: every method taking a name refuses a hostile one with
// ErrInvalidName (and ErrUnsatisfiable) and creates nothing.
func (s *suite) testHostileNames(t *testing.T) {
	ctx := testContext(t)
	rt := s.newRuntime(t)
	for _, n := range hostileNames {
		bad := n.value
		calls := []struct {
			name string
			call func() error
		}{
			{"Start env", func() error { _, err := rt.Start(ctx, s.replicaSet(bad, "web", "v1", 1)); return err }},
			{"Start app", func() error { _, err := rt.Start(ctx, s.replicaSet("env-a", bad, "v1", 1)); return err }},
			{"Start version", func() error { _, err := rt.Start(ctx, s.replicaSet("env-a", "web", bad, 1)); return err }},
			{"Stop env", func() error { return rt.Stop(ctx, bad, "web", "v1") }},
			{"Stop app", func() error { return rt.Stop(ctx, "env-a", bad, "v1") }},
			{"Stop version", func() error { return rt.Stop(ctx, "env-a", "web", bad) }},
			{"Versions env", func() error { _, err := rt.Versions(bad, "web"); return err }},
			{"Versions app", func() error { _, err := rt.Versions("env-a", bad); return err }},
			{"EnsurePostgres env", func() error { return rt.EnsurePostgres(ctx, bad) }},
			{"Database env", func() error { _, err := rt.Database(ctx, bad, "web"); return err }},
			{"Database app", func() error { _, err := rt.Database(ctx, "env-a", bad); return err }},
			{"RunJob env", func() error {
				return rt.RunJob(ctx, runtime.Job{Env: bad, App: "web", Name: "tests", Dir: s.h.Program.Dir, Command: s.command("job"), Log: io.Discard})
			}},
			{"Destroy env", func() error { return rt.Destroy(ctx, bad) }},
		}
		for _, c := range calls {
			t.Run(n.name+"/"+c.name, func(t *testing.T) {
				err := c.call()
				if !errors.Is(err, runtime.ErrInvalidName) || !errors.Is(err, runtime.ErrUnsatisfiable) {
					t.Errorf("%s(%q) = %v, want an error wrapping ErrInvalidName and ErrUnsatisfiable", c.name, bad, err)
				}
			})
		}
		if st := rt.Status(bad, "web", "v1"); st != nil {
			t.Errorf("Status(%q, web, v1) = %+v, want nil", bad, st)
		}
	}
	if got := rt.Envs(); len(got) != 0 {
		t.Errorf("Envs after hostile names = %v, want none", got)
	}
	if got := rt.Running(); len(got) != 0 {
		t.Errorf("Running after hostile names = [%s], want nothing", deployments(got))
	}
}

// testCollectStrays: what the runtime started and recorded is no stray,
// and a process it did not start is never touched, even one that looks
// like its own.
func (s *suite) testCollectStrays(t *testing.T) {
	ctx := testContext(t)
	rt := s.newRuntime(t)
	replicas := start(t, ctx, rt, s.replicaSet("env-a", "web", "v1", 2))
	instances := instancesOf(t, replicas)
	strangers := []func() bool{s.h.Unrelated(t, "env-a"), s.h.Unrelated(t, "env-gone")}

	for round := range 2 {
		stopped, err := rt.CollectStrays(ctx)
		if err != nil {
			t.Fatalf("CollectStrays (round %d): %v", round+1, err)
		}
		if len(stopped) != 0 {
			t.Errorf("CollectStrays (round %d) stopped %q; nothing was a stray", round+1, stopped)
		}
	}
	for i, alive := range strangers {
		if !alive() {
			t.Errorf("CollectStrays stopped unrelated process %d", i)
		}
	}
	assertServing(t, "after CollectStrays", replicas, instances)
	if got := versions(t, rt, "env-a", "web"); !slices.Equal(got, []string{"v1"}) {
		t.Errorf("Versions after CollectStrays = %v, want [v1]", got)
	}
}
