package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/runway-cd/runway/internal/pipeline"
)

var _ pipeline.VersionFinder = (*DB)(nil)

// PipelineByVersion implements pipeline.VersionFinder: the pipeline that
// picked version, which also names its staging environment.
func (db *DB) PipelineByVersion(ctx context.Context, version string) (*pipeline.Pipeline, error) {
	var doc string
	err := db.SQL().QueryRowContext(ctx, `SELECT doc FROM pipelines WHERE version = ?`, version).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("pipeline with version %q: %w", version, pipeline.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("loading the pipeline of version %s: %w", version, err)
	}
	var p pipeline.Pipeline
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		return nil, fmt.Errorf("decoding the pipeline of version %s: %w", version, err)
	}
	return &p, nil
}
