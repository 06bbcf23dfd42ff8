// Package dataplane is the process that keeps production serving while the
// control plane is down: Runway's local equivalent of a Kubernetes node. It
// runs the gateway (kube-proxy's part: routes, weights, readiness-aware
// pools) and, with --supervise, the supervisor (the kubelet's part: every
// replica and PostgreSQL server the control plane declared is started,
// probed and restarted). The supervisor tells the gateway which replicas
// are ready and drains a replica through it before stopping it, in the
// same process, so no request waits on a round trip to the control plane.
//
// runway serve starts this process as "runway gateway ..." (see
// internal/gatewayproc), adopts it across its own restarts, and talks to
// both parts over one admin unix socket: the gateway's routes under /v1/,
// the supervisor's workloads under /v1/workloads.
package dataplane

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/supervisor"
)

// Options are a data plane's: the gateway's, and where the supervisor
// keeps its workloads (empty: no supervisor).
type Options struct {
	gateway.ServeOptions
	// SuperviseState is the supervisor's state file; "" runs the gateway
	// alone.
	SuperviseState string
}

// Serve runs the data plane until ctx ends. Workloads keep running after
// it returns: the next data plane adopts them.
func Serve(ctx context.Context, o Options) error {
	if o.SuperviseState != "" {
		log := o.Logger
		if log == nil {
			log = slog.Default()
		}
		o.Attach = func(ctx context.Context, g *gateway.Gateway) (http.Handler, func(), error) {
			sv, err := New(ctx, g, o.SuperviseState, log)
			if err != nil {
				// Production keeps being served with the routes it has;
				// the workloads API answers 503 with the reason, so the
				// control plane stops and starts nothing until someone
				// repairs the state file (never read as "nothing runs").
				log.Error("the supervisor could not start; the gateway serves on, the workloads API answers 503", "err", err)
				msg := err.Error()
				return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					http.Error(w, "supervisor unavailable: "+msg, http.StatusServiceUnavailable)
				}), func() {}, nil
			}
			return supervisor.Handler(sv), sv.Close, nil
		}
	}
	return gateway.Serve(ctx, o.ServeOptions)
}

// New returns a supervisor wired to g: readiness changes go to the
// gateway's pools and a workload is drained through the gateway before it
// is stopped. The in-process data plane of runway serve uses it too.
func New(ctx context.Context, g *gateway.Gateway, statePath string, log *slog.Logger) (*supervisor.Supervisor, error) {
	sv, err := supervisor.New(ctx, supervisor.Options{
		StatePath:   statePath,
		Logger:      log,
		OnReady:     g.SetReady,
		OnPortTaken: g.SetBlocked,
		Drain: func(ctx context.Context, addr string) {
			if err := g.Drain(ctx, addr); err != nil && !errors.Is(err, context.Canceled) {
				log.Warn("draining a replica before stopping it", "addr", addr, "err", err)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("starting the supervisor: %w", err)
	}
	return sv, nil
}

// Main runs "runway gateway" with command-line args and returns the exit
// code: the gateway's flags (--listen, --admin, --metrics, --state,
// --domain, --allow-backend CIDR and --reserved ADDR, the last two
// repeatable) and --supervise FILE. Test binaries that stand in for the
// runway binary call it through RunIfInvoked.
func Main(ctx context.Context, args []string) int {
	tuneGC()
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	var o Options
	done := gateway.AddFlags(fs, &o.ServeOptions)
	fs.StringVar(&o.SuperviseState, "supervise", "", "supervisor state file: run the supervisor of replicas and databases too")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	done()
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := Serve(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		return 1
	}
	return 0
}

// gatewayGCPercent is the data plane's GOGC unless the user sets one. Its
// live heap is small (routes, per-connection buffers) and every request
// allocates a little, so at the default 100 the collector runs all the time
// under load; at 400 it runs a quarter as often, for a heap of five times
// the live one instead of twice: megabytes. GOMEMLIMIT, if set, still
// bounds it, as the runtime applies it whatever the percentage.
const gatewayGCPercent = 400

// tuneGC sets gatewayGCPercent unless GOGC says otherwise.
func tuneGC() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(gatewayGCPercent)
	}
}

// RunIfInvoked makes a test binary stand in for the runway binary when
// the server under test starts its data plane ("<binary> gateway
// --listen ..."): it then serves as the data plane and exits. Call it
// first in TestMain.
func RunIfInvoked() {
	if len(os.Args) < 2 || os.Args[1] != "gateway" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := Main(ctx, os.Args[2:])
	stop()
	os.Exit(code)
}
