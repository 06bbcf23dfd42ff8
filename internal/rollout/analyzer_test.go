package rollout

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/build"
)

// memRuns keeps analysis run records in memory (the SQLite store has its
// own tests and imports packages that import this one).
type memRuns struct {
	mu   sync.Mutex
	runs map[string]analysis.RunRecord
}

func (m *memRuns) SaveAnalysisRun(_ context.Context, r analysis.RunRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.runs[r.Name] = r
	return nil
}

func (m *memRuns) GetAnalysisRun(_ context.Context, name string) (analysis.RunRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.runs[name]
	if !ok {
		return analysis.RunRecord{}, errors.New("not found")
	}
	return r, nil
}

// countingProvider answers every query with 1 and counts the queries. A
// fake: the PromQL providers are tested in analysis/promql and
// analysis/prometheus, and here only the count matters.
type countingProvider struct {
	mu sync.Mutex
	n  int
}

func (p *countingProvider) Query(context.Context, string, time.Time) ([]float64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	return []float64{1}, nil
}

func (p *countingProvider) queries() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

const rateTemplate = `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: rate}
spec:
  metrics:
    - name: ok
      interval: 10ms
      count: 3
      successCondition: result[0] >= 1
      provider: {prometheus: {query: "vector(1)"}}
`

func TestTemplateAnalyzerResumes(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rate.yaml"), []byte(rateTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	art := build.Artifact{App: app, Version: canaryVersion, Dir: dir, Spec: &appspec.Spec{AnalysisTemplates: []string{"rate.yaml"}}}
	started := time.Now().UTC().Add(-time.Minute)
	taken := func(n int) []analysis.Measurement {
		var ms []analysis.Measurement
		for range n {
			ms = append(ms, analysis.Measurement{Phase: analysis.PhaseSuccessful, Value: "[1]", StartedAt: started, FinishedAt: started})
		}
		return ms
	}
	tests := []struct {
		name        string
		stored      *analysis.RunRecord
		wantQueries int
		wantPhase   string
	}{
		{name: "no stored record: a fresh run", wantQueries: 3, wantPhase: Successful},
		{name: "running with two measurements: one more", stored: &analysis.RunRecord{
			Name: "r", Phase: analysis.PhaseRunning, StartedAt: started,
			Metrics: []analysis.MetricResult{{Name: "ok", Phase: analysis.PhaseRunning, Measurements: taken(2)}},
		}, wantQueries: 1, wantPhase: Successful},
		{name: "ended before the restart: its verdict", stored: &analysis.RunRecord{
			Name: "r", Phase: analysis.PhaseFailed, Reason: "error ratio 0.4", StartedAt: started,
		}, wantQueries: 0, wantPhase: Failed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runs := &memRuns{runs: map[string]analysis.RunRecord{}}
			if tt.stored != nil {
				runs.runs["r"] = *tt.stored
			}
			prov := &countingProvider{}
			a := &TemplateAnalyzer{Providers: func(string) (analysis.Provider, error) { return prov, nil }, Runs: runs}
			out, err := a.Analyze(t.Context(), AnalysisRequest{
				Name: "r", Templates: []appspec.TemplateRef{{TemplateName: "rate"}},
				Args: map[string]string{"app": app, "env": env, "version": canaryVersion}, Artifact: art, Resume: true,
			})
			if err != nil {
				t.Fatal(err)
			}
			if out.Phase != tt.wantPhase || prov.queries() != tt.wantQueries {
				t.Fatalf("outcome %+v after %d queries; want %s after %d", out, prov.queries(), tt.wantPhase, tt.wantQueries)
			}
			if tt.stored == nil || tt.stored.Phase != analysis.PhaseRunning {
				return
			}
			rec := runs.runs["r"]
			if len(rec.Metrics) != 1 || len(rec.Metrics[0].Measurements) != 3 || !rec.StartedAt.Equal(started) {
				t.Fatalf("record after resume: %+v; want the 2 stored measurements and 1 new, same start", rec)
			}
		})
	}
}

// historyRuns keeps every save of each run record.
type historyRuns struct {
	memRuns
	saves []analysis.RunRecord
}

func (h *historyRuns) SaveAnalysisRun(ctx context.Context, r analysis.RunRecord) error {
	h.mu.Lock()
	h.saves = append(h.saves, r)
	h.mu.Unlock()
	return h.memRuns.SaveAnalysisRun(ctx, r)
}

// The run's record says what each metric measures and how it is judged,
// with the run's arguments resolved, from before its first measurement:
// an analysis verdict is never shown without its query.
func TestTemplateAnalyzerRecordsQueries(t *testing.T) {
	dir := t.TempDir()
	tmpl := `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: rate}
spec:
  args: [{name: app}]
  metrics:
    - name: ok
      count: 1
      successCondition: result[0] >= 1
      failureCondition: result[0] < 0.5
      provider: {prometheus: {query: 'sum(up{app="{{args.app}}"})'}}
`
	if err := os.WriteFile(filepath.Join(dir, "rate.yaml"), []byte(tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	art := build.Artifact{App: app, Version: canaryVersion, Dir: dir, Spec: &appspec.Spec{AnalysisTemplates: []string{"rate.yaml"}}}
	runs := &historyRuns{memRuns: memRuns{runs: map[string]analysis.RunRecord{}}}
	prov := &countingProvider{}
	a := &TemplateAnalyzer{Providers: func(string) (analysis.Provider, error) { return prov, nil }, Runs: runs}
	if _, err := a.Analyze(t.Context(), AnalysisRequest{
		Name: "r", Templates: []appspec.TemplateRef{{TemplateName: "rate"}},
		Args: map[string]string{"app": app, "env": env, "version": canaryVersion}, Artifact: art,
	}); err != nil {
		t.Fatal(err)
	}
	wantQuery := `sum(up{app="` + app + `"})`
	runs.mu.Lock()
	defer runs.mu.Unlock()
	described := false
	for _, r := range runs.saves {
		for _, m := range r.Metrics {
			if len(m.Measurements) == 0 && m.Query == wantQuery {
				described = true
			}
		}
	}
	if !described {
		t.Errorf("no save showed the metric's query before its first measurement: %+v", runs.saves)
	}
	final := runs.runs["r"]
	if len(final.Metrics) != 1 {
		t.Fatalf("final record metrics %+v", final.Metrics)
	}
	m := final.Metrics[0]
	if m.Query != wantQuery || m.SuccessCondition != "result[0] >= 1" || m.FailureCondition != "result[0] < 0.5" || len(m.Measurements) != 1 {
		t.Fatalf("final metric %+v; want the resolved query, both conditions and one measurement", m)
	}
}
