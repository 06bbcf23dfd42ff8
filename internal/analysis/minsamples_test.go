package analysis

import (
	"context"
	"strings"
	"testing"
	"time"
)

// queryTable is a hand-written provider answering by query: the samples
// query and the metric's query get different values.
type queryTable map[string][]float64

func (q queryTable) Query(_ context.Context, query string, _ time.Time) ([]float64, error) {
	for prefix, v := range q {
		if strings.HasPrefix(query, prefix) {
			if v == nil {
				return nil, ErrNoData
			}
			return v, nil
		}
	}
	return nil, ErrNoData
}

const minSamplesDoc = `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: rate
  annotations:
    runway.io/min-samples: "%s"
spec:
  args: [{name: env}, {name: app}, {name: version}]
  metrics:
    - name: error-ratio
      successCondition: result[0] <= 0.2
      provider:
        prometheus:
          query: errors{version="{{args.version}}"}
`

func TestMinSamples(t *testing.T) {
	args := map[string]string{"env": "production", "app": "web", "version": "v2"}
	tests := []struct {
		name      string
		min       string
		provider  queryTable
		wantPhase Phase
		wantIn    string
	}{
		{"enough samples: judged", "20", queryTable{"sum(increase": {25}, "errors": {0.5}}, PhaseFailed, ""},
		{"too few samples: inconclusive, not failed", "20", queryTable{"sum(increase": {3}, "errors": {0.5}}, PhaseInconclusive, "only 3 samples"},
		{"no samples at all", "20", queryTable{"sum(increase": nil, "errors": {0.5}}, PhaseInconclusive, "no samples yet"},
		{"healthy with enough samples", "1", queryTable{"sum(increase": {1}, "errors": {0.1}}, PhaseSuccessful, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tpl, err := ParseTemplate([]byte(strings.Replace(minSamplesDoc, "%s", tt.min, 1)))
			if err != nil {
				t.Fatal(err)
			}
			run, err := NewRun("r", []*Template{tpl}, args)
			if err != nil {
				t.Fatal(err)
			}
			if q := run.Metrics[0].SamplesQuery; !strings.Contains(q, `version="v2"`) || !strings.Contains(q, `env="production"`) {
				t.Fatalf("samples query not substituted: %s", q)
			}
			res, err := run.Execute(context.Background(), func(string) (Provider, error) { return tt.provider, nil }, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Phase != tt.wantPhase || !strings.Contains(res.Reason, tt.wantIn) {
				t.Fatalf("result %s %q, want %s containing %q", res.Phase, res.Reason, tt.wantPhase, tt.wantIn)
			}
		})
	}
}

func TestMinSamplesAnnotationErrors(t *testing.T) {
	for _, bad := range []string{"0", "-3", "many", ""} {
		if _, err := ParseTemplate([]byte(strings.Replace(minSamplesDoc, "%s", bad, 1))); err == nil || !strings.Contains(err.Error(), AnnotationMinSamples) {
			t.Errorf("min-samples %q: err = %v, want one naming the annotation", bad, err)
		}
	}
}
