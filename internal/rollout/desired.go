package rollout

import (
	"context"
	"errors"
	"time"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/manifest"
)

// Desired is the version of an app that the production manifest declares,
// as the environment controller hands it over on every pass. The rollout
// controller alone changes which version runs in production: the first
// version is started as stable, every later one goes through a canary.
type Desired struct {
	Env, App string
	Version  string
	// Entry is the version's manifest entry (with its git revision): it
	// is written back to git when a later canary is aborted.
	Entry *manifest.App
	// Artifact is the version's app artifact, with its spec.
	Artifact build.Artifact
	// Workflow is the manifest's deploying workflow: the rollout reports
	// its end to it.
	Workflow string
}

// AppRecord is the rollout controller's durable record of one app in an
// environment, as Argo Rollouts keeps status.stableRS in the Rollout
// object: the version that serves as stable. It is the one place that says
// which version runs in production.
type AppRecord struct {
	Env           string        `json:"env"`
	App           string        `json:"app"`
	StableVersion string        `json:"stableVersion"`
	StableEntry   *manifest.App `json:"stableEntry,omitempty"`
	// Workflow is the deploying workflow of the app's first version and
	// Reported whether its deploy was reported to it: a control plane
	// killed between the record's save and the report sends the report
	// after its restart. A record made by a promotion (whose report the
	// rollout's checkpoint keeps) has Workflow "".
	Workflow string    `json:"workflow,omitempty"`
	Reported bool      `json:"reported,omitempty"`
	Updated  time.Time `json:"updated"`
}

// ErrAppNotFound is returned by Store.GetApp for an app with no record.
var ErrAppNotFound = errors.New("no rollout record of the app")

// Store keeps the rollout controller's state: one checkpoint per rollout
// (a canary of one version over another) and one record per app.
type Store interface {
	Checkpoints
	// ListRollouts returns the newest rollouts first, running or ended.
	ListRollouts(ctx context.Context, limit int) ([]Checkpoint, error)
	// SaveApp inserts or replaces the record of a.Env, a.App.
	SaveApp(ctx context.Context, a AppRecord) error
	// GetApp returns the record of app in env, or ErrAppNotFound.
	GetApp(ctx context.Context, env, app string) (AppRecord, error)
}
