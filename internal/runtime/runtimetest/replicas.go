package runtimetest

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/runtime"
)

// testStartIdempotent: a second Start of a running version returns the
// same replicas and restarts none; the replicas get the set's variables,
// their names and their port, and none of the control plane's own.
func (s *suite) testStartIdempotent(t *testing.T) {
	ctx := testContext(t)
	rt := s.newRuntime(t)
	rs := s.replicaSet("env-a", "web", "v1", 2)
	first := start(t, ctx, rt, rs)
	before := instancesOf(t, first)

	for _, r := range first {
		env := getInfo(t, r.Addr).Env
		for _, want := range []string{greeting, "RUNWAY_ENV=env-a", "RUNWAY_APP=web", "RUNWAY_VERSION=v1", "PORT"} {
			if !hasVar(env, want) {
				t.Errorf("replica at %s lacks %s; has %q", r.Addr, want, env)
			}
		}
		if hasVar(env, hostSecret) {
			t.Errorf("replica at %s got the control plane's %s", r.Addr, hostSecret)
		}
	}

	again := start(t, ctx, rt, rs)
	if !slices.Equal(again, first) {
		t.Errorf("second Start = %+v, want the first replicas %+v", again, first)
	}
	assertServing(t, "after a second Start", first, before)
	for _, st := range rt.Status("env-a", "web", "v1") {
		if st.Restarts != 0 {
			t.Errorf("replica %d restarted %d times by a second Start", st.Index, st.Restarts)
		}
	}
}

// testStartWaitsForReadiness: Start returns only once every replica
// answers its HealthPath 2xx, and Status then shows them running, ready,
// never restarted, at the addresses Start gave.
func (s *suite) testStartWaitsForReadiness(t *testing.T) {
	ctx := testContext(t)
	rt := s.newRuntime(t)
	const unready = 3
	rs := s.replicaSet("env-a", "web", "v1", 2, "-health=/ready-at-last", "-unready=3")
	rs.HealthPath = "/ready-at-last" // no /healthz: only this path passes
	replicas := start(t, ctx, rt, rs)
	for _, r := range replicas {
		if in := getInfo(t, r.Addr); in.Probes <= unready {
			t.Errorf("replica at %s answered %d probes, all 503, yet Start returned", r.Addr, in.Probes)
		}
	}

	st := rt.Status("env-a", "web", "v1")
	if len(st) != len(replicas) {
		t.Fatalf("Status = %+v, want %d replicas", st, len(replicas))
	}
	for i, rs := range st {
		if rs.Index != i || rs.State != runtime.ReplicaRunning || !rs.Ready || rs.Restarts != 0 {
			t.Errorf("Status[%d] = %+v, want index %d Running, ready, no restarts", i, rs, i)
		}
		if rs.Addr != replicas[i].Addr {
			t.Errorf("Status[%d].Addr = %s, Start gave %s", i, rs.Addr, replicas[i].Addr)
		}
	}
	if got := rt.Status("env-a", "web", "v2"); got != nil {
		t.Errorf("Status of a version never started = %+v, want nil", got)
	}
}

// testStartExits: a version whose program exits at once fails its Start,
// after its restarts, with the exit status; nothing of it is left running.
func (s *suite) testStartExits(t *testing.T) {
	ctx := testContext(t)
	rt := s.newRuntime(t)
	rs := s.replicaSet("env-a", "web", "v1", 1)
	rs.Command = s.command("exit", "3")
	got, err := rt.Start(ctx, rs)
	if err == nil {
		t.Fatalf("Start of a program that exits at once succeeded: %+v", got)
	}
	if !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("Start error %q does not say how the program exited (exit status 3)", err)
	}
	if !strings.Contains(err.Error(), "restart") {
		t.Errorf("Start error %q does not say the program was restarted", err)
	}
	if v := versions(t, rt, "env-a", "web"); len(v) != 0 {
		t.Errorf("Versions after a failed Start = %v, want none", v)
	}
	if st := rt.Status("env-a", "web", "v1"); len(st) != 0 {
		t.Errorf("Status after a failed Start = %+v, want none", st)
	}
	for _, d := range rt.Running() {
		if d.Env == "env-a" {
			t.Errorf("Running after a failed Start lists %s/%s/%s", d.Env, d.App, d.Version)
		}
	}
}

// testStartNeverReady: a version that never passes readiness fails its
// Start once HealthTimeout passes, and its replicas are stopped.
func (s *suite) testStartNeverReady(t *testing.T) {
	ctx := testContext(t)
	rt := s.newRuntime(t)
	rs := s.replicaSet("env-a", "web", "v1", 2, "-never-ready")
	rs.HealthTimeout = time.Second
	if got, err := rt.Start(ctx, rs); err == nil {
		t.Fatalf("Start of a version never ready succeeded: %+v", got)
	}
	if v := versions(t, rt, "env-a", "web"); len(v) != 0 {
		t.Errorf("Versions after a failed Start = %v, want none", v)
	}
	if st := rt.Status("env-a", "web", "v1"); len(st) != 0 {
		t.Errorf("Status after a failed Start = %+v, want none", st)
	}
}

// testStatusRestarts: a replica that exits is restarted; Status counts
// the restart and says how the last run ended, and the version keeps
// running.
func (s *suite) testStatusRestarts(t *testing.T) {
	ctx := testContext(t)
	rt := s.newRuntime(t)
	replicas := start(t, ctx, rt, s.replicaSet("env-a", "web", "v1", 2))
	other := instancesOf(t, replicas[1:])
	first := getInfo(t, replicas[0].Addr).Instance

	resp, err := client.Post("http://"+replicas[0].Addr+"/exit?code=4", "text/plain", nil)
	if err != nil {
		t.Fatalf("asking replica 0 to exit: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("asking replica 0 to exit: %s", resp.Status)
	}
	var last []runtime.ReplicaStatus
	back := eventually(ctx, func() bool {
		last = rt.Status("env-a", "web", "v1")
		return len(last) == 2 && last[0].Restarts >= 1 && last[0].Ready && last[0].State == runtime.ReplicaRunning
	})
	if !back {
		t.Fatalf("replica 0 not restarted and ready: Status = %+v", last)
	}
	if !strings.Contains(last[0].LastExit, "exit status 4") {
		t.Errorf("Status[0].LastExit = %q, want it to say exit status 4", last[0].LastExit)
	}
	if last[1].Restarts != 0 || !last[1].Ready {
		t.Errorf("Status[1] = %+v, want the other replica untouched", last[1])
	}
	assertServing(t, "the other replica", replicas[1:], other)
	if got := getInfo(t, last[0].Addr).Instance; got == first {
		t.Errorf("replica 0 still instance %s after it exited", got)
	}
	if v := versions(t, rt, "env-a", "web"); !slices.Equal(v, []string{"v1"}) {
		t.Errorf("Versions while a replica restarted = %v, want [v1]", v)
	}
}

// testStopOnlyThatVersion: Stop stops one version of one app of one
// environment, and no other; stopping again, or what never ran, succeeds.
func (s *suite) testStopOnlyThatVersion(t *testing.T) {
	ctx := testContext(t)
	rt := s.newRuntime(t)
	target := start(t, ctx, rt, s.replicaSet("env-a", "web", "v1", 2))
	keep := map[string][]runtime.Replica{
		"env-a/web/v2": start(t, ctx, rt, s.replicaSet("env-a", "web", "v2", 1)),
		"env-a/api/v1": start(t, ctx, rt, s.replicaSet("env-a", "api", "v1", 1)),
		"env-b/web/v1": start(t, ctx, rt, s.replicaSet("env-b", "web", "v1", 1)),
	}
	instances := map[string]map[string]string{}
	for k, rs := range keep {
		instances[k] = instancesOf(t, rs)
	}

	if err := rt.Stop(ctx, "env-a", "web", "v1"); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	s.assertStopped(t, "after Stop", target)
	for k, rs := range keep {
		assertServing(t, k+" after stopping env-a/web/v1", rs, instances[k])
	}
	if got := versions(t, rt, "env-a", "web"); !slices.Equal(got, []string{"v2"}) {
		t.Errorf("Versions(env-a, web) after Stop = %v, want [v2]", got)
	}
	if st := rt.Status("env-a", "web", "v1"); len(st) != 0 {
		t.Errorf("Status of the stopped version = %+v, want none", st)
	}
	want := []runtime.Deployment{{Env: "env-a", App: "api", Version: "v1"}, {Env: "env-a", App: "web", Version: "v2"}, {Env: "env-b", App: "web", Version: "v1"}}
	if got := rt.Running(); !slices.Equal(got, want) {
		t.Errorf("Running after Stop = [%s], want [%s]", deployments(got), deployments(want))
	}
	for _, again := range [][3]string{{"env-a", "web", "v1"}, {"env-a", "web", "v9"}, {"env-c", "web", "v1"}} {
		if err := rt.Stop(ctx, again[0], again[1], again[2]); err != nil {
			t.Errorf("Stop(%s, %s, %s) of what does not run: %v", again[0], again[1], again[2], err)
		}
	}
	if slices.Contains(rt.Envs(), "env-c") {
		t.Errorf("Envs = %v: Stop of nothing created env-c", rt.Envs())
	}
	for k, rs := range keep {
		assertServing(t, k+" after the no-op Stops", rs, instances[k])
	}
}

// testVersionsRunning: Versions and Running list exactly what runs,
// sorted, whatever order it was started in.
func (s *suite) testVersionsRunning(t *testing.T) {
	ctx := testContext(t)
	rt := s.newRuntime(t)
	if got := versions(t, rt, "env-a", "web"); len(got) != 0 {
		t.Fatalf("Versions of a fresh runtime = %v", got)
	}
	if got := rt.Running(); len(got) != 0 {
		t.Fatalf("Running of a fresh runtime = [%s]", deployments(got))
	}
	for _, d := range [][3]string{{"env-b", "web", "v1"}, {"env-a", "web", "v3"}, {"env-a", "web", "v1"}, {"env-a", "api", "v2"}, {"env-a", "web", "v2"}} {
		start(t, ctx, rt, s.replicaSet(d[0], d[1], d[2], 1))
	}
	if got := versions(t, rt, "env-a", "web"); !slices.Equal(got, []string{"v1", "v2", "v3"}) {
		t.Errorf("Versions(env-a, web) = %v, want [v1 v2 v3]", got)
	}
	if got := versions(t, rt, "env-a", "api"); !slices.Equal(got, []string{"v2"}) {
		t.Errorf("Versions(env-a, api) = %v, want [v2]", got)
	}
	if got := versions(t, rt, "env-a", "db"); len(got) != 0 {
		t.Errorf("Versions(env-a, db) = %v, want none", got)
	}
	want := []runtime.Deployment{
		{Env: "env-a", App: "api", Version: "v2"},
		{Env: "env-a", App: "web", Version: "v1"}, {Env: "env-a", App: "web", Version: "v2"}, {Env: "env-a", App: "web", Version: "v3"},
		{Env: "env-b", App: "web", Version: "v1"},
	}
	if got := rt.Running(); !slices.Equal(got, want) {
		t.Errorf("Running = [%s], want [%s]", deployments(got), deployments(want))
	}
	if got := rt.Envs(); !slices.Equal(got, []string{"env-a", "env-b"}) {
		t.Errorf("Envs = %v, want [env-a env-b]", got)
	}
}
