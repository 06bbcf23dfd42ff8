package storetest

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/reporter"
	"github.com/runway-cd/runway/internal/rollout"
)

// Garbage checks Collector on stores from fresh, each new and empty.
func Garbage[S GarbageStore](t *testing.T, fresh func(t *testing.T) S) {
	runTests(t, fresh, func(s S) GarbageStore { return s }, garbageTests)
}

// why is the reason the garbage checks give AbandonAnalysisRuns.
const why = "no rollout of the app runs or can resume"

// abandoned is r as AbandonAnalysisRuns leaves it at now.
func abandoned(r analysis.RunRecord, now time.Time) analysis.RunRecord {
	r.Phase, r.Reason, r.FinishedAt = analysis.PhaseError, "abandoned: "+why, now
	return r
}

// saveRuns saves runs.
func saveRuns(t *testing.T, s AnalysisRunStore, runs ...analysis.RunRecord) {
	t.Helper()
	for _, r := range runs {
		if err := s.SaveAnalysisRun(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
}

// ended is the finished r, in phase.
func ended(r analysis.RunRecord, phase analysis.Phase) analysis.RunRecord {
	r.Phase, r.FinishedAt = phase, r.StartedAt.Add(time.Minute)
	return r
}

var garbageTests = []test[GarbageStore]{
	{"a running run no rollout claims ends in Error; claimed and ended runs are kept", func(t *testing.T, s GarbageStore) {
		orphan, live := run("web-v2-1", "web", "v2", 0), run("web-v3-1", "web", "v3", 1)
		ok, failed := ended(run("ok", "web", "v1", 2), analysis.PhaseSuccessful), ended(run("bad", "web", "v1", 3), analysis.PhaseFailed)
		saveRuns(t, s, orphan, live, ok, failed)
		now := at(100)
		var asked []string
		got, err := s.AbandonAnalysisRuns(t.Context(), func(r analysis.RunRecord) bool {
			asked = append(asked, r.Name)
			return r.Version == "v3"
		}, why, now)
		if err != nil {
			t.Fatalf("AbandonAnalysisRuns: %v", err)
		}
		if !reflect.DeepEqual(got, []string{"web-v2-1"}) {
			t.Errorf("AbandonAnalysisRuns ended %q, want [web-v2-1]", got)
		}
		slices.Sort(asked)
		if !reflect.DeepEqual(asked, []string{"web-v2-1", "web-v3-1"}) {
			t.Errorf("live was asked about %q, want only the running runs", asked)
		}
		wantRun(t, s, abandoned(orphan, now))
		wantRun(t, s, live)
		wantRun(t, s, ok)
		wantRun(t, s, failed)
		// Again: nothing left to end.
		if got, err := s.AbandonAnalysisRuns(t.Context(), func(analysis.RunRecord) bool { return true }, why, at(200)); err != nil || len(got) != 0 {
			t.Errorf("second AbandonAnalysisRuns = %q, %v; want nothing", got, err)
		}
	}},
	{"a run saved while collection decides is kept", func(t *testing.T, s GarbageStore) {
		r := run("web-v2-1", "web", "v2", 0)
		saveRuns(t, s, r)
		resumed := r
		resumed.Metrics = append(slices.Clone(r.Metrics), analysis.MetricResult{Name: "latency", Phase: analysis.PhaseRunning})
		got, err := s.AbandonAnalysisRuns(t.Context(), func(analysis.RunRecord) bool {
			// A resumed rollout saves a new measurement meanwhile.
			if err := s.SaveAnalysisRun(t.Context(), resumed); err != nil {
				t.Error(err)
			}
			return false
		}, why, at(100))
		if err != nil || len(got) != 0 {
			t.Errorf("AbandonAnalysisRuns = %q, %v; want nothing ended", got, err)
		}
		wantRun(t, s, resumed)
	}},
	{"prune deletes deliveries and reporter rows before the cutoff, keeps the rest", func(t *testing.T, s GarbageStore) {
		cutoff := at(1000)
		old, edge, recent := cutoff.Add(-time.Hour), cutoff, cutoff.Add(time.Hour)
		steps := []error{
			s.SaveDelivery(t.Context(), "old", "p-old", old),
			s.SaveDelivery(t.Context(), "edge", "p-edge", edge),
			s.SaveDelivery(t.Context(), "new", "p-new", recent),
			s.SaveExpectation(t.Context(), "wf-old", []string{"web"}, old),
			s.SaveExpectation(t.Context(), "wf-new", []string{"web"}, recent),
			s.SaveReport(t.Context(), "wf-old", reporter.Report{App: "web", Success: true, Time: old}),
			s.SaveReport(t.Context(), "wf-new", reporter.Report{App: "web", Success: true, Time: edge}),
			s.SavePipeline(t.Context(), newPipeline("p-old", "web", "v1", old)),
			s.SaveAnalysisRun(t.Context(), run("run-old", "web", "v1", -5000)),
			s.SaveRollout(t.Context(), finished(checkpoint("production", "web", "v1", -5000), -4000)),
			s.SaveApp(t.Context(), rollout.AppRecord{Env: "production", App: "web", StableVersion: "v1", Updated: old}),
		}
		for i, err := range steps {
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		}
		n, err := s.PruneBefore(t.Context(), cutoff)
		if err != nil || n != 3 {
			t.Fatalf("PruneBefore = %d, %v; want 3 rows (a delivery, an expectation, a report)", n, err)
		}
		wantDelivery(t, s, "old", "")
		wantDelivery(t, s, "edge", "p-edge")
		wantDelivery(t, s, "new", "p-new")
		wantExpectation(t, s, "wf-old", expectation{})
		wantExpectation(t, s, "wf-new", expectation{found: true, apps: []string{"web"}, created: recent,
			reports: []reporter.Report{{App: "web", Success: true, Time: edge}}})
		wantPipeline(t, s, newPipeline("p-old", "web", "v1", old))
		wantRun(t, s, run("run-old", "web", "v1", -5000))
		if all, err := s.ListRollouts(t.Context(), 10); err != nil || len(all) != 1 {
			t.Errorf("after the prune ListRollouts = %q, %v; want the old rollout", canaries(all), err)
		}
		wantApp(t, s, rollout.AppRecord{Env: "production", App: "web", StableVersion: "v1", Updated: old})
		if n, err := s.PruneBefore(t.Context(), cutoff); err != nil || n != 0 {
			t.Errorf("second PruneBefore = %d, %v; want 0", n, err)
		}
	}},
	{"a cancelled context changes nothing", func(t *testing.T, s GarbageStore) {
		r := run("web-v2-1", "web", "v2", 0)
		saveRuns(t, s, r)
		if err := s.SaveDelivery(t.Context(), "old", "p-old", at(0)); err != nil {
			t.Fatal(err)
		}
		_, err := s.AbandonAnalysisRuns(cancelled(t), func(analysis.RunRecord) bool { return false }, why, at(100))
		wantCancelled(t, "AbandonAnalysisRuns", err)
		wantRun(t, s, r)
		_, err = s.PruneBefore(cancelled(t), at(100))
		wantCancelled(t, "PruneBefore", err)
		wantDelivery(t, s, "old", "p-old")
	}},
}
