package sqlite_test

import (
	"slices"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/reporter"
)

func TestAbandonAnalysisRuns(t *testing.T) {
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	now := start.Add(time.Hour)
	run := func(name, version string, phase analysis.Phase) analysis.RunRecord {
		return analysis.RunRecord{Name: name, Env: "production", App: "web", Version: version, Phase: phase, StartedAt: start}
	}
	tests := []struct {
		name      string
		runs      []analysis.RunRecord
		live      func(analysis.RunRecord) bool
		wantEnded []string
		// wantPhases by run name after the call.
		wantPhases map[string]analysis.Phase
	}{
		{
			name:       "running run of no live rollout ends in Error",
			runs:       []analysis.RunRecord{run("web-v2-1", "v2", analysis.PhaseRunning)},
			live:       func(analysis.RunRecord) bool { return false },
			wantEnded:  []string{"web-v2-1"},
			wantPhases: map[string]analysis.Phase{"web-v2-1": analysis.PhaseError},
		},
		{
			name:       "running run of a live rollout is kept",
			runs:       []analysis.RunRecord{run("web-v2-1", "v2", analysis.PhaseRunning), run("web-v1-1", "v1", analysis.PhaseRunning)},
			live:       func(r analysis.RunRecord) bool { return r.Version == "v2" },
			wantEnded:  []string{"web-v1-1"},
			wantPhases: map[string]analysis.Phase{"web-v2-1": analysis.PhaseRunning, "web-v1-1": analysis.PhaseError},
		},
		{
			name: "finished runs are never touched",
			runs: []analysis.RunRecord{run("ok", "v1", analysis.PhaseSuccessful), run("bad", "v1", analysis.PhaseFailed)},
			live: func(r analysis.RunRecord) bool {
				panic("live asked about finished run " + r.Name)
			},
			wantPhases: map[string]analysis.Phase{"ok": analysis.PhaseSuccessful, "bad": analysis.PhaseFailed},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, _ := open(t)
			ctx := t.Context()
			for _, r := range tt.runs {
				if err := db.SaveAnalysisRun(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			ended, err := db.AbandonAnalysisRuns(ctx, tt.live, "rollout no longer runs", now)
			if err != nil {
				t.Fatalf("AbandonAnalysisRuns: %v", err)
			}
			slices.Sort(ended)
			if !slices.Equal(ended, tt.wantEnded) {
				t.Errorf("ended %v, want %v", ended, tt.wantEnded)
			}
			for name, want := range tt.wantPhases {
				got, err := db.GetAnalysisRun(ctx, name)
				if err != nil {
					t.Fatal(err)
				}
				if got.Phase != want {
					t.Errorf("%s phase = %s, want %s", name, got.Phase, want)
				}
				if want == analysis.PhaseError && (got.Reason != "abandoned: rollout no longer runs" || !got.FinishedAt.Equal(now)) {
					t.Errorf("%s = reason %q finished %v", name, got.Reason, got.FinishedAt)
				}
			}
			list, err := db.ListAnalysisRuns(ctx, 10)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range list {
				if r.Phase != tt.wantPhases[r.Name] {
					t.Errorf("listed %s in phase %s", r.Name, r.Phase)
				}
			}
		})
	}
}

func TestAbandonAnalysisRunsKeepsARunSavedMeanwhile(t *testing.T) {
	db, _ := open(t)
	ctx := t.Context()
	rec := analysis.RunRecord{Name: "web-v2-1", Env: "production", App: "web", Version: "v2", Phase: analysis.PhaseRunning, StartedAt: time.Now().UTC()}
	if err := db.SaveAnalysisRun(ctx, rec); err != nil {
		t.Fatal(err)
	}
	live := func(r analysis.RunRecord) bool {
		// A resumed rollout saves a new measurement while GC decides.
		r.Metrics = []analysis.MetricResult{{Name: "success-rate"}}
		if err := db.SaveAnalysisRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		return false
	}
	ended, err := db.AbandonAnalysisRuns(ctx, live, "x", time.Now())
	if err != nil || len(ended) != 0 {
		t.Fatalf("AbandonAnalysisRuns = %v, %v; want nothing ended", ended, err)
	}
	got, err := db.GetAnalysisRun(ctx, rec.Name)
	if err != nil || got.Phase != analysis.PhaseRunning {
		t.Fatalf("run = %+v, %v; want still Running", got, err)
	}
}

func TestPruneBefore(t *testing.T) {
	db, _ := open(t)
	ctx := t.Context()
	now := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	old, recent := now.AddDate(0, -2, 0), now.Add(-time.Hour)
	cutoff := now.AddDate(0, 0, -30)
	steps := []struct {
		name string
		err  error
	}{
		{"old delivery", db.SaveDelivery(ctx, "old", "p-old", old)},
		{"recent delivery", db.SaveDelivery(ctx, "new", "p-new", recent)},
		{"old expectation", db.SaveExpectation(ctx, "wf-old", []string{"web"}, old)},
		{"recent expectation", db.SaveExpectation(ctx, "wf-new", []string{"web"}, recent)},
		{"old report", db.SaveReport(ctx, "wf-old", reporter.Report{App: "web", Success: true, Time: old})},
		{"recent report", db.SaveReport(ctx, "wf-new", reporter.Report{App: "web", Success: true, Time: recent})},
	}
	for _, s := range steps {
		if s.err != nil {
			t.Fatalf("saving %s: %v", s.name, s.err)
		}
	}
	n, err := db.PruneBefore(ctx, cutoff)
	if err != nil || n != 3 {
		t.Fatalf("PruneBefore = %d, %v; want 3 rows", n, err)
	}
	tests := []struct {
		name string
		ok   func(t *testing.T) bool
	}{
		{"old delivery gone", func(t *testing.T) bool {
			_, found, err := db.LookupDelivery(ctx, "old")
			return err == nil && !found
		}},
		{"recent delivery kept", func(t *testing.T) bool {
			id, found, err := db.LookupDelivery(ctx, "new")
			return err == nil && found && id == "p-new"
		}},
		{"old expectation and report gone", func(t *testing.T) bool {
			_, _, reports, found, err := db.LoadExpectation(ctx, "wf-old")
			return err == nil && !found && len(reports) == 0
		}},
		{"recent expectation and report kept", func(t *testing.T) bool {
			_, _, reports, found, err := db.LoadExpectation(ctx, "wf-new")
			return err == nil && found && len(reports) == 1
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.ok(t) {
				t.Error("not so")
			}
		})
	}
}
