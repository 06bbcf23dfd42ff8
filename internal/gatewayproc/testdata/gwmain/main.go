// Command gwmain is a stand-in for "runway gateway" in the tests of
// gatewayproc: the same gateway.Main, without the rest of the CLI.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/runway-cd/runway/internal/gateway"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := gateway.Main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
