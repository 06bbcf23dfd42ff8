// Package webhook receives GitHub push webhooks: it verifies their
// signature in bounded memory, decodes them, decides whether the pushed
// branch is tracked, checks that the pushed commit is on that branch, and
// starts a pipeline for each tracked push exactly once per delivery.
package webhook

import (
	"context"
	"errors"
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

// Queue tells whether a started pipeline waits for a free slot, and why.
type Queue interface {
	Queued(ctx context.Context, id string) (reason string, queued bool)
}

// Tracker decides which pushes matter.
type Tracker interface {
	Tracks(repo, branch string) bool
}

// Verifier checks, in the app's own repository (never a URL from the
// payload), that a pushed commit is the tracked branch's head or reachable
// from it. It returns nil if so, an error wrapping ErrUnknownCommit or
// ErrNotOnBranch if not, and any other error if it could not find out
// (the repository is unreachable): the handler then answers 503 and
// records nothing.
type Verifier interface {
	Verify(ctx context.Context, repo, branch, commit string) error
}

// Verdicts of a Verifier.
var (
	// ErrUnknownCommit: the commit is not in the repository.
	ErrUnknownCommit = errors.New("commit is not in the repository")
	// ErrNotOnBranch: the commit is in the repository but not reachable
	// from the tracked branch.
	ErrNotOnBranch = errors.New("commit is not on the tracked branch")
)

// Deliveries remembers which delivery started which pipeline, so a delivery
// sent again does not start a second one.
type Deliveries interface {
	LookupDelivery(ctx context.Context, delivery string) (pipelineID string, found bool, err error)
	SaveDelivery(ctx context.Context, delivery, pipelineID string, at time.Time) error
}
