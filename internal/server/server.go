// Package server is Runway's composition root: it wires the store, state
// repository, builder, runtime, gateway, reporter, controllers, pipeline
// runner, webhook and API into one control plane with Run and Close, so the
// CLI and the end-to-end tests start the same program.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/runway-cd/runway/internal/api"
	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/environment"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/postgres"
	"github.com/runway-cd/runway/internal/reporter"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/runtime/local"
	"github.com/runway-cd/runway/internal/store/sqlite"
	"github.com/runway-cd/runway/internal/webhook"
)

// Server is a running control plane with its gateway.
type Server struct {
	cfg Config
	log *slog.Logger

	db        *sqlite.DB
	repo      *gitops.Repo
	data      *dataPlane
	rt        *local.Runtime
	reporter  *reporter.Reporter
	envs      *environment.Controller
	rollouts  *rollout.Controller
	pipelines *pipeline.Runner
	metrics   *metricsPlane

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
	s = &Server{cfg: cfg, log: logger}
	s.runCtx, s.runCancel = context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating data dir: %w", err)
	}
	secret, err := loadSecret(filepath.Join(cfg.DataDir, "secret"))
	if err != nil {
		return nil, err
	}
	if s.db, err = sqlite.Open(ctx, filepath.Join(cfg.DataDir, "runway.db")); err != nil {
		return nil, err
	}
	if s.repo, err = gitops.Open(ctx, cfg.StateRepo.URL, filepath.Join(cfg.DataDir, "state"), cfg.StateRepo.Branch, logger); err != nil {
		return nil, err
	}
	artifacts, err := build.NewStore(filepath.Join(cfg.DataDir, "artifacts"))
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
	s.rt, err = local.New(local.Options{
		Dir: filepath.Join(cfg.DataDir, "envs"), Secret: secret, Logger: logger,
		Postgres: postgres.Config{BinDir: cfg.Postgres.BinDir, RunAsUser: cfg.Postgres.RunAsUser, Logger: logger},
	})
	if err != nil {
		return nil, err
	}
	if s.apiLn, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listening for the API: %w", err)
	}
	report, err := s.rt.Adopt(ctx)
	if err != nil {
		return nil, fmt.Errorf("adopting running apps: %w", err)
	}
	for _, a := range report.Adopted {
		logger.Info("adopted", "process", a)
	}
	for _, d := range report.Dropped {
		logger.Info("not adopted", "process", d)
	}
	// Processes started but never recorded are strays whatever the state
	// repo says; every reconcile pass looks again.
	if _, err := s.rt.CollectStrays(ctx); err != nil {
		logger.Warn("collecting stray processes", "err", err)
	}
	if s.data, err = newDataPlane(ctx, cfg, s.apiLn.Addr().String(), logger); err != nil {
		return nil, err
	}
	s.metrics, err = newMetricsPlane(cfg, filepath.Join(cfg.DataDir, "metrics"), s.data.metricsURL, s.data.router, logger)
	if err != nil {
		return nil, err
	}
	s.reporter = reporter.New(s.db, logger)
	var envs *environment.Controller
	trigger := func() { envs.Trigger() }
	s.rollouts = rollout.New(s.data.router, &rollout.TemplateAnalyzer{Providers: s.metrics.providers, Runs: s.db, Logger: logger}, s.repo, s.reporter, trigger, logger)
	if err := s.rollouts.Persist(ctx, s.db); err != nil {
		return nil, err
	}
	envs = environment.New(s.repo, s.rt, artifacts, s.data.router, s.reporter, s.rollouts, environment.Options{
		PollInterval: cfg.PollInterval.Duration, GatewayAddr: s.data.addr,
		HealthTimeout: cfg.Timeouts.Health.Duration, Logger: logger, Store: s.db,
	})
	s.envs = envs
	s.pipelines = pipeline.New(s.db, artifacts, s.repo, s.reporter, envs, pipeline.Options{
		DeployTimeout: cfg.Timeouts.Deploy.Duration, RolloutTimeout: cfg.Timeouts.Rollout.Duration,
		TeardownTimeout: cfg.Timeouts.Teardown.Duration, Logger: logger, AbortRollout: s.rollouts.Abort,
		JobTimeout: cfg.Timeouts.Job.Duration, BuildTimeout: cfg.Timeouts.Build.Duration, StagingTTL: cfg.Staging.TTL.Duration, KeepOnFailure: cfg.Staging.KeepOnFailure,
	})
	s.apiSrv = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	hook := webhook.NewHandler([]byte(s.cfg.WebhookSecret), tracker{&s.cfg}, starter{s}, s.db, s.log)
	mux.Handle("POST /webhooks/github", hook)
	rep := s.reporter.Handler()
	mux.Handle("/workflow/", rep)
	mux.Handle("/api/v1/expectations/", rep)
	mux.Handle("/api/v1/", api.New(s.pipelines, s.envs, s.rollouts, s.db, s.log))
	mux.Handle("GET /metrics", s.data.metricsHandler())
	// The embedded store answers PromQL like a Prometheus server, so a
	// template can be tried (or Grafana pointed) at <api>/prometheus.
	mux.Handle("/prometheus/", http.StripPrefix("/prometheus", s.metrics.embedded.Handler()))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return mux
}

// APIAddr is the API's host:port.
func (s *Server) APIAddr() string { return s.apiLn.Addr().String() }

// GatewayAddr is the gateway's host:port.
func (s *Server) GatewayAddr() string { return s.data.addr }

// Run serves until ctx is cancelled, then shuts down.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	s.goRun(func() {
		if err := s.data.run(s.runCtx); err != nil {
			errc <- err
		}
	})
	s.goRun(func() {
		if err := s.apiSrv.Serve(s.apiLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("api: %w", err)
		}
	})
	s.goRun(func() { s.metrics.run(s.runCtx) })
	s.goRun(func() { _ = s.envs.Run(s.runCtx) })
	s.goRun(func() { pipeline.NewReaper(s.pipelines, s.repo, s.db).Run(s.runCtx) }) // expires staging envs past their TTL
	if err := s.pipelines.Resume(s.runCtx); err != nil {
		s.log.Error("resuming pipelines", "err", err)
	}
	s.log.Info("runway serving", "api", "http://"+s.APIAddr(), "gateway", "http://"+s.GatewayAddr(), "data", s.cfg.DataDir)
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
	var errs []error
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// Drain: first stop accepting (a webhook being answered is
		// recorded first), then let pipeline steps reach a checkpoint.
		if s.apiSrv != nil {
			errs = append(errs, s.apiSrv.Shutdown(ctx))
		}
		if s.pipelines != nil {
			start := time.Now()
			dctx, dcancel := context.WithTimeout(ctx, s.cfg.ShutdownGrace.Duration)
			if err := s.pipelines.Drain(dctx); err != nil {
				s.log.Warn("shutdown grace over; interrupting the remaining steps (they run again on restart)", "err", err)
			} else {
				s.log.Info("pipelines drained", "took", time.Since(start).Round(time.Millisecond))
			}
			dcancel()
		}
		s.runCancel()
		if s.pipelines != nil {
			s.pipelines.Wait()
		}
		if s.rollouts != nil {
			s.rollouts.Wait()
		}
		stop := s.cfg.StopDataPlaneOnExit
		if s.data != nil {
			errs = append(errs, s.data.close(ctx, stop))
		}
		s.wg.Wait()
		if s.apiLn != nil {
			_ = s.apiLn.Close()
		}
		if s.rt != nil {
			if stop {
				errs = append(errs, s.rt.Close(ctx))
			} else {
				s.rt.Detach() // apps and databases keep serving; the next start adopts them
			}
		}
		if s.metrics != nil {
			errs = append(errs, s.metrics.close())
		}
		if s.db != nil {
			errs = append(errs, s.db.Close())
		}
	})
	return errors.Join(errs...)
}

func loadSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return []byte(strings.TrimSpace(string(b))), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading secret: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("generating secret: %w", err)
	}
	secret := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("writing secret: %w", err)
	}
	return []byte(secret), nil
}

// tracker answers the webhook's question: is this push ours?
type tracker struct{ cfg *Config }

func (t tracker) Tracks(repo, branch string) bool {
	_, ok := t.cfg.app(repo, branch)
	return ok
}

// starter turns an accepted push into a pipeline.
type starter struct{ s *Server }

func (st starter) Start(ctx context.Context, p webhook.Push) (string, error) {
	app, ok := st.s.cfg.app(p.Repo, p.Branch)
	if !ok {
		return "", fmt.Errorf("push to %s %s is not tracked", p.Repo, p.Branch)
	}
	return st.s.pipelines.Start(st.s.runCtx, pipeline.Request{
		App: app.Name, Repo: p.Repo, CloneURL: app.URL, Branch: p.Branch, Commit: p.After, Message: p.Message, Delivery: p.Delivery,
	})
}
