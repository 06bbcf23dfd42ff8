package rollout

import (
	"context"
	"slices"
	"time"

	"github.com/runway-cd/runway/internal/manifest"
)

// Checkpoint is a rollout's durable state, as Argo Rollouts keeps it in the
// Rollout object's status (currentStepIndex, the pause start, the analysis
// runs it owns, the abort flag). Every pass of the reconciler starts from
// it and saves it when it acted, so a control plane killed at any moment
// resumes the rollout by running an ordinary pass. The commands (Promote,
// PromoteFull, Retry, Abort) write their request into it too.
type Checkpoint struct {
	Status
	Workflow string `json:"workflow,omitempty"`
	// StableEntry is written back to git on abort; CanaryEntry becomes the
	// app record's stable entry once promoted.
	StableEntry *manifest.App `json:"stableEntry,omitempty"`
	CanaryEntry *manifest.App `json:"canaryEntry,omitempty"`
	// Runs counts the analysis runs started, for unique run names.
	Runs int `json:"runs"`
	// Full is set by a full promote: every remaining step is skipped.
	Full bool `json:"full,omitempty"`
	// PauseStarted is when the timed pause of the current step began.
	PauseStarted time.Time `json:"pauseStarted,omitzero"`
	// PauseKind says what the rollout is paused on at its current step
	// (one of the pause* constants), "" when it is not paused.
	PauseKind string `json:"pauseKind,omitempty"`
	// PromoteAt and RetryAt are the pending requests of Promote and
	// Retry: the step (Step+1) they were made at, 0 for none. A request
	// made at an earlier step is stale and ignored.
	PromoteAt int `json:"promoteAt,omitempty"`
	RetryAt   int `json:"retryAt,omitempty"`
	// StepRun and BackgroundRun name the analysis runs of the current
	// step and in the background; a restarted pass continues them with
	// their stored measurements. BackgroundDone is set once the
	// background analysis needs no more watching (it ended Successful,
	// or a person promoted past its inconclusive end).
	StepRun        string `json:"stepRun,omitempty"`
	BackgroundRun  string `json:"backgroundRun,omitempty"`
	BackgroundDone bool   `json:"backgroundDone,omitempty"`
	// Aborting holds the reason once an abort has begun; Superseded the
	// message once a newer version took the rollout's place; Promoting is
	// set once every step passed. A pass finishes whichever is set.
	Aborting   string `json:"aborting,omitempty"`
	Superseded string `json:"superseded,omitempty"`
	Promoting  bool   `json:"promoting,omitempty"`
	// The end's steps done so far, each once: the canary's (abort,
	// superseded) or the old stable's (promotion) replicas stopped, the
	// production manifest reverted (or found not to need it), the end
	// reported.
	CanaryStopped bool `json:"canaryStopped,omitempty"`
	StableStopped bool `json:"stableStopped,omitempty"`
	Reverted      bool `json:"reverted,omitempty"`
	Reported      bool `json:"reported,omitempty"`
}

// What a rollout can be paused on (Checkpoint.PauseKind).
const (
	pauseTimed      = "timed"
	pauseIndefinite = "indefinite"
	// pauseInconclusive: the step's analysis ended Inconclusive;
	// pauseBackground: the background analysis did. Both can be retried.
	pauseInconclusive = "inconclusive"
	pauseBackground   = "background"
)

// Done reports whether the rollout has ended.
func (cp Checkpoint) Done() bool { return !cp.Finished.IsZero() }

// ending reports whether the rollout is being aborted or superseded.
func (cp Checkpoint) ending() bool { return cp.Aborting != "" || cp.Superseded != "" }

// clone returns cp with its own copy of the analyses.
func (cp Checkpoint) clone() Checkpoint {
	cp.Analyses = slices.Clone(cp.Analyses)
	return cp
}

// mergeCommands keeps, in cp (what a pass is about to save), the requests
// that a command wrote into the store (stored) after the pass loaded its
// checkpoint (loaded): a pass never overwrites a command it did not see.
func mergeCommands(cp *Checkpoint, loaded, stored Checkpoint) {
	if stored.PromoteAt != loaded.PromoteAt {
		cp.PromoteAt = stored.PromoteAt
	}
	if stored.RetryAt != loaded.RetryAt {
		cp.RetryAt = stored.RetryAt
	}
	if stored.Full && !loaded.Full {
		cp.Full = true
	}
	if stored.Aborting != "" && loaded.Aborting == "" && cp.Aborting == "" {
		cp.Aborting, cp.Phase, cp.Message = stored.Aborting, stored.Phase, stored.Message
	}
}

// Checkpoints keep rollout checkpoints, one per env, app and canary
// version: saving a checkpoint of the same canary again replaces it.
type Checkpoints interface {
	SaveRollout(ctx context.Context, cp Checkpoint) error
	// UnfinishedRollouts returns the checkpoints of app in env that have
	// not ended, oldest first.
	UnfinishedRollouts(ctx context.Context, env, app string) ([]Checkpoint, error)
}
