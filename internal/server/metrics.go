package server

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/analysis/promql"
)

// metricsPlane is Runway's embedded Prometheus: it scrapes the gateway's
// metrics into a local TSDB and answers the analysis runs' PromQL.
type metricsPlane struct {
	embedded *promql.Provider
	remote   remoteProviders
}

func newMetricsPlane(cfg Config, dir, target string, logger *slog.Logger) (*metricsPlane, error) {
	p, err := promql.New(promql.Options{
		Dir:      dir,
		Interval: cfg.ScrapeInterval.Duration,
		Targets: func() []promql.Target {
			return []promql.Target{{URL: target, Labels: map[string]string{"job": "runway-gateway"}}}
		},
		Logger: logger,
	})
	if err != nil {
		return nil, fmt.Errorf("starting embedded metrics: %w", err)
	}
	return &metricsPlane{embedded: p}, nil
}

// providers resolves a metric's prometheus address: "" is the embedded
// PromQL engine.
func (m *metricsPlane) providers(address string) (analysis.Provider, error) {
	if address == "" {
		return m.embedded, nil
	}
	return m.remote.get(address)
}

func (m *metricsPlane) run(ctx context.Context) {
	if err := m.embedded.Run(ctx); err != nil && ctx.Err() == nil {
		slog.Error("embedded metrics stopped", "err", err)
	}
}

func (m *metricsPlane) close() error { return m.embedded.Close() }
