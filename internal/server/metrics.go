package server

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/analysis/promql"
	"github.com/runway-cd/runway/internal/gateway"
)

// metricsPlane is Runway's embedded Prometheus: it scrapes the gateway's
// metrics into a local TSDB and answers the analysis runs' PromQL.
type metricsPlane struct {
	embedded *promql.Provider
	remote   remoteProviders
	// allowed are the Prometheus servers templates may name; the build
	// checks them too, this is for templates already in the store.
	allowed analysis.Addresses
}

// routeLister lists the gateway's routes, whose backends are the app
// replicas to scrape.
type routeLister interface {
	Routes() []gateway.Route
}

func newMetricsPlane(cfg Config, dir, gatewayMetrics string, routes routeLister, logger *slog.Logger) (*metricsPlane, error) {
	p, err := promql.New(promql.Options{
		Dir:      dir,
		Interval: cfg.ScrapeInterval.Duration,
		Targets:  func() []promql.Target { return scrapeTargets(gatewayMetrics, routes.Routes()) },
		Logger:   logger,
	})
	if err != nil {
		return nil, fmt.Errorf("starting embedded metrics: %w", err)
	}
	return &metricsPlane{embedded: p, allowed: analysis.NewAddresses(cfg.Analysis.PrometheusAddresses)}, nil
}

// providers resolves a metric's prometheus address: "" is the embedded
// PromQL engine, any other must be in the config's allow-list. A refused
// address is never dialled.
func (m *metricsPlane) providers(address string) (analysis.Provider, error) {
	if address == "" {
		return m.embedded, nil
	}
	if err := m.allowed.Check(address); err != nil {
		return nil, err
	}
	return m.remote.get(address)
}

func (m *metricsPlane) run(ctx context.Context) {
	if err := m.embedded.Run(ctx); err != nil && ctx.Err() == nil {
		slog.Error("embedded metrics stopped", "err", err)
	}
}

func (m *metricsPlane) close() error { return m.embedded.Close() }

// scrapeTargets are the gateway's metrics and every routed replica's
// /metrics, labelled with its environment, app and version.
func scrapeTargets(gatewayMetrics string, routes []gateway.Route) []promql.Target {
	targets := []promql.Target{{URL: gatewayMetrics, Labels: map[string]string{"job": "runway-gateway"}}}
	add := func(r gateway.Route, version string, backends []gateway.Backend) {
		for _, b := range backends {
			targets = append(targets, promql.Target{
				URL:    "http://" + b.Addr + "/metrics",
				Labels: map[string]string{"job": "app", "env": r.Env, "app": r.App, "version": version},
			})
		}
	}
	for _, r := range routes {
		add(r, r.StableVersion, r.Stable)
		add(r, r.CanaryVersion, r.Canary)
	}
	return targets
}
