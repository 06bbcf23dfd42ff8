package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/runway-cd/runway/internal/reporter"
)

var _ reporter.Store = (*DB)(nil)

// SaveExpectation creates workflow's expectation or replaces its apps list,
// keeping the creation time of the first save.
func (db *DB) SaveExpectation(ctx context.Context, workflow string, apps []string, created time.Time) error {
	if apps == nil {
		apps = []string{}
	}
	appsJSON, err := json.Marshal(apps)
	if err != nil {
		return fmt.Errorf("encoding apps of %s: %w", workflow, err)
	}
	_, err = db.db.ExecContext(ctx, `
INSERT INTO reporter_expectations (workflow, apps, created_ns) VALUES (?, ?, ?)
ON CONFLICT (workflow) DO UPDATE SET apps = excluded.apps`,
		workflow, string(appsJSON), unixNanos(created))
	if err != nil {
		return fmt.Errorf("saving expectation of %s: %w", workflow, err)
	}
	return nil
}

// SaveReport records r for workflow, replacing an earlier report of the
// same app. Its Outcome is kept in a column of its own.
func (db *DB) SaveReport(ctx context.Context, workflow string, r reporter.Report) error {
	_, err := db.db.ExecContext(ctx, `
INSERT INTO reporter_reports (workflow, app, success, outcome, message, reported_ns) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (workflow, app) DO UPDATE SET
	success = excluded.success, outcome = excluded.outcome, message = excluded.message, reported_ns = excluded.reported_ns`,
		workflow, r.App, r.Success, string(r.Outcome), r.Message, unixNanos(r.Time))
	if err != nil {
		return fmt.Errorf("saving report of %s for %s: %w", r.App, workflow, err)
	}
	return nil
}

// LoadExpectation returns workflow's expectation and all its reports, oldest
// first. Reports are returned even when the expectation is not found.
func (db *DB) LoadExpectation(ctx context.Context, workflow string) (apps []string, created time.Time, reports []reporter.Report, found bool, err error) {
	var appsJSON string
	var createdNs int64
	err = db.db.QueryRowContext(ctx,
		`SELECT apps, created_ns FROM reporter_expectations WHERE workflow = ?`, workflow,
	).Scan(&appsJSON, &createdNs)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, time.Time{}, nil, false, fmt.Errorf("loading expectation of %s: %w", workflow, err)
	default:
		found = true
		created = fromUnixNanos(createdNs)
		if err := json.Unmarshal([]byte(appsJSON), &apps); err != nil {
			return nil, time.Time{}, nil, false, fmt.Errorf("decoding apps of %s: %w", workflow, err)
		}
	}
	reports, err = db.loadReports(ctx, workflow)
	if err != nil {
		return nil, time.Time{}, nil, false, err
	}
	return apps, created, reports, found, nil
}

// loadReports returns workflow's reports, oldest first.
func (db *DB) loadReports(ctx context.Context, workflow string) ([]reporter.Report, error) {
	rows, err := db.db.QueryContext(ctx, `
SELECT app, success, outcome, message, reported_ns FROM reporter_reports
WHERE workflow = ? ORDER BY reported_ns, app`, workflow)
	if err != nil {
		return nil, fmt.Errorf("loading reports of %s: %w", workflow, err)
	}
	defer rows.Close()
	var reports []reporter.Report
	for rows.Next() {
		var r reporter.Report
		var ns int64
		var outcome string
		if err := rows.Scan(&r.App, &r.Success, &outcome, &r.Message, &ns); err != nil {
			return nil, fmt.Errorf("reading report of %s: %w", workflow, err)
		}
		r.Outcome, r.Time = reporter.Outcome(outcome), fromUnixNanos(ns)
		reports = append(reports, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading reports of %s: %w", workflow, err)
	}
	return reports, nil
}

// ExpectationToken returns the bearer token of workflow's expectation. When
// the expectation has none yet (it was saved before tokens existed, or its
// token is being set for the first time) ifNone is stored and returned; a
// token once stored never changes. found is false when workflow was never
// submitted; nothing is stored then.
func (db *DB) ExpectationToken(ctx context.Context, workflow, ifNone string) (token string, found bool, err error) {
	if ifNone == "" {
		return "", false, fmt.Errorf("setting token of %s: empty token", workflow)
	}
	// A plain read first: the common case writes nothing.
	err = db.db.QueryRowContext(ctx,
		`SELECT token FROM reporter_expectations WHERE workflow = ?`, workflow).Scan(&token)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("loading token of %s: %w", workflow, err)
	case token != "":
		return token, true, nil
	}
	// Only an empty token is replaced, so concurrent callers agree on the
	// first one stored.
	err = db.db.QueryRowContext(ctx, `
UPDATE reporter_expectations SET token = CASE WHEN token = '' THEN ? ELSE token END
WHERE workflow = ? RETURNING token`, ifNone, workflow).Scan(&token)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", false, nil // collected in between
	case err != nil:
		return "", false, fmt.Errorf("setting token of %s: %w", workflow, err)
	}
	return token, true, nil
}
