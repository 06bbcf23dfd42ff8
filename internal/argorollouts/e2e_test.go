package argorollouts

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/image"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/internal/runtime/kubernetes"
	"github.com/runway-cd/runway/internal/runtime/runtimetest"
	"github.com/runway-cd/runway/test/cluster"
	"github.com/runway-cd/runway/test/cluster/nodeagent"
)

var _ Templates = (*kubernetes.Runtime)(nil)

// e2eSpec is the canary the end-to-end tests roll out: half the
// replicas, a short pause, then an analysis of the series the test's
// exporter serves for the canary's version, judged by a real Prometheus.
const e2eSpec = `
name: web
build: {app: make}
run:
  command: [./testapp, -host, $(POD_IP), serve]
  replicas: 1
  readinessPeriod: 1s
progressDeadlineSeconds: 90
analysisTemplates: [analysis/canary.yaml]
strategy:
  canary:
    steps:
    - setWeight: 50
    - pause: {duration: 1s}
    - analysis:
        templates: [{templateName: canary-errors}]
`

const e2eTemplate = `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: canary-errors
spec:
  args:
  - name: version
  metrics:
  - name: error-ratio
    interval: 1s
    count: 3
    failureLimit: 0
    successCondition: result[0] <= 0.1
    provider:
      prometheus:
        query: max(e2e_canary_error_ratio{version="{{args.version}}"})
`

// program is testapp, built once for every test of the binary.
var program struct {
	once sync.Once
	dir  string
	err  error
}

func testProgram(t *testing.T) string {
	t.Helper()
	program.once.Do(func() {
		dir, err := os.MkdirTemp("", "runway-argo-testapp-")
		if err != nil {
			program.err = err
			return
		}
		_, program.err = runtimetest.BuildProgram(dir)
		program.dir = dir
	})
	if program.err != nil {
		t.Fatal(program.err)
	}
	return program.dir
}

// e2ePausesSpec waits to be promoted twice: for the commands.
var e2ePausesSpec = strings.Replace(e2eSpec, `    - setWeight: 50
    - pause: {duration: 1s}
    - analysis:
        templates: [{templateName: canary-errors}]
`, `    - setWeight: 50
    - pause: {}
    - setWeight: 80
    - pause: {}
`, 1)

// e2eArtifact is version of web: testapp with the analysis template.
func e2eArtifact(t *testing.T, version string) build.Artifact {
	t.Helper()
	return e2eArtifactOf(t, version, e2eSpec)
}

func e2eArtifactOf(t *testing.T, version, specYAML string) build.Artifact {
	t.Helper()
	spec, err := appspec.Parse([]byte(specYAML))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(testProgram(t), "testapp"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "testapp"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "analysis"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "analysis", "canary.yaml"), []byte(e2eTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	return build.Artifact{App: "web", Version: version, Kind: build.App, Dir: dir, Spec: spec}
}

// specReplicaSets is the replica set of an artifact as workload.Starter
// makes it, without databases (the app needs none).
type specReplicaSets struct{}

func (specReplicaSets) ReplicaSet(_ context.Context, env string, art build.Artifact, timeout time.Duration) (runtime.ReplicaSet, error) {
	run := art.Spec.Run
	readiness, liveness := run.Probes()
	return runtime.ReplicaSet{
		Env: env, App: art.App, Version: art.Version, Dir: art.Dir, Command: run.Command,
		PortEnv: run.PortEnv, HealthPath: readiness.Path, Replicas: run.Replicas,
		Readiness: readiness, Liveness: liveness, HealthTimeout: timeout,
	}, nil
}

// update is one report the controller made.
type update struct {
	Workflow, App string
	Success       bool
	Superseded    bool
	Message       string
}

// fakeReporter records what the controller reports.
type fakeReporter struct {
	mu      sync.Mutex
	updates []update
}

func (r *fakeReporter) Update(_ context.Context, workflow, app string, success bool, message string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.updates = append(r.updates, update{Workflow: workflow, App: app, Success: success, Message: message})
	return nil
}

func (r *fakeReporter) Supersede(_ context.Context, workflow, app, message string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.updates = append(r.updates, update{Workflow: workflow, App: app, Superseded: true, Message: message})
	return nil
}

func (r *fakeReporter) all() []update {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.updates)
}

// exporter serves e2e_canary_error_ratio for v2 with the value the test
// sets, for Prometheus to scrape.
type exporter struct {
	srv   *httptest.Server
	ratio atomic.Value // string
}

func newExporter(t *testing.T, ratio string) *exporter {
	e := &exporter{}
	e.ratio.Store(ratio)
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE e2e_canary_error_ratio gauge\ne2e_canary_error_ratio{version=\"v2\"} %s\n", e.ratio.Load())
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// waitFor polls cond until it holds, failing t after d with what cond
// last said.
func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within %s; last: %s", what, d, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// e2eRig is production on the real control plane: a registry, a node,
// the Kubernetes runtime, Prometheus over the test's exporter, a state
// repository and the controller.
type e2eRig struct {
	ctl      *Controller
	reports  *fakeReporter
	exporter *exporter
	repo     *gitops.Repo
	bare     string
	ns       string
	rt       *kubernetes.Runtime
	c        *cluster.Cluster
}

func productionJSON(version string) string {
	return fmt.Sprintf(`{"envname":"production","change_description":"deploy %[1]s","deploying_workflow_name":"wf-%[1]s","apps":{
  "web":{"images":{"code":{"image":"web","image_tag":"%[1]s","label":"web"}},"deploy":{"revision":"rev-%[1]s"}}}}`, version)
}

func entryOf(t *testing.T, version string) *manifest.App {
	t.Helper()
	m, err := manifest.Parse([]byte(productionJSON(version)))
	if err != nil {
		t.Fatal(err)
	}
	return m.Apps["web"]
}

func newE2ERig(t *testing.T, prefix, ratio string) *e2eRig {
	c := cluster.Shared(t)
	ctx := t.Context()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	host := cluster.Registry(t)
	images, err := image.New(image.Options{Registry: host + "/runway", Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	agent, err := nodeagent.Start(ctx, nodeagent.Options{
		Config: c.Config, NodeName: prefix + "node", Dir: t.TempDir(), Images: image.Options{Insecure: true},
		BackOff: 500 * time.Millisecond, Logger: log.With("component", "nodeagent"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(agent.Stop)
	rt, err := kubernetes.New(ctx, kubernetes.Options{Config: c.Config, Images: images, NamespacePrefix: prefix, Logger: log.With("component", "runtime")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	exp := newExporter(t, ratio)
	prom := cluster.Prometheus(t, "e2e", strings.TrimPrefix(exp.srv.URL, "http://"))

	bare := filepath.Join(t.TempDir(), "state.git")
	if err := gitops.InitBare(bare, "main"); err != nil {
		t.Fatal(err)
	}
	files := fstest.MapFS{manifest.ProductionPath: {Data: []byte(productionJSON("v2"))}}
	if _, err := gitops.CommitDir(ctx, bare, "main", files, "promote v2"); err != nil {
		t.Fatal(err)
	}
	repo, err := gitops.Open(ctx, bare, filepath.Join(t.TempDir(), "clone"), "main", log)
	if err != nil {
		t.Fatal(err)
	}
	r := &e2eRig{reports: &fakeReporter{}, exporter: exp, repo: repo, bare: bare, ns: rt.Namespace("production"), rt: rt, c: c}
	r.ctl, err = New(Options{
		Config: c.Config, Templates: rt, ReplicaSets: specReplicaSets{}, PrometheusAddress: prom,
		Repo: repo, Reporter: r.reports, Logger: log.With("component", "argorollouts"),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.ctl.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
		// Production taken down: the Rollout, its Service and templates.
		cleanup, stop := context.WithTimeout(context.Background(), 30*time.Second)
		defer stop()
		_ = rt.Destroy(cleanup, "production")
	})
	return r
}

func (r *e2eRig) desired(t *testing.T, version string) rollout.Desired {
	return rollout.Desired{Env: "production", App: "web", Version: version, Entry: entryOf(t, version),
		Artifact: e2eArtifact(t, version), Workflow: "wf-" + version}
}

// waitReports waits until the reporter has n reports and returns them.
func (r *e2eRig) waitReports(t *testing.T, n int, d time.Duration) []update {
	t.Helper()
	waitFor(t, d, fmt.Sprintf("%d reports", n), func() (bool, string) {
		got := r.reports.all()
		return len(got) >= n, fmt.Sprintf("reports %+v; rollouts %+v; rollout object: %s", got, r.ctl.List(), r.describe(t))
	})
	return r.reports.all()
}

// describe is the Rollout's status as Argo wrote it, for failures.
func (r *e2eRig) describe(t *testing.T) string {
	ro, err := r.ctl.dyn.Resource(rolloutGVR).Namespace(r.ns).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("status=%v end=%v", ro.Object["status"], ro.GetAnnotations()[annEnd])
}

// deployFirst deploys v1 as the first version and waits for its report.
func (r *e2eRig) deployFirst(t *testing.T) {
	t.Helper()
	r.ctl.SetDesired(r.desired(t, "v1"))
	got := r.waitReports(t, 1, 3*time.Minute)
	if want := (update{Workflow: "wf-v1", App: "web", Success: true, Message: "web v1 is healthy"}); got[0] != want {
		t.Fatalf("first report = %+v, want %+v", got[0], want)
	}
	waitFor(t, 30*time.Second, "v1 stable", func() (bool, string) {
		return r.ctl.Stable("production", "web") == "v1", r.ctl.Stable("production", "web")
	})
}

func (r *e2eRig) productionVersion(t *testing.T) string {
	t.Helper()
	data, err := r.repo.ReadFile(context.Background(), manifest.ProductionPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return m.Apps["web"].Version()
}

// TestCanaryOnArgoRollouts runs a canary on the real Argo Rollouts
// controller, its analysis on a real Prometheus: a healthy canary is
// promoted step by step and reported; an unhealthy one is aborted by
// Argo, the production manifest reverted in git and the failure
// reported with the failing metric's value.
func TestCanaryOnArgoRollouts(t *testing.T) {
	t.Run("healthy canary is promoted", func(t *testing.T) {
		r := newE2ERig(t, "argo-ok-", "0")
		r.deployFirst(t)
		r.ctl.SetDesired(r.desired(t, "v2"))
		var sawPaused bool
		var weights []int
		waitFor(t, 4*time.Minute, "the canary promoted", func() (bool, string) {
			for _, s := range r.ctl.List() {
				if s.CanaryVersion != "v2" {
					continue
				}
				if s.Phase == rollout.Paused {
					sawPaused = true
				}
				if len(weights) == 0 || weights[len(weights)-1] != s.Weight {
					weights = append(weights, s.Weight)
				}
			}
			return len(r.reports.all()) >= 2, fmt.Sprintf("%+v %s", r.ctl.List(), r.describe(t))
		})
		got := r.reports.all()
		if want := (update{Workflow: "wf-v2", App: "web", Success: true, Message: "web v2 promoted after 3 steps"}); got[1] != want {
			t.Errorf("report = %+v, want %+v", got[1], want)
		}
		// The status follows the report within a pass (the end is
		// recorded after the report is sent, then published).
		var st []rollout.Status
		waitFor(t, 20*time.Second, "the rollout's status to show its end", func() (bool, string) {
			st = r.ctl.List()
			return len(st) > 0 && st[0].Phase == rollout.Healthy && !st[0].Finished.IsZero(), fmt.Sprintf("%+v", st)
		})
		if len(st) == 0 || st[0].CanaryVersion != "v2" || st[0].Phase != rollout.Healthy || st[0].Finished.IsZero() ||
			st[0].StableVersion != "v1" || st[0].Steps != 3 || st[0].Weight != 100 {
			t.Errorf("status = %+v", st)
		}
		if len(st) > 0 && (len(st[0].Analyses) != 1 || st[0].Analyses[0].Phase != rollout.Successful) {
			t.Errorf("analyses = %+v", st[0].Analyses)
		}
		if r.ctl.Stable("production", "web") != "v2" {
			t.Errorf("stable = %q", r.ctl.Stable("production", "web"))
		}
		if v := r.productionVersion(t); v != "v2" {
			t.Errorf("production manifest on %s, want v2", v)
		}
		t.Logf("weights seen: %v, paused seen: %v", weights, sawPaused)
		if !slices.Contains(weights, 50) {
			t.Errorf("weights seen %v, want 50 among them", weights)
		}
	})
	t.Run("unhealthy canary is aborted and reverted", func(t *testing.T) {
		r := newE2ERig(t, "argo-bad-", "0.9")
		r.deployFirst(t)
		r.ctl.SetDesired(r.desired(t, "v2"))
		got := r.waitReports(t, 2, 4*time.Minute)
		if got[1].Workflow != "wf-v2" || got[1].Success || !strings.HasPrefix(got[1].Message, "canary v2 aborted: metric error-ratio Failed: last value [0.9]") {
			t.Errorf("report = %+v", got[1])
		}
		if v := r.productionVersion(t); v != "v1" {
			t.Errorf("production manifest on %s, want v1 (reverted)", v)
		}
		data, err := r.repo.ReadFile(context.Background(), manifest.ProductionPath)
		if err != nil {
			t.Fatal(err)
		}
		m, err := manifest.Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		if m.Apps["web"].Deploy.Revision != "rev-v1" || !strings.HasPrefix(m.ChangeDescription, "rollback web to v1: v2 failed: metric error-ratio Failed") {
			t.Errorf("reverted manifest = %s", data)
		}
		var st []rollout.Status
		waitFor(t, 20*time.Second, "the rollout's status to show its end", func() (bool, string) {
			st = r.ctl.List()
			return len(st) > 0 && st[0].Phase == rollout.Degraded && !st[0].Finished.IsZero(), fmt.Sprintf("%+v", st)
		})
		if len(st) == 0 || st[0].CanaryVersion != "v2" || st[0].Phase != rollout.Degraded || st[0].Finished.IsZero() || st[0].Weight != 0 {
			t.Errorf("status = %+v", st)
		}
		if len(st) > 0 && (len(st[0].Analyses) == 0 || st[0].Analyses[len(st[0].Analyses)-1].Phase != rollout.Failed) {
			t.Errorf("analyses = %+v", st[0].Analyses)
		}
		// The environment controller hands over the reverted manifest's
		// version: the Rollout goes back on v1, with nothing to report.
		r.ctl.SetDesired(r.desired(t, "v1"))
		waitFor(t, 2*time.Minute, "the rollout back on v1", func() (bool, string) {
			ro, err := r.ctl.dyn.Resource(rolloutGVR).Namespace(r.ns).Get(context.Background(), "web", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			o := observe(ro, nil, nil, nil)
			return o.version == "v1" && o.observed && o.phase == rollout.Healthy && o.fullyPromoted, r.describe(t)
		})
		time.Sleep(time.Second) // a stray report would come now
		if n := len(r.reports.all()); n != 2 {
			t.Errorf("reports = %+v, want 2", r.reports.all())
		}
	})
	t.Run("promote and abort by request", func(t *testing.T) {
		r := newE2ERig(t, "argo-cmd-", "0")
		r.deployFirst(t)
		d := r.desired(t, "v2")
		d.Artifact = e2eArtifactOf(t, "v2", e2ePausesSpec)
		r.ctl.SetDesired(d)
		paused := func(step int) func() (bool, string) {
			return func() (bool, string) {
				for _, s := range r.ctl.List() {
					if s.CanaryVersion == "v2" && s.Phase == rollout.Paused && s.Step == step {
						return true, ""
					}
				}
				return false, fmt.Sprintf("%+v %s", r.ctl.List(), r.describe(t))
			}
		}
		waitFor(t, 3*time.Minute, "the canary paused at its first pause", paused(1))
		if err := r.ctl.Retry("production", "web"); err == nil {
			t.Error("retry of a paused canary: no error")
		}
		if err := r.ctl.Promote("production", "web"); err != nil {
			t.Fatalf("promote: %v", err)
		}
		waitFor(t, 3*time.Minute, "the canary paused at its second pause", paused(3))
		if st := r.ctl.List(); st[0].Weight != 80 {
			t.Errorf("weight at the second pause = %d, want 80", st[0].Weight)
		}
		if err := r.ctl.AbortVersion("production", "web", "v2", "the operator says no"); err != nil {
			t.Fatalf("abort: %v", err)
		}
		got := r.waitReports(t, 2, 2*time.Minute)
		if want := (update{Workflow: "wf-v2", App: "web", Message: "canary v2 aborted: aborted by request: the operator says no"}); got[1] != want {
			t.Errorf("report = %+v, want %+v", got[1], want)
		}
		if v := r.productionVersion(t); v != "v1" {
			t.Errorf("production manifest on %s, want v1 (reverted)", v)
		}
		if err := r.ctl.Promote("production", "web"); err == nil {
			t.Error("promote of an aborted canary: no error")
		}
	})
}
