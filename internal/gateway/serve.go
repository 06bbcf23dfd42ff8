package gateway

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// ServeOptions configure a gateway process (runway gateway).
type ServeOptions struct {
	// Listen is the traffic address, Admin the control API's (loopback).
	Listen, Admin string
	// StatePath keeps the routes, so a restarted gateway serves at once.
	StatePath string
	Options
}

// Serve runs a gateway as its own process until ctx ends: traffic on
// Listen, the admin API on Admin, routes loaded from and saved to
// StatePath.
func Serve(ctx context.Context, o ServeOptions) error {
	g := New(o.Options)
	if err := g.LoadRoutes(o.StatePath); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listening for traffic: %w", err)
	}
	an, err := net.Listen("tcp", o.Admin)
	if err != nil {
		ln.Close()
		return fmt.Errorf("listening for the admin API: %w", err)
	}
	g.log.Info("gateway listening", "pid", os.Getpid(), "listen", ln.Addr().String(), "admin", an.Addr().String(), "routes", len(g.Routes()))
	servers := []*http.Server{
		{Handler: g, ReadHeaderTimeout: 10 * time.Second},
		{Handler: g.AdminHandler(o.StatePath), ReadHeaderTimeout: 10 * time.Second},
	}
	errc := make(chan error, 2)
	go func() { errc <- servers[0].Serve(ln) }()
	go func() { errc <- servers[1].Serve(an) }()
	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(shut); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr = errors.Join(serveErr, err)
		}
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		return nil
	}
	return serveErr
}

// Main runs "gateway" with command-line args (--listen, --admin, --state,
// --domain) and returns the exit code. Test binaries that stand in for the
// runway binary call it when started as a gateway.
func Main(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	var o ServeOptions
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:8080", "traffic address")
	fs.StringVar(&o.Admin, "admin", "127.0.0.1:0", "admin API address")
	fs.StringVar(&o.StatePath, "state", "", "routes file")
	fs.StringVar(&o.Domain, "domain", "localhost", "host suffix")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := Serve(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		return 1
	}
	return 0
}

// RunIfInvoked makes a test binary stand in for the runway binary when
// the server under test starts its gateway process ("<binary> gateway
// --listen ..."): it then serves as the gateway and exits. Call it first
// in TestMain.
func RunIfInvoked() {
	if len(os.Args) < 2 || os.Args[1] != "gateway" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := Main(ctx, os.Args[2:])
	stop()
	os.Exit(code)
}
