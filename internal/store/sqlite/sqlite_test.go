package sqlite_test

import (
	"context"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/reporter"
	"github.com/runway-cd/runway/internal/store/sqlite"
)

// open opens a database file in a fresh temporary directory.
func open(t *testing.T) (*sqlite.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "runway.db")
	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

func TestOpenSettings(t *testing.T) {
	db, _ := open(t)
	tests := []struct {
		name   string
		pragma string
		want   string
	}{
		{name: "wal", pragma: "journal_mode", want: "wal"},
		{name: "busy timeout", pragma: "busy_timeout", want: "5000"},
		{name: "foreign keys", pragma: "foreign_keys", want: "1"},
		{name: "schema version", pragma: "user_version", want: strconv.Itoa(sqlite.SchemaVersion())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			if err := db.SQL().QueryRowContext(t.Context(), "PRAGMA "+tt.pragma).Scan(&got); err != nil {
				t.Fatalf("PRAGMA %s: %v", tt.pragma, err)
			}
			if got != tt.want {
				t.Errorf("PRAGMA %s = %q, want %q", tt.pragma, got, tt.want)
			}
		})
	}
}

func TestOpenRejects(t *testing.T) {
	tests := []struct {
		name string
		path string
	}{
		{name: "empty", path: ""},
		{name: "memory", path: ":memory:"},
		{name: "uri", path: "file:x.db"},
		{name: "query", path: filepath.Join(t.TempDir(), "x.db?mode=ro")},
		{name: "missing directory", path: filepath.Join(t.TempDir(), "no", "such", "dir", "x.db")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := sqlite.Open(t.Context(), tt.path)
			if err == nil {
				db.Close()
				t.Fatalf("Open(%q) succeeded, want error", tt.path)
			}
		})
	}
}

func TestOpenNewerSchemaRefused(t *testing.T) {
	db, path := open(t)
	if _, err := db.SQL().ExecContext(t.Context(), "PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db2, err := sqlite.Open(t.Context(), path); err == nil {
		db2.Close()
		t.Fatal("Open of a database from a newer program succeeded, want error")
	}
}

func TestOpenConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runway.db")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			db, err := sqlite.Open(t.Context(), path)
			if err == nil {
				err = db.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
		}
	}
}

func TestReporterStore(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
	tests := []struct {
		name        string
		act         func(ctx context.Context, db *sqlite.DB) error
		workflow    string
		wantFound   bool
		wantApps    []string
		wantCreated time.Time
		wantReports []reporter.Report
	}{
		{
			name:     "unknown workflow",
			act:      func(context.Context, *sqlite.DB) error { return nil },
			workflow: "nope",
		},
		{
			name: "expectation and reports",
			act: func(ctx context.Context, db *sqlite.DB) error {
				if err := db.SaveExpectation(ctx, "wf", []string{"homelabping", "postgres"}, t0); err != nil {
					return err
				}
				if err := db.SaveReport(ctx, "wf", reporter.Report{App: "postgres", Success: true, Time: t0.Add(time.Second)}); err != nil {
					return err
				}
				return db.SaveReport(ctx, "wf", reporter.Report{App: "homelabping", Success: false, Message: "crashed", Time: t0.Add(2 * time.Second)})
			},
			workflow:    "wf",
			wantFound:   true,
			wantApps:    []string{"homelabping", "postgres"},
			wantCreated: t0,
			wantReports: []reporter.Report{
				{App: "postgres", Success: true, Time: t0.Add(time.Second)},
				{App: "homelabping", Success: false, Message: "crashed", Time: t0.Add(2 * time.Second)},
			},
		},
		{
			name: "last report wins",
			act: func(ctx context.Context, db *sqlite.DB) error {
				if err := db.SaveReport(ctx, "wf", reporter.Report{App: "a", Success: false, Message: "first", Time: t0}); err != nil {
					return err
				}
				return db.SaveReport(ctx, "wf", reporter.Report{App: "a", Success: true, Message: "second", Time: t0.Add(time.Second)})
			},
			workflow:    "wf",
			wantReports: []reporter.Report{{App: "a", Success: true, Message: "second", Time: t0.Add(time.Second)}},
		},
		{
			name: "resubmit replaces apps and keeps created",
			act: func(ctx context.Context, db *sqlite.DB) error {
				if err := db.SaveExpectation(ctx, "wf", []string{"a"}, t0); err != nil {
					return err
				}
				return db.SaveExpectation(ctx, "wf", []string{"b", "c"}, t0.Add(time.Hour))
			},
			workflow:    "wf",
			wantFound:   true,
			wantApps:    []string{"b", "c"},
			wantCreated: t0,
		},
		{
			name: "workflows are separate",
			act: func(ctx context.Context, db *sqlite.DB) error {
				if err := db.SaveExpectation(ctx, "other", []string{"a"}, t0); err != nil {
					return err
				}
				return db.SaveReport(ctx, "other", reporter.Report{App: "a", Success: true, Time: t0})
			},
			workflow: "wf",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, _ := open(t)
			if err := tt.act(t.Context(), db); err != nil {
				t.Fatalf("act: %v", err)
			}
			apps, created, reports, found, err := db.LoadExpectation(t.Context(), tt.workflow)
			if err != nil {
				t.Fatalf("LoadExpectation: %v", err)
			}
			if found != tt.wantFound {
				t.Errorf("found = %v, want %v", found, tt.wantFound)
			}
			if !equalStrings(apps, tt.wantApps) {
				t.Errorf("apps = %q, want %q", apps, tt.wantApps)
			}
			if !created.Equal(tt.wantCreated) {
				t.Errorf("created = %v, want %v", created, tt.wantCreated)
			}
			if len(reports) != len(tt.wantReports) {
				t.Fatalf("reports = %+v, want %+v", reports, tt.wantReports)
			}
			for i, got := range reports {
				want := tt.wantReports[i]
				if got.App != want.App || got.Success != want.Success || got.Message != want.Message || !got.Time.Equal(want.Time) {
					t.Errorf("report %d = %+v, want %+v", i, got, want)
				}
			}
		})
	}
}

func TestDeliveries(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		saves     [][2]string // delivery, pipeline
		lookup    string
		wantID    string
		wantFound bool
	}{
		{name: "unknown", lookup: "d1"},
		{name: "saved", saves: [][2]string{{"d1", "p1"}}, lookup: "d1", wantID: "p1", wantFound: true},
		{name: "first save wins", saves: [][2]string{{"d1", "p1"}, {"d1", "p2"}}, lookup: "d1", wantID: "p1", wantFound: true},
		{name: "other delivery", saves: [][2]string{{"d1", "p1"}}, lookup: "d2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, _ := open(t)
			for _, s := range tt.saves {
				if err := db.SaveDelivery(t.Context(), s[0], s[1], at); err != nil {
					t.Fatalf("SaveDelivery: %v", err)
				}
			}
			id, found, err := db.LookupDelivery(t.Context(), tt.lookup)
			if err != nil {
				t.Fatalf("LookupDelivery: %v", err)
			}
			if id != tt.wantID || found != tt.wantFound {
				t.Errorf("LookupDelivery = %q, %v, want %q, %v", id, found, tt.wantID, tt.wantFound)
			}
		})
	}
}

func TestReopenKeepsState(t *testing.T) {
	db, path := open(t)
	ctx := t.Context()
	t0 := time.Now().UTC()
	if err := db.SaveExpectation(ctx, "wf", []string{"a", "b"}, t0); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveReport(ctx, "wf", reporter.Report{App: "a", Success: true, Message: "ok", Time: t0}); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveDelivery(ctx, "d1", "p1", t0); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db2, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db2.Close()
	apps, created, reports, found, err := db2.LoadExpectation(ctx, "wf")
	if err != nil || !found {
		t.Fatalf("LoadExpectation after reopen: found=%v err=%v", found, err)
	}
	if !equalStrings(apps, []string{"a", "b"}) || !created.Equal(t0) || len(reports) != 1 || reports[0].Message != "ok" {
		t.Errorf("after reopen: apps=%q created=%v reports=%+v", apps, created, reports)
	}
	if id, found, err := db2.LookupDelivery(ctx, "d1"); err != nil || !found || id != "p1" {
		t.Errorf("LookupDelivery after reopen = %q, %v, %v", id, found, err)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
