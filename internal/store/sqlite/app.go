package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/runway-cd/runway/internal/rollout"
)

var _ rollout.Store = (*DB)(nil)

// SaveApp implements rollout.Store: it inserts or replaces the record of
// a.Env, a.App, kept as one JSON document.
func (db *DB) SaveApp(ctx context.Context, a rollout.AppRecord) error {
	doc, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encoding rollout record of %s in %s: %w", a.App, a.Env, err)
	}
	_, err = db.db.ExecContext(ctx, `
INSERT INTO rollout_apps (env, app, updated_ns, doc) VALUES (?, ?, ?, ?)
ON CONFLICT (env, app) DO UPDATE SET updated_ns = excluded.updated_ns, doc = excluded.doc`,
		a.Env, a.App, unixNanos(a.Updated), string(doc))
	if err != nil {
		return fmt.Errorf("saving rollout record of %s in %s: %w", a.App, a.Env, err)
	}
	return nil
}

// GetApp implements rollout.Store: the record of app in env, or an error
// wrapping rollout.ErrAppNotFound.
func (db *DB) GetApp(ctx context.Context, env, app string) (rollout.AppRecord, error) {
	var doc string
	err := db.db.QueryRowContext(ctx, `SELECT doc FROM rollout_apps WHERE env = ? AND app = ?`, env, app).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return rollout.AppRecord{}, fmt.Errorf("rollout record of %q in %q: %w", app, env, rollout.ErrAppNotFound)
	}
	if err != nil {
		return rollout.AppRecord{}, fmt.Errorf("loading rollout record of %s in %s: %w", app, env, err)
	}
	var a rollout.AppRecord
	if err := json.Unmarshal([]byte(doc), &a); err != nil {
		return rollout.AppRecord{}, fmt.Errorf("decoding rollout record of %s in %s: %w", app, env, err)
	}
	return a, nil
}
