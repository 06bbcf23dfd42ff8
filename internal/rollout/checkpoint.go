package rollout

import (
	"context"
	"time"

	"github.com/runway-cd/runway/internal/manifest"
)

// Checkpoint is a rollout's durable state, saved at every step, weight,
// pause and analysis run it starts, so that a control plane killed at any
// moment resumes the canary where it was, as Argo Rollouts resumes from
// the status it keeps in the Rollout object (currentStepIndex, the pause
// start, the analysis runs it owns).
type Checkpoint struct {
	Status
	Workflow    string        `json:"workflow,omitempty"`
	StableEntry *manifest.App `json:"stableEntry,omitempty"` // written back to git on abort
	// Runs counts the analysis runs started, for unique run names.
	Runs int `json:"runs"`
	// Full is set by a full promote: every remaining step is skipped.
	Full bool `json:"full,omitempty"`
	// PauseStarted is when the timed pause of the current step began.
	PauseStarted time.Time `json:"pauseStarted,omitzero"`
	// StepRun and BackgroundRun name the analysis runs in progress; a
	// resumed rollout continues them with their stored measurements.
	StepRun       string `json:"stepRun,omitempty"`
	BackgroundRun string `json:"backgroundRun,omitempty"`
	// Aborting holds the reason once an abort has begun; Promoting is set
	// once every step passed. A resumed rollout finishes either.
	Aborting  string `json:"aborting,omitempty"`
	Promoting bool   `json:"promoting,omitempty"`
}

// Done reports whether the rollout has ended.
func (cp Checkpoint) Done() bool { return !cp.Finished.IsZero() }

// Checkpoints keep rollout checkpoints.
type Checkpoints interface {
	SaveRollout(ctx context.Context, cp Checkpoint) error
	// UnfinishedRollouts returns the checkpoints of app in env that have
	// not ended, oldest first.
	UnfinishedRollouts(ctx context.Context, env, app string) ([]Checkpoint, error)
}
