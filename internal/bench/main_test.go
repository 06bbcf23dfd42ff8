package bench

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/runway-cd/runway/internal/gateway"
)

// TestMain lets the test binary stand in for the runway binary the
// benchmark starts: as "gateway ..." and as "bench backend ...".
func TestMain(m *testing.M) {
	gateway.RunIfInvoked()
	if len(os.Args) > 2 && os.Args[1] == "bench" && os.Args[2] == "backend" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		code := BackendMain(ctx, os.Args[3:], os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}
