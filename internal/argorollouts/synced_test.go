package argorollouts

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/runway-cd/runway/internal/manifest"
)

// argoCDSync plays Argo CD syncing the exported chart of web at version:
// the Rollout with the export's labels and annotations (its spec is not
// what this test is about), created or updated keeping what others wrote.
func (w *fakeWorld) argoCDSync(t *testing.T, version string) {
	t.Helper()
	ctx := context.Background()
	res := w.dyn.Resource(rolloutGVR).Namespace("runway-production")
	ro := w.rollout(t)
	create := ro == nil
	if create {
		ro = &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": apiVersion, "kind": "Rollout",
			"metadata": map[string]any{"name": "web", "namespace": "runway-production",
				"labels": map[string]any{LabelManagedBy: ManagedBy, LabelEnv: "production", LabelApp: "web"}},
			"spec": map[string]any{"replicas": int64(1)},
		}}
	}
	ann := ro.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AnnotationVersion], ann[AnnotationWorkflow] = version, "wf-"+version
	ro.SetAnnotations(ann)
	ro.SetGeneration(ro.GetGeneration() + 1)
	var err error
	if create {
		_, err = res.Create(ctx, ro, metav1.CreateOptions{})
	} else {
		_, err = res.Update(ctx, ro, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestSyncedRolloutsAreFollowed: in Synced mode the controller writes no
// Rollout and reports nothing (Argo CD's hooks do), records what an
// abort needs when a synced version appears, reverts the production
// manifest on Argo's abort, and leaves pruning to Argo CD.
func TestSyncedRolloutsAreFollowed(t *testing.T) {
	w := newSyncedWorld(t)

	w.ctl.SetDesired(w.desired(t, "v1"))
	time.Sleep(300 * time.Millisecond) // a Rollout written by the controller would appear now
	if w.rollout(t) != nil {
		t.Fatal("the controller created the Rollout; in Synced mode Argo CD does")
	}
	w.argoCDSync(t, "v1")
	w.argo(t, map[string]any{"phase": "Healthy", "stableRS": "h1", "currentPodHash": "h1"}, "h1", "v1")
	w.waitRollout(t, "v1 promoted", func(o observation) bool { return o.ended && o.end.Outcome == outcomePromoted })
	if s := w.ctl.Stable("production", "web"); s != "v1" {
		t.Errorf("stable = %q, want v1", s)
	}

	w.ctl.SetDesired(w.desired(t, "v2"))
	w.argoCDSync(t, "v2")
	o := w.waitRollout(t, "v2's start recorded", func(o observation) bool {
		return annotation(w.rollout(t), annFollowing) == "v2"
	})
	if o.stableAtStart != "v1" || o.stableEntry == nil || o.stableEntry.Version() != "v1" {
		t.Fatalf("the canary's record = stable %q entry %+v, want v1's", o.stableAtStart, o.stableEntry)
	}
	w.argo(t, map[string]any{"phase": "Degraded", "abort": true, "stableRS": "h1", "currentPodHash": "h2", "currentStepIndex": int64(1),
		"message": "RolloutAborted: Rollout aborted update to revision 2"}, "h2", "v2")
	w.waitRollout(t, "v2's abort finished", func(o observation) bool {
		return o.ended && o.end.Outcome == outcomeAborted && o.end.Reverted
	})
	data, err := w.repo.ReadFile(context.Background(), manifest.ProductionPath)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := manifest.Parse(data); err != nil || m.Apps["web"].Version() != "v1" || !strings.Contains(m.ChangeDescription, "rollback web to v1") {
		t.Errorf("production manifest after the abort = %s (%v), want web back on v1", data, err)
	}
	if got := w.reports.all(); len(got) != 0 {
		t.Errorf("the controller reported %+v; Argo CD's hooks report in Synced mode", got)
	}

	w.ctl.Forget("production", "web")
	time.Sleep(300 * time.Millisecond) // a deletion by the controller would happen now
	if w.rollout(t) == nil {
		t.Error("the controller deleted the Rollout; Argo CD prunes it")
	}
}
