package reporter_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/reporter"
	"github.com/runway-cd/runway/internal/store/sqlite"
)

// A superseded rollout's report ends the expectation: a waiter wakes and
// sees the outcome by its code, also through a Reporter opened afresh on
// the same store (a restart) and in the JSON the API serves.
func TestSupersedeWakesWait(t *testing.T) {
	r, path := newReporter(t)
	ctx := t.Context()
	const wf = "web-abcde-production"
	if err := r.Submit(ctx, wf, []string{"web"}); err != nil {
		t.Fatal(err)
	}
	type result struct {
		exp reporter.Expectation
		err error
	}
	done := make(chan result, 1)
	go func() {
		exp, err := r.Wait(ctx, wf, time.Hour)
		done <- result{exp, err}
	}()
	if err := r.Supersede(ctx, wf, "web", "superseded by v2 (web-fghij)"); err != nil {
		t.Fatal(err)
	}
	got := <-done
	if got.err != nil {
		t.Fatal(got.err)
	}
	rep := got.exp.Reports["web"]
	if got.exp.Phase != reporter.PhaseFailed || rep.Outcome != reporter.OutcomeSuperseded || rep.Success || rep.Message != "superseded by v2 (web-fghij)" {
		t.Fatalf("after Supersede: phase %s, report %+v", got.exp.Phase, rep)
	}

	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	again := reporter.New(db, nil)
	exp, err := again.Get(ctx, wf)
	if err != nil || exp.Reports["web"].Outcome != reporter.OutcomeSuperseded || exp.Reports["web"].Message != "superseded by v2 (web-fghij)" {
		t.Fatalf("after a restart: %v %+v", err, exp.Reports["web"])
	}

	srv := httptest.NewServer(again.Handler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/api/v1/expectations/" + wf)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Reports map[string]map[string]any `json:"reports"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if body.Reports["web"]["outcome"] != "Superseded" {
		t.Fatalf("served report %v, want outcome Superseded", body.Reports["web"])
	}
}

// A hook's message cannot forge an outcome: the outcome is a field of its
// own that only Supersede sets, so text that looks like one (this is what
// the marker scheme stored before the store had an outcome column) stays
// text. An ordinary report has no outcome in its JSON.
func TestOutcomeNotForged(t *testing.T) {
	r, _ := newReporter(t)
	ctx := context.Background()
	const wf = "web-abcde"
	if err := r.Submit(ctx, wf, []string{"web"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Update(ctx, wf, "web", false, "\x1fSuperseded\x1fnot really"); err != nil {
		t.Fatal(err)
	}
	exp, err := r.Get(ctx, wf)
	if err != nil {
		t.Fatal(err)
	}
	rep := exp.Reports["web"]
	if rep.Outcome != "" || !strings.Contains(rep.Message, "not really") {
		t.Fatalf("report %+v: a message set an outcome", rep)
	}
	b, _ := json.Marshal(rep)
	if strings.Contains(string(b), "outcome") {
		t.Fatalf("ordinary report JSON %s shows an outcome", b)
	}
}
