package argorollouts

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/runtime"
)

// fakeTemplates stands in for the Kubernetes runtime: a pod template of
// the replica set's version, no image built.
type fakeTemplates struct{ vars atomic.Int32 }

func (*fakeTemplates) PodTemplate(_ context.Context, rs runtime.ReplicaSet) (corev1.PodTemplateSpec, error) {
	pod := testPod()
	pod.Labels = map[string]string{LabelVersion: rs.Version}
	pod.Spec.Containers[0].Image = "registry.test/web:" + rs.Version
	return pod, nil
}

func (f *fakeTemplates) EnsureVars(context.Context, runtime.ReplicaSet, ...metav1.OwnerReference) error {
	f.vars.Add(1)
	return nil
}

func (*fakeTemplates) Namespace(env string) string { return "runway-" + env }

// fakeWorld is the API server as client-go's fakes keep it, with Argo
// Rollouts played by the test (it writes the Rollout's status), a real
// state repository and a recording reporter.
type fakeWorld struct {
	dyn       *dynamicfake.FakeDynamicClient
	kube      *kubefake.Clientset
	repo      *gitops.Repo
	reports   *fakeReporter
	committed atomic.Int32
	ctl       *Controller
	stop      func()
	// synced starts controllers in Synced mode (Argo CD writes the
	// Rollouts: the test plays it too).
	synced bool
}

func newFakeWorld(t *testing.T) *fakeWorld { return newWorld(t, false) }

// newSyncedWorld is a fake world whose controller runs in Synced mode.
func newSyncedWorld(t *testing.T) *fakeWorld { return newWorld(t, true) }

func newWorld(t *testing.T, synced bool) *fakeWorld {
	t.Helper()
	ctx := t.Context()
	scheme := kruntime.NewScheme()
	lists := map[schema.GroupVersionResource]string{
		rolloutGVR: "RolloutList", analysisTemplateGVR: "AnalysisTemplateList",
		analysisRunGVR: "AnalysisRunList", replicaSetGVR: "ReplicaSetList",
	}
	w := &fakeWorld{dyn: dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, lists), kube: kubefake.NewSimpleClientset(), reports: &fakeReporter{}, synced: synced}
	bare := filepath.Join(t.TempDir(), "state.git")
	if err := gitops.InitBare(bare, "main"); err != nil {
		t.Fatal(err)
	}
	files := fstest.MapFS{manifest.ProductionPath: {Data: []byte(productionJSON("v2"))}}
	if _, err := gitops.CommitDir(ctx, bare, "main", files, "promote v2"); err != nil {
		t.Fatal(err)
	}
	repo, err := gitops.Open(ctx, bare, filepath.Join(t.TempDir(), "clone"), "main", slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	w.repo = repo
	w.start(t)
	return w
}

// start runs a controller over the world (a restart when one ran).
func (w *fakeWorld) start(t *testing.T) {
	t.Helper()
	if w.stop != nil {
		w.stop()
	}
	ctl, err := newController(Options{
		Templates: &fakeTemplates{}, ReplicaSets: specReplicaSets{}, PrometheusAddress: "http://prometheus.test:9090",
		Repo: w.repo, Reporter: w.reports, Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
		Committed: func() { w.committed.Add(1) }, Synced: w.synced,
	}, w.dyn, w.kube)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- ctl.Run(ctx) }()
	stopped := false
	w.ctl = ctl
	w.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(w.stop)
}

func (w *fakeWorld) rollout(t *testing.T) *unstructured.Unstructured {
	t.Helper()
	ro, err := w.dyn.Resource(rolloutGVR).Namespace("runway-production").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return ro
}

// argo plays Argo Rollouts' controller: it writes status into the
// Rollout (merged over what is there) and makes the ReplicaSet of hash
// running version.
func (w *fakeWorld) argo(t *testing.T, status map[string]any, hash, version string) {
	t.Helper()
	ctx := context.Background()
	ro := w.rollout(t)
	if ro == nil {
		t.Fatal("no rollout")
	}
	status["observedGeneration"] = fmt.Sprint(ro.GetGeneration())
	ro.Object["status"] = status
	if _, err := w.dyn.Resource(rolloutGVR).Namespace("runway-production").Update(ctx, ro, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	rs := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "ReplicaSet",
		"metadata": map[string]any{
			"name": "web-" + hash, "namespace": "runway-production",
			"labels":          map[string]any{LabelManagedBy: ManagedBy, LabelEnv: "production", LabelApp: "web", LabelVersion: version, labelPodTemplateHash: hash},
			"ownerReferences": []any{map[string]any{"apiVersion": apiVersion, "kind": "Rollout", "name": "web", "uid": string(ro.GetUID())}},
		},
	}}
	if _, err := w.dyn.Resource(replicaSetGVR).Namespace("runway-production").Create(ctx, rs, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
}

func (w *fakeWorld) waitRollout(t *testing.T, what string, cond func(o observation) bool) observation {
	t.Helper()
	var o observation
	waitFor(t, 20*time.Second, what, func() (bool, string) {
		o = observe(w.rollout(t), nil, nil, nil)
		return cond(o), fmt.Sprintf("%+v", o)
	})
	return o
}

func (w *fakeWorld) desired(t *testing.T, version string) rollout.Desired {
	art := testArtifact(t, specYAML, templateYAML)
	art.Version = version
	return rollout.Desired{Env: "production", App: "web", Version: version, Entry: entryOf(t, version), Artifact: art, Workflow: "wf-" + version}
}

// TestControllerLifecycle takes web through a first deploy, a canary
// Argo aborts on a failed analysis, a restart and the way back to the
// stable version, with Argo played by the test: each end is reported
// exactly once, the revert is committed once, and a restart sends
// nothing again.
func TestControllerLifecycle(t *testing.T) {
	w := newFakeWorld(t)

	w.ctl.SetDesired(w.desired(t, "v1"))
	o := w.waitRollout(t, "the rollout of v1", func(o observation) bool { return o.version == "v1" })
	if o.stableAtStart != "" || o.workflow != "wf-v1" {
		t.Fatalf("first rollout = %+v", o)
	}
	if _, err := w.dyn.Resource(analysisTemplateGVR).Namespace("runway-production").Get(context.Background(), "web-error-ratio", metav1.GetOptions{}); err != nil {
		t.Errorf("analysis template: %v", err)
	}
	if _, err := w.kube.CoreV1().Services("runway-production").Get(context.Background(), "web", metav1.GetOptions{}); err != nil {
		t.Errorf("service: %v", err)
	}
	w.argo(t, map[string]any{"phase": "Healthy", "stableRS": "h1", "currentPodHash": "h1"}, "h1", "v1")
	got := w.waitReports(t, 1)
	if want := (update{Workflow: "wf-v1", App: "web", Success: true, Message: "web v1 is healthy"}); got[0] != want {
		t.Fatalf("report = %+v, want %+v", got[0], want)
	}
	w.waitRollout(t, "v1's end recorded", func(o observation) bool { return o.ended && o.end.Outcome == outcomePromoted })
	if s := w.ctl.Stable("production", "web"); s != "v1" {
		t.Errorf("stable = %q", s)
	}

	w.ctl.SetDesired(w.desired(t, "v2"))
	o = w.waitRollout(t, "the canary of v2", func(o observation) bool { return o.version == "v2" })
	if o.stableAtStart != "v1" || o.stableEntry == nil || o.stableEntry.Version() != "v1" || o.ended {
		t.Fatalf("canary rollout = %+v", o)
	}
	run := yamlObject(t, strings.Replace(failedRunYAML, "uid: ro-uid", "uid: "+string(w.rollout(t).GetUID()), 1))
	run.SetNamespace("runway-production")
	run.SetLabels(map[string]string{labelPodTemplateHash: "h2", LabelManagedBy: ManagedBy, LabelEnv: "production", LabelApp: "web", LabelVersion: "v2"})
	if _, err := w.dyn.Resource(analysisRunGVR).Namespace("runway-production").Create(context.Background(), run, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.argo(t, map[string]any{"phase": "Degraded", "abort": true, "stableRS": "h1", "currentPodHash": "h2", "currentStepIndex": int64(2),
		"message": "RolloutAborted: Rollout aborted update to revision 2"}, "h2", "v2")
	got = w.waitReports(t, 2)
	if got[1].Workflow != "wf-v2" || got[1].Success || !strings.HasPrefix(got[1].Message, "canary v2 aborted: metric errors Failed: last value [0.9]") {
		t.Errorf("report = %+v", got[1])
	}
	data, err := w.repo.ReadFile(context.Background(), manifest.ProductionPath)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := manifest.Parse(data); err != nil || m.Apps["web"].Version() != "v1" || !strings.Contains(m.ChangeDescription, "rollback web to v1") {
		t.Errorf("production manifest after the abort = %s (%v)", data, err)
	}
	w.waitRollout(t, "v2's end recorded", func(o observation) bool { return o.ended && o.end.Outcome == outcomeAborted && o.end.Reverted })
	if st := w.ctl.List(); len(st) != 1 || st[0].Phase != rollout.Degraded || st[0].Finished.IsZero() || st[0].CanaryVersion != "v2" {
		t.Errorf("list = %+v", st)
	}

	// A restart, with the environment controller still on v2 (it has not
	// read the revert yet): nothing is sent or written again.
	w.start(t)
	w.ctl.SetDesired(w.desired(t, "v2"))
	waitFor(t, 10*time.Second, "the restarted controller to know web", func() (bool, string) {
		_, known := w.ctl.Wanted("production", "web")
		return known, ""
	})
	// Then it hands over the reverted manifest's v1: the template goes
	// back on v1 with nothing to report.
	w.ctl.SetDesired(w.desired(t, "v1"))
	o = w.waitRollout(t, "the rollout back on v1", func(o observation) bool { return o.version == "v1" })
	if !o.ended || o.end.Outcome != outcomeStable {
		t.Errorf("rollout back on stable = %+v", o)
	}
	w.argo(t, map[string]any{"phase": "Healthy", "stableRS": "h1", "currentPodHash": "h1"}, "h1", "v1")
	time.Sleep(500 * time.Millisecond) // a stray report would come now
	if got := w.reports.all(); len(got) != 2 {
		t.Errorf("reports = %+v, want 2", got)
	}
	if n := w.committed.Load(); n != 1 {
		t.Errorf("committed %d times, want 1", n)
	}

	// The app leaves the manifest: everything Runway made goes.
	w.ctl.Forget("production", "web")
	waitFor(t, 10*time.Second, "the rollout deleted", func() (bool, string) { return w.rollout(t) == nil, "" })
	if _, err := w.kube.CoreV1().Services("runway-production").Get(context.Background(), "web", metav1.GetOptions{}); err == nil {
		t.Error("the service is still there")
	}
}

func (w *fakeWorld) waitReports(t *testing.T, n int) []update {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("%d reports", n), func() (bool, string) {
		return len(w.reports.all()) >= n, fmt.Sprintf("%+v", w.reports.all())
	})
	return w.reports.all()
}

// TestCommands checks the patches promote, full promote, abort and retry
// send, as Argo's kubectl plugin sends them, and what they refuse.
func TestCommands(t *testing.T) {
	w := newFakeWorld(t)
	w.ctl.SetDesired(w.desired(t, "v1"))
	w.waitRollout(t, "v1", func(o observation) bool { return o.version == "v1" })
	w.argo(t, map[string]any{"phase": "Healthy", "stableRS": "h1", "currentPodHash": "h1"}, "h1", "v1")
	w.waitReports(t, 1)
	if err := w.ctl.Promote("production", "web"); err == nil || !strings.Contains(err.Error(), rollout.ErrNoRollout.Error()) {
		t.Errorf("promote without a canary: %v", err)
	}
	w.ctl.SetDesired(w.desired(t, "v2"))
	w.waitRollout(t, "v2", func(o observation) bool { return o.version == "v2" })
	w.argo(t, map[string]any{"phase": "Progressing", "stableRS": "h1", "currentPodHash": "h2", "currentStepIndex": int64(0)}, "h2", "v2")
	if err := w.ctl.Promote("production", "web"); err == nil || !strings.Contains(err.Error(), rollout.ErrNotPaused.Error()) {
		t.Errorf("promote outside a pause: %v", err)
	}
	if err := w.ctl.Retry("production", "web"); err == nil || !strings.Contains(err.Error(), "not aborted") {
		t.Errorf("retry of a canary not aborted: %v", err)
	}
	w.argo(t, map[string]any{"phase": "Paused", "stableRS": "h1", "currentPodHash": "h2", "currentStepIndex": int64(1), "controllerPause": true,
		"pauseConditions": []any{map[string]any{"reason": "CanaryPauseStep"}}}, "h2", "v2")
	if err := w.ctl.Promote("production", "web"); err != nil {
		t.Fatalf("promote: %v", err)
	}
	if p := slice(w.rollout(t).Object, "status", "pauseConditions"); len(p) != 0 {
		t.Errorf("pause conditions after promote: %v", p)
	}
	if err := w.ctl.PromoteFull("production", "web"); err != nil {
		t.Fatalf("promote full: %v", err)
	}
	if !boolean(w.rollout(t).Object, "status", "promoteFull") {
		t.Error("status.promoteFull not set")
	}
	if err := w.ctl.AbortVersion("production", "web", "v3", "pipeline failed"); err == nil || !strings.Contains(err.Error(), "v3") {
		t.Errorf("abort of another version: %v", err)
	}
	if err := w.ctl.AbortVersion("production", "web", "v2", "pipeline\nfailed"); err != nil {
		t.Fatalf("abort: %v", err)
	}
	ro := w.rollout(t)
	if !boolean(ro.Object, "status", "abort") || annotation(ro, annAbortReason) != "aborted by request: pipeline failed" {
		t.Errorf("after abort: status %v, reason %q", ro.Object["status"], annotation(ro, annAbortReason))
	}
	got := w.waitReports(t, 2)
	if got[1].Success || got[1].Message != "canary v2 aborted: aborted by request: pipeline failed" {
		t.Errorf("report = %+v", got[1])
	}
	if err := w.ctl.Retry("production", "web"); err == nil || !strings.Contains(err.Error(), rollout.ErrNoRollout.Error()) {
		t.Errorf("retry after the revert: %v", err)
	}
}

// TestSupersede hands over v3 while v2's canary runs: v2's workflow is
// told it was superseded, git is left alone, and the Rollout takes v3's
// template over the same stable version.
func TestSupersede(t *testing.T) {
	w := newFakeWorld(t)
	w.ctl.SetDesired(w.desired(t, "v1"))
	w.waitRollout(t, "v1", func(o observation) bool { return o.version == "v1" })
	w.argo(t, map[string]any{"phase": "Healthy", "stableRS": "h1", "currentPodHash": "h1"}, "h1", "v1")
	w.waitReports(t, 1)
	w.ctl.SetDesired(w.desired(t, "v2"))
	w.waitRollout(t, "v2", func(o observation) bool { return o.version == "v2" })
	w.argo(t, map[string]any{"phase": "Paused", "stableRS": "h1", "currentPodHash": "h2", "currentStepIndex": int64(1),
		"pauseConditions": []any{map[string]any{"reason": "CanaryPauseStep"}}}, "h2", "v2")
	w.ctl.SetDesired(w.desired(t, "v3"))
	o := w.waitRollout(t, "v3", func(o observation) bool { return o.version == "v3" })
	if o.stableAtStart != "v1" || o.stableEntry == nil || o.stableEntry.Version() != "v1" || o.workflow != "wf-v3" {
		t.Errorf("rollout of v3 = %+v", o)
	}
	got := w.reports.all()
	if want := (update{Workflow: "wf-v2", App: "web", Superseded: true, Message: "superseded: web v3 now rolls out over v1"}); len(got) != 2 || got[1] != want {
		t.Errorf("reports = %+v, want the second %+v", got, want)
	}
	if w.committed.Load() != 0 {
		t.Error("a superseded canary was reverted in git")
	}
	var v2 *rollout.Status
	for _, s := range w.ctl.List() {
		if s.CanaryVersion == "v2" {
			v2 = &s
		}
	}
	if v2 == nil || v2.Phase != rollout.Degraded || v2.Finished.IsZero() {
		t.Errorf("v2's status = %+v", v2)
	}
}
