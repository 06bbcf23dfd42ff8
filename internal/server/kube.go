package server

import (
	"context"
	"errors"

	"k8s.io/utils/clock"

	"github.com/runway-cd/runway/internal/build"
)

// openKubernetes: being wired (issue 11).
func (s *Server) openKubernetes(ctx context.Context, artifacts *build.Store, clk clock.WithTicker, committed func()) error {
	return errors.New("runtime: kubernetes is not wired yet")
}
