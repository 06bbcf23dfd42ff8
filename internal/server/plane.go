package server

import (
	"context"
	"fmt"
	"path/filepath"

	"k8s.io/utils/clock"

	"github.com/runway-cd/runway/internal/api"
	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/environment"
	"github.com/runway-cd/runway/internal/postgres"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/runtime/local"
	"github.com/runway-cd/runway/internal/sandbox"
	"github.com/runway-cd/runway/internal/workload"
)

// rollouts owns production's version changes: Runway's rollout
// controller on the local runtime, Argo Rollouts on Kubernetes.
type rollouts interface {
	environment.Rollouts
	api.Rollouts
	// Run reconciles until ctx ends.
	Run(ctx context.Context) error
	// AbortVersion aborts app's rollout in env only while it rolls out
	// version (a cancelled or failed pipeline's).
	AbortVersion(env, app, version, reason string) error
}

var _ rollouts = (*rollout.Controller)(nil)

// openLocal opens the local runtime's planes: the data plane (gateway and
// supervisor, which keep serving while this process restarts), the
// runtime, the embedded metrics and Runway's own rollout controller.
func (s *Server) openLocal(ctx context.Context, sb *sandbox.Sandbox, artifacts *build.Store, clk clock.WithTicker, committed func()) error {
	cfg, logger := s.cfg, s.log
	// The data plane first: its supervisor runs the replicas and
	// databases the runtime declares, and keeps them running while this
	// process is down.
	var err error
	if s.data, err = newDataPlane(ctx, cfg, s.apiLn.Addr().String(), logger); err != nil {
		return err
	}
	s.local, err = local.New(local.Options{
		Dir: filepath.Join(cfg.WorkDir, "envs"), SecretsDir: filepath.Join(cfg.DataDir, "secrets"), Logger: logger, Sandbox: sb, Secrets: s.redactor,
		Postgres: postgres.Config{BinDir: cfg.Postgres.BinDir, RunAsUser: cfg.Postgres.RunAsUser, Logger: logger,
			// initdb once per PostgreSQL version and settings; every
			// environment's server starts from a copy.
			TemplateDir: filepath.Join(cfg.WorkDir, "postgres-templates")},
		Supervisor: s.data.supervisor,
	})
	if err != nil {
		return err
	}
	s.rt, s.router = s.local, s.data.router
	report, err := s.local.Adopt(ctx)
	if err != nil {
		return fmt.Errorf("adopting running apps: %w", err)
	}
	for _, a := range report.Adopted {
		logger.Info("adopted", "process", a)
	}
	for _, d := range report.Dropped {
		logger.Info("not adopted", "process", d)
	}
	// Processes started but never recorded are strays whatever the state
	// repo says; every reconcile pass looks again.
	if _, err := s.local.CollectStrays(ctx); err != nil {
		logger.Warn("collecting stray processes", "err", err)
	}
	s.metrics, err = newMetricsPlane(cfg, filepath.Join(cfg.DataDir, "metrics"), s.data.metricsURL, s.data.router, logger)
	if err != nil {
		return err
	}
	s.rollouts = rollout.New(rollout.Options{
		Router: s.data.router, Repo: s.repo, Reporter: s.reporter, Store: s.db,
		Analyzer:  &rollout.TemplateAnalyzer{Providers: s.metrics.providers, Runs: s.db, Logger: logger},
		Workloads: workload.Starter{RT: s.local}, Artifacts: artifacts,
		Events: s.events, Clock: clk, Logger: logger, HealthTimeout: cfg.Timeouts.Health.Duration,
		Redact:    s.redactor.String,
		Committed: committed,
	})
	return nil
}
