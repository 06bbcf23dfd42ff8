package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/runway-cd/runway/internal/analysis"
)

// AnalysisRuns checks AnalysisRunStore on stores from fresh, each new and
// empty.
func AnalysisRuns[S AnalysisRunStore](t *testing.T, fresh func(t *testing.T) S) {
	runTests(t, fresh, func(s S) AnalysisRunStore { return s }, analysisRunTests)
}

// run is a running analysis run of app's version, started at started, with
// one metric of two measurements.
func run(name, app, version string, started int) analysis.RunRecord {
	return analysis.RunRecord{
		Name: name, Env: "production", App: app, Version: version,
		Templates: []string{"success-rate", "latency"}, Phase: analysis.PhaseRunning, StartedAt: at(started),
		Metrics: []analysis.MetricResult{{
			Name: "success-rate", Phase: analysis.PhaseRunning,
			Measurements: []analysis.Measurement{
				{Phase: analysis.PhaseSuccessful, Value: "[0.99]", StartedAt: at(started + 1), FinishedAt: at(started + 2)},
				{Phase: analysis.PhaseInconclusive, Value: "[]", Reason: "not counted: 3 of 10 samples", NotCounted: true, StartedAt: at(started + 3), FinishedAt: at(started + 4)},
			},
		}},
	}
}

// wantRun fails t unless want.Name reads back as want.
func wantRun(t *testing.T, s AnalysisRunStore, want analysis.RunRecord) {
	t.Helper()
	got, err := s.GetAnalysisRun(t.Context(), want.Name)
	if err != nil {
		t.Fatalf("GetAnalysisRun(%q): %v", want.Name, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("GetAnalysisRun(%q) =\n%+v\nwant\n%+v", want.Name, got, want)
	}
}

// wantNoRun fails t unless name is unknown.
func wantNoRun(t *testing.T, s AnalysisRunStore, name string) {
	t.Helper()
	if got, err := s.GetAnalysisRun(t.Context(), name); !errors.Is(err, analysis.ErrRunNotFound) {
		t.Errorf("GetAnalysisRun(%q) = %+v, %v; want analysis.ErrRunNotFound", name, got, err)
	}
}

// runNames lists runs and returns their names in order.
func runNames(t *testing.T, s AnalysisRunStore, limit int) []string {
	t.Helper()
	runs, err := s.ListAnalysisRuns(t.Context(), limit)
	if err != nil {
		t.Fatalf("ListAnalysisRuns(%d): %v", limit, err)
	}
	names := []string{}
	for _, r := range runs {
		names = append(names, r.Name)
	}
	return names
}

var analysisRunTests = []test[AnalysisRunStore]{
	{"get of an unknown run is ErrRunNotFound", func(t *testing.T, s AnalysisRunStore) {
		wantNoRun(t, s, "nope")
		if names := runNames(t, s, 10); len(names) != 0 {
			t.Errorf("empty store lists %q", names)
		}
	}},
	{"save inserts, saving again replaces", func(t *testing.T, s AnalysisRunStore) {
		r := run("web-v2-1", "web", "v2", 0)
		if err := s.SaveAnalysisRun(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		wantRun(t, s, r)
		r.Phase, r.Reason, r.FinishedAt = analysis.PhaseFailed, "success-rate failed", at(9)
		r.Metrics = append(r.Metrics, analysis.MetricResult{Name: "latency", Phase: analysis.PhaseFailed, Reason: "too slow",
			Measurements: []analysis.Measurement{{Phase: analysis.PhaseFailed, Value: "[2.5]", StartedAt: at(5), FinishedAt: at(6)}}})
		if err := s.SaveAnalysisRun(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		wantRun(t, s, r)
		if names := runNames(t, s, 10); !reflect.DeepEqual(names, []string{"web-v2-1"}) {
			t.Errorf("after a replace the list is %q", names)
		}
	}},
	{"list is newest first, at most limit", func(t *testing.T, s AnalysisRunStore) {
		for i, name := range []string{"b", "d", "a", "c"} {
			if err := s.SaveAnalysisRun(t.Context(), run(name, "web", "v2", []int{3, 1, 4, 0}[i])); err != nil {
				t.Fatal(err)
			}
		}
		for _, tt := range []struct {
			limit int
			want  []string
		}{
			{limit: 10, want: []string{"a", "b", "d", "c"}},
			{limit: 2, want: []string{"a", "b"}},
			{limit: 1, want: []string{"a"}},
		} {
			if got := runNames(t, s, tt.limit); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ListAnalysisRuns(%d) = %q, want %q", tt.limit, got, tt.want)
			}
		}
		runs, err := s.ListAnalysisRuns(t.Context(), 1)
		if err != nil || len(runs) != 1 || !reflect.DeepEqual(runs[0], run("a", "web", "v2", 4)) {
			t.Errorf("listed run reads back as %+v, %v", runs, err)
		}
	}},
	{"a replace lists by the run's new start", func(t *testing.T, s AnalysisRunStore) {
		for i, name := range []string{"a", "b"} {
			if err := s.SaveAnalysisRun(t.Context(), run(name, "web", "v2", i)); err != nil {
				t.Fatal(err)
			}
		}
		a := run("a", "api", "v3", 5)
		if err := s.SaveAnalysisRun(t.Context(), a); err != nil {
			t.Fatal(err)
		}
		if got := runNames(t, s, 10); !reflect.DeepEqual(got, []string{"a", "b"}) {
			t.Errorf("after a was saved with a later start the list is %q, want [a b]", got)
		}
		wantRun(t, s, a)
	}},
	{"hostile strings are kept exactly", func(t *testing.T, s AnalysisRunStore) {
		var want []analysis.RunRecord
		for i, key := range hostileKeys {
			r := run(key, key, key, i)
			r.Env, r.Reason, r.Metrics[0].Measurements[0].Value = key, hostileValue, key
			if err := s.SaveAnalysisRun(t.Context(), r); err != nil {
				t.Fatalf("SaveAnalysisRun(%q): %v", key, err)
			}
			want = append(want, r)
		}
		for _, r := range want {
			wantRun(t, s, r)
		}
		wantNoRun(t, s, "%")
	}},
	{"concurrent writers lose nothing; on one run one whole write wins", func(t *testing.T, s AnalysisRunStore) {
		shared := func(i int) analysis.RunRecord {
			r := run("shared", "web", "v2", 0)
			r.Reason, r.Metrics[0].Measurements[0].Value = fmt.Sprintf("writer %d", i), fmt.Sprintf("[%d]", i)
			return r
		}
		parallel(t, writers, func(i int) error {
			for j := range writes {
				if err := s.SaveAnalysisRun(t.Context(), run(fmt.Sprintf("run-%d-%d", i, j), "web", "v2", i*writes+j+1)); err != nil {
					return err
				}
				if err := s.SaveAnalysisRun(t.Context(), shared(i)); err != nil {
					return err
				}
			}
			return nil
		})
		if names := runNames(t, s, writers*writes+2); len(names) != writers*writes+1 {
			t.Fatalf("listed %d runs, want %d", len(names), writers*writes+1)
		}
		for i := range writers {
			for j := range writes {
				wantRun(t, s, run(fmt.Sprintf("run-%d-%d", i, j), "web", "v2", i*writes+j+1))
			}
		}
		got, err := s.GetAnalysisRun(t.Context(), "shared")
		if err != nil {
			t.Fatal(err)
		}
		ok := false
		for i := range writers {
			ok = ok || reflect.DeepEqual(got, shared(i))
		}
		if !ok {
			t.Errorf("after concurrent writes the shared run is %+v, not any one writer's", got)
		}
	}},
	{"a cancelled context writes nothing", func(t *testing.T, s AnalysisRunStore) {
		r := run("web-v2-1", "web", "v2", 0)
		wantCancelled(t, "SaveAnalysisRun", s.SaveAnalysisRun(cancelled(t), r))
		wantNoRun(t, s, r.Name)
		if err := s.SaveAnalysisRun(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		changed := r
		changed.Phase = analysis.PhaseFailed
		wantCancelled(t, "SaveAnalysisRun", s.SaveAnalysisRun(cancelled(t), changed))
		wantRun(t, s, r)
		_, err := s.GetAnalysisRun(cancelled(t), r.Name)
		wantCancelled(t, "GetAnalysisRun", err)
	}},
}
