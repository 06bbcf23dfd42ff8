package notify

import (
	"strings"

	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/rollout"
)

// Events a receiver can ask for (Receiver.Events).
const (
	PipelineSucceeded  = "pipeline.succeeded"
	PipelineFailed     = "pipeline.failed"
	PipelineSuperseded = "pipeline.superseded"
	PipelineCancelled  = "pipeline.cancelled"
	RolloutPaused      = "rollout.paused"
	RolloutAborted     = "rollout.aborted"
	RolloutPromoted    = "rollout.promoted"
)

// AllEvents lists every event, in the order the docs give them.
var AllEvents = []string{
	PipelineSucceeded, PipelineFailed, PipelineSuperseded, PipelineCancelled,
	RolloutPaused, RolloutAborted, RolloutPromoted,
}

// Reasons of the rollout controllers' events (kind events.Rollout) that
// are notified: a pause that waits for a person (not a timed pause
// step, rollout.ReasonPausing), an abort, a promotion.
const (
	reasonPaused   = rollout.ReasonPaused
	reasonAborted  = rollout.ReasonAborted
	reasonPromoted = rollout.ReasonPromoted
)

// pipelineEnds maps the reasons of a pipeline's end events (kind
// events.Pipeline: the runner records its final phase as the reason) to
// notification events.
var pipelineEnds = map[string]string{
	string(pipeline.Succeeded):  PipelineSucceeded,
	string(pipeline.Failed):     PipelineFailed,
	string(pipeline.Superseded): PipelineSuperseded,
	string(pipeline.Cancelled):  PipelineCancelled,
}

// rolloutEnds maps the notified rollout reasons to notification events.
var rolloutEnds = map[string]string{
	reasonPaused:   RolloutPaused,
	reasonAborted:  RolloutAborted,
	reasonPromoted: RolloutPromoted,
}

// eventOf returns the notification event of e, or "" if e is not one
// that is notified.
func eventOf(e events.Event) string {
	switch e.Kind {
	case events.Pipeline:
		return pipelineEnds[e.Reason]
	case events.Rollout:
		return rolloutEnds[e.Reason]
	}
	return ""
}

// splitRollout splits a rollout event's name, "env/app".
func splitRollout(name string) (env, app string) {
	env, app, ok := strings.Cut(name, "/")
	if !ok {
		return "", name
	}
	return env, app
}
