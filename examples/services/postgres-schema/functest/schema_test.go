package functest

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"example.com/postgres-schema/schema"
)

// TestSchema checks, in every app's database, that the table exists with
// its columns, that the app's own role owns it and that it can write it.
func TestSchema(t *testing.T) {
	dbs, err := schema.Databases(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if len(dbs) == 0 {
		t.Skip("no app of this environment needs postgres (RUNWAY_DATABASE_APPS is empty)")
	}
	for _, db := range dbs {
		t.Run(db.App, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			conn, err := pgx.Connect(ctx, db.URL)
			if err != nil {
				t.Fatalf("connecting to the database of %s: %v", db.App, err)
			}
			defer conn.Close(context.WithoutCancel(ctx))
			checkTable(ctx, t, conn)
			checkWritable(ctx, t, conn)
		})
	}
}

// checkTable checks the table's columns and owner.
func checkTable(ctx context.Context, t *testing.T, conn *pgx.Conn) {
	t.Helper()
	var owner, user string
	err := conn.QueryRow(ctx, `SELECT tableowner, current_user FROM pg_tables WHERE schemaname = 'public' AND tablename = $1`, schema.Table).Scan(&owner, &user)
	if errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("table %s does not exist: did the migrations run?", schema.Table)
	}
	if err != nil {
		t.Fatalf("looking %s up: %v", schema.Table, err)
	}
	if owner != user {
		t.Errorf("%s is owned by %s, not by the app's own role %s", schema.Table, owner, user)
	}
	rows, err := conn.Query(ctx, `SELECT column_name FROM information_schema.columns
		WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position`, schema.Table)
	if err != nil {
		t.Fatalf("listing the columns of %s: %v", schema.Table, err)
	}
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("listing the columns of %s: %v", schema.Table, err)
	}
	if !slices.Equal(cols, schema.Columns) {
		t.Errorf("%s has columns %v, want %v", schema.Table, cols, schema.Columns)
	}
}

// checkWritable writes a row and reads it back, in a transaction it rolls
// back: the environment's data stays as it was.
func checkWritable(ctx context.Context, t *testing.T, conn *pgx.Conn) {
	t.Helper()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var value string
	err = tx.QueryRow(ctx, `INSERT INTO service_settings (name, value) VALUES ('functest', 'ok')
		ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = now() RETURNING value`).Scan(&value)
	if err != nil || value != "ok" {
		t.Fatalf("writing %s: value %q, %v", schema.Table, value, err)
	}
}
