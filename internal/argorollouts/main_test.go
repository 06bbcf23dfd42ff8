package argorollouts

import (
	"os"
	"testing"

	"github.com/runway-cd/runway/internal/api"
	"github.com/runway-cd/runway/internal/environment"
	"github.com/runway-cd/runway/test/cluster"
)

// The controller is both sides' Rollouts, and the pipeline's abort.
var (
	_ environment.Rollouts                         = (*Controller)(nil)
	_ api.Rollouts                                 = (*Controller)(nil)
	_ func(env, app, version, reason string) error = (*Controller)(nil).AbortVersion
)

// TestMain starts the real control plane with Argo Rollouts' controller
// for the end-to-end tests (cluster.Shared); without the tools built it
// runs the unit tests alone and the cluster tests skip.
func TestMain(m *testing.M) {
	os.Exit(cluster.RunMain(m, cluster.Options{Rollouts: true}))
}
