// Package pipeline takes one pushed change through the method: version,
// build, staging environment, reporter gate, migrations and functional
// tests, promotion, canary, production checks and teardown. Each step's
// state, times and log are stored as they change, so the API shows a
// pipeline live and a restarted control plane resumes it.
package pipeline

import (
	"context"
	"errors"
	"time"
)

// Phase is the state of a pipeline or a step.
type Phase string

// Phases.
const (
	Pending Phase = "Pending"
	// Queued is a pipeline waiting for a free slot (Options.MaxRunning):
	// its Reason says why. It starts, in arrival order, when one frees,
	// also after a restart.
	Queued    Phase = "Queued"
	Running   Phase = "Running"
	Succeeded Phase = "Succeeded"
	Failed    Phase = "Failed"
	Skipped   Phase = "Skipped"
)

// Done reports whether the phase is final.
func (p Phase) Done() bool { return p == Succeeded || p == Failed || p == Skipped }

// Step names, in order.
const (
	StepVersion              = "version"
	StepBuildApp             = "build-app"
	StepBuildPipeline        = "build-pipeline"
	StepStage                = "push-staging-manifest"
	StepSubmit               = "submit-to-reporter"
	StepAwaitDeploy          = "wait-staging-ready"
	StepStagingMigrations    = "staging-migrations"
	StepStagingTests         = "staging-functional-tests"
	StepPromote              = "promote"
	StepAwaitRollout         = "wait-rollout"
	StepProductionMigrations = "production-migrations"
	StepProductionTests      = "production-functional-tests"
	StepTeardown             = "teardown-staging"
)

// StepNames lists every step in the order they run. The teardown step
// also runs after a failure.
var StepNames = []string{
	StepVersion, StepBuildApp, StepBuildPipeline, StepStage, StepSubmit, StepAwaitDeploy,
	StepStagingMigrations, StepStagingTests, StepPromote, StepAwaitRollout,
	StepProductionMigrations, StepProductionTests, StepTeardown,
}

// Pipeline is one change going through the method.
type Pipeline struct {
	ID       string `json:"id"`
	App      string `json:"app"`
	Repo     string `json:"repo"`
	CloneURL string `json:"cloneURL"`
	Branch   string `json:"branch"`
	Commit   string `json:"commit"`
	Message  string `json:"message"`
	Delivery string `json:"delivery,omitempty"`
	// Version is picked by the first step.
	Version string `json:"version,omitempty"`
	// StagingEnv is the staging environment's name and URL while it may
	// exist.
	StagingEnv string    `json:"stagingEnv,omitempty"`
	StagingURL string    `json:"stagingURL,omitempty"`
	Phase      Phase     `json:"phase"`
	Reason     string    `json:"reason,omitempty"`
	FailedStep string    `json:"failedStep,omitempty"`
	Created    time.Time `json:"created"`
	Started    time.Time `json:"started,omitzero"`
	Finished   time.Time `json:"finished,omitzero"`
	Steps      []Step    `json:"steps"`

	// StagingKeptUntil is set when the pipeline failed and its staging
	// environment was kept for debugging (Options.KeepOnFailure): it is
	// removed at that time, when its TTL passes.
	StagingKeptUntil time.Time `json:"stagingKeptUntil,omitzero"`
}

// Step is one step's state.
type Step struct {
	Name     string    `json:"name"`
	Phase    Phase     `json:"phase"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	Log      string    `json:"log,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// Duration is how long the step ran (so far).
func (s Step) Duration() time.Duration {
	if s.Started.IsZero() {
		return 0
	}
	end := s.Finished
	if end.IsZero() {
		end = time.Now()
	}
	return end.Sub(s.Started)
}

// Step returns the named step.
func (p *Pipeline) Step(name string) *Step {
	for i := range p.Steps {
		if p.Steps[i].Name == name {
			return &p.Steps[i]
		}
	}
	return nil
}

// Clone returns a deep copy.
func (p *Pipeline) Clone() *Pipeline {
	c := *p
	c.Steps = append([]Step(nil), p.Steps...)
	return &c
}

// ErrNotFound is returned for an unknown pipeline.
var ErrNotFound = errors.New("pipeline not found")

// Store keeps pipelines durably.
type Store interface {
	// SavePipeline inserts or replaces a pipeline. It fails with
	// ErrVersionTaken if another pipeline has the version.
	SavePipeline(ctx context.Context, p *Pipeline) error
	GetPipeline(ctx context.Context, id string) (*Pipeline, error)
	ListPipelines(ctx context.Context, limit int) ([]*Pipeline, error)
}

// ErrVersionTaken is returned when two pipelines would share a version
// (versions also name staging environments, so they are unique across
// apps).
var ErrVersionTaken = errors.New("version already taken")
