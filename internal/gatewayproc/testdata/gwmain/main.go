// Command gwmain is a stand-in for "runway gateway" in the tests of
// gatewayproc: a gateway serving traffic on --listen and its admin API on
// --admin, with its routes kept in --state.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/runway-cd/runway/internal/gateway"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gwmain:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gwmain", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "traffic address")
	admin := fs.String("admin", "127.0.0.1:0", "admin API address")
	state := fs.String("state", "", "routes file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	g := gateway.New(gateway.Options{})
	if err := g.LoadRoutes(*state); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	an, err := net.Listen("tcp", *admin)
	if err != nil {
		return err
	}
	slog.Info("gateway listening", "pid", os.Getpid(), "listen", ln.Addr().String(), "admin", an.Addr().String(), "routes", len(g.Routes()))
	servers := []*http.Server{{Handler: g}, {Handler: g.AdminHandler(*state)}}
	errc := make(chan error, 2)
	go func() { errc <- servers[0].Serve(ln) }()
	go func() { errc <- servers[1].Serve(an) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(shut); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	return nil
}
