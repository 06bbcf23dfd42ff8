// Package sqlite is Runway's durable state in a SQLite file, through the pure
// Go driver modernc.org/sqlite.
//
// The database runs in WAL mode with a 5 s busy timeout and foreign keys on.
// Transactions begin IMMEDIATE, so a transaction that reads then writes never
// fails on a lock upgrade; plain queries outside transactions read
// concurrently. Times are stored as INTEGER unix nanoseconds, UTC.
//
// Not-found and conflict results are the domain packages' sentinels
// (pipeline.ErrNotFound, pipeline.ErrVersionTaken, rollout.ErrAppNotFound,
// analysis.ErrRunNotFound), wrapped with what was being done; driver
// errors are told apart by SQLite result code (modernc.org/sqlite's
// Error.Code), never by their text. The conformance suite
// internal/store/storetest runs against this store (storetest_test.go).
//
// The database file and its -wal and -shm files are readable by their owner
// only (0600), whatever the umask: they hold tokens and every pipeline's
// logs.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	modernc "modernc.org/sqlite" // also registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// DB is an open Runway state database.
type DB struct {
	db *sql.DB
}

// dsnOptions are applied by the driver to every connection it opens.
const dsnOptions = "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_txlock=immediate"

// Open opens the database at path, creating the file if needed, and applies
// the schema migrations it lacks.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" {
		return nil, fmt.Errorf("opening sqlite database: empty path")
	}
	if strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") || path == ":memory:" {
		// The driver would read these as URI parts or an in-memory database.
		return nil, fmt.Errorf("opening sqlite database %q: path must be a plain file path", path)
	}
	if err := createPrivate(path); err != nil {
		return nil, fmt.Errorf("opening sqlite database: %w", err)
	}
	var db *DB
	for attempt := 1; ; attempt++ {
		var err error
		db, err = open(ctx, path)
		if err == nil {
			break
		}
		// Switching a new file to WAL takes an exclusive lock, and SQLite
		// answers SQLITE_BUSY at once, without its busy handler, when
		// another process is doing the same: try again a few times.
		if attempt == openAttempts || !isPrimaryCode(err, sqlite3.SQLITE_BUSY) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("opening sqlite database %s: %w", path, ctx.Err())
		case <-time.After(time.Duration(attempt) * 20 * time.Millisecond):
		}
	}
	sqlDB := db.db
	if err := chmodPrivate(path+"-wal", path+"-shm"); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("opening sqlite database: %w", err)
	}
	return db, nil
}

// openAttempts bounds the retries of an Open that found the database busy.
const openAttempts = 10

// open connects to the database at path and migrates it.
func open(ctx context.Context, path string) (*DB, error) {
	sqlDB, err := sql.Open("sqlite", path+dsnOptions)
	if err != nil {
		return nil, fmt.Errorf("opening sqlite database %s: %w", path, err)
	}
	db := &DB{db: sqlDB}
	if err := sqlDB.PingContext(ctx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("opening sqlite database %s: %w", path, err)
	}
	if err := db.migrate(ctx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("migrating sqlite database %s: %w", path, err)
	}
	return db, nil
}

// fileMode is the mode of the database file and its -wal and -shm files.
const fileMode fs.FileMode = 0o600

// createPrivate creates the database file with fileMode before the driver
// opens it (SQLite then creates -wal and -shm with the same mode), or
// narrows an existing file's mode to it.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, fileMode)
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	return chmodPrivate(path)
}

// chmodPrivate sets fileMode on each of paths that exists: the umask may
// have narrowed less than wanted, or a file may predate this version.
func chmodPrivate(paths ...string) error {
	for _, p := range paths {
		if err := os.Chmod(p, fileMode); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("setting mode of %s: %w", p, err)
		}
	}
	return nil
}

// Close closes the database.
func (db *DB) Close() error {
	if err := db.db.Close(); err != nil {
		return fmt.Errorf("closing sqlite database: %w", err)
	}
	return nil
}

// SQL returns the underlying database handle, for packages that keep their
// own tables in this database.
func (db *DB) SQL() *sql.DB {
	return db.db
}

// migrate applies the migrations after the database's PRAGMA user_version,
// each in its own transaction together with the version bump.
func (db *DB) migrate(ctx context.Context) error {
	for {
		done, err := db.migrateOne(ctx)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// migrateOne applies the next missing migration, if any. The version is read
// inside the (immediate, so exclusive for writers) transaction, so two
// processes opening the same file never apply a migration twice.
func (db *DB) migrateOne(ctx context.Context) (done bool, err error) {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("beginning migration: %w", err)
	}
	defer tx.Rollback()

	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return false, fmt.Errorf("reading schema version: %w", err)
	}
	switch {
	case version > len(migrations):
		return false, fmt.Errorf("schema version %d is newer than this program's %d", version, len(migrations))
	case version == len(migrations):
		return true, nil
	}
	if _, err := tx.ExecContext(ctx, migrations[version]); err != nil {
		return false, fmt.Errorf("applying migration %d: %w", version+1, err)
	}
	// PRAGMA takes no bound parameters; version is an int we control.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", version+1)); err != nil {
		return false, fmt.Errorf("setting schema version %d: %w", version+1, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("committing migration %d: %w", version+1, err)
	}
	return false, nil
}

// unixNanos converts t for storage.
func unixNanos(t time.Time) int64 {
	return t.UnixNano()
}

// fromUnixNanos converts a stored time back, in UTC.
func fromUnixNanos(ns int64) time.Time {
	return time.Unix(0, ns).UTC()
}

// isCode reports whether err comes from SQLite with the (extended) result
// code code, such as SQLITE_CONSTRAINT_UNIQUE. The driver turns extended
// result codes on, so Code is the extended one.
func isCode(err error, code int) bool {
	var e *modernc.Error
	return errors.As(err, &e) && e.Code() == code
}

// isPrimaryCode reports whether err comes from SQLite with a result code
// whose primary code (the low 8 bits) is code, such as SQLITE_BUSY for
// SQLITE_BUSY_SNAPSHOT too.
func isPrimaryCode(err error, code int) bool {
	var e *modernc.Error
	return errors.As(err, &e) && e.Code()&0xff == code
}
