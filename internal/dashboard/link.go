package dashboard

import (
	"net/url"
	"strings"

	"github.com/runway-cd/runway/internal/events"
)

// Link returns the function giving the dashboard page of an event's
// object under base (the URL people open Runway at): a pipeline's page
// for kind events.Pipeline (name: its id), a rollout's for
// events.Rollout (name: env/app), "" for anything else or when base is
// empty.
func Link(base string) func(kind, name string) string {
	base = strings.TrimSuffix(base, "/")
	return func(kind, name string) string {
		if base == "" || name == "" {
			return ""
		}
		switch kind {
		case events.Pipeline:
			return base + Prefix + "pipelines/" + url.PathEscape(name)
		case events.Rollout:
			env, app, ok := strings.Cut(name, "/")
			if !ok {
				return ""
			}
			return base + Prefix + "rollouts/" + url.PathEscape(env) + "/" + url.PathEscape(app)
		}
		return ""
	}
}
