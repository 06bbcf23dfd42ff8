package sqlite

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"

	sqlite3 "modernc.org/sqlite/lib"
)

// TestErrorCodes classifies real driver errors, wrapped as callers wrap
// them, by their SQLite result codes.
func TestErrorCodes(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "codes.db")
	// No busy timeout: a second writer is answered SQLITE_BUSY at once.
	conn := func() *sql.DB {
		db, err := sql.Open("sqlite", path+"?_pragma=journal_mode(WAL)&_txlock=immediate")
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		t.Cleanup(func() { db.Close() })
		return db
	}
	a, b := conn(), conn()
	for _, stmt := range []string{
		`CREATE TABLE t (id TEXT PRIMARY KEY, v TEXT)`,
		`CREATE UNIQUE INDEX t_v ON t (v)`,
		`INSERT INTO t VALUES ('1', 'x')`,
	} {
		if _, err := a.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	_, uniqueErr := a.ExecContext(ctx, `INSERT INTO t VALUES ('2', 'x')`)
	_, pkErr := a.ExecContext(ctx, `INSERT INTO t VALUES ('1', 'y')`)

	tx, err := a.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	_, busyErr := b.BeginTx(ctx, nil)

	tests := []struct {
		name        string
		err         error
		unique, pk  bool
		busyPrimary bool
	}{
		{name: "unique index", err: uniqueErr, unique: true},
		{name: "primary key", err: pkErr, pk: true},
		{name: "busy", err: busyErr, busyPrimary: true},
		{name: "not from sqlite", err: fmt.Errorf("UNIQUE constraint failed: t.v (SQLITE_BUSY)")},
		{name: "nil", err: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := fmt.Errorf("doing something: %w", tt.err)
			if tt.err == nil {
				err = nil
			}
			if got := isCode(err, sqlite3.SQLITE_CONSTRAINT_UNIQUE); got != tt.unique {
				t.Errorf("isCode(%v, UNIQUE) = %v, want %v", err, got, tt.unique)
			}
			if got := isCode(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY); got != tt.pk {
				t.Errorf("isCode(%v, PRIMARYKEY) = %v, want %v", err, got, tt.pk)
			}
			if got := isPrimaryCode(err, sqlite3.SQLITE_BUSY); got != tt.busyPrimary {
				t.Errorf("isPrimaryCode(%v, BUSY) = %v, want %v", err, got, tt.busyPrimary)
			}
		})
	}
}
