package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/runway-cd/runway/internal/analysis"
)

// AbandonAnalysisRuns ends the analysis runs still in phase Running that
// live does not claim (a control plane killed mid-analysis leaves them so,
// and no rollout will resume them): phase Error, reason "abandoned: " +
// why, finished at now. A run saved again between the read and the update
// is left as it is. It returns the names of the runs it ended. Pipelines
// and rollouts are not touched.
func (db *DB) AbandonAnalysisRuns(ctx context.Context, live func(analysis.RunRecord) bool, why string, now time.Time) ([]string, error) {
	type row struct {
		doc string
		rec analysis.RunRecord
	}
	rows, err := db.db.QueryContext(ctx, `SELECT doc FROM analysis_runs WHERE phase = ? ORDER BY started_ns, name`, string(analysis.PhaseRunning))
	if err != nil {
		return nil, fmt.Errorf("listing running analysis runs: %w", err)
	}
	var running []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.doc); err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing running analysis runs: %w", err)
		}
		if err := json.Unmarshal([]byte(r.doc), &r.rec); err != nil {
			rows.Close()
			return nil, fmt.Errorf("decoding analysis run: %w", err)
		}
		running = append(running, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing running analysis runs: %w", err)
	}
	var ended []string
	for _, r := range running {
		if live(r.rec) {
			continue
		}
		rec := r.rec
		rec.Phase, rec.Reason, rec.FinishedAt = analysis.PhaseError, "abandoned: "+why, now.UTC()
		doc, err := json.Marshal(rec)
		if err != nil {
			return ended, fmt.Errorf("encoding analysis run %s: %w", rec.Name, err)
		}
		// Only if unchanged since read: a rollout that resumed the run
		// in the meantime keeps it.
		res, err := db.db.ExecContext(ctx, `UPDATE analysis_runs SET phase = ?, doc = ? WHERE name = ? AND doc = ?`,
			string(rec.Phase), string(doc), rec.Name, r.doc)
		if err != nil {
			return ended, fmt.Errorf("abandoning analysis run %s: %w", rec.Name, err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			ended = append(ended, rec.Name)
		}
	}
	return ended, nil
}

// PruneBefore deletes what only matters for a while and returns how many
// rows it deleted: webhook deliveries (kept to drop GitHub's redeliveries)
// received before cutoff, and reporter expectations and reports created
// before cutoff. Pipelines, analysis runs and rollouts are kept.
func (db *DB) PruneBefore(ctx context.Context, cutoff time.Time) (int64, error) {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("pruning old rows: %w", err)
	}
	defer tx.Rollback()
	var deleted int64
	for _, q := range []string{
		`DELETE FROM webhook_deliveries WHERE received_ns < ?`,
		`DELETE FROM reporter_expectations WHERE created_ns < ?`,
		`DELETE FROM reporter_reports WHERE reported_ns < ?`,
	} {
		res, err := tx.ExecContext(ctx, q, unixNanos(cutoff))
		if err != nil {
			return 0, fmt.Errorf("pruning old rows: %w", err)
		}
		n, _ := res.RowsAffected()
		deleted += n
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("pruning old rows: %w", err)
	}
	return deleted, nil
}
