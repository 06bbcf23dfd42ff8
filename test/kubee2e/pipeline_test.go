package kubee2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/runway-cd/runway/internal/image"
	"github.com/runway-cd/runway/internal/logbuf"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/server"
	"github.com/runway-cd/runway/test/cluster"
	"github.com/runway-cd/runway/test/cluster/nodeagent"
	"github.com/runway-cd/runway/test/harness"
)

// gatewayMetrics stands in for the traffic a real cluster's ingress would
// count: it serves runway_gateway_requests_total, the series the example
// app's AnalysisTemplate queries, for the versions the test names, with
// the share of 5xx the test sets. Prometheus scrapes it as job
// runway-gateway. Counters grow by 20 requests a second.
type gatewayMetrics struct {
	mu       sync.Mutex
	start    time.Time
	versions map[string]float64 // version -> error ratio
}

func (g *gatewayMetrics) set(version string, errorRatio float64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.versions[version] = errorRatio
}

func (g *gatewayMetrics) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	total := 20 * time.Since(g.start).Seconds()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintln(w, "# TYPE runway_gateway_requests_total counter")
	for v, ratio := range g.versions {
		labels := fmt.Sprintf(`env="production",app=%q,version=%q`, harness.AppName, v)
		fmt.Fprintf(w, "runway_gateway_requests_total{%s,code=\"200\"} %.0f\n", labels, total*(1-ratio))
		fmt.Fprintf(w, "runway_gateway_requests_total{%s,code=\"500\"} %.0f\n", labels, total*ratio)
	}
}

// TestPipelineOnKubernetes pushes three changes of the example app
// through Runway on Kubernetes: the first is deployed (staging namespace,
// migrations and functional tests as Jobs, then production as an Argo
// Rollout); the second passes its canary analysis and Argo promotes it;
// the third fails its analysis, Argo aborts it and Runway reverts the
// production manifest in git. No staging namespace is left behind.
func TestPipelineOnKubernetes(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	c := cluster.Shared(t)
	if why := cluster.PostgresMissing(); why != "" {
		t.Skip(why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	reg := cluster.Registry(t)
	nodeagent.StartForTest(t, nodeagent.Options{Config: c.Config, Images: image.Options{Insecure: true}})
	metrics := &gatewayMetrics{start: time.Now(), versions: map[string]float64{}}
	exporter := httptest.NewServer(metrics)
	t.Cleanup(exporter.Close)
	prom := cluster.Prometheus(t, "runway-gateway", strings.TrimPrefix(exporter.URL, "http://"))
	adminURL := cluster.PostgresAdmin(t)

	dir := t.TempDir()
	adminFile := filepath.Join(dir, "postgres-admin-url")
	if err := os.WriteFile(adminFile, []byte(adminURL), 0o600); err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("rwe2e-%d-", time.Now().UnixNano()%100000)
	logBuf := &logbuf.Buffer{}
	h, err := harness.Start(ctx, harness.Options{
		Examples: "../../examples", Dir: dir, Log: logBuf,
		Tune: func(cfg *server.Config) {
			// A build cache and uid range of its own: test/e2e's Runways
			// run at the same time on this machine, and each hands its
			// app's cache directory to its own build uid.
			cfg.Sandbox.CacheDir = filepath.Join(os.TempDir(), "runway-kubee2e-cache")
			cfg.Sandbox.UIDBase = 1600000
			cfg.Runtime = server.RuntimeKubernetes
			cfg.Kubernetes = server.KubernetesConfig{
				Kubeconfig: c.Kubeconfig, NamespacePrefix: prefix,
				Registry: reg + "/runway", RegistryInsecure: true,
				PostgresAdminURLFile: adminFile, PrometheusAddress: prom,
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("closing runway: %v", err)
		}
		if t.Failed() {
			t.Logf("server log tail:\n%s", harness.TailLines(logBuf.String(), 150))
		}
	})
	kube := kubernetes.NewForConfigOrDie(c.Config)

	run := func(t *testing.T, change, message string, onVersion func(string)) *pipeline.Pipeline {
		t.Helper()
		sha, err := h.CommitChange(ctx, change, message)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := h.Push(ctx, "main", sha, message)
		if err != nil || resp.Status != http.StatusAccepted {
			t.Fatalf("push: %v %d %s", err, resp.Status, resp.Body)
		}
		told := false
		p, err := h.WaitPipeline(ctx, resp.Pipeline, func(p *pipeline.Pipeline) {
			if !told && p.Version != "" && onVersion != nil {
				onVersion(p.Version)
				told = true
			}
		})
		if err != nil {
			t.Fatalf("waiting for pipeline %s: %v", resp.Pipeline, err)
		}
		var b strings.Builder
		for _, s := range p.Steps {
			fmt.Fprintf(&b, "  %-28s %-9s %s\n", s.Name, s.Phase, s.Duration().Round(time.Millisecond))
		}
		t.Logf("pipeline %s %s %s %s\n%s", p.ID, p.Version, p.Phase, p.Reason, b.String())
		return p
	}
	productionVersion := func(t *testing.T) string {
		t.Helper()
		hist, err := h.ProductionHistory()
		if err != nil || len(hist) == 0 {
			t.Fatalf("reading the production manifest's history: %v", err)
		}
		m := hist[len(hist)-1].Manifest
		if m == nil || m.Apps[harness.AppName] == nil {
			return ""
		}
		return m.Apps[harness.AppName].Version()
	}
	noStagingNamespaces := func(t *testing.T) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			nss, err := kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var left []string
			for _, ns := range nss.Items {
				if strings.HasPrefix(ns.Name, prefix) && ns.Name != prefix+"production" {
					left = append(left, ns.Name+" ("+string(ns.Status.Phase)+")")
				}
			}
			if len(left) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("staging namespaces left after the pipeline: %v", left)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	first := run(t, "", "first version", nil)
	if first.Phase != pipeline.Succeeded {
		t.Fatalf("first version: %s at %s: %s", first.Phase, first.FailedStep, first.Reason)
	}
	noStagingNamespaces(t)

	t.Run("a healthy canary is promoted by Argo Rollouts", func(t *testing.T) {
		p := run(t, "json-pong", "json pong", func(v string) { metrics.set(v, 0) })
		if p.Phase != pipeline.Succeeded {
			t.Fatalf("%s at %s: %s", p.Phase, p.FailedStep, p.Reason)
		}
		if got := productionVersion(t); got != p.Version {
			t.Fatalf("production manifest has %s, want %s", got, p.Version)
		}
		noStagingNamespaces(t)
	})
	t.Run("an unhealthy canary is aborted and git reverted", func(t *testing.T) {
		before := productionVersion(t)
		p := run(t, "flaky-500", "flaky 500", func(v string) { metrics.set(v, 0.9) })
		if p.Phase != pipeline.Failed {
			t.Fatalf("%s at %s: %s; want Failed by the canary", p.Phase, p.FailedStep, p.Reason)
		}
		if !strings.Contains(p.Reason, "error-ratio") {
			t.Errorf("reason %q does not name the failing metric", p.Reason)
		}
		if got := productionVersion(t); got != before {
			t.Fatalf("production manifest has %s after the abort, want %s (reverted)", got, before)
		}
		noStagingNamespaces(t)
	})
}
