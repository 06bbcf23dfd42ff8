// Package prometheus is the analysis provider over a Prometheus server's
// HTTP API: a metric whose provider.prometheus.address is set runs its
// query there as an instant query (/api/v1/query), as Argo Rollouts does.
package prometheus

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/runway-cd/runway/internal/analysis"
)

var _ analysis.Provider = (*Provider)(nil)

// Provider queries one Prometheus server.
type Provider struct {
	address string
	api     v1.API
}

// New returns a provider for the Prometheus server at address (an http or
// https URL, as in provider.prometheus.address). A nil client means
// client_golang's default transport; each query is bounded by its ctx.
func New(address string, client *http.Client) (*Provider, error) {
	u, err := url.Parse(address)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("prometheus address %q: want an http or https URL", address)
	}
	c, err := api.NewClient(api.Config{Address: address, Client: client})
	if err != nil {
		return nil, fmt.Errorf("prometheus client for %s: %w", address, err)
	}
	return &Provider{address: address, api: v1.NewAPI(c)}, nil
}

// Query runs an instant query at time at: one value per series of an
// instant vector, sorted by labels like the embedded provider, or the value
// of a scalar. A vector with no series is an empty result.
func (p *Provider) Query(ctx context.Context, query string, at time.Time) ([]float64, error) {
	value, _, _, err := p.api.Query(ctx, query, at)
	if err != nil {
		return nil, fmt.Errorf("querying prometheus at %s: %w", p.address, err)
	}
	switch v := value.(type) {
	case model.Vector:
		samples := slices.Clone(v)
		slices.SortFunc(samples, func(a, b *model.Sample) int { return compareMetrics(a.Metric, b.Metric) })
		out := make([]float64, 0, len(samples))
		for _, s := range samples {
			if s.Histogram != nil {
				return nil, fmt.Errorf("querying prometheus at %s: series %s is a native histogram; want float values", p.address, s.Metric)
			}
			out = append(out, float64(s.Value))
		}
		return out, nil
	case *model.Scalar:
		return []float64{float64(v.Value)}, nil
	default:
		return nil, fmt.Errorf("querying prometheus at %s: %q returns a %s; want an instant vector or a scalar", p.address, query, value.Type())
	}
}

// compareMetrics orders label sets the way Prometheus' labels.Compare
// does: label by label in name order, name first, then value; a prefix
// sorts first.
func compareMetrics(a, b model.Metric) int {
	an, bn := sortedNames(a), sortedNames(b)
	for i := 0; i < len(an) && i < len(bn); i++ {
		if an[i] != bn[i] {
			if an[i] < bn[i] {
				return -1
			}
			return 1
		}
		if av, bv := a[an[i]], b[bn[i]]; av != bv {
			if av < bv {
				return -1
			}
			return 1
		}
	}
	return len(an) - len(bn)
}

func sortedNames(m model.Metric) []model.LabelName {
	names := make([]model.LabelName, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
