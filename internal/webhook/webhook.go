// Package webhook receives GitHub push webhooks: it verifies their
// signature, decodes them, decides whether the pushed branch is tracked, and
// starts a pipeline for each tracked push exactly once per delivery.
package webhook

import (
	"context"
	"time"
)

// Push is a decoded GitHub push event.
type Push struct {
	Delivery string // X-GitHub-Delivery id; set by the handler, empty from ParsePush
	Repo     string // repository full name, owner/name
	CloneURL string
	Ref      string // full ref, e.g. refs/heads/main
	Branch   string // Ref without refs/heads/; empty for tags and other refs
	After    string // commit sha after the push
	Message  string // head commit message
	Pusher   string
	Deleted  bool // the push deleted the ref
}

// Starter starts a pipeline for a push. Push.Delivery is set, so a starter
// may dedup as well (the handler records the delivery only after Start
// returns).
type Starter interface {
	Start(ctx context.Context, p Push) (id string, err error)
}

// Tracker decides which pushes matter.
type Tracker interface {
	Tracks(repo, branch string) bool
}

// Deliveries remembers which delivery started which pipeline, so a delivery
// sent again does not start a second one.
type Deliveries interface {
	LookupDelivery(ctx context.Context, delivery string) (pipelineID string, found bool, err error)
	SaveDelivery(ctx context.Context, delivery, pipelineID string, at time.Time) error
}
