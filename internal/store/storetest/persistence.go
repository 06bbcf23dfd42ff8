package storetest

import (
	"testing"

	"github.com/runway-cd/runway/internal/reporter"
	"github.com/runway-cd/runway/internal/rollout"
)

// Persistence checks that what a store from open kept is there after it
// is closed and opened again on the same dir, and that another dir is
// another, empty store.
func Persistence(t *testing.T, open Opener) {
	dir := t.TempDir()
	s := open(t, dir)
	ctx := t.Context()

	p := newPipeline("p1", "web", "v1", at(0))
	p.Steps[0].Log = hostileValue
	cp := checkpoint("production", "web", "v2", 1)
	done := finished(checkpoint("production", "web", "v0", 0), 1)
	rec := rollout.AppRecord{Env: "production", App: "web", StableVersion: "v1", StableEntry: entry("web", "v1"), Updated: at(2)}
	r := run("web-v2-1", "web", "v2", 3)
	rep := reporter.Report{App: "web", Success: false, Outcome: reporter.OutcomeSuperseded, Message: "overtaken: " + hostileKeys[1], Time: at(5)}
	steps := []struct {
		name string
		err  error
	}{
		{"SavePipeline", s.SavePipeline(ctx, p)},
		{"SaveRollout", s.SaveRollout(ctx, cp)},
		{"SaveRollout finished", s.SaveRollout(ctx, done)},
		{"SaveApp", s.SaveApp(ctx, rec)},
		{"SaveAnalysisRun", s.SaveAnalysisRun(ctx, r)},
		{"SaveExpectation", s.SaveExpectation(ctx, "wf", []string{"web", "postgres"}, at(4))},
		{"SaveReport", s.SaveReport(ctx, "wf", rep)},
		{"SaveDelivery", s.SaveDelivery(ctx, "d1", "p1", at(6))},
	}
	for _, st := range steps {
		if st.err != nil {
			t.Fatalf("%s: %v", st.name, st.err)
		}
	}
	if token, found, err := s.ExpectationToken(ctx, "wf", "token-1"); err != nil || !found || token != "token-1" {
		t.Fatalf("ExpectationToken = %q, %v, %v", token, found, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, dir)
	t.Run("pipeline", func(t *testing.T) {
		wantPipeline(t, s, p)
		wantVersion(t, s, "v1", "p1")
		// The version is still taken.
		if err := s.SavePipeline(t.Context(), newPipeline("p2", "api", "v1", at(9))); err == nil {
			t.Error("after a reopen another pipeline took version v1")
		}
	})
	t.Run("rollouts", func(t *testing.T) {
		wantUnfinished(t, s, "production", "web", cp)
		all, err := s.ListRollouts(t.Context(), 10)
		if err != nil || len(all) != 2 || !sameJSON(all[1], done) {
			t.Errorf("ListRollouts = %s, %v; want v2 then the finished v0", jsonOf(all), err)
		}
		wantApp(t, s, rec)
	})
	t.Run("analysis run", func(t *testing.T) { wantRun(t, s, r) })
	t.Run("reporter", func(t *testing.T) {
		wantExpectation(t, s, "wf", expectation{found: true, apps: []string{"web", "postgres"}, created: at(4), reports: []reporter.Report{rep}})
		wantToken(t, s, "wf", "token-2", "token-1")
	})
	t.Run("delivery", func(t *testing.T) { wantDelivery(t, s, "d1", "p1") })
	t.Run("another dir is another store", func(t *testing.T) {
		other := open(t, t.TempDir())
		wantNoPipeline(t, other, "p1")
		wantNoApp(t, other, "production", "web")
		wantDelivery(t, other, "d1", "")
	})
}
