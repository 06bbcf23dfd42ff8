// Package storetest is the conformance suite of Runway's durable state:
// every contract a domain package declares for its store (pipeline.Store
// and pipeline.VersionFinder, rollout.Store, the rollout's and the API's
// analysis runs, reporter.Store, webhook.Deliveries, and the garbage
// collector's AbandonAnalysisRuns and PruneBefore) is checked here once, and
// every implementation runs the same checks, in the shape of tailscale's
// testStoreSemantics.
//
// The suite checks semantics, not just round trips: insert versus replace,
// not-found errors that wrap the domain package's sentinel (errors.Is),
// order and limits of lists, unique versions (pipeline.ErrVersionTaken),
// idempotent deliveries and tokens, writers in several goroutines (on
// different keys nothing is lost; on one key the last write wins and a
// read never sees a mix of two writes), persistence across a close and a
// reopen, hostile strings kept byte for byte, and a cancelled context
// failing with an error that wraps context.Canceled and writing nothing.
//
// An implementation calls Run from a test of its own package with an
// Opener:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, dir string) storetest.Store {
//			db, err := sqlite.Open(t.Context(), filepath.Join(dir, "runway.db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { db.Close() })
//			return db
//		})
//	}
//
// A store that does not keep its data in files (PostgreSQL) takes dir as
// the name of its data: the same dir must open the same data, a new dir an
// empty store (for example a database or schema named after a hash of
// dir, created on first open). A store that implements only some of the
// contracts calls their functions (Pipelines, Rollouts, AnalysisRuns,
// Reporter, Deliveries, Garbage), each with a func returning a new, empty
// store, and Persistence if it can reopen.
//
// Strings the suite stores are valid UTF-8 without NUL bytes (PostgreSQL's
// text keeps no others), and its times are UTC with microsecond precision
// (PostgreSQL's timestamps keep microseconds); a store must return both
// exactly.
package storetest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/reporter"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/webhook"
)

// PipelineStore is what the pipeline package needs of its store.
type PipelineStore interface {
	pipeline.Store
	pipeline.VersionFinder
}

// AnalysisRunStore keeps analysis runs: the rollout's analyzer saves and
// resumes them, the API lists and shows them.
type AnalysisRunStore interface {
	// SaveAnalysisRun inserts or replaces the run named r.Name.
	SaveAnalysisRun(ctx context.Context, r analysis.RunRecord) error
	// GetAnalysisRun fails with an error wrapping analysis.ErrRunNotFound
	// for a run it has no record of.
	GetAnalysisRun(ctx context.Context, name string) (analysis.RunRecord, error)
	// ListAnalysisRuns returns at most limit runs, newest StartedAt first.
	ListAnalysisRuns(ctx context.Context, limit int) ([]analysis.RunRecord, error)
}

// Collector is what the environment controller's garbage collection
// needs of the store (environment.GarbageStore).
type Collector interface {
	// AbandonAnalysisRuns ends the runs left Running that live does not
	// claim, in phase Error with reason "abandoned: " + why, finished at
	// now; a run saved again meanwhile is kept. It returns the runs ended.
	AbandonAnalysisRuns(ctx context.Context, live func(analysis.RunRecord) bool, why string, now time.Time) ([]string, error)
	// PruneBefore deletes webhook deliveries received, and reporter
	// expectations created and reports made, before cutoff, and returns
	// how many rows went. Pipelines, analysis runs, rollouts and app
	// records are kept.
	PruneBefore(ctx context.Context, cutoff time.Time) (int64, error)
}

// GarbageStore is a Collector with the contracts whose rows it collects
// or keeps, which the suite writes and reads to check it.
type GarbageStore interface {
	Collector
	PipelineStore
	rollout.Store
	AnalysisRunStore
	reporter.Store
	webhook.Deliveries
}

// Store is everything the server needs of its durable state.
type Store interface {
	GarbageStore
	// Close releases the store. The Opener's cleanup may call it again
	// after the suite did; that second call must do no harm (its error
	// is ignored).
	Close() error
}

// Opener opens the store whose data is in dir. The suite calls it with a
// new t.TempDir() for an empty store, and again with the same dir, after
// closing the first store, to see what was kept. The Opener registers the
// store's Close with t.Cleanup.
type Opener func(t *testing.T, dir string) Store

// Run checks every contract of Store against stores open opens.
func Run(t *testing.T, open Opener) {
	fresh := func(t *testing.T) Store { return open(t, t.TempDir()) }
	t.Run("Pipelines", func(t *testing.T) { Pipelines(t, fresh) })
	t.Run("Rollouts", func(t *testing.T) { Rollouts(t, fresh) })
	t.Run("AnalysisRuns", func(t *testing.T) { AnalysisRuns(t, fresh) })
	t.Run("Reporter", func(t *testing.T) { Reporter(t, fresh) })
	t.Run("Deliveries", func(t *testing.T) { Deliveries(t, fresh) })
	t.Run("Garbage", func(t *testing.T) { Garbage(t, fresh) })
	t.Run("Persistence", func(t *testing.T) { Persistence(t, open) })
}

// test is one check of a contract, on a new, empty store.
type test[S any] struct {
	name string
	run  func(t *testing.T, s S)
}

// runTests runs each test on its own store from fresh.
func runTests[S any, T any](t *testing.T, fresh func(t *testing.T) S, as func(S) T, tests []test[T]) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, as(fresh(t))) })
	}
}

// t0 is the suite's base time: UTC, microsecond precision.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 123456000, time.UTC)

// at is t0 plus n seconds.
func at(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

// hostileKeys are names and ids that a store must keep apart and return
// exactly: quotes, SQL, LIKE wildcards, unicode, spaces, slashes.
var hostileKeys = []string{
	`it's "quoted"`,
	`'); DROP TABLE pipelines; --`,
	`100%_like\*?`,
	"ünïcödé ✓ 日本語 🚀 עברית",
	"  spaced  /slashed/  ",
	"Case", "case",
}

// hostileValue is a long value with every kind of character hostileKeys
// has, and line breaks: stored and returned exactly.
var hostileValue = strings.Repeat("line 'one' \"two\" \\three\\ ✓ 🚀 %_\r\n\ttabbed; -- end\n", 1<<12) // ~230 kB

// Writers and writes per writer of the concurrency checks.
const (
	writers = 8
	writes  = 10
)

// parallel runs f(i) for i in [0, n) in n goroutines and reports every
// error.
func parallel(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = f(i) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
}

// cancelled is a context that is already cancelled.
func cancelled(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return ctx
}

// wantCancelled fails t unless err wraps context.Canceled.
func wantCancelled(t *testing.T, call string, err error) {
	t.Helper()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("%s with a cancelled context: err = %v, want one wrapping context.Canceled", call, err)
	}
}
