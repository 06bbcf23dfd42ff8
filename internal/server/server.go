// Package server is Runway's composition root: it wires the store, state
// repository, builder, runtime, gateway, reporter, controllers, pipeline
// runner, webhook and API into one control plane with Run and Close, so the
// CLI and the end-to-end tests start the same program.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/runway-cd/runway/internal/api"
	"github.com/runway-cd/runway/internal/auth"
	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/dashboard"
	"github.com/runway-cd/runway/internal/environment"
	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/notify"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/redact"
	"github.com/runway-cd/runway/internal/reporter"
	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/internal/runtime/local"
	"github.com/runway-cd/runway/internal/sandbox"
	"github.com/runway-cd/runway/internal/store/sqlite"
	"github.com/runway-cd/runway/internal/webhook"
)

// Server is a running control plane with its gateway.
type Server struct {
	cfg Config
	log *slog.Logger

	db   *sqlite.DB
	repo *gitops.Repo
	// data and local are the local runtime's data plane (gateway,
	// supervisor) and runtime; nil on Kubernetes.
	data  *dataPlane
	local *local.Runtime
	// rt runs environments (the local or the Kubernetes runtime), router
	// routes staging apps, rollouts owns production's version changes (the
	// rollout controller, or Argo Rollouts on Kubernetes).
	rt       runtime.Runtime
	router   environment.Router
	rollouts rollouts
	// synced prepares the environments Argo CD syncs (runtime argocd);
	// nil otherwise.
	synced environment.Synced
	// closers release what the runtime holds (informers), last.
	closers   []func(context.Context) error
	reporter  *reporter.Reporter
	envs      *environment.Controller
	events    *events.Recorder
	pipelines *pipeline.Runner
	metrics   *metricsPlane
	tokens    *auth.Tokens
	redactor  *redact.Redactor
	hook      *webhook.Handler
	notifier  *notify.Notifier
	dash      *dashboard.Dashboard
	// verifier keeps the mirrors of the app repositories: the webhook
	// checks pushes in them and the pipeline orders promotions by their
	// history. One instance: it serialises fetches per mirror.
	verifier *build.Verifier

	apiLn  net.Listener
	apiSrv *http.Server

	runCtx    context.Context
	runCancel context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New opens everything and binds both listeners, so the addresses are
// known before Run.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (s *Server, err error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	// Every secret Runway knows is masked in its own log, step logs and
	// API answers; tokens and passwords join as they are loaded or made.
	red := redact.New()
	red.Add(cfg.WebhookSecret, cfg.API.AdminToken, cfg.API.ReadToken)
	logger = slog.New(red.Handler(logger.Handler()))
	s = &Server{cfg: cfg, log: logger, redactor: red}
	s.runCtx, s.runCancel = context.WithCancel(context.WithoutCancel(ctx))
	// Every "return nil, err" below sets s to nil: close what was opened
	// through a copy of the pointer.
	opened := s
	defer func() {
		if err != nil {
			_ = opened.Close()
		}
	}()
	if err := prepareDirs(cfg, logger); err != nil {
		return nil, err
	}
	sb, err := sandbox.New(sandbox.Options{
		Base: cfg.Sandbox.UIDBase, Count: cfg.Sandbox.UIDCount, StateFile: filepath.Join(cfg.DataDir, "uids.json"),
		Env: cfg.Sandbox.Env, Vars: cfg.Sandbox.Vars, Logger: logger,
	})
	if err != nil {
		return nil, fmt.Errorf("setting up the sandbox for app code: %w", err)
	}
	if err := sb.Traversable(cfg.WorkDir); err != nil {
		return nil, err
	}
	if s.tokens, err = auth.Load(cfg.DataDir, cfg.API.AdminToken, cfg.API.ReadToken); err != nil {
		return nil, fmt.Errorf("loading the API tokens: %w", err)
	}
	for _, which := range []string{auth.AdminToken, auth.ReadToken} {
		if tok, err := auth.ReadFile(auth.Path(cfg.DataDir, which)); err == nil {
			red.Add(tok)
		}
	}
	s.tokens.Observe(func(tok string) { red.Add(tok) }) // rotated tokens too
	tlsConfig, err := loadTLS(cfg.TLS)
	if err != nil {
		return nil, err
	}
	if s.db, err = sqlite.Open(ctx, filepath.Join(cfg.DataDir, "runway.db")); err != nil {
		return nil, err
	}
	if s.repo, err = gitops.Open(ctx, cfg.StateRepo.URL, filepath.Join(cfg.DataDir, "state"), cfg.StateRepo.Branch, logger); err != nil {
		return nil, err
	}
	artifacts, err := build.NewStore(filepath.Join(cfg.WorkDir, "artifacts"), build.Options{
		Sandbox: sb, CacheDir: cfg.Sandbox.CacheDir, PrometheusAddresses: cfg.Analysis.PrometheusAddresses,
	})
	if err != nil {
		return nil, err
	}
	interrupted, err := artifacts.RemoveInterrupted()
	for _, d := range interrupted {
		logger.Info("garbage: removed the work directory of an interrupted build", "dir", d)
	}
	if err != nil {
		logger.Warn("removing interrupted builds", "err", err)
	}
	if s.apiLn, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listening for the API: %w", err)
	}
	s.reporter = reporter.New(s.db, logger)
	// One clock for every controller, one record of what they did.
	clk := clock.RealClock{}
	s.events = events.New(clk, red.String)
	var envs *environment.Controller
	// A revert commit changes the production manifest: read it now.
	committed := func() { envs.Trigger() }
	reporterBase := reporterURL(s.apiLn.Addr(), tlsConfig != nil)
	gatewayAddr := ""
	if cfg.Runtime == RuntimeKubernetes || cfg.Runtime == RuntimeArgoCD {
		if err := s.openKubernetes(ctx, artifacts, clk, committed); err != nil {
			return nil, err
		}
		if cfg.Kubernetes.ReporterURL != "" {
			reporterBase = cfg.Kubernetes.ReporterURL
		}
	} else {
		if err := s.openLocal(ctx, sb, artifacts, clk, committed); err != nil {
			return nil, err
		}
		gatewayAddr = s.data.addr
	}
	envs = environment.New(s.repo, s.rt, artifacts, s.router, s.reporter, s.rollouts, environment.Options{
		PollInterval: cfg.PollInterval.Duration, GatewayAddr: gatewayAddr,
		HealthTimeout: cfg.Timeouts.Health.Duration, Logger: logger, Store: s.db, Redact: red.String,
		ReporterURL: reporterBase,
		MaxParallel: cfg.Limits.ParallelEnvironments, Events: s.events, Clock: clk,
		Synced: s.synced,
	})
	s.envs = envs
	s.verifier = build.NewVerifier(filepath.Join(cfg.WorkDir, "verify"), 0)
	s.pipelines = pipeline.New(s.db, artifacts, s.repo, s.reporter, envs, pipeline.Options{
		DeployTimeout: cfg.Timeouts.Deploy.Duration, RolloutTimeout: cfg.Timeouts.Rollout.Duration,
		TeardownTimeout: cfg.Timeouts.Teardown.Duration, Logger: logger, AbortRollout: s.rollouts.AbortVersion,
		JobTimeout: cfg.Timeouts.Job.Duration, BuildTimeout: cfg.Timeouts.Build.Duration, StagingTTL: cfg.Staging.TTL.Duration, KeepOnFailure: cfg.Staging.KeepOnFailure,
		Redactor: red, MaxRunning: cfg.Limits.Pipelines, MaxStaging: cfg.Limits.StagingEnvironments,
		Clock: clk, Events: s.events, Ancestry: s.verifier,
	})
	if s.notifier, err = notify.New(notify.Options{
		Config: cfg.Notifications, Events: s.events, Pipelines: s.pipelines, Redact: red.String, Logger: logger,
		AddSecret: red.Add, Clock: clk, Link: dashboard.Link(cfg.Notifications.DashboardURL),
	}); err != nil {
		return nil, fmt.Errorf("setting up notifications: %w", err)
	}
	if s.hook, err = s.newWebhook(); err != nil {
		return nil, err
	}
	s.apiSrv = newAPIServer(s.routes(), tlsConfig, logger)
	s.warnExposure()
	return s, nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/github", s.hook)
	rep := limitBody(s.reporter.HandlerWith(reporter.HandlerOptions{Compatibility: s.cfg.Reporter.Compatibility}))
	mux.Handle("/workflow/", rep)
	mux.Handle("/api/v1/expectations/", rep)
	mux.Handle("/api/v1/", limitBody(api.New(s.pipelines, s.envs, s.rollouts, s.db, s.events, s.log)))
	s.dash = dashboard.New(dashboard.Options{
		Pipelines: s.pipelines, Environments: s.envs, Rollouts: s.rollouts, Runs: s.db, Events: s.events, Logger: s.log,
	})
	mux.Handle(dashboard.Prefix, limitBody(s.dash))
	mux.Handle("GET /{$}", http.RedirectHandler(dashboard.Prefix, http.StatusFound))
	if s.data != nil {
		mux.Handle("GET /metrics", s.data.metricsHandler())
	}
	if s.metrics != nil {
		// The embedded store answers PromQL like a Prometheus server, so a
		// template can be tried (or Grafana pointed) at <api>/prometheus.
		mux.Handle("/prometheus/", limitBody(http.StripPrefix("/prometheus", s.metrics.embedded.Handler())))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return s.protect(mux)
}

// APIAddr is the API's host:port.
func (s *Server) APIAddr() string { return s.apiLn.Addr().String() }

// GatewayAddr is the gateway's host:port.
// On Kubernetes there is none (""): the cluster's Services route.
func (s *Server) GatewayAddr() string {
	if s.data == nil {
		return ""
	}
	return s.data.addr
}

// Run serves until ctx is cancelled, then shuts down.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 3)
	if s.data != nil {
		s.goRun(func() {
			if err := s.data.run(s.runCtx); err != nil {
				errc <- err
			}
		})
	}
	s.goRun(func() {
		if err := s.serveAPI(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("api: %w", err)
		}
	})
	if s.metrics != nil {
		s.goRun(func() { s.metrics.run(s.runCtx) })
	}
	s.goRun(func() {
		if err := s.rollouts.Run(s.runCtx); err != nil {
			errc <- fmt.Errorf("rollouts: %w", err)
		}
	})
	s.goRun(func() { _ = s.envs.Run(s.runCtx) })
	s.goRun(func() { s.notifier.Run(s.runCtx) })
	s.goRun(func() { s.dash.Run(s.runCtx) })                                        // samples the rollouts' traffic split for its charts
	s.goRun(func() { pipeline.NewReaper(s.pipelines, s.repo, s.db).Run(s.runCtx) }) // expires staging envs past their TTL
	if err := s.pipelines.Resume(s.runCtx); err != nil {
		s.log.Error("resuming pipelines", "err", err)
	}
	s.log.Info("runway serving", "api", s.apiScheme()+"://"+s.APIAddr(), "runtime", s.cfg.Runtime, "gateway", s.GatewayAddr(), "data", s.cfg.DataDir)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	return errors.Join(err, s.Close())
}

func (s *Server) goRun(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// KeepDataPlane makes the next Close leave the data plane serving even if
// the config says to stop it (a restart of the control plane alone).
func (s *Server) KeepDataPlane() { s.cfg.StopDataPlaneOnExit = false }

// Close stops the control plane, as SIGTERM does: the API stops accepting,
// pipeline steps doing work get ShutdownGrace to finish (waits stop at
// once), then everything still running stops where it is: pipelines at
// their step and rollouts at their checkpoint, to resume on the next
// start. The data
// plane (gateway process, app replicas, PostgreSQL servers) keeps serving
// for the next start to adopt, unless StopDataPlaneOnExit is set.
func (s *Server) Close() error {
	if s == nil {
		return nil
	}
	var errs []error
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// Drain: first stop accepting (a webhook being answered is
		// recorded first; a long poll of the events ends at once), then
		// let pipeline steps reach a checkpoint, with a grace of their
		// own whatever the API's shutdown took.
		s.events.Close()
		if s.apiSrv != nil {
			errs = append(errs, s.apiSrv.Shutdown(ctx))
		}
		if s.pipelines != nil {
			start := time.Now()
			dctx, dcancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace.Duration)
			if err := s.pipelines.Drain(dctx); err != nil {
				s.log.Warn("shutdown grace over; interrupting the remaining steps (they run again on restart)", "err", err)
			} else {
				s.log.Info("pipelines drained", "took", time.Since(start).Round(time.Millisecond))
			}
			dcancel()
		}
		if s.runCancel != nil {
			s.runCancel()
		}
		if s.pipelines != nil {
			s.pipelines.Wait()
		}
		if w, ok := s.rollouts.(interface{ Wait() }); ok {
			w.Wait()
		}
		stop := s.cfg.StopDataPlaneOnExit
		// The replicas go before the data plane whose supervisor runs
		// them.
		if s.local != nil && stop {
			errs = append(errs, s.local.Close(ctx))
		}
		if s.data != nil {
			errs = append(errs, s.data.close(ctx, stop))
		}
		s.wg.Wait()
		if s.apiLn != nil {
			_ = s.apiLn.Close()
		}
		if s.local != nil && !stop {
			s.local.Detach() // apps and databases keep serving; the next start adopts them
		}
		if s.metrics != nil {
			errs = append(errs, s.metrics.close())
		}
		for _, c := range s.closers {
			errs = append(errs, c(ctx))
		}
		if s.db != nil {
			errs = append(errs, s.db.Close())
		}
	})
	return errors.Join(errs...)
}

// reporterURL is the API's base URL as jobs on this machine reach it.
func reporterURL(addr net.Addr, tls bool) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http"
	if tls {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}
