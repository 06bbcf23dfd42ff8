// Package schema is what the postgres service's repository sets up in the
// database of every app that needs postgres: one table, service_settings,
// created and then altered by statements that can run any number of
// times. Both the migration job (cmd/migrate) and the functional tests
// (functest) read the databases from the variables Runway gives a
// service's jobs: RUNWAY_DATABASE_APPS lists the apps, and each app's
// <APP>_DATABASE_URL (the name upper-case, '-' as '_') connects as that
// app's own role, the owner of its database.
package schema

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Table is the table every app's database gets.
const Table = "service_settings"

// Columns are Table's columns once every statement has run, in order.
var Columns = []string{"name", "value", "updated_at"}

// statements bring a database to the schema, each idempotent: a later
// change is a new statement appended (ADD COLUMN IF NOT EXISTS ...), never
// an edit of one that has run.
var statements = []string{
	`CREATE TABLE IF NOT EXISTS service_settings (
		name  text PRIMARY KEY,
		value text NOT NULL
	)`,
	`ALTER TABLE service_settings ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now()`,
}

// Database is one app's database, as a service's job gets it.
type Database struct {
	App string // the app's name in the manifest
	URL string // <APP>_DATABASE_URL
}

// Databases reads the apps' databases from the job's environment
// (getenv: os.Getenv). An app listed without its URL is an error: Runway
// gives both or neither. No app (none needs postgres) is an empty list.
func Databases(getenv func(string) string) ([]Database, error) {
	var dbs []Database
	var errs []error
	for _, app := range strings.Fields(getenv("RUNWAY_DATABASE_APPS")) {
		name := URLVar(app)
		url := getenv(name)
		if url == "" {
			errs = append(errs, fmt.Errorf("%s is in RUNWAY_DATABASE_APPS but %s is not set", app, name))
			continue
		}
		dbs = append(dbs, Database{App: app, URL: url})
	}
	return dbs, errors.Join(errs...)
}

// URLVar is the variable that holds app's database URL.
func URLVar(app string) string {
	return strings.ToUpper(strings.ReplaceAll(app, "-", "_")) + "_DATABASE_URL"
}

// Migrate brings the database at url to the schema, in one transaction
// that holds an advisory lock, so that two runs against the same database
// (a retried job beside one still running) wait for each other instead of
// racing on CREATE TABLE.
func Migrate(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("beginning the migration: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // a no-op once committed
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('postgres-schema'))`); err != nil {
		return fmt.Errorf("taking the migration lock: %w", err)
	}
	for i, stmt := range statements {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("statement %d: %w", i+1, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("committing the migration: %w", err)
	}
	return nil
}
