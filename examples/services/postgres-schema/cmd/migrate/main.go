// Command migrate brings the database of every app that needs postgres to
// the postgres service's schema (package schema). Runway runs it from the
// service's pipeline artifact against staging, then production, with
// RUNWAY_DATABASE_APPS and each app's <APP>_DATABASE_URL.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"example.com/postgres-schema/schema"
)

// perDatabase bounds the migration of one database; the job's timeout
// bounds the whole run.
const perDatabase = time.Minute

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "migrate: %v\n", err)
		os.Exit(1)
	}
}

// run migrates each app's database in turn and stops at the first
// failure: the job fails, and runs again whole with the next change.
func run(ctx context.Context, getenv func(string) string, out io.Writer) error {
	dbs, err := schema.Databases(getenv)
	if err != nil {
		return err
	}
	if len(dbs) == 0 {
		fmt.Fprintf(out, "no app of %s needs postgres: nothing to migrate\n", getenv("RUNWAY_ENV"))
		return nil
	}
	for _, db := range dbs {
		dctx, cancel := context.WithTimeout(ctx, perDatabase)
		err := schema.Migrate(dctx, db.URL)
		cancel()
		if err != nil {
			return fmt.Errorf("migrating the database of %s: %w", db.App, err)
		}
		fmt.Fprintf(out, "%s: %s is up to date\n", db.App, schema.Table)
	}
	return nil
}
