package runtimetest

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/runtime"
)

// set asks the replica at addr to pass or fail a probe (testapp's /set).
func set(t *testing.T, addr, query string) {
	t.Helper()
	resp, err := client.Get("http://" + addr + "/set?" + query)
	if err != nil {
		t.Fatalf("telling the replica at %s %s: %v", addr, query, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("telling the replica at %s %s: %s", addr, query, resp.Status)
	}
}

// testReadinessFollowed: readiness is probed for as long as a replica
// runs: one that fails it shows unready in Status (still running, not
// restarted), and ready again once it passes.
func (s *suite) testReadinessFollowed(t *testing.T) {
	ctx := testContext(t)
	rt := s.newRuntime(t)
	rs := s.replicaSet("env-a", "web", "v1", 2)
	rs.Readiness = runtime.Probe{Period: 50 * time.Millisecond, FailureThreshold: 1}
	replicas := start(t, ctx, rt, rs)
	before := instancesOf(t, replicas)

	set(t, replicas[0].Addr, "ready=0")
	var last []runtime.ReplicaStatus
	if !eventually(ctx, func() bool {
		last = rt.Status("env-a", "web", "v1")
		return len(last) == 2 && !last[0].Ready
	}) {
		t.Fatalf("replica 0 fails readiness, yet Status = %+v", last)
	}
	if last[0].State != runtime.ReplicaRunning || last[0].Restarts != 0 || !last[1].Ready {
		t.Errorf("Status = %+v, want replica 0 running unready, unrestarted, replica 1 ready", last)
	}
	set(t, replicas[0].Addr, "ready=1")
	if !eventually(ctx, func() bool {
		last = rt.Status("env-a", "web", "v1")
		return len(last) == 2 && last[0].Ready
	}) {
		t.Fatalf("replica 0 passes readiness again, yet Status = %+v", last)
	}
	assertServing(t, "after readiness came back", replicas, before)
}

// testLivenessRestarts: a replica that fails its liveness probe is
// restarted, with the probe named as how its last run ended.
func (s *suite) testLivenessRestarts(t *testing.T) {
	ctx := testContext(t)
	rt := s.newRuntime(t)
	rs := s.replicaSet("env-a", "web", "v1", 1)
	rs.Liveness = &runtime.Probe{Path: "/livez", Period: 50 * time.Millisecond, FailureThreshold: 2}
	replicas := start(t, ctx, rt, rs)
	first := getInfo(t, replicas[0].Addr).Instance

	set(t, replicas[0].Addr, "live=0")
	var last []runtime.ReplicaStatus
	if !eventually(ctx, func() bool {
		last = rt.Status("env-a", "web", "v1")
		return len(last) == 1 && last[0].Restarts >= 1 && last[0].Ready
	}) {
		t.Fatalf("replica fails liveness, yet Status = %+v", last)
	}
	if !strings.Contains(last[0].LastExit, "liveness") {
		t.Errorf("Status[0].LastExit = %q, want it to name the liveness probe", last[0].LastExit)
	}
	if got := getInfo(t, last[0].Addr).Instance; got == first {
		t.Errorf("replica still instance %s after failing liveness", got)
	}
}
