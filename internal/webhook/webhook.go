// Package webhook receives GitHub push webhooks: it verifies their
// signature in bounded memory, decodes them, decides whether the pushed
// branch is tracked, checks that the pushed commit is on that branch,
// applies the app's path filter to the paths the push changed, and starts a
// pipeline for each tracked push exactly once per delivery. A push to the
// state repository's branch asks for a reconcile at once instead, as Argo
// CD's webhook does.
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
	Before   string // commit sha before the push; all zeros for a new branch, "" when the payload has none
	After    string // commit sha after the push
	Message  string // head commit message
	// Author is the head commit's author as "Name <email>" (or the one
	// of them the payload has), bounded like Message.
	Author  string
	Pusher  string
	Deleted bool // the push deleted the ref
	// Paths are the paths the payload's commits list as added, modified
	// or removed, each once, when PathsListed; only a fallback for path
	// filters when git cannot tell (see the Paths interface). PathsListed is false when
	// the payload lists no commits, GitHub's cap of 2048 commits or more,
	// or more than MaxChangedPaths paths.
	Paths       []string
	PathsListed bool
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

// Paths gives the handler what an app's path filter needs.
type Paths interface {
	// PathFilter returns the path filter of the app a push to repo's
	// branch is for, and the app's name; a zero PathFilter filters
	// nothing.
	PathFilter(repo, branch string) (app string, f PathFilter)
	// ChangedPaths returns the paths that differ between the trees of
	// commits before and after in the own repository of the app a push to
	// repo's branch is for (never a URL from the payload). It returns an
	// error wrapping ErrUnknownCommit when either commit is not there (git
	// cannot tell: the handler then uses the payload's list), one wrapping
	// ErrTooManyPaths when more than MaxChangedPaths differ (the push is
	// not filtered), and any other error when it could not find out (the
	// handler answers 503).
	ChangedPaths(ctx context.Context, repo, branch, before, after string) ([]string, error)
}

// ErrTooManyPaths: a push changed more than MaxChangedPaths paths.
var ErrTooManyPaths = errors.New("too many changed paths to filter")

// Reconciler brings the environments to what the state repository
// declares; Reconcile asks for a pass soon and does not wait for it.
type Reconciler interface {
	Reconcile()
}

// ReconcileFunc is a func as a Reconciler (the environment controller's
// Trigger).
type ReconcileFunc func()

// Reconcile calls f.
func (f ReconcileFunc) Reconcile() { f() }

// StateRepo names the state repository, whose pushes reconcile.
type StateRepo struct {
	// Repo is its full name as GitHub sends it (owner/name). Empty: no
	// push is taken for one of the state repository.
	Repo string
	// Branch is the branch Runway reads; pushes to other branches are
	// acknowledged and ignored. Default main.
	Branch string
	// Reconciler is asked for a pass on each push to Branch. Required
	// with Repo.
	Reconciler Reconciler
}
