package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func TestExpectationToken(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		act       func(ctx context.Context, db *DB) error // before the call
		workflow  string
		ifNone    string
		wantToken string
		wantFound bool
		wantErr   bool
	}{
		{
			name:     "unknown workflow",
			act:      func(context.Context, *DB) error { return nil },
			workflow: "nope", ifNone: "t1",
		},
		{
			name:     "first call stores ifNone",
			act:      func(ctx context.Context, db *DB) error { return db.SaveExpectation(ctx, "wf", []string{"a"}, t0) },
			workflow: "wf", ifNone: "t1", wantToken: "t1", wantFound: true,
		},
		{
			name: "stored token never changes",
			act: func(ctx context.Context, db *DB) error {
				if err := db.SaveExpectation(ctx, "wf", []string{"a"}, t0); err != nil {
					return err
				}
				_, _, err := db.ExpectationToken(ctx, "wf", "t1")
				return err
			},
			workflow: "wf", ifNone: "t2", wantToken: "t1", wantFound: true,
		},
		{
			name: "resubmit keeps the token",
			act: func(ctx context.Context, db *DB) error {
				if err := db.SaveExpectation(ctx, "wf", []string{"a"}, t0); err != nil {
					return err
				}
				if _, _, err := db.ExpectationToken(ctx, "wf", "t1"); err != nil {
					return err
				}
				return db.SaveExpectation(ctx, "wf", []string{"a", "b"}, t0.Add(time.Hour))
			},
			workflow: "wf", ifNone: "t2", wantToken: "t1", wantFound: true,
		},
		{
			name: "workflows have their own tokens",
			act: func(ctx context.Context, db *DB) error {
				for _, wf := range []string{"wf", "other"} {
					if err := db.SaveExpectation(ctx, wf, []string{"a"}, t0); err != nil {
						return err
					}
				}
				_, _, err := db.ExpectationToken(ctx, "other", "t-other")
				return err
			},
			workflow: "wf", ifNone: "t1", wantToken: "t1", wantFound: true,
		},
		{
			name:     "empty ifNone",
			act:      func(ctx context.Context, db *DB) error { return db.SaveExpectation(ctx, "wf", []string{"a"}, t0) },
			workflow: "wf", ifNone: "", wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := Open(t.Context(), filepath.Join(t.TempDir(), "runway.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if err := tt.act(t.Context(), db); err != nil {
				t.Fatalf("act: %v", err)
			}
			token, found, err := db.ExpectationToken(t.Context(), tt.workflow, tt.ifNone)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ExpectationToken error = %v, want error %v", err, tt.wantErr)
			}
			if token != tt.wantToken || found != tt.wantFound {
				t.Errorf("ExpectationToken = %q, %v, want %q, %v", token, found, tt.wantToken, tt.wantFound)
			}
			if !tt.wantFound && !tt.wantErr {
				var n int
				if err := db.db.QueryRowContext(t.Context(), `SELECT count(*) FROM reporter_expectations WHERE workflow = ?`, tt.workflow).Scan(&n); err != nil || n != 0 {
					t.Errorf("rows for %s after the call: %d (%v), want 0", tt.workflow, n, err)
				}
			}
		})
	}
}

// An expectation stored by a Runway from before tokens (schema 4) is kept
// by the migration and gets a token on first use.
func TestTokenMigrationKeepsOldRows(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "runway.db")
	raw, err := sql.Open("sqlite", path+dsnOptions)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range migrations[:4] {
		if _, err := raw.ExecContext(ctx, m); err != nil {
			t.Fatalf("migration %d: %v", i+1, err)
		}
	}
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, stmt := range []string{
		"PRAGMA user_version = 4",
		fmt.Sprintf(`INSERT INTO reporter_expectations (workflow, apps, created_ns) VALUES ('old', '["web"]', %d)`, t0.UnixNano()),
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
		t.Fatalf("opening a schema 4 database: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	apps, created, _, found, err := db.LoadExpectation(ctx, "old")
	if err != nil || !found || len(apps) != 1 || apps[0] != "web" || !created.Equal(t0) {
		t.Fatalf("old row after migration: apps=%q created=%v found=%v err=%v", apps, created, found, err)
	}
	var stored string
	if err := db.db.QueryRowContext(ctx, `SELECT token FROM reporter_expectations WHERE workflow = 'old'`).Scan(&stored); err != nil || stored != "" {
		t.Fatalf("migrated token = %q (%v), want empty", stored, err)
	}
	for _, ifNone := range []string{"first", "second"} {
		token, found, err := db.ExpectationToken(ctx, "old", ifNone)
		if err != nil || !found || token != "first" {
			t.Errorf("ExpectationToken(%q) = %q, %v, %v, want the first token stored", ifNone, token, found, err)
		}
	}
}
