package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/runway-cd/runway/internal/webhook"
)

var _ webhook.Deliveries = (*DB)(nil)

// LookupDelivery returns the pipeline started for a webhook delivery id.
func (db *DB) LookupDelivery(ctx context.Context, delivery string) (pipelineID string, found bool, err error) {
	err = db.db.QueryRowContext(ctx,
		`SELECT pipeline_id FROM webhook_deliveries WHERE delivery = ?`, delivery,
	).Scan(&pipelineID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("looking up delivery %s: %w", delivery, err)
	}
	return pipelineID, true, nil
}

// SaveDelivery records that delivery started pipelineID. The first record of
// a delivery wins; saving it again changes nothing.
func (db *DB) SaveDelivery(ctx context.Context, delivery, pipelineID string, at time.Time) error {
	_, err := db.db.ExecContext(ctx, `
INSERT INTO webhook_deliveries (delivery, pipeline_id, received_ns) VALUES (?, ?, ?)
ON CONFLICT (delivery) DO NOTHING`, delivery, pipelineID, unixNanos(at))
	if err != nil {
		return fmt.Errorf("saving delivery %s: %w", delivery, err)
	}
	return nil
}
