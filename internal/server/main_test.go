package server

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/runway-cd/runway/internal/gateway"
)

// TestMain lets this test binary stand in for the runway binary when the
// server starts its gateway process ("<binary> gateway --listen ...").
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "gateway" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		code := gateway.Main(ctx, os.Args[2:])
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}
