package argorollouts

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	clienttesting "k8s.io/client-go/testing"
)

// The review's regressions, on the fake API.

// healthyV1 takes the world's web to v1, deployed and reported.
func (w *fakeWorld) healthyV1(t *testing.T) {
	t.Helper()
	w.ctl.SetDesired(w.desired(t, "v1"))
	w.waitRollout(t, "v1", func(o observation) bool { return o.version == "v1" })
	w.argo(t, map[string]any{"phase": "Healthy", "stableRS": "h1", "currentPodHash": "h1"}, "h1", "v1")
	w.waitReports(t, 1)
	w.waitRollout(t, "v1's end recorded", func(o observation) bool { return o.ended })
}

// failOnce makes the first patch of the Rollout's subresource (""
// for the object) whose body contains body fail.
func (w *fakeWorld) failOnce(subresource, body string) *atomic.Bool {
	var failed atomic.Bool
	w.dyn.PrependReactor("patch", "rollouts", func(a clienttesting.Action) (bool, kruntime.Object, error) {
		pa, ok := a.(clienttesting.PatchAction)
		if !ok || pa.GetSubresource() != subresource || !strings.Contains(string(pa.GetPatch()), body) {
			return false, nil, nil
		}
		if failed.CompareAndSwap(false, true) {
			return true, nil, errors.New("injected patch failure")
		}
		return false, nil, nil
	})
	return &failed
}

// A canary Argo promoted (stable = its ReplicaSet, still Progressing
// while the old pods go) is reported promoted, not superseded, when a
// newer version is handed over before it is Healthy (review 1).
func TestPromotedCanaryNotSuperseded(t *testing.T) {
	w := newFakeWorld(t)
	w.healthyV1(t)
	w.ctl.SetDesired(w.desired(t, "v2"))
	w.waitRollout(t, "v2", func(o observation) bool { return o.version == "v2" })
	w.argo(t, map[string]any{"phase": "Progressing", "stableRS": "h2", "currentPodHash": "h2", "currentStepIndex": int64(5),
		"message": "more replicas need to be updated"}, "h2", "v2")
	w.ctl.SetDesired(w.desired(t, "v3"))
	o := w.waitRollout(t, "v3", func(o observation) bool { return o.version == "v3" })
	got := w.reports.all()
	if want := (update{Workflow: "wf-v2", App: "web", Success: true, Message: "web v2 promoted after 5 steps"}); len(got) != 2 || got[1] != want {
		t.Errorf("reports = %+v, want the second %+v", got, want)
	}
	if o.stableAtStart != "v2" || o.stableEntry == nil || o.stableEntry.Version() != "v2" {
		t.Errorf("v3's rollout = %+v, want it over v2", o)
	}
}

// AnalysisTemplates are the app's own in the shared namespace: named
// <app>-<name>, referred to so, another app's never taken over nor
// deleted (review 2).
func TestTemplatesPerApp(t *testing.T) {
	w := newFakeWorld(t)
	ctx := context.Background()
	templates := w.dyn.Resource(analysisTemplateGVR).Namespace("runway-production")
	other := func(name string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"metrics": []any{}}}}
		u.SetAPIVersion(apiVersion)
		u.SetKind("AnalysisTemplate")
		u.SetNamespace("runway-production")
		u.SetName(name)
		u.SetLabels(objectLabels("production", "api"))
		return u
	}
	// api's own template of the same file name.
	if _, err := templates.Create(ctx, other("api-error-ratio"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.healthyV1(t)
	ro := w.rollout(t)
	for _, st := range slice(ro.Object, "spec", "strategy", "canary", "steps") {
		if a, ok := st.(map[string]any)["analysis"]; ok {
			if n := str(slice(a.(map[string]any), "templates")[0].(map[string]any), "templateName"); n != "web-error-ratio" {
				t.Errorf("step's templateName = %q", n)
			}
		}
	}
	if n := str(slice(ro.Object, "spec", "strategy", "canary", "analysis", "templates")[0].(map[string]any), "templateName"); n != "web-error-ratio" {
		t.Errorf("background templateName = %q", n)
	}
	if _, err := templates.Get(ctx, "web-error-ratio", metav1.GetOptions{}); err != nil {
		t.Errorf("web's template: %v", err)
	}
	w.ctl.Forget("production", "web")
	waitFor(t, 10*time.Second, "the rollout deleted", func() (bool, string) { return w.rollout(t) == nil, "" })
	// (client-go's fake does not delete collections: the selector is
	// what is checked.)
	waitFor(t, 10*time.Second, "web's templates deleted by web's labels", func() (bool, string) {
		for _, a := range w.dyn.Actions() {
			if dc, ok := a.(clienttesting.DeleteCollectionAction); ok && a.GetResource() == analysisTemplateGVR {
				sel := dc.GetListRestrictions().Labels
				return sel.String() != "" && sel.Matches(labelSet(objectLabels("production", "web"))) &&
					!sel.Matches(labelSet(objectLabels("production", "api"))), sel.String()
			}
		}
		return false, "no delete-collection"
	})
	if cur, err := templates.Get(ctx, "api-error-ratio", metav1.GetOptions{}); err != nil || cur.GetLabels()[LabelApp] != "api" {
		t.Errorf("api's template after web's forget: %v %v", err, cur)
	}

	// A template of web's name that is api's is not taken over.
	w2 := newFakeWorld(t)
	if _, err := w2.dyn.Resource(analysisTemplateGVR).Namespace("runway-production").Create(ctx, other("web-error-ratio"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := &pass{c: w2.ctl, env: "production", app: "web", ns: "runway-production"}
	want, err := renderTemplates(w2.desired(t, "v1").Artifact, "production", "runway-production", "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.put(ctx, want[0], analysisTemplateGVR, func(cur, want *unstructured.Unstructured) { cur.Object["spec"] = want.Object["spec"] })
	if err == nil || !strings.Contains(err.Error(), `"api"`) {
		t.Errorf("put over api's template: %v", err)
	}
	if cur, _ := w2.dyn.Resource(analysisTemplateGVR).Namespace("runway-production").Get(ctx, "web-error-ratio", metav1.GetOptions{}); cur.GetLabels()[LabelApp] != "api" {
		t.Errorf("api's template taken over: %v", cur.GetLabels())
	}
}

func TestTemplateName(t *testing.T) {
	if n := templateName("web", "error-ratio"); n != "web-error-ratio" {
		t.Errorf("templateName = %q", n)
	}
	long := strings.Repeat("a", 250)
	n, m := templateName("web", long), templateName("api", long)
	if len(n) > maxName || n == m || !strings.HasPrefix(n, "web-aaa") {
		t.Errorf("long names %q (%d), %q", n, len(n), m)
	}
	if templateName("web", long) != n {
		t.Error("templateName is not stable")
	}
}

// A first deploy past its progress deadline (Argo: Degraded,
// ProgressDeadlineExceeded) is reported failed (review 3).
func TestFirstDeployDeadline(t *testing.T) {
	w := newFakeWorld(t)
	w.ctl.SetDesired(w.desired(t, "v1"))
	w.waitRollout(t, "v1", func(o observation) bool { return o.version == "v1" })
	w.argo(t, map[string]any{"phase": "Degraded", "stableRS": "h1", "currentPodHash": "h1",
		"message": `ProgressDeadlineExceeded: ReplicaSet "web-h1" has timed out progressing.`}, "h1", "v1")
	got := w.waitReports(t, 1)
	if got[0].Workflow != "wf-v1" || got[0].Success || !strings.HasPrefix(got[0].Message, "web v1 failed: ProgressDeadlineExceeded") {
		t.Errorf("report = %+v", got[0])
	}
	w.waitRollout(t, "v1's end recorded", func(o observation) bool { return o.ended && o.end.Outcome == outcomeAborted })
	if n := w.committed.Load(); n != 0 {
		t.Errorf("committed %d times: a first deploy has nothing to revert", n)
	}
}

// AbortVersion aborts a first deploy too (review 3).
func TestAbortFirstDeploy(t *testing.T) {
	w := newFakeWorld(t)
	w.ctl.SetDesired(w.desired(t, "v1"))
	w.waitRollout(t, "v1", func(o observation) bool { return o.version == "v1" })
	w.argo(t, map[string]any{"phase": "Progressing", "stableRS": "h1", "currentPodHash": "h1"}, "h1", "v1")
	if err := w.ctl.AbortVersion("production", "web", "v1", "pipeline failed"); err != nil {
		t.Fatalf("abort of a first deploy: %v", err)
	}
	got := w.waitReports(t, 1)
	if got[0].Success || got[0].Message != "web v1 failed: aborted by request: pipeline failed" {
		t.Errorf("report = %+v", got[0])
	}
}

// An aborted canary pushed again whose retry patch fails is retried, not
// taken for an abort to revert and report again (review 4).
func TestRetryChangeStatusFirst(t *testing.T) {
	w := newFakeWorld(t)
	w.healthyV1(t)
	w.ctl.SetDesired(w.desired(t, "v2"))
	w.waitRollout(t, "v2", func(o observation) bool { return o.version == "v2" })
	w.argo(t, map[string]any{"phase": "Degraded", "abort": true, "stableRS": "h1", "currentPodHash": "h2", "currentStepIndex": int64(2),
		"message": "RolloutAborted: Rollout aborted update to revision 2"}, "h2", "v2")
	w.waitReports(t, 2)
	w.waitRollout(t, "v2's end recorded", func(o observation) bool { return o.ended && o.end.Outcome == outcomeAborted })

	failed := w.failOnce("status", `"abort":false`)
	d := w.desired(t, "v2")
	d.Workflow = "wf-v2-again"
	w.ctl.SetDesired(d)
	w.waitRollout(t, "the retry", func(o observation) bool { return o.workflow == "wf-v2-again" && !o.ended })
	if !failed.Load() {
		t.Error("the retry's status patch was not failed")
	}
	if boolean(w.rollout(t).Object, "status", "abort") {
		t.Error("status.abort still set after the retry")
	}
	time.Sleep(500 * time.Millisecond) // a stray report would come now
	if got := w.reports.all(); len(got) != 2 {
		t.Errorf("reports = %+v, want 2", got)
	}
}

// Promote passes the step only on an inconclusive step analysis, not on
// a background one (review 5).
func TestPromoteInconclusive(t *testing.T) {
	w := newFakeWorld(t)
	w.healthyV1(t)
	w.ctl.SetDesired(w.desired(t, "v2"))
	w.waitRollout(t, "v2", func(o observation) bool { return o.version == "v2" })
	inconclusive := func(step int64, canary map[string]any) {
		status := map[string]any{"phase": "Paused", "stableRS": "h1", "currentPodHash": "h2", "currentStepIndex": step, "controllerPause": true,
			"pauseConditions": []any{map[string]any{"reason": "InconclusiveAnalysisRun"}}}
		if canary != nil {
			status["canary"] = canary
		}
		w.argo(t, status, "h2", "v2")
	}
	inconclusive(3, nil) // the background analysis
	if err := w.ctl.Promote("production", "web"); err != nil {
		t.Fatal(err)
	}
	if n, _ := integer(w.rollout(t).Object, "status", "currentStepIndex"); n != 3 {
		t.Errorf("step after promoting a background pause = %d, want 3", n)
	}
	inconclusive(2, map[string]any{"currentStepAnalysisRunStatus": map[string]any{"name": "run", "status": "Inconclusive"}})
	if err := w.ctl.Promote("production", "web"); err != nil {
		t.Fatal(err)
	}
	if n, _ := integer(w.rollout(t).Object, "status", "currentStepIndex"); n != 3 {
		t.Errorf("step after promoting an inconclusive step = %d, want 3", n)
	}
}

// A person's edit of the running version's entry is recorded, and the
// next canary starts over it (review 6).
func TestEntryEditRecorded(t *testing.T) {
	w := newFakeWorld(t)
	w.healthyV1(t)
	d := w.desired(t, "v1")
	d.Entry = entry(t, "v1") // deploy.revision r-v1, not rev-v1
	w.ctl.SetDesired(d)
	w.waitRollout(t, "the edited entry", func(o observation) bool { return o.entry != nil && o.entry.Deploy.Revision == "r-v1" })
	w.ctl.SetDesired(w.desired(t, "v2"))
	o := w.waitRollout(t, "v2", func(o observation) bool { return o.version == "v2" })
	if o.stableEntry == nil || o.stableEntry.Deploy.Revision != "r-v1" {
		t.Errorf("v2's stable entry = %+v, want the edited one", o.stableEntry)
	}
	if len(w.reports.all()) != 1 {
		t.Errorf("reports = %+v", w.reports.all())
	}
}

// A failed abort leaves no reason behind (review 8).
func TestAbortStatusFails(t *testing.T) {
	w := newFakeWorld(t)
	w.healthyV1(t)
	w.ctl.SetDesired(w.desired(t, "v2"))
	w.waitRollout(t, "v2", func(o observation) bool { return o.version == "v2" })
	w.argo(t, map[string]any{"phase": "Progressing", "stableRS": "h1", "currentPodHash": "h2", "currentStepIndex": int64(0)}, "h2", "v2")
	w.failOnce("status", `"abort":true`)
	if err := w.ctl.Abort("production", "web", "broken"); err == nil {
		t.Fatal("abort with its status patch failing succeeded")
	}
	ro := w.rollout(t)
	if r := annotation(ro, annAbortReason); r != "" || boolean(ro.Object, "status", "abort") {
		t.Errorf("after a failed abort: reason %q, status %v", r, ro.Object["status"])
	}
}

// A canary whose spec Argo has not seen yet is at step 0, weight 0, not
// the previous template's end (review 9).
func TestObserveUnobservedCanary(t *testing.T) {
	ro := &unstructured.Unstructured{Object: map[string]any{
		"spec": map[string]any{"strategy": map[string]any{"canary": map[string]any{"steps": []any{
			map[string]any{"setWeight": int64(20)}, map[string]any{"pause": map[string]any{}}}}}},
		"status": map[string]any{"observedGeneration": "1", "stableRS": "h1", "currentPodHash": "h1", "currentStepIndex": int64(2)},
	}}
	ro.SetGeneration(2)
	ro.SetAnnotations(map[string]string{annVersion: "v2", annStableVersion: "v1"})
	s, ok := observe(ro, nil, nil, nil).status("production", "web", time.Now())
	if !ok || s.Step != 0 || s.Weight != 0 || s.Steps != 2 {
		t.Errorf("status = %+v", s)
	}
}

// The analysis runs are listed by Runway's labels (review 10).
func TestRunsListedByLabels(t *testing.T) {
	w := newFakeWorld(t)
	w.healthyV1(t)
	for _, a := range w.dyn.Actions() {
		if l, ok := a.(clienttesting.ListAction); ok && a.GetResource() == analysisRunGVR {
			if sel := l.GetListRestrictions().Labels.String(); !strings.Contains(sel, LabelApp) {
				t.Errorf("analysis runs listed with selector %q", sel)
			}
		}
	}
}

func labelSet(m map[string]string) labels.Set { return labels.Set(m) }
