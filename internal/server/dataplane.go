package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/runway-cd/runway/internal/dataplane"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/gateway/remote"
	"github.com/runway-cd/runway/internal/gatewayproc"
	"github.com/runway-cd/runway/internal/runtime/local"
	"github.com/runway-cd/runway/internal/supervisor"
)

// router is the gateway's routing table, in this process or in the
// gateway process.
type router interface {
	SetRoute(r gateway.Route) error
	SetCanaryWeight(env, app string, weight int) error
	Route(env, app string) (gateway.Route, bool)
	Routes() []gateway.Route
	RemoveRoute(env, app string)
	RemoveEnv(env string)
	Host(env, app string) string
}

var (
	_ router = (*gateway.Gateway)(nil)
	_ router = (*remote.Client)(nil)
)

// dataPlane is the gateway: its own process (mode "process", the
// default), which keeps serving while the control plane restarts, or a
// part of this process (mode "inprocess").
type dataPlane struct {
	router router
	addr   string // traffic host:port
	// metricsURL is the gateway's Prometheus metrics on a loopback
	// listener that serves nothing else. The scraper reads it with the
	// same plain HTTP client as the replicas' /metrics, which are loopback
	// TCP too; the counters are read-only and hold no secrets, while the
	// admin API, which changes routes, is a unix socket only Runway can
	// open.
	metricsURL string

	// mode inprocess
	gw     *gateway.Gateway
	ln     net.Listener
	srv    *http.Server
	metLn  net.Listener
	metSrv *http.Server

	// mode process
	proc *gatewayproc.Handle
	log  *slog.Logger

	// supervisor runs the replicas and databases: the data plane
	// process's, through its admin socket, or this process's (inprocess).
	supervisor local.Supervisor
	// inSupervisor is the in-process supervisor (mode inprocess).
	inSupervisor *supervisor.Supervisor
}

func newDataPlane(ctx context.Context, cfg Config, apiAddr string, logger *slog.Logger) (*dataPlane, error) {
	d := &dataPlane{log: logger}
	// Backends may be loopback or the configured CIDRs, never the API
	// (the gateway would expose it) nor the gateway itself (a loop).
	policy := gateway.BackendPolicy{Allowed: cfg.Gateway.AllowedBackends, Reserved: []string{apiAddr}}
	if cfg.Gateway.Mode == "inprocess" {
		return d.inProcess(ctx, cfg, policy, logger)
	}
	dir := filepath.Join(cfg.DataDir, "gateway")
	// 0700: the admin socket, the routes and the record are Runway's alone.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating gateway dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restricting gateway dir: %w", err)
	}
	command := cfg.Gateway.Command
	if len(command) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the runway binary for the gateway: %w", err)
		}
		command = []string{exe, "gateway"}
	}
	command = append(command, "--domain", cfg.Gateway.Domain)
	h, err := gatewayproc.Ensure(ctx, gatewayproc.Options{
		Command: command, Listen: cfg.Gateway.Listen,
		StatePath:     filepath.Join(dir, "routes.json"),
		RecordPath:    filepath.Join(dir, "gateway.json"),
		SupervisePath: filepath.Join(dir, "workloads.json"),
		LogPath:       filepath.Join(dir, "gateway.log"),
		Logger:        logger,
		Backends:      policy,
	})
	if err != nil {
		return nil, fmt.Errorf("starting the gateway process: %w", err)
	}
	client := remote.New(h.AdminSocket(), cfg.Gateway.Domain).WithLogger(logger)
	d.proc, d.router, d.addr, d.metricsURL = h, client, h.ListenAddr(), h.MetricsURL()
	d.supervisor = supervisor.NewClient(h.AdminSocket())
	logger.Info("gateway process", "pid", h.PID(), "listen", h.ListenAddr(), "admin", h.AdminSocket(), "metrics", h.MetricsURL())
	return d, nil
}

// inProcess makes the gateway a part of this process: traffic on
// cfg.Gateway.Listen, metrics on a loopback port of their own (the API's
// /metrics needs a token the scraper does not have).
func (d *dataPlane) inProcess(ctx context.Context, cfg Config, policy gateway.BackendPolicy, logger *slog.Logger) (*dataPlane, error) {
	ln, err := net.Listen("tcp", cfg.Gateway.Listen)
	if err != nil {
		return nil, fmt.Errorf("listening for the gateway: %w", err)
	}
	metLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("listening for the gateway's metrics: %w", err)
	}
	d.gw = gateway.New(gateway.Options{Domain: cfg.Gateway.Domain, Logger: logger, Backends: policy, Self: ln.Addr().String(), DirectListeners: true})
	sv, err := dataplane.New(ctx, d.gw, filepath.Join(cfg.DataDir, "workloads.json"), logger)
	if err != nil {
		ln.Close()
		metLn.Close()
		return nil, err
	}
	d.supervisor, d.inSupervisor = sv, sv
	d.ln, d.router, d.addr = ln, d.gw, ln.Addr().String()
	d.srv = gateway.TrafficServer(d.gw, logger)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", d.gw.MetricsHandler())
	d.metLn = metLn
	d.metSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 64 << 10}
	d.metricsURL = "http://" + metLn.Addr().String() + "/metrics"
	return d, nil
}

// run serves (inprocess) or watches the gateway process, restarting it
// if it dies, until ctx ends.
func (d *dataPlane) run(ctx context.Context) error {
	if d.srv != nil {
		go func() {
			if err := d.metSrv.Serve(d.metLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("gateway metrics listener", "err", err)
			}
		}()
		if err := d.srv.Serve(d.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("gateway: %w", err)
		}
		return nil
	}
	d.proc.Watch(ctx, func(gap time.Duration) {
		d.log.Warn("gateway process died and was restarted", "gap", gap, "pid", d.proc.PID())
	})
	return nil
}

// metricsHandler serves the gateway's metrics on the API.
func (d *dataPlane) metricsHandler() http.Handler {
	if d.gw != nil {
		return d.gw.MetricsHandler()
	}
	client := &http.Client{Timeout: 5 * time.Second}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, d.metricsURL, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, "gateway metrics unavailable", http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})
}

// close stops serving in this process; the gateway process is stopped
// only when stop is set, otherwise it keeps serving its last routes for
// the next control plane to adopt.
func (d *dataPlane) close(ctx context.Context, stop bool) error {
	if d.srv != nil {
		// The supervisor stops watching; what it runs keeps running for
		// the next start's supervisor to adopt (or was stopped already by
		// the runtime's Close).
		d.inSupervisor.Close()
		err := errors.Join(d.srv.Shutdown(ctx), d.metSrv.Shutdown(ctx), d.gw.Close())
		_ = d.ln.Close()
		_ = d.metLn.Close()
		return err
	}
	if stop && d.proc != nil {
		return d.proc.Stop(ctx)
	}
	return nil
}
