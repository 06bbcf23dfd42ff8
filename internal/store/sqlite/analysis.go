package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/runway-cd/runway/internal/analysis"
)

// SaveAnalysisRun inserts or replaces an analysis run's record: one JSON
// document, with the columns the queries need beside it, all replaced
// together.
func (db *DB) SaveAnalysisRun(ctx context.Context, r analysis.RunRecord) error {
	doc, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding analysis run %s: %w", r.Name, err)
	}
	_, err = db.SQL().ExecContext(ctx, `
INSERT INTO analysis_runs (name, env, app, phase, started_ns, doc) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET
	env = excluded.env, app = excluded.app, phase = excluded.phase, started_ns = excluded.started_ns, doc = excluded.doc`,
		r.Name, r.Env, r.App, string(r.Phase), unixNanos(r.StartedAt), string(doc))
	if err != nil {
		return fmt.Errorf("saving analysis run %s: %w", r.Name, err)
	}
	return nil
}

// GetAnalysisRun returns one run with its measurements, or an error
// wrapping analysis.ErrRunNotFound.
func (db *DB) GetAnalysisRun(ctx context.Context, name string) (analysis.RunRecord, error) {
	var doc string
	err := db.SQL().QueryRowContext(ctx, `SELECT doc FROM analysis_runs WHERE name = ?`, name).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return analysis.RunRecord{}, fmt.Errorf("analysis run %q: %w", name, analysis.ErrRunNotFound)
	}
	if err != nil {
		return analysis.RunRecord{}, fmt.Errorf("loading analysis run %s: %w", name, err)
	}
	var r analysis.RunRecord
	if err := json.Unmarshal([]byte(doc), &r); err != nil {
		return analysis.RunRecord{}, fmt.Errorf("decoding analysis run %s: %w", name, err)
	}
	return r, nil
}

// ListAnalysisRuns returns the newest runs first.
func (db *DB) ListAnalysisRuns(ctx context.Context, limit int) ([]analysis.RunRecord, error) {
	rows, err := db.SQL().QueryContext(ctx, `SELECT doc FROM analysis_runs ORDER BY started_ns DESC, name LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("listing analysis runs: %w", err)
	}
	defer rows.Close()
	out := []analysis.RunRecord{}
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, fmt.Errorf("listing analysis runs: %w", err)
		}
		var r analysis.RunRecord
		if err := json.Unmarshal([]byte(doc), &r); err != nil {
			return nil, fmt.Errorf("decoding analysis run: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
