package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/reporter"
	"github.com/runway-cd/runway/internal/rollout"
)

// A database of a Runway from before app records and report outcomes
// (schema 5) upgrades in place: its rows are kept, its reports have no
// outcome, and it starts with no app records.
func TestMigrationFromSchema5KeepsOldRows(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "runway.db")
	raw, err := sql.Open("sqlite", path+dsnOptions)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range migrations[:5] {
		if _, err := raw.ExecContext(ctx, m); err != nil {
			t.Fatalf("migration %d: %v", i+1, err)
		}
	}
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, stmt := range []string{
		"PRAGMA user_version = 5",
		fmt.Sprintf(`INSERT INTO reporter_expectations (workflow, apps, created_ns, token) VALUES ('wf', '["web"]', %d, 'tok')`, t0.UnixNano()),
		fmt.Sprintf(`INSERT INTO reporter_reports (workflow, app, success, message, reported_ns) VALUES ('wf', 'web', 0, 'crashed', %d)`, t0.UnixNano()),
		fmt.Sprintf(`INSERT INTO webhook_deliveries (delivery, pipeline_id, received_ns) VALUES ('d1', 'p1', %d)`, t0.UnixNano()),
		fmt.Sprintf(`INSERT INTO pipelines (id, app, version, phase, created_ns, doc) VALUES ('p1', 'web', 'v1', 'Succeeded', %d, '{"id":"p1","app":"web","version":"v1","phase":"Succeeded"}')`, t0.UnixNano()),
		fmt.Sprintf(`INSERT INTO rollouts (env, app, canary, finished, started_ns, doc) VALUES ('production', 'web', 'v2', 0, %d, '{"env":"production","app":"web","canaryVersion":"v2","stableVersion":"v1"}')`, t0.UnixNano()),
	} {
		if _, err := raw.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("opening a schema 5 database: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	var version int
	if err := db.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil || version != len(migrations) {
		t.Fatalf("schema version after Open = %d (%v), want %d", version, err, len(migrations))
	}
	if token, found, err := db.ExpectationToken(ctx, "wf", "other"); err != nil || !found || token != "tok" {
		t.Errorf("old expectation's token = %q, %v, %v; want tok", token, found, err)
	}
	if _, _, reports, found, err := db.LoadExpectation(ctx, "wf"); err != nil || !found || len(reports) != 1 ||
		reports[0] != (reporter.Report{App: "web", Message: "crashed", Time: t0}) {
		t.Errorf("old report = %+v, %v, %v; want web's failure with no outcome", reports, found, err)
	}
	if id, found, err := db.LookupDelivery(ctx, "d1"); err != nil || !found || id != "p1" {
		t.Errorf("old delivery = %q, %v, %v; want p1", id, found, err)
	}
	if p, err := db.PipelineByVersion(ctx, "v1"); err != nil || p.ID != "p1" {
		t.Errorf("old pipeline = %+v, %v", p, err)
	}
	if cps, err := db.UnfinishedRollouts(ctx, "production", "web"); err != nil || len(cps) != 1 || cps[0].StableVersion != "v1" {
		t.Errorf("old rollout = %+v, %v", cps, err)
	}
	if _, err := db.GetApp(ctx, "production", "web"); !errors.Is(err, rollout.ErrAppNotFound) {
		t.Errorf("GetApp after the migration: %v, want rollout.ErrAppNotFound", err)
	}
	rec := rollout.AppRecord{Env: "production", App: "web", StableVersion: "v1", Updated: t0}
	if err := db.SaveApp(ctx, rec); err != nil {
		t.Fatalf("SaveApp after the migration: %v", err)
	}
	if got, err := db.GetApp(ctx, "production", "web"); err != nil || got != rec {
		t.Errorf("GetApp = %+v, %v; want %+v", got, err, rec)
	}
}
