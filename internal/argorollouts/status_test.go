package argorollouts

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/runway-cd/runway/internal/rollout"
)

// rolloutYAML is web's Rollout of v2 over v1, its status to be appended.
const rolloutYAML = `
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
  namespace: runway-production
  uid: ro-uid
  generation: 2
  labels: {app.kubernetes.io/managed-by: runway, runway.dev/env: production, runway.dev/app: web}
  annotations:
    runway.dev/version: v2
    runway.dev/workflow: wf-2
    runway.dev/stable-version: v1
    runway.dev/started: "2026-12-01T12:00:00Z"
spec:
  strategy:
    canary:
      steps:
      - setWeight: 20
      - pause: {}
      - analysis: {templates: [{templateName: error-ratio}]}
      - setWeight: 50
`

func rs(t *testing.T, hash, version string) *unstructured.Unstructured {
	return yamlObject(t, `
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-`+hash+`
  labels: {rollouts-pod-template-hash: `+hash+`, runway.dev/version: `+version+`}
  ownerReferences: [{kind: Rollout, name: web, uid: ro-uid, apiVersion: argoproj.io/v1alpha1}]
spec:
  template:
    metadata:
      labels: {runway.dev/version: `+version+`}
`)
}

const failedRunYAML = `
apiVersion: argoproj.io/v1alpha1
kind: AnalysisRun
metadata:
  name: web-bbb-2-2
  creationTimestamp: "2026-12-01T12:01:00Z"
  labels: {rollouts-pod-template-hash: bbb}
  ownerReferences: [{kind: Rollout, name: web, uid: ro-uid, apiVersion: argoproj.io/v1alpha1}]
status:
  phase: Failed
  message: 'Metric "errors" assessed Failed due to failed (1) > failureLimit (0)'
  metricResults:
  - name: errors
    phase: Failed
    count: 1
    failed: 1
    measurements:
    - phase: Failed
      value: '[0.9]'
`

const otherRunYAML = `
apiVersion: argoproj.io/v1alpha1
kind: AnalysisRun
metadata:
  name: web-aaa-1-2
  labels: {rollouts-pod-template-hash: aaa}
  ownerReferences: [{kind: Rollout, name: web, uid: ro-uid, apiVersion: argoproj.io/v1alpha1}]
status: {phase: Successful}
`

func TestObserve(t *testing.T) {
	now := time.Date(2026, 12, 1, 13, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		status string // appended to rolloutYAML
		annot  map[string]string
		runs   []string
		assert func(t *testing.T, o observation, s rollout.Status, ok bool)
	}{
		{
			name: "paused at the indefinite pause",
			status: `
status:
  observedGeneration: "2"
  phase: Paused
  message: CanaryPauseStep
  currentStepIndex: 1
  stableRS: aaa
  currentPodHash: bbb
  controllerPause: true
  pauseConditions: [{reason: CanaryPauseStep, startTime: "2026-12-01T12:00:05Z"}]
`,
			assert: func(t *testing.T, o observation, s rollout.Status, ok bool) {
				if !ok || s.Phase != rollout.Paused || s.Step != 1 || s.Steps != 4 || s.Weight != 20 ||
					s.StableVersion != "v1" || s.CanaryVersion != "v2" || !s.Finished.IsZero() {
					t.Errorf("status = %+v", s)
				}
				if !o.paused || o.aborted || o.promoted || o.stableVersion != "v1" {
					t.Errorf("observation = %+v", o)
				}
			},
		},
		{
			name: "spec not observed yet: nothing judged",
			status: `
status:
  observedGeneration: "1"
  phase: Healthy
  abort: true
  stableRS: aaa
  currentPodHash: aaa
`,
			assert: func(t *testing.T, o observation, s rollout.Status, ok bool) {
				if o.aborted || o.promoted || o.phase != rollout.Progressing {
					t.Errorf("observation = %+v", o)
				}
			},
		},
		{
			name:   "status still of the old template: nothing judged",
			status: "\nstatus: {observedGeneration: \"2\", phase: Healthy, stableRS: aaa, currentPodHash: aaa}\n",
			assert: func(t *testing.T, o observation, s rollout.Status, ok bool) {
				if o.promoted || o.observed || s.Phase != rollout.Progressing || o.stableVersion != "v1" {
					t.Errorf("observation = %+v", o)
				}
			},
		},
		{
			name: "aborted by a failed analysis",
			status: `
status:
  observedGeneration: "2"
  phase: Degraded
  message: 'RolloutAborted: Rollout aborted update to revision 2: Metric "errors" assessed Failed due to failed (1) > failureLimit (0)'
  abort: true
  currentStepIndex: 2
  stableRS: aaa
  currentPodHash: bbb
`,
			runs: []string{failedRunYAML, otherRunYAML},
			assert: func(t *testing.T, o observation, s rollout.Status, ok bool) {
				if !o.aborted || s.Weight != 0 || s.Phase != rollout.Degraded {
					t.Errorf("status = %+v", s)
				}
				if len(s.Analyses) != 1 || s.Analyses[0].Name != "web-bbb-2-2" || s.Analyses[0].Phase != rollout.Failed ||
					!strings.Contains(s.Analyses[0].Reason, "last value [0.9]") {
					t.Errorf("analyses = %+v", s.Analyses)
				}
				if !strings.HasPrefix(o.failure, "metric errors Failed: last value [0.9], 1 of 1 measurements failed") {
					t.Errorf("failure = %q", o.failure)
				}
			},
		},
		{
			name: "promoted",
			status: `
status:
  observedGeneration: "2"
  phase: Healthy
  currentStepIndex: 4
  stableRS: bbb
  currentPodHash: bbb
`,
			assert: func(t *testing.T, o observation, s rollout.Status, ok bool) {
				if !o.promoted || o.stableVersion != "v2" || s.Weight != 100 || s.Step != 4 || s.Phase != rollout.Healthy {
					t.Errorf("observation = %+v, status = %+v", o, s)
				}
				if !s.Finished.IsZero() {
					t.Errorf("finished before Runway recorded the end: %+v", s)
				}
			},
		},
		{
			name: "promoted and recorded: finished",
			status: `
status: {observedGeneration: "2", phase: Healthy, currentStepIndex: 4, stableRS: bbb, currentPodHash: bbb}
`,
			annot: map[string]string{annEnd: `{"version":"v2","outcome":"Promoted","reported":true,"message":"web v2 promoted after 4 steps","finished":"2026-12-01T12:05:00Z"}`},
			assert: func(t *testing.T, o observation, s rollout.Status, ok bool) {
				if !o.ended || s.Finished.IsZero() || s.Message != "web v2 promoted after 4 steps" || s.Phase != rollout.Healthy {
					t.Errorf("status = %+v", s)
				}
			},
		},
		{
			name: "an end of an older version does not end this one",
			status: `
status: {observedGeneration: "2", phase: Progressing, currentStepIndex: 0, stableRS: aaa, currentPodHash: bbb}
`,
			annot: map[string]string{annEnd: `{"version":"v1","outcome":"Promoted","reported":true}`},
			assert: func(t *testing.T, o observation, s rollout.Status, ok bool) {
				if o.ended || !s.Finished.IsZero() || s.Weight != 20 {
					t.Errorf("observation = %+v", o)
				}
			},
		},
		{
			name:   "traffic router weights win",
			status: "\nstatus: {observedGeneration: \"2\", phase: Progressing, currentStepIndex: 3, stableRS: aaa, currentPodHash: bbb, canary: {weights: {canary: {weight: 33}}}}\n",
			assert: func(t *testing.T, o observation, s rollout.Status, ok bool) {
				if s.Weight != 33 {
					t.Errorf("weight = %d", s.Weight)
				}
			},
		},
		{
			name:   "unpausing",
			status: "\nstatus: {observedGeneration: \"2\", phase: Paused, controllerPause: true, currentStepIndex: 1, stableRS: aaa, currentPodHash: bbb}\n",
			assert: func(t *testing.T, o observation, s rollout.Status, ok bool) {
				if s.Phase != rollout.Progressing || o.paused {
					t.Errorf("status = %+v", s)
				}
			},
		},
		{
			name:   "first version: not a canary",
			status: "\nstatus: {observedGeneration: \"2\", phase: Healthy, stableRS: bbb, currentPodHash: bbb}\n",
			annot:  map[string]string{annStableVersion: ""},
			assert: func(t *testing.T, o observation, s rollout.Status, ok bool) {
				if ok || !o.promoted || o.stableVersion != "v2" {
					t.Errorf("ok = %v, observation = %+v", ok, o)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ro := yamlObject(t, rolloutYAML+tt.status)
			a := ro.GetAnnotations()
			for k, v := range tt.annot {
				a[k] = v
			}
			ro.SetAnnotations(a)
			var runs []*unstructured.Unstructured
			for _, r := range tt.runs {
				runs = append(runs, yamlObject(t, r))
			}
			o := observe(ro, []*unstructured.Unstructured{rs(t, "aaa", "v1"), rs(t, "bbb", "v2")}, runs, nil)
			s, ok := o.status("production", "web", now)
			tt.assert(t, o, s, ok)
		})
	}
}

func TestObserveRedacts(t *testing.T) {
	run := strings.Replace(failedRunYAML, "value: '[0.9]'", "value: '[0.9]'\n      message: 'postgres://u:s3cret@db'", 1)
	ro := yamlObject(t, rolloutYAML+"\nstatus: {observedGeneration: \"2\", phase: Degraded, abort: true, stableRS: aaa, currentPodHash: bbb}\n")
	o := observe(ro, nil, []*unstructured.Unstructured{yamlObject(t, run)}, func(s string) string {
		return strings.ReplaceAll(s, "s3cret", "***")
	})
	if strings.Contains(o.failure, "s3cret") || !strings.Contains(o.failure, "***") || strings.Contains(o.analyses[0].Reason, "s3cret") {
		t.Errorf("failure = %q, analyses = %+v", o.failure, o.analyses)
	}
}
