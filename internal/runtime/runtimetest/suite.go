package runtimetest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/runtime"
)

// suite holds the harness; every test makes its own runtime.
type suite struct {
	h Harness
}

const (
	// testTimeout bounds each test's context: every call of the runtime
	// returns well within it on a loaded machine.
	testTimeout = 2 * time.Minute
	// waitLimit bounds every wait for something the runtime does on its own
	// (a restart): not an assertion on time, a bound on the loop.
	waitLimit = 60 * time.Second
	// hostSecret is a variable of the test process that no replica or job
	// may see: the runtime passes only allow-listed variables.
	hostSecret = "RUNWAY_CONFORMANCE_SECRET"
	// greeting is a variable the suite gives every replica set and job.
	greeting = "GREETING=hello from the suite"
)

// ctx is the test's context, bounded.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newRuntime is a fresh runtime of the harness, with the test process
// carrying a secret that must reach no app.
func (s *suite) newRuntime(t *testing.T) runtime.Runtime {
	t.Helper()
	t.Setenv(hostSecret, "the control plane's own")
	return s.h.New(t)
}

// replicaSet is n replicas of testapp serving, with args after "serve".
func (s *suite) replicaSet(env, app, version string, n int, args ...string) runtime.ReplicaSet {
	cmd := append(slices.Clone(s.h.Program.Command), "serve")
	return runtime.ReplicaSet{
		Env: env, App: app, Version: version,
		Dir:           s.h.Program.Dir,
		Command:       append(cmd, args...),
		PortEnv:       "PORT",
		HealthPath:    "/healthz",
		Readiness:     runtime.Probe{Period: 50 * time.Millisecond},
		Replicas:      n,
		Vars:          []string{greeting},
		HealthTimeout: 30 * time.Second,
	}
}

// command is testapp's command line with args.
func (s *suite) command(args ...string) []string {
	return append(slices.Clone(s.h.Program.Command), args...)
}

// start starts rs, failing the test on error, and checks it got
// rs.Replicas distinct replicas.
func start(t *testing.T, ctx context.Context, rt runtime.Runtime, rs runtime.ReplicaSet) []runtime.Replica {
	t.Helper()
	got, err := rt.Start(ctx, rs)
	if err != nil {
		t.Fatalf("Start %s %s in %s: %v", rs.App, rs.Version, rs.Env, err)
	}
	if len(got) != rs.Replicas {
		t.Fatalf("Start %s %s in %s = %d replicas %+v, want %d", rs.App, rs.Version, rs.Env, len(got), got, rs.Replicas)
	}
	addrs := map[string]bool{}
	for _, r := range got {
		if addrs[r.Addr] {
			t.Fatalf("Start %s %s in %s gave two replicas address %s", rs.App, rs.Version, rs.Env, r.Addr)
		}
		addrs[r.Addr] = true
	}
	return got
}

// info is what testapp serving at addr says of itself (see testapp).
type info struct {
	Instance string   `json:"instance"`
	PID      int      `json:"pid"`
	Probes   int64    `json:"probes"`
	Env      []string `json:"env"`
}

var client = &http.Client{Timeout: 10 * time.Second}

// getInfo asks the replica at addr who it is.
func getInfo(t *testing.T, addr string) info {
	t.Helper()
	resp, err := client.Get("http://" + addr + "/info")
	if err != nil {
		t.Fatalf("asking the replica at %s who it is: %v", addr, err)
	}
	defer resp.Body.Close()
	var in info
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s/info = %d %q", addr, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&in); err != nil {
		t.Fatalf("decoding %s/info: %v", addr, err)
	}
	return in
}

// answers reports whether something accepts connections at addr.
func answers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// assertStopped checks that no replica of replicas answers any more and,
// when the harness can tell, that their processes are gone.
func (s *suite) assertStopped(t *testing.T, what string, replicas []runtime.Replica) {
	t.Helper()
	for _, r := range replicas {
		if answers(r.Addr) {
			t.Errorf("%s: replica at %s still answers", what, r.Addr)
		}
		if s.h.ProcessAlive != nil && r.PID > 0 && s.h.ProcessAlive(r.PID) {
			t.Errorf("%s: replica process %d still runs", what, r.PID)
		}
	}
}

// assertServing checks that every replica answers as the same instance
// as before (instances: by address, from getInfo).
func assertServing(t *testing.T, what string, replicas []runtime.Replica, instances map[string]string) {
	t.Helper()
	for _, r := range replicas {
		if got := getInfo(t, r.Addr).Instance; instances != nil && got != instances[r.Addr] {
			t.Errorf("%s: replica at %s is instance %s, was %s: restarted", what, r.Addr, got, instances[r.Addr])
		}
	}
}

// instancesOf maps each replica's address to its instance ID.
func instancesOf(t *testing.T, replicas []runtime.Replica) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range replicas {
		out[r.Addr] = getInfo(t, r.Addr).Instance
	}
	return out
}

// eventually polls cond until it holds or waitLimit passes.
func eventually(ctx context.Context, cond func() bool) bool {
	deadline := time.Now().Add(waitLimit)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// versions is rt.Versions, failing the test on error.
func versions(t *testing.T, rt runtime.Runtime, env, app string) []string {
	t.Helper()
	got, err := rt.Versions(env, app)
	if err != nil {
		t.Fatalf("Versions(%s, %s): %v", env, app, err)
	}
	return got
}

// hasVar reports whether a KEY=value list holds kv, or (kv "KEY") any
// value of KEY.
func hasVar(vars []string, kv string) bool {
	if !strings.Contains(kv, "=") {
		kv += "="
		return slices.ContainsFunc(vars, func(v string) bool { return strings.HasPrefix(v, kv) })
	}
	return slices.Contains(vars, kv)
}

// deployments is a readable form of a Running list.
func deployments(ds []runtime.Deployment) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "%s/%s/%s ", d.Env, d.App, d.Version)
	}
	return strings.TrimSpace(b.String())
}
