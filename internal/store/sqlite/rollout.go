package sqlite

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/runway-cd/runway/internal/rollout"
)

// SaveRollout implements rollout.Store (its guard is in app.go): one row
// per rollout, the whole checkpoint as a JSON document.
func (db *DB) SaveRollout(ctx context.Context, cp rollout.Checkpoint) error {
	doc, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("encoding rollout checkpoint of %s %s: %w", cp.App, cp.CanaryVersion, err)
	}
	finished := 0
	if cp.Done() {
		finished = 1
	}
	_, err = db.SQL().ExecContext(ctx, `
INSERT INTO rollouts (env, app, canary, finished, started_ns, doc) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (env, app, canary) DO UPDATE SET finished = excluded.finished, started_ns = excluded.started_ns, doc = excluded.doc`,
		cp.Env, cp.App, cp.CanaryVersion, finished, unixNanos(cp.Started), string(doc))
	if err != nil {
		return fmt.Errorf("saving rollout checkpoint of %s %s: %w", cp.App, cp.CanaryVersion, err)
	}
	return nil
}

// UnfinishedRollouts implements rollout.Checkpoints.
func (db *DB) UnfinishedRollouts(ctx context.Context, env, app string) ([]rollout.Checkpoint, error) {
	return db.rollouts(ctx, `SELECT doc FROM rollouts WHERE env = ? AND app = ? AND finished = 0 ORDER BY started_ns, canary`, env, app)
}

// ListRollouts returns the newest rollouts first, running or ended.
func (db *DB) ListRollouts(ctx context.Context, limit int) ([]rollout.Checkpoint, error) {
	return db.rollouts(ctx, `SELECT doc FROM rollouts ORDER BY started_ns DESC, env, app, canary LIMIT ?`, limit)
}

func (db *DB) rollouts(ctx context.Context, query string, args ...any) ([]rollout.Checkpoint, error) {
	rows, err := db.SQL().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("listing rollouts: %w", err)
	}
	defer rows.Close()
	var out []rollout.Checkpoint
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, fmt.Errorf("listing rollouts: %w", err)
		}
		var cp rollout.Checkpoint
		if err := json.Unmarshal([]byte(doc), &cp); err != nil {
			return nil, fmt.Errorf("decoding rollout checkpoint: %w", err)
		}
		out = append(out, cp)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing rollouts: %w", err)
	}
	return out, nil
}
