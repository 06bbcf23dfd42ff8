// Package e2e drives a real Runway, started in-process with its real
// gateway, git repositories, PostgreSQL servers and app processes, only
// through its public interfaces: git pushes, signed webhooks, the JSON API
// and HTTP through the gateway.
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/environment"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/logbuf"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/test/harness"
)

// TestMethod runs the scenarios in order on one Runway: each of them needs
// production to run a stable version first, and building and deploying
// that once instead of per scenario saves about half a minute each.
func TestMethod(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	h, dir := startRunway(ctx, t)

	t.Run("bad webhooks start nothing", func(t *testing.T) { testBadWebhooks(ctx, t, h) })

	var stable string
	t.Run("first version goes to production", func(t *testing.T) {
		sha, err := h.CommitChange(ctx, "", "deploy the first version")
		if err != nil {
			t.Fatal(err)
		}
		p := runPipeline(ctx, t, h, sha, "first version")
		if p.Phase != pipeline.Succeeded {
			t.Fatalf("pipeline %s: %s at %s: %s", p.ID, p.Phase, p.FailedStep, p.Reason)
		}
		stable = p.Version
		assertProduction(ctx, t, h, "pong", stable)
		assertEnvGone(ctx, t, h, dir, p.StagingEnv)
	})
	if stable == "" {
		t.Fatal("no stable version in production; the other scenarios need one")
	}

	t.Run("failing functional test stops the change in staging", func(t *testing.T) {
		sha, err := h.CommitChange(ctx, "broken-test", "functional test expects PONG!")
		if err != nil {
			t.Fatal(err)
		}
		p := runPipeline(ctx, t, h, sha, "broken test")
		if p.Phase != pipeline.Failed || p.FailedStep != pipeline.StepStagingTests {
			t.Fatalf("pipeline %s ended %s at %q (%s), want Failed at %s", p.ID, p.Phase, p.FailedStep, p.Reason, pipeline.StepStagingTests)
		}
		if log := p.Step(pipeline.StepStagingTests).Log; !strings.Contains(log, "PONG!") {
			t.Fatalf("functional test output missing from the step log:\n%s", log)
		}
		for _, name := range []string{pipeline.StepPromote, pipeline.StepAwaitRollout} {
			if s := p.Step(name); s.Phase != pipeline.Skipped {
				t.Fatalf("step %s is %s after the failure, want Skipped", name, s.Phase)
			}
		}
		assertProduction(ctx, t, h, "pong", stable)
		assertEnvGone(ctx, t, h, dir, p.StagingEnv)
		assertGitProduction(ctx, t, h, stable)
	})

	t.Run("canary answering 500s is aborted and reverted", func(t *testing.T) {
		sha, err := h.CommitChange(ctx, "flaky-500", "ping answers JSON, sometimes 500")
		if err != nil {
			t.Fatal(err)
		}
		tr := h.StartTraffic(ctx)
		p := runPipeline(ctx, t, h, sha, "flaky canary")
		counts := tr.Stop()
		t.Logf("production traffic during the canary: %v", counts)
		if p.Phase != pipeline.Failed || p.FailedStep != pipeline.StepAwaitRollout {
			t.Fatalf("pipeline %s ended %s at %q (%s), want Failed at %s", p.ID, p.Phase, p.FailedStep, p.Reason, pipeline.StepAwaitRollout)
		}
		if !strings.Contains(p.Reason, "analysis") || !strings.Contains(p.Reason, "Failed") {
			t.Fatalf("reason %q does not name the failed analysis", p.Reason)
		}
		if counts[p.Version+"/500"] == 0 {
			t.Fatalf("the canary never served a 500 through the gateway: %v", counts)
		}
		assertProduction(ctx, t, h, "pong", stable)
		assertGitProduction(ctx, t, h, stable)
		assertEnvGone(ctx, t, h, dir, p.StagingEnv)
	})

	t.Run("control plane restart: production keeps serving, processes are adopted", func(t *testing.T) {
		testRestart(ctx, t, h, dir, stable)
	})

	t.Run("change goes through staging and canary to production", func(t *testing.T) {
		sha, err := h.CommitChange(ctx, "json-pong", "ping answers JSON")
		if err != nil {
			t.Fatal(err)
		}
		tr := h.StartTraffic(ctx)
		var stagingAddrs []string
		p := runPipelineWatching(ctx, t, h, sha, "json pong", func(p *pipeline.Pipeline) {
			if p.StagingEnv == "" || len(stagingAddrs) > 0 {
				return
			}
			stagingAddrs = replicaAddrs(ctx, h, p.StagingEnv)
		})
		counts := tr.Stop()
		t.Logf("production traffic during the canary: %v", counts)
		if p.Phase != pipeline.Succeeded {
			t.Fatalf("pipeline %s: %s at %s: %s", p.ID, p.Phase, p.FailedStep, p.Reason)
		}
		if counts[p.Version+"/200"] == 0 || counts[stable+"/200"] == 0 {
			t.Fatalf("traffic was not split between stable and canary: %v", counts)
		}
		for k, n := range counts {
			if !strings.HasSuffix(k, "/200") {
				t.Errorf("%d production requests answered %s during a healthy canary", n, k)
			}
		}
		assertProduction(ctx, t, h, `{"value":"pong"}`, p.Version)
		assertGitProduction(ctx, t, h, p.Version)
		assertEnvGone(ctx, t, h, dir, p.StagingEnv)
		assertAppMetricsScraped(ctx, t, h, p.Version)
		if len(stagingAddrs) == 0 {
			t.Fatal("never saw the staging environment's replicas through the API")
		}
		for _, addr := range stagingAddrs {
			if harness.Listening(addr) {
				t.Errorf("staging replica port %s still listens", addr)
			}
		}
	})
}

// assertAppMetricsScraped checks, through Runway's PromQL endpoint, that
// the app's own /metrics (not only the gateway's) reached the embedded
// store, labelled with the environment and version.
func assertAppMetricsScraped(ctx context.Context, t *testing.T, h *harness.Harness, version string) {
	t.Helper()
	q := url.QueryEscape(fmt.Sprintf(`sum(homelabping_requests_total{env="production",version=%q,path="/ping"})`, version))
	var resp struct {
		Status string
		Data   struct{ Result []json.RawMessage }
	}
	for i := 0; ; i++ {
		if err := h.GetJSON(ctx, "/prometheus/api/v1/query?query="+q, &resp); err != nil {
			t.Fatal(err)
		}
		if resp.Status == "success" && len(resp.Data.Result) == 1 {
			return
		}
		if i == 50 {
			t.Fatalf("the app's metrics were not scraped: %+v", resp)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// testRestart restarts the control plane alone while a prober sends a
// request to production every 20 ms: no request may fail, and the new
// control plane adopts the gateway and the replicas instead of starting
// new ones.
func testRestart(ctx context.Context, t *testing.T, h *harness.Harness, dir, stable string) {
	before := replicaAddrs(ctx, h, "production")
	if len(before) == 0 {
		t.Fatal("no production replicas listed")
	}
	gw := h.GatewayAddr()
	tr := h.StartTraffic(ctx)
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if err := h.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	var after []string
	for i := 0; ; i++ {
		if after = replicaAddrs(ctx, h, "production"); len(after) > 0 {
			break
		}
		if i == 600 {
			t.Fatal("the restarted control plane never listed production's replicas")
		}
		time.Sleep(50 * time.Millisecond)
	}
	recovered := time.Since(start)
	time.Sleep(300 * time.Millisecond)
	counts := tr.Stop()
	t.Logf("restart: control plane back with production listed after %s; probes during the restart: %v", recovered.Round(time.Millisecond), counts)
	for k, n := range counts {
		if k != stable+"/200" {
			t.Errorf("%d probes answered %s during the restart", n, k)
		}
	}
	if h.Server.GatewayAddr() != gw {
		t.Fatalf("gateway moved from %s to %s: not adopted", gw, h.Server.GatewayAddr())
	}
	slices.Sort(before)
	slices.Sort(after)
	if !slices.Equal(before, after) {
		t.Fatalf("production replicas %v became %v: restarted instead of adopted", before, after)
	}
	assertProduction(ctx, t, h, "pong", stable)
}

func testBadWebhooks(ctx context.Context, t *testing.T, h *harness.Harness) {
	sha := strings.Repeat("a", 40)
	tests := []struct {
		name   string
		send   func() (harness.PushResponse, error)
		status int
	}{
		{"bad signature", func() (harness.PushResponse, error) { return h.PushSigned(ctx, "main", sha, "x", "wrong secret") }, 401},
		{"malformed body", func() (harness.PushResponse, error) { return h.Deliver(ctx, "push", []byte(`{"ref":`), h.Secret) }, 400},
		{"untracked branch", func() (harness.PushResponse, error) { return h.Push(ctx, "feature", sha, "x") }, 202},
		{"not a push", func() (harness.PushResponse, error) { return h.Deliver(ctx, "issues", []byte(`{}`), h.Secret) }, 202},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := tt.send()
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != tt.status || resp.Pipeline != "" {
				t.Fatalf("answer %d %s, want %d and no pipeline", resp.Status, resp.Body, tt.status)
			}
		})
	}
	var ps []*pipeline.Pipeline
	if err := h.GetJSON(ctx, "/api/v1/pipelines", &ps); err != nil {
		t.Fatal(err)
	}
	if len(ps) != 0 {
		t.Fatalf("bad webhooks started %d pipelines", len(ps))
	}
}

func runPipeline(ctx context.Context, t *testing.T, h *harness.Harness, sha, msg string) *pipeline.Pipeline {
	return runPipelineWatching(ctx, t, h, sha, msg, nil)
}

func runPipelineWatching(ctx context.Context, t *testing.T, h *harness.Harness, sha, msg string, watch func(*pipeline.Pipeline)) *pipeline.Pipeline {
	t.Helper()
	resp, err := h.Push(ctx, "main", sha, msg)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 202 || resp.Pipeline == "" {
		t.Fatalf("webhook answered %d %s", resp.Status, resp.Body)
	}
	p, err := h.WaitPipeline(ctx, resp.Pipeline, watch)
	if err != nil {
		t.Fatalf("waiting for pipeline %s: %v", resp.Pipeline, err)
	}
	var b strings.Builder
	for _, s := range p.Steps {
		fmt.Fprintf(&b, "  %-28s %-9s %s\n", s.Name, s.Phase, s.Duration().Round(time.Millisecond))
	}
	t.Logf("pipeline %s %s %s\n%s", p.ID, p.Version, p.Phase, b.String())
	return p
}

func replicaAddrs(ctx context.Context, h *harness.Harness, env string) []string {
	var envs []environment.EnvStatus
	if err := h.GetJSON(ctx, "/api/v1/environments", &envs); err != nil {
		return nil
	}
	var out []string
	for _, e := range envs {
		if e.Name != env {
			continue
		}
		for _, a := range e.Apps {
			out = append(out, a.Replicas...)
		}
	}
	return out
}

// assertProduction checks 50 requests through the gateway: all answered
// body by version.
func assertProduction(ctx context.Context, t *testing.T, h *harness.Harness, body, version string) {
	t.Helper()
	for i := 0; i < 50; i++ {
		status, got, v, err := h.Get(ctx, h.ProductionHost(), "/ping")
		if err != nil {
			t.Fatal(err)
		}
		if status != 200 || got != body || v != version {
			t.Fatalf("production request %d: %d %q from %s, want 200 %q from %s", i, status, got, v, body, version)
		}
	}
}

// gitProduction clones the state repository and reads its production
// manifest.
func gitProduction(ctx context.Context, t *testing.T, h *harness.Harness) (*gitops.Repo, *manifest.Manifest) {
	t.Helper()
	repo, err := gitops.Open(ctx, h.StateURL, filepath.Join(t.TempDir(), "state"), "main", nil)
	if err != nil {
		t.Fatalf("cloning the state repo: %v", err)
	}
	data, err := repo.ReadFile(ctx, manifest.ProductionPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return repo, m
}

func assertGitProduction(ctx context.Context, t *testing.T, h *harness.Harness, version string) {
	t.Helper()
	repo, m := gitProduction(ctx, t, h)
	if got := m.Apps[harness.AppName].Version(); got != version {
		t.Fatalf("git's production manifest has %s %s, want %s", harness.AppName, got, version)
	}
	s, err := repo.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if names := s.EnvNames(); len(names) != 1 {
		t.Fatalf("state repo still declares environments %v", names)
	}
}

// assertEnvGone checks that nothing of a staging environment remains: not
// in the API, not routed, no data dir, no process.
func assertEnvGone(ctx context.Context, t *testing.T, h *harness.Harness, dir, env string) {
	t.Helper()
	if env == "" {
		t.Fatal("pipeline has no staging environment")
	}
	var envs []environment.EnvStatus
	if err := h.GetJSON(ctx, "/api/v1/environments", &envs); err != nil {
		t.Fatal(err)
	}
	for _, e := range envs {
		if e.Name == env {
			t.Fatalf("environment %s still listed by the API", env)
		}
	}
	status, _, _, err := h.Get(ctx, harness.AppName+"."+env+".localhost", "/ping")
	if err != nil {
		t.Fatal(err)
	}
	if status != 404 {
		t.Fatalf("gateway still routes %s: status %d", env, status)
	}
	if _, err := os.Stat(filepath.Join(h.WorkDir(), "envs", env)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory of %s remains (%v)", env, err)
	}
	assertNoProcesses(t, h.WorkDir(), env)
}

// startRunway starts a Runway with its repositories in a temporary
// directory; cleanup stops it and checks that no process of it remains.
func startRunway(ctx context.Context, t *testing.T) (*harness.Harness, string) {
	t.Helper()
	h, dir, _ := startRunwayWith(ctx, t, harness.Options{})
	return h, dir
}

// startRunwayWith is startRunway with harness options (Examples, Dir are
// set here; opts.Log, if set, gets the server's log too) and the server's
// log in a buffer.
func startRunwayWith(ctx context.Context, t testing.TB, opts harness.Options) (*harness.Harness, string, *logbuf.Buffer) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	dir := t.TempDir()
	logBuf := &logbuf.Buffer{}
	opts.Examples, opts.Dir = "../../examples", dir
	if opts.Log != nil {
		opts.Log = io.MultiWriter(logBuf, opts.Log)
	} else {
		opts.Log = logBuf
	}
	h, err := harness.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("closing runway: %v", err)
		}
		assertNoProcesses(t, h.WorkDir(), "")
		if left := harness.GatewayProcesses(h.DataDir()); len(left) > 0 {
			t.Errorf("gateway processes still run after close: %v", left)
		}
		if t.Failed() {
			t.Logf("server log tail:\n%s", harness.TailLines(logBuf.String(), 120))
		}
	})
	return h, dir, logBuf
}

// assertNoProcesses checks that no process of env (every env when env is
// "") of the Runway with work directory workDir still runs.
func assertNoProcesses(t testing.TB, workDir, env string) {
	t.Helper()
	for _, p := range harness.Leftovers(workDir, env) {
		t.Errorf("process of environment %q still runs: %s", env, p)
	}
}
