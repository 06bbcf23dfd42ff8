package dashboard

import (
	"testing"

	"github.com/runway-cd/runway/internal/events"
)

func TestLink(t *testing.T) {
	tests := []struct {
		base, kind, name, want string
	}{
		{"https://runway.example.com/", events.Pipeline, "web-ab12c", "https://runway.example.com/ui/pipelines/web-ab12c"},
		{"https://runway.example.com", events.Rollout, "production/web", "https://runway.example.com/ui/rollouts/production/web"},
		{"https://runway.example.com", events.Rollout, "no-slash", ""},
		{"https://runway.example.com", events.Environment, "pr-1", ""},
		{"", events.Pipeline, "web-ab12c", ""},
		{"http://h", events.Pipeline, "a/../b?c", "http://h/ui/pipelines/a%2F..%2Fb%3Fc"},
	}
	for _, tt := range tests {
		if got := Link(tt.base)(tt.kind, tt.name); got != tt.want {
			t.Errorf("Link(%q)(%s, %q) = %q, want %q", tt.base, tt.kind, tt.name, got, tt.want)
		}
	}
}
