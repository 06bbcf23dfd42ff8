package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/server"
	"github.com/runway-cd/runway/test/harness"
)

// TestCanaryEmbeddedPromQL runs the canary scenarios with metrics
// evaluated by Runway's embedded PromQL engine.
func TestCanaryEmbeddedPromQL(t *testing.T) {
	runCanaryScenarios(t, "", func(*testing.T, *harness.Harness) string { return "" })
}

// TestCanaryPrometheusServer runs the same scenarios against a real
// Prometheus server (Debian's prometheus package), started by the test on
// loopback and scraping Runway's gateway metrics.
func TestCanaryPrometheusServer(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("prometheus is not installed; scripts/test.sh installs Debian's prometheus package")
		}
		t.Skip("prometheus binary not installed (apt-get install prometheus)")
	}
	// Its address is chosen first: templates may name only the servers
	// of the config's analysis.prometheusAddresses.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	runCanaryScenarios(t, "http://"+addr, func(t *testing.T, h *harness.Harness) string {
		return startPrometheus(t, bin, addr, h.Server.APIAddr(), h.Token())
	})
}

func runCanaryScenarios(t *testing.T, allowed string, prometheusAddress func(*testing.T, *harness.Harness) string) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	h, _, _ := startRunwayWith(ctx, t, harness.Options{Tune: func(c *server.Config) {
		if allowed != "" {
			c.Analysis.PrometheusAddresses = []string{allowed}
		}
	}})
	address := prometheusAddress(t, h)
	sha, err := h.CommitChange(ctx, "", "first version")
	if err != nil {
		t.Fatal(err)
	}
	first := runPipeline(ctx, t, h, sha, "first version")
	if first.Phase != pipeline.Succeeded {
		t.Fatalf("first version: %s at %s: %s", first.Phase, first.FailedStep, first.Reason)
	}
	stable := first.Version

	t.Run("healthy canary follows its weights", func(t *testing.T) {
		spec := canarySpec(`    analysis:
      templates: [{templateName: success-rate}]
      startingStep: 1
    steps:
      - setWeight: 20
      - pause: {}
      - setWeight: 50
      - pause: {}
      - setWeight: 80
      - pause: {}
`)
		sha := commitCanary(ctx, t, h, "json-pong", spec, successRateTemplate(address, "interval: 1s\n      inconclusiveLimit: 1000"))
		tr := h.StartTraffic(ctx)
		defer tr.Stop()
		resp, err := h.Push(ctx, "main", sha, "healthy canary")
		if err != nil || resp.Pipeline == "" {
			t.Fatalf("push: %v %+v", err, resp)
		}
		const requests, tolerance = 1000, 3 // percent; other traffic shares the gateway's split
		for _, weight := range []int{20, 50, 80} {
			st := waitRollout(ctx, t, h, func(s rollout.Status) bool { return s.Phase == rollout.Paused && s.Weight == weight })
			canary := 0
			for i := 0; i < requests; i++ {
				status, _, v, err := h.Get(ctx, h.ProductionHost(), "/ping")
				if err != nil || status != 200 {
					t.Fatalf("request %d at weight %d: %d %v", i, weight, status, err)
				}
				if v == st.CanaryVersion {
					canary++
				}
			}
			share := canary * 100 / requests
			t.Logf("weight %d%%: %d of %d requests (%d%%) went to the canary", weight, canary, requests, share)
			if share < weight-tolerance || share > weight+tolerance {
				t.Fatalf("weight %d%%: canary got %d%% of %d requests (tolerance ±%d%%)", weight, share, requests, tolerance)
			}
			promote(ctx, t, h)
		}
		p := waitSucceeded(ctx, t, h, resp.Pipeline)
		run := findRun(ctx, t, h, p.Version+"-background-1")
		if run.Phase != analysis.PhaseSuccessful || len(run.Metrics) == 0 || len(run.Metrics[0].Measurements) == 0 {
			t.Fatalf("background analysis run: %+v", run)
		}
		stable = p.Version
		assertProduction(ctx, t, h, `{"value":"pong"}`, stable)
	})

	t.Run("failing canary is aborted and reverted", func(t *testing.T) {
		spec := canarySpec(`    steps:
      - setWeight: 50
      - analysis: {templates: [{templateName: success-rate}]}
`)
		sha := commitCanary(ctx, t, h, "flaky-500", spec, successRateTemplate(address, "interval: 1s\n      initialDelay: 3s\n      count: 20\n      failureLimit: 1"))
		tr := h.StartTraffic(ctx)
		p := runPipeline(ctx, t, h, sha, "flaky canary")
		counts := tr.Stop()
		if p.Phase != pipeline.Failed || p.FailedStep != pipeline.StepAwaitRollout || !strings.Contains(p.Reason, "Failed") {
			t.Fatalf("pipeline %s ended %s at %s (%s), want Failed at %s with the analysis reason", p.ID, p.Phase, p.FailedStep, p.Reason, pipeline.StepAwaitRollout)
		}
		if counts[p.Version+"/500"] == 0 {
			t.Fatalf("the canary never answered 500: %v", counts)
		}
		run := findRun(ctx, t, h, p.Version+"-step2-1")
		failed := 0
		var lastFailure time.Time
		for _, m := range run.Metrics[0].Measurements {
			if m.Phase == analysis.PhaseFailed {
				failed++
				lastFailure = m.FinishedAt
			}
		}
		if run.Phase != analysis.PhaseFailed || failed != 2 {
			t.Fatalf("analysis run %s: phase %s with %d failed measurements, want Failed after 2 (failureLimit 1): %+v", run.Name, run.Phase, failed, run)
		}
		st := finishedRollout(ctx, t, h, p.Version)
		t.Logf("failing measurement at %s; rollout aborted, traffic on stable, at %s: %s later", lastFailure.Format(time.StampMilli), st.Finished.Format(time.StampMilli), st.Finished.Sub(lastFailure))
		assertProduction(ctx, t, h, `{"value":"pong"}`, stable)
		assertGitProduction(ctx, t, h, stable)
	})

	t.Run("no traffic pauses the canary instead of aborting it", func(t *testing.T) {
		spec := canarySpec(`    steps:
      - setWeight: 30
      - analysis: {templates: [{templateName: success-rate}]}
`)
		sha := commitCanary(ctx, t, h, "json-pong", spec, successRateTemplate(address, "interval: 1s\n      count: 2"))
		resp, err := h.Push(ctx, "main", sha, "canary without traffic")
		if err != nil || resp.Pipeline == "" {
			t.Fatalf("push: %v %+v", err, resp)
		}
		st := waitRollout(ctx, t, h, func(s rollout.Status) bool { return s.Phase == rollout.Paused })
		if !strings.Contains(st.Message, "inconclusive") {
			t.Fatalf("paused for another reason: %s", st.Message)
		}
		first := findRun(ctx, t, h, st.CanaryVersion+"-step2-1")
		if first.Phase != analysis.PhaseInconclusive {
			t.Fatalf("run %s is %s, want Inconclusive", first.Name, first.Phase)
		}
		retry(ctx, t, h)
		second := waitRun(ctx, t, h, st.CanaryVersion+"-step2-2")
		if second.Phase != analysis.PhaseInconclusive {
			t.Fatalf("retried run %s is %s, want Inconclusive (still no traffic)", second.Name, second.Phase)
		}
		if again := findRun(ctx, t, h, first.Name); again.Phase != analysis.PhaseInconclusive {
			t.Fatalf("the first run changed after the retry: %+v", again)
		}
		waitRollout(ctx, t, h, func(s rollout.Status) bool { return s.Phase == rollout.Paused })
		promote(ctx, t, h)
		assertSucceeded(ctx, t, h, resp.Pipeline)
	})

	t.Run("restart during a canary starts it over instead of promoting it unanalysed", func(t *testing.T) {
		spec := canarySpec(`    steps:
      - setWeight: 40
      - pause: {}
`)
		sha := commitCanary(ctx, t, h, "json-pong", spec, successRateTemplate(address, "interval: 1s\n      count: 2"))
		resp, err := h.Push(ctx, "main", sha, "canary interrupted by a restart")
		if err != nil || resp.Pipeline == "" {
			t.Fatalf("push: %v %+v", err, resp)
		}
		before := waitRollout(ctx, t, h, func(s rollout.Status) bool { return s.Phase == rollout.Paused && s.Weight == 40 })
		tr := h.StartTraffic(ctx)
		if err := h.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		after := waitRollout(ctx, t, h, func(s rollout.Status) bool { return s.Phase == rollout.Paused && s.Weight == 40 })
		counts := tr.Stop()
		t.Logf("probes during the restart: %v", counts)
		if after.CanaryVersion != before.CanaryVersion || after.StableVersion != before.StableVersion {
			t.Fatalf("after the restart the rollout is %s over %s, want %s over %s", after.CanaryVersion, after.StableVersion, before.CanaryVersion, before.StableVersion)
		}
		for k, n := range counts {
			if !strings.HasSuffix(k, "/200") {
				t.Errorf("%d probes answered %s during the restart", n, k)
			}
		}
		promote(ctx, t, h)
		assertSucceeded(ctx, t, h, resp.Pipeline)
	})
}

func canarySpec(strategy string) string {
	base, err := os.ReadFile("../../examples/homelabping/runway.yaml")
	if err != nil {
		panic(err)
	}
	s := string(base)
	i := strings.Index(s, "strategy:")
	return s[:i] + "strategy:\n  canary:\n" + strings.ReplaceAll(strategy, "\n    ", "\n    ") + "analysisTemplates:\n  - analysis/success-rate.yaml\n"
}

// successRateTemplate is the example's error-ratio metric with the given
// scheduling fields, against address ("" is the embedded engine).
func successRateTemplate(address, fields string) string {
	prov := "prometheus:\n"
	if address != "" {
		prov += "          address: " + address + "\n"
	}
	return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: success-rate
spec:
  args:
    - name: app
    - name: env
    - name: version
  metrics:
    - name: error-ratio
      %s
      successCondition: result[0] <= 0.2
      provider:
        %s          query: '(sum(rate(runway_gateway_requests_total{job="runway-gateway",env="{{args.env}}",app="{{args.app}}",version="{{args.version}}",code=~"5.."}[10s])) or vector(0)) / sum(rate(runway_gateway_requests_total{job="runway-gateway",env="{{args.env}}",app="{{args.app}}",version="{{args.version}}"}[10s]))'
`, fields, prov)
}

// commitCanary commits an overlay of examples/changes plus a spec and
// template to the app repository.
func commitCanary(ctx context.Context, t *testing.T, h *harness.Harness, overlay, spec, template string) string {
	t.Helper()
	files := fstest.MapFS{
		"runway.yaml":                {Data: []byte(spec)},
		"analysis/success-rate.yaml": {Data: []byte(template)},
	}
	root := filepath.Join("../../examples/changes", overlay)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files[filepath.ToSlash(rel)] = &fstest.MapFile{Data: data, Mode: 0o644}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sha, err := gitops.CommitDir(ctx, h.AppURL, "main", files, "canary scenario "+overlay)
	if err != nil {
		t.Fatal(err)
	}
	return sha
}

func activeRollout(ctx context.Context, h *harness.Harness) (rollout.Status, bool) {
	var rs []rollout.Status
	if err := h.GetJSON(ctx, "/api/v1/rollouts", &rs); err != nil {
		return rollout.Status{}, false
	}
	for _, r := range rs {
		if r.Env == "production" && r.App == harness.AppName && r.Finished.IsZero() {
			return r, true
		}
	}
	return rollout.Status{}, false
}

func waitRollout(ctx context.Context, t *testing.T, h *harness.Harness, cond func(rollout.Status) bool) rollout.Status {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		if s, ok := activeRollout(ctx, h); ok && cond(s) {
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
	s, _ := activeRollout(ctx, h)
	t.Fatalf("rollout never reached the expected state; last: %+v", s)
	return s
}

func finishedRollout(ctx context.Context, t *testing.T, h *harness.Harness, version string) rollout.Status {
	t.Helper()
	var rs []rollout.Status
	if err := h.GetJSON(ctx, "/api/v1/rollouts", &rs); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.CanaryVersion == version && !r.Finished.IsZero() {
			return r
		}
	}
	t.Fatalf("no finished rollout of %s in %+v", version, rs)
	return rollout.Status{}
}

func post(ctx context.Context, t *testing.T, h *harness.Harness, path string) {
	t.Helper()
	status, body, err := h.API(ctx, http.MethodPost, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusAccepted {
		t.Fatalf("POST %s: %d %s", path, status, body)
	}
}

// waitSucceeded waits for pipeline id to end and fails the test unless it
// Succeeded.
func waitSucceeded(ctx context.Context, t *testing.T, h *harness.Harness, id string) *pipeline.Pipeline {
	t.Helper()
	p, err := h.WaitPipeline(ctx, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Phase != pipeline.Succeeded {
		t.Fatalf("pipeline %s: %s at %s: %s", p.ID, p.Phase, p.FailedStep, p.Reason)
	}
	return p
}

// assertSucceeded waits for pipeline id to succeed with production serving
// its json-pong version.
func assertSucceeded(ctx context.Context, t *testing.T, h *harness.Harness, id string) {
	t.Helper()
	p := waitSucceeded(ctx, t, h, id)
	assertProduction(ctx, t, h, `{"value":"pong"}`, p.Version)
}

func promote(ctx context.Context, t *testing.T, h *harness.Harness) {
	post(ctx, t, h, "/api/v1/rollouts/production/"+harness.AppName+"/promote")
}

func retry(ctx context.Context, t *testing.T, h *harness.Harness) {
	post(ctx, t, h, "/api/v1/rollouts/production/"+harness.AppName+"/retry")
}

// findRun returns the finished analysis run whose name ends with suffix.
func findRun(ctx context.Context, t *testing.T, h *harness.Harness, suffix string) analysis.RunRecord {
	t.Helper()
	var runs []analysis.RunRecord
	if err := h.GetJSON(ctx, "/api/v1/analysisruns", &runs); err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		if strings.HasSuffix(r.Name, suffix) {
			var full analysis.RunRecord
			if err := h.GetJSON(ctx, "/api/v1/analysisruns/"+r.Name, &full); err != nil {
				t.Fatal(err)
			}
			return full
		}
	}
	t.Fatalf("no analysis run named *%s among %d runs", suffix, len(runs))
	return analysis.RunRecord{}
}

func waitRun(ctx context.Context, t *testing.T, h *harness.Harness, suffix string) analysis.RunRecord {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		var runs []analysis.RunRecord
		if err := h.GetJSON(ctx, "/api/v1/analysisruns", &runs); err == nil {
			for _, r := range runs {
				if strings.HasSuffix(r.Name, suffix) && r.Phase.Completed() {
					return r
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("analysis run *%s never finished", suffix)
	return analysis.RunRecord{}
}

// startPrometheus runs a Prometheus server on addr (a free loopback
// host:port) that scrapes target's /metrics every second with the API
// token, and returns its URL.
func startPrometheus(t *testing.T, bin, addr, target, token string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: runway-gateway\n    authorization:\n      credentials: '%s'\n    static_configs:\n      - targets: ['%s']\n", token, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
	})
	url := "http://" + addr
	for i := 0; ; i++ {
		resp, err := http.Get(url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if i == 300 {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("prometheus not ready at %s:\n%s", url, harness.TailLines(string(log), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return url
}
