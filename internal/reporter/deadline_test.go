package reporter_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/reporter"
	"github.com/runway-cd/runway/internal/store/sqlite"
)

// A wait resumed after a restart keeps the deadline of the original
// submission (stored in the real store) instead of starting a new one.
func TestWaitDeadlineCountsFromSubmission(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "runway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.SaveExpectation(ctx, "wf", []string{"web"}, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	r := reporter.New(db, nil)
	done := make(chan reporter.Expectation, 1)
	go func() {
		exp, err := r.Wait(ctx, "wf", time.Minute)
		if err != nil {
			t.Error(err)
		}
		done <- exp
	}()
	select {
	case exp := <-done:
		if exp.Phase != reporter.PhaseFailed || !strings.Contains(exp.Reason, "deadline 1m0s passed") {
			t.Fatalf("expectation %s %q, want Failed on its deadline", exp.Phase, exp.Reason)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the wait started a fresh deadline instead of keeping the submission's")
	}
}
