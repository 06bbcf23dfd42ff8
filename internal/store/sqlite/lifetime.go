package sqlite

import (
	"context"

	"github.com/runway-cd/runway/internal/pipeline"
)

var _ pipeline.VersionFinder = (*DB)(nil)

// PipelineByVersion implements pipeline.VersionFinder: the pipeline that
// picked version, which also names its staging environment.
func (db *DB) PipelineByVersion(ctx context.Context, version string) (*pipeline.Pipeline, error) {
	return db.pipelineWhere(ctx, "version", version)
}
