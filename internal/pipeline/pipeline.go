// Package pipeline takes one pushed change through the method: version,
// build, staging environment, reporter gate, migrations and functional
// tests, promotion, canary, production checks and teardown. Each step's
// state, times and log are stored as they change, so the API shows a
// pipeline live and a restarted control plane resumes it.
//
// Pipelines run side by side up to a cap (the others queue, in arrival
// order, saying their position); promotions of one app are serialized in
// commit order, and an older change overtaken by a newer one ends
// Superseded rather than waiting for a report that never comes (see
// promotion.go). Cancel stops a pipeline that has not promoted. A
// service's own repository (the database's) runs the same method with
// only its manifest entry's revision changing, and no canary (service.go).
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
	// Superseded is a pipeline (and its step) that a newer change of the
	// same app overtook: at its promotion (a newer one passed staging or
	// promoted first) or in its rollout (a newer version replaced its
	// canary). Nothing was wrong with the change; nothing of it is
	// promoted after that, and its staging environment is torn down.
	Superseded Phase = "Superseded"
	// Cancelled is a pipeline stopped on request (Runner.Cancel), and the
	// step that was running then.
	Cancelled Phase = "Cancelled"
)

// Done reports whether the phase is final.
func (p Phase) Done() bool {
	switch p {
	case Succeeded, Failed, Skipped, Superseded, Cancelled:
		return true
	}
	return false
}

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
	// Author is the head commit's author ("Name <email>"), if known.
	Author   string `json:"author,omitempty"`
	Delivery string `json:"delivery,omitempty"`
	// Service is set when App is a service run from its own repository
	// (Request.Service; see service.go).
	Service string `json:"service,omitempty"`
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

	// Promoting is set when the pipeline took its app's promotion (see
	// Runner): from then on production may hold its version, so it can
	// no longer be cancelled, and pipelines of the same app that arrived
	// before it are superseded.
	Promoting bool `json:"promoting,omitempty"`
	// CancelRequested is the reason given to Runner.Cancel, stored so
	// that a restart honours the request.
	CancelRequested string `json:"cancelRequested,omitempty"`

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

// ErrDone is wrapped by Cancel's error for a pipeline that already ended.
var ErrDone = errors.New("pipeline already ended")

// ErrPromoted is wrapped by Cancel's error for a pipeline that promoted
// (or is promoting) its change: production may run it, which only an
// abort of the rollout undoes.
var ErrPromoted = errors.New("promoted already; abort its rollout instead")

// before reports whether p arrived before q (Created, then ID): the order
// pipelines resume and queue in, and the promotions' order where the
// commits' history does not tell it (see promotion.go).
func (p *Pipeline) before(q *Pipeline) bool {
	if !p.Created.Equal(q.Created) {
		return p.Created.Before(q.Created)
	}
	return p.ID < q.ID
}

// promoted reports whether p took its app's promotion (a record from
// before Promoting existed: its promote step succeeded).
func (p *Pipeline) promoted() bool {
	if p.Promoting {
		return true
	}
	s := p.Step(StepPromote)
	return s != nil && s.Phase == Succeeded
}

// landed reports whether p's promotion commit landed in production (its
// promote step succeeded).
func (p *Pipeline) landed() bool {
	s := p.Step(StepPromote)
	return s != nil && s.Phase == Succeeded
}

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
