package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/runway-cd/runway/internal/pipeline"
	sqlite3 "modernc.org/sqlite/lib"
)

var _ pipeline.Store = (*DB)(nil)

// SavePipeline implements pipeline.Store: the whole pipeline is one JSON
// document, with the columns the queries need beside it; a replace sets
// them all, so they never disagree with the document.
func (db *DB) SavePipeline(ctx context.Context, p *pipeline.Pipeline) error {
	doc, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encoding pipeline %s: %w", p.ID, err)
	}
	var version any
	if p.Version != "" {
		version = p.Version
	}
	_, err = db.SQL().ExecContext(ctx, `
INSERT INTO pipelines (id, app, version, phase, created_ns, doc) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
	app = excluded.app, version = excluded.version, phase = excluded.phase, created_ns = excluded.created_ns, doc = excluded.doc`,
		p.ID, p.App, version, string(p.Phase), unixNanos(p.Created), string(doc))
	if err != nil {
		// The upsert resolves a clash on id; the one other unique
		// index is the version's.
		if isCode(err, sqlite3.SQLITE_CONSTRAINT_UNIQUE) {
			return fmt.Errorf("saving pipeline %s with version %s: %w", p.ID, p.Version, pipeline.ErrVersionTaken)
		}
		return fmt.Errorf("saving pipeline %s: %w", p.ID, err)
	}
	return nil
}

// GetPipeline implements pipeline.Store.
func (db *DB) GetPipeline(ctx context.Context, id string) (*pipeline.Pipeline, error) {
	return db.pipelineWhere(ctx, "id", id)
}

// pipelineWhere loads the pipeline whose column (id or version, both
// unique) is value.
func (db *DB) pipelineWhere(ctx context.Context, column, value string) (*pipeline.Pipeline, error) {
	var doc string
	err := db.SQL().QueryRowContext(ctx, `SELECT doc FROM pipelines WHERE `+column+` = ?`, value).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("pipeline with %s %q: %w", column, value, pipeline.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("loading the pipeline with %s %s: %w", column, value, err)
	}
	var p pipeline.Pipeline
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		return nil, fmt.Errorf("decoding the pipeline with %s %s: %w", column, value, err)
	}
	return &p, nil
}

// ListPipelines implements pipeline.Store, newest first.
func (db *DB) ListPipelines(ctx context.Context, limit int) ([]*pipeline.Pipeline, error) {
	rows, err := db.SQL().QueryContext(ctx, `SELECT doc FROM pipelines ORDER BY created_ns DESC, id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("listing pipelines: %w", err)
	}
	defer rows.Close()
	var out []*pipeline.Pipeline
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, fmt.Errorf("listing pipelines: %w", err)
		}
		var p pipeline.Pipeline
		if err := json.Unmarshal([]byte(doc), &p); err != nil {
			return nil, fmt.Errorf("decoding pipeline: %w", err)
		}
		out = append(out, &p)
	}
	return out, rows.Err()
}
