// Command runway takes every change of an app through a throwaway staging
// environment and into production by a canary rollout.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/runway-cd/runway/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
