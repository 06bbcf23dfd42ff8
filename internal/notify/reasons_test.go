package notify

import (
	"testing"

	"github.com/runway-cd/runway/internal/events"
)

func TestEventOf(t *testing.T) {
	for _, tc := range []struct {
		kind, reason, want string
	}{
		{events.Pipeline, "Succeeded", PipelineSucceeded},
		{events.Pipeline, "Failed", PipelineFailed},
		{events.Pipeline, "Superseded", PipelineSuperseded},
		{events.Pipeline, "Cancelled", PipelineCancelled},
		{events.Pipeline, "Started", ""},
		{events.Rollout, "Paused", RolloutPaused},
		{events.Rollout, "Pausing", ""}, // a timed pause ends by itself
		{events.Rollout, "Aborted", RolloutAborted},
		{events.Rollout, "Promoted", RolloutPromoted},
		{events.Rollout, "Superseded", ""},
		{events.Environment, "Failed", ""},
	} {
		if got := eventOf(events.Event{Kind: tc.kind, Reason: tc.reason}); got != tc.want {
			t.Errorf("eventOf(%s %s) = %q, want %q", tc.kind, tc.reason, got, tc.want)
		}
	}
	for _, ev := range AllEvents {
		if titles[ev] == "" || symbols[ev] == "" {
			t.Errorf("%s has no title or symbol", ev)
		}
	}
}
