package argorollouts

import (
	"encoding/json"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/runtime/kubernetes"
)

// The Argo Rollouts resources the controller reads and writes, handled as
// unstructured objects (argoproj.io/v1alpha1).
var (
	rolloutGVR          = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}
	analysisTemplateGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "analysistemplates"}
	analysisRunGVR      = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "analysisruns"}
	replicaSetGVR       = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}
)

const apiVersion = "argoproj.io/v1alpha1"

// Labels on what Runway creates (the Kubernetes runtime's names).
const (
	LabelManagedBy = kubernetes.LabelManagedBy
	ManagedBy      = kubernetes.ManagedBy
	LabelEnv       = kubernetes.LabelEnv
	LabelApp       = kubernetes.LabelApp
	LabelVersion   = kubernetes.LabelVersion
)

// Argo Rollouts' label on every ReplicaSet (and pod, AnalysisRun) of a
// Rollout: the hash of its pod template.
const labelPodTemplateHash = "rollouts-pod-template-hash"

// The Rollout's annotations are the controller's durable record, as
// status.stableRS is Argo's: a restart reads them back and never
// reports an end twice.
const (
	// annVersion is the version of the Rollout's template, annWorkflow
	// the workflow its end is reported to, annEntry its manifest entry.
	annVersion  = "runway.dev/version"
	annWorkflow = "runway.dev/workflow"
	annEntry    = "runway.dev/entry"
	// annStableVersion and annStableEntry are the stable version when
	// the template was last changed and its manifest entry: what an
	// aborted canary's revert writes back.
	annStableVersion = "runway.dev/stable-version"
	annStableEntry   = "runway.dev/stable-entry"
	// annStarted is when the template got its version.
	annStarted = "runway.dev/started"
	// annEnd is the end of the template's version as Runway handled it
	// (an endRecord in JSON).
	annEnd = "runway.dev/end"
	// annAbortReason is why a person or a pipeline aborted the canary
	// (Argo's status.abort has no reason).
	annAbortReason = "runway.dev/abort-reason"
)

// AnnotationVersion and AnnotationWorkflow name the version of a
// Rollout's template and the workflow its end belongs to. A Rollout that
// another engine writes (Argo CD, from `runway export argocd`) carries
// them for Options.Synced to follow it.
const (
	AnnotationVersion  = annVersion
	AnnotationWorkflow = annWorkflow
)

// Outcomes of an endRecord.
const (
	outcomePromoted   = "Promoted"   // the version became stable and was reported
	outcomeAborted    = "Aborted"    // reverted in git (or back on stable by hand), failure reported
	outcomeSuperseded = "Superseded" // a newer version took its place; its workflow was told
	outcomeStable     = "Stable"     // the template went back to the stable version: nothing to report
)

// endRecord is how the Rollout's current version ended, as far as Runway
// is concerned. The steps of an abort are recorded one by one (Reverted,
// then Reported) so that a restart does each once.
type endRecord struct {
	Version  string    `json:"version"`
	Workflow string    `json:"workflow,omitempty"`
	Outcome  string    `json:"outcome"`
	Reverted bool      `json:"reverted,omitempty"`
	Reported bool      `json:"reported,omitempty"`
	Message  string    `json:"message,omitempty"`
	Finished time.Time `json:"finished,omitzero"`
}

// done reports whether nothing is left to do for the record's version.
func (e endRecord) done() bool { return e.Reported }

func annotation(u *unstructured.Unstructured, key string) string {
	if u == nil {
		return ""
	}
	return u.GetAnnotations()[key]
}

func readEnd(u *unstructured.Unstructured) (endRecord, bool) {
	s := annotation(u, annEnd)
	if s == "" {
		return endRecord{}, false
	}
	var e endRecord
	if err := json.Unmarshal([]byte(s), &e); err != nil {
		return endRecord{}, false
	}
	return e, true
}

func readEntry(u *unstructured.Unstructured, key string) *manifest.App {
	s := annotation(u, key)
	if s == "" {
		return nil
	}
	var a manifest.App
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		return nil
	}
	return &a
}

func encodeJSON(v any) (string, error) {
	if v == nil {
		return "", nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encoding an annotation: %w", err)
	}
	return string(b), nil
}

func str(obj map[string]any, fields ...string) string {
	s, _, _ := unstructured.NestedString(obj, fields...)
	return s
}

func boolean(obj map[string]any, fields ...string) bool {
	b, _, _ := unstructured.NestedBool(obj, fields...)
	return b
}

func integer(obj map[string]any, fields ...string) (int64, bool) {
	v, ok, _ := unstructured.NestedFieldNoCopy(obj, fields...)
	if !ok {
		return 0, false
	}
	switch n := v.(type) {
	case int64:
		return n, true
	case int32:
		return int64(n), true
	case int:
		return int64(n), true
	case float64:
		return int64(n), true
	}
	return 0, false
}

func slice(obj map[string]any, fields ...string) []any {
	s, _, _ := unstructured.NestedSlice(obj, fields...)
	return s
}
