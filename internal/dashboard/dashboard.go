// Package dashboard is Runway's web dashboard, served by runway serve
// under /ui/ behind the API's authentication. (Skeleton: the lead wires
// it; the dashboard helper fills it in.)
package dashboard

import (
	"log/slog"
	"net/http"

	"github.com/runway-cd/runway/internal/api"
)

// Options are what the dashboard reads and steers: the same interfaces
// the JSON API serves.
type Options struct {
	Pipelines    api.Pipelines
	Environments api.Environments
	Rollouts     api.Rollouts
	Runs         api.AnalysisRuns
	Events       api.Events
	Logger       *slog.Logger
}

// Prefix is where the dashboard is mounted.
const Prefix = "/ui/"

// New returns the dashboard's handler, to be mounted at Prefix.
func New(o Options) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "the dashboard is not built yet", http.StatusNotImplemented)
	})
}
