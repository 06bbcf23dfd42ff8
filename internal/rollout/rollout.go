// Package rollout is the production controller: it alone changes which
// version of an app runs in production. The environment controller hands it
// the version the production manifest declares (SetDesired); the first
// version of an app is started as stable, every later one goes through a
// canary beside the stable one, walking Argo Rollouts-style steps
// (setWeight, pause, analysis) by moving the gateway's weights, judged by
// analysis runs, and is either promoted or aborted: traffic back to stable
// at once, canary stopped, failure reported and the production manifest
// reverted in git so git says what runs. A canary whose replicas
// crash-loop, or are not ready within the spec's progressDeadlineSeconds, is
// aborted the same way, whatever step the rollout is at. A rollout
// overtaken by a newer version of the manifest ends Superseded.
//
// The controller is a level-triggered reconciler in Argo Rollouts' shape:
// one key per app (env/app) in a work queue, a few workers, and per pass a
// rolloutContext that loads the app's record, its unfinished checkpoint and
// the desired version, does one idempotent action, saves the status and
// asks to be requeued. Promote, abort and retry write their request into
// the stored checkpoint and enqueue the key. Resuming after a restart is an
// ordinary pass.
package rollout

import (
	"context"
	"errors"
	"time"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/build"
)

// Analyzer runs one analysis run to its end.
type Analyzer interface {
	Analyze(ctx context.Context, req AnalysisRequest) (Outcome, error)
}

// AnalysisRequest names the templates to run and their arguments.
type AnalysisRequest struct {
	Name      string
	Templates []appspec.TemplateRef
	Args      map[string]string
	Artifact  build.Artifact // holds the template files
	// Resume continues the run of this name that a killed control plane
	// left unfinished, with its stored measurements; a run it finds ended
	// gives its stored verdict.
	Resume bool
}

// Outcome is an analysis run's end: Successful, Failed, Inconclusive or
// Error, with a reason a person can read.
type Outcome struct {
	Phase  string
	Reason string
}

// Analysis phases. Running is the phase a run is listed with in a
// rollout's status until it ends.
const (
	Successful   = "Successful"
	Failed       = "Failed"
	Inconclusive = "Inconclusive"
	Error        = "Error"
	Running      = "Running"
)

// Phases of a rollout, as Argo Rollouts names them.
const (
	Progressing = "Progressing"
	Paused      = "Paused"
	Healthy     = "Healthy"
	Degraded    = "Degraded"
)

// Reasons of the rollout events (kind events.Rollout) that notifications
// and the dashboard match on, recorded by this package and by
// internal/argorollouts.
const (
	// ReasonPaused: the canary waits for a person (an untimed pause
	// step, an inconclusive analysis).
	ReasonPaused = "Paused"
	// ReasonPausing: a timed pause step began; it ends by itself.
	ReasonPausing = "Pausing"
	// ReasonAborted: the canary was aborted and production is back on
	// the stable version.
	ReasonAborted = "Aborted"
	// ReasonPromoted: the version is stable in production.
	ReasonPromoted = "Promoted"
)

// Status is a rollout's state for the API.
type Status struct {
	Env           string    `json:"env"`
	App           string    `json:"app"`
	StableVersion string    `json:"stableVersion"`
	CanaryVersion string    `json:"canaryVersion"`
	Phase         string    `json:"phase"`
	Step          int       `json:"step"`
	Steps         int       `json:"steps"`
	Weight        int       `json:"weight"`
	Message       string    `json:"message"`
	Started       time.Time `json:"started"`
	Finished      time.Time `json:"finished,omitzero"`
	Analyses      []Run     `json:"analyses,omitempty"`
}

// Run is one analysis run of a rollout.
type Run struct {
	Name   string `json:"name"`
	Phase  string `json:"phase"`
	Reason string `json:"reason"`
}

// ErrNoRollout is returned by the commands when no rollout of the app runs.
var ErrNoRollout = errors.New("no rollout in progress")

// ErrNotPaused is returned by Promote and Retry for a rollout that is not
// in a state they act on (and by Abort for one being promoted).
var ErrNotPaused = errors.New("rollout not paused")
