package storetest

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/reporter"
)

// Reporter checks reporter.Store on stores from fresh, each new and empty.
func Reporter[S reporter.Store](t *testing.T, fresh func(t *testing.T) S) {
	runTests(t, fresh, func(s S) reporter.Store { return s }, reporterTests)
}

// expectation is what LoadExpectation returns.
type expectation struct {
	apps    []string
	created time.Time
	reports []reporter.Report
	found   bool
}

// load loads workflow's expectation.
func load(t *testing.T, s reporter.Store, workflow string) expectation {
	t.Helper()
	apps, created, reports, found, err := s.LoadExpectation(t.Context(), workflow)
	if err != nil {
		t.Fatalf("LoadExpectation(%q): %v", workflow, err)
	}
	return expectation{apps: apps, created: created, reports: reports, found: found}
}

// wantExpectation fails t unless workflow's expectation is want. Empty and
// nil lists are the same.
func wantExpectation(t *testing.T, s reporter.Store, workflow string, want expectation) {
	t.Helper()
	got := load(t, s, workflow)
	if got.found != want.found {
		t.Errorf("LoadExpectation(%q) found = %v, want %v", workflow, got.found, want.found)
	}
	if len(got.apps)+len(want.apps) > 0 && !reflect.DeepEqual(got.apps, want.apps) {
		t.Errorf("LoadExpectation(%q) apps = %q, want %q", workflow, got.apps, want.apps)
	}
	if !got.created.Equal(want.created) {
		t.Errorf("LoadExpectation(%q) created = %v, want %v", workflow, got.created, want.created)
	}
	if len(got.reports)+len(want.reports) > 0 && !reflect.DeepEqual(got.reports, want.reports) {
		t.Errorf("LoadExpectation(%q) reports =\n%+v\nwant\n%+v", workflow, got.reports, want.reports)
	}
}

// wantToken fails t unless ExpectationToken(workflow, ifNone) is token
// (found when token is not "").
func wantToken(t *testing.T, s reporter.Store, workflow, ifNone, token string) {
	t.Helper()
	got, found, err := s.ExpectationToken(t.Context(), workflow, ifNone)
	if err != nil || got != token || found != (token != "") {
		t.Errorf("ExpectationToken(%q, %q) = %q, %v, %v; want %q, %v", workflow, ifNone, got, found, err, token, token != "")
	}
}

// report is app's report at n seconds.
func report(app string, success bool, message string, n int) reporter.Report {
	return reporter.Report{App: app, Success: success, Message: message, Time: at(n)}
}

var reporterTests = []test[reporter.Store]{
	{"an unknown workflow has nothing", func(t *testing.T, s reporter.Store) {
		wantExpectation(t, s, "nope", expectation{})
	}},
	{"expectation and reports, reports oldest first", func(t *testing.T, s reporter.Store) {
		steps := []error{
			s.SaveExpectation(t.Context(), "wf", []string{"web", "postgres", "api"}, at(0)),
			s.SaveReport(t.Context(), "wf", report("postgres", true, "", 2)),
			s.SaveReport(t.Context(), "wf", report("web", false, "crashed", 1)),
			s.SaveReport(t.Context(), "wf", report("api", true, "ok", 3)),
		}
		for _, err := range steps {
			if err != nil {
				t.Fatal(err)
			}
		}
		wantExpectation(t, s, "wf", expectation{
			found: true, apps: []string{"web", "postgres", "api"}, created: at(0),
			reports: []reporter.Report{report("web", false, "crashed", 1), report("postgres", true, "", 2), report("api", true, "ok", 3)},
		})
	}},
	{"the last report of an app wins", func(t *testing.T, s reporter.Store) {
		for _, r := range []reporter.Report{report("a", false, "first", 5), report("b", true, "b", 6), report("a", true, "second", 7)} {
			if err := s.SaveReport(t.Context(), "wf", r); err != nil {
				t.Fatal(err)
			}
		}
		wantExpectation(t, s, "wf", expectation{reports: []reporter.Report{report("b", true, "b", 6), report("a", true, "second", 7)}})
	}},
	{"a report's outcome is kept, and replaced with the report", func(t *testing.T, s reporter.Store) {
		superseded := report("web", false, "overtaken by v3", 1)
		superseded.Outcome = reporter.OutcomeSuperseded
		if err := s.SaveReport(t.Context(), "wf", superseded); err != nil {
			t.Fatal(err)
		}
		wantExpectation(t, s, "wf", expectation{reports: []reporter.Report{superseded}})
		plain := report("web", true, "ok", 2)
		if err := s.SaveReport(t.Context(), "wf", plain); err != nil {
			t.Fatal(err)
		}
		wantExpectation(t, s, "wf", expectation{reports: []reporter.Report{plain}})
	}},
	{"a resubmit replaces the apps and keeps the creation time", func(t *testing.T, s reporter.Store) {
		if err := s.SaveExpectation(t.Context(), "wf", []string{"a"}, at(0)); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveExpectation(t.Context(), "wf", []string{"c", "b"}, at(60)); err != nil {
			t.Fatal(err)
		}
		wantExpectation(t, s, "wf", expectation{found: true, apps: []string{"c", "b"}, created: at(0)})
		if err := s.SaveExpectation(t.Context(), "wf", nil, at(90)); err != nil {
			t.Fatal(err)
		}
		wantExpectation(t, s, "wf", expectation{found: true, created: at(0)})
	}},
	{"reports before the expectation are kept", func(t *testing.T, s reporter.Store) {
		if err := s.SaveReport(t.Context(), "wf", report("web", true, "early", 1)); err != nil {
			t.Fatal(err)
		}
		wantExpectation(t, s, "wf", expectation{reports: []reporter.Report{report("web", true, "early", 1)}})
		if err := s.SaveExpectation(t.Context(), "wf", []string{"web"}, at(2)); err != nil {
			t.Fatal(err)
		}
		wantExpectation(t, s, "wf", expectation{found: true, apps: []string{"web"}, created: at(2), reports: []reporter.Report{report("web", true, "early", 1)}})
	}},
	{"workflows are separate", func(t *testing.T, s reporter.Store) {
		if err := s.SaveExpectation(t.Context(), "other", []string{"a"}, at(0)); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveReport(t.Context(), "other", report("a", true, "", 1)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.ExpectationToken(t.Context(), "other", "t-other"); err != nil {
			t.Fatal(err)
		}
		wantExpectation(t, s, "wf", expectation{})
		wantToken(t, s, "wf", "t1", "")
		if err := s.SaveExpectation(t.Context(), "wf", []string{"a"}, at(0)); err != nil {
			t.Fatal(err)
		}
		wantToken(t, s, "wf", "t1", "t1")
		wantToken(t, s, "other", "t2", "t-other")
	}},
	{"a token: none for an unknown workflow, the first one stored stays", func(t *testing.T, s reporter.Store) {
		wantToken(t, s, "wf", "t0", "")
		// Nothing was stored for the unknown workflow.
		wantExpectation(t, s, "wf", expectation{})
		if err := s.SaveExpectation(t.Context(), "wf", []string{"a"}, at(0)); err != nil {
			t.Fatal(err)
		}
		wantToken(t, s, "wf", "t1", "t1")
		wantToken(t, s, "wf", "t2", "t1")
		if err := s.SaveExpectation(t.Context(), "wf", []string{"a", "b"}, at(9)); err != nil {
			t.Fatal(err)
		}
		wantToken(t, s, "wf", "t3", "t1")
		if _, _, err := s.ExpectationToken(t.Context(), "wf", ""); err == nil {
			t.Error(`ExpectationToken with ifNone "" succeeded, want an error`)
		}
	}},
	{"concurrent token callers agree on one", func(t *testing.T, s reporter.Store) {
		if err := s.SaveExpectation(t.Context(), "wf", []string{"a"}, at(0)); err != nil {
			t.Fatal(err)
		}
		got := make([]string, writers)
		parallel(t, writers, func(i int) error {
			token, found, err := s.ExpectationToken(t.Context(), "wf", fmt.Sprintf("t%d", i))
			if err == nil && !found {
				err = fmt.Errorf("expectation not found")
			}
			got[i] = token
			return err
		})
		for i := range got {
			if got[i] != got[0] {
				t.Fatalf("concurrent callers got tokens %q, want one", got)
			}
		}
		wantToken(t, s, "wf", "later", got[0])
	}},
	{"hostile strings are kept exactly", func(t *testing.T, s reporter.Store) {
		for i, key := range hostileKeys {
			if err := s.SaveExpectation(t.Context(), key, []string{key, "web"}, at(i)); err != nil {
				t.Fatalf("SaveExpectation(%q): %v", key, err)
			}
			rep := report(key, false, hostileValue, i)
			rep.Outcome = reporter.Outcome(key)
			if err := s.SaveReport(t.Context(), key, rep); err != nil {
				t.Fatalf("SaveReport(%q): %v", key, err)
			}
			if _, _, err := s.ExpectationToken(t.Context(), key, key); err != nil {
				t.Fatalf("ExpectationToken(%q): %v", key, err)
			}
		}
		for i, key := range hostileKeys {
			rep := report(key, false, hostileValue, i)
			rep.Outcome = reporter.Outcome(key)
			wantExpectation(t, s, key, expectation{found: true, apps: []string{key, "web"}, created: at(i), reports: []reporter.Report{rep}})
			wantToken(t, s, key, "other", key)
		}
		wantExpectation(t, s, "%", expectation{})
	}},
	{"concurrent reports: none lost, one whole report per app", func(t *testing.T, s reporter.Store) {
		if err := s.SaveExpectation(t.Context(), "wf", []string{"shared"}, at(0)); err != nil {
			t.Fatal(err)
		}
		parallel(t, writers, func(i int) error {
			for j := range writes {
				if err := s.SaveReport(t.Context(), "wf", report(fmt.Sprintf("app-%d-%d", i, j), true, "ok", 1)); err != nil {
					return err
				}
				if err := s.SaveReport(t.Context(), "wf", report("shared", i%2 == 0, fmt.Sprintf("writer %d", i), 2+i)); err != nil {
					return err
				}
			}
			return nil
		})
		got := load(t, s, "wf")
		if len(got.reports) != writers*writes+1 {
			t.Fatalf("%d reports, want %d", len(got.reports), writers*writes+1)
		}
		seen := map[string]bool{}
		for _, r := range got.reports {
			seen[r.App] = true
			if r.App != "shared" {
				continue
			}
			ok := false
			for i := range writers {
				ok = ok || reflect.DeepEqual(r, report("shared", i%2 == 0, fmt.Sprintf("writer %d", i), 2+i))
			}
			if !ok {
				t.Errorf("the shared report is %+v, not any one writer's", r)
			}
		}
		for i := range writers {
			for j := range writes {
				if app := fmt.Sprintf("app-%d-%d", i, j); !seen[app] {
					t.Errorf("report of %s lost", app)
				}
			}
		}
	}},
	{"a cancelled context writes nothing", func(t *testing.T, s reporter.Store) {
		wantCancelled(t, "SaveExpectation", s.SaveExpectation(cancelled(t), "wf", []string{"a"}, at(0)))
		wantCancelled(t, "SaveReport", s.SaveReport(cancelled(t), "wf", report("a", true, "", 1)))
		wantExpectation(t, s, "wf", expectation{})
		if err := s.SaveExpectation(t.Context(), "wf", []string{"a"}, at(0)); err != nil {
			t.Fatal(err)
		}
		wantCancelled(t, "SaveExpectation", s.SaveExpectation(cancelled(t), "wf", []string{"b"}, at(0)))
		_, _, err := s.ExpectationToken(cancelled(t), "wf", "t-cancelled")
		wantCancelled(t, "ExpectationToken", err)
		wantExpectation(t, s, "wf", expectation{found: true, apps: []string{"a"}, created: at(0)})
		wantToken(t, s, "wf", "t1", "t1")
		_, _, _, _, err = s.LoadExpectation(cancelled(t), "wf")
		wantCancelled(t, "LoadExpectation", err)
	}},
}
