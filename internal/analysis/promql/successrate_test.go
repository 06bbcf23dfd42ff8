package promql

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/analysis"
)

// fixedClock stands still: a run's measurements all query the same instant.
type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }
func (c fixedClock) After(time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	ch <- c.t
	return ch
}

// TestMaintainSuccessRate runs the shipped template end to end: a gateway
// exporter scraped into the embedded TSDB, the run judging the canary.
func TestMaintainSuccessRate(t *testing.T) {
	const exposition = `# TYPE runway_gateway_requests_total counter
runway_gateway_requests_total{env="production",app="ping",version="v1",code="500"} %d
runway_gateway_requests_total{env="production",app="ping",version="v2",code="200"} %d
runway_gateway_requests_total{env="staging",app="ping",version="v2",code="500"} %d
`
	tests := []struct {
		name        string
		ok, errors5 int64 // canary requests per scrape
		want        analysis.Phase
		wantReason  string
		wantQueries int
	}{
		{name: "healthy canary", ok: 95, errors5: 5, want: analysis.PhaseSuccessful, wantReason: "all 1 metrics successful", wantQueries: 5},
		{name: "never a 5xx is a ratio of 0", ok: 100, errors5: 0, want: analysis.PhaseSuccessful, wantQueries: 5},
		{name: "failing canary fails on the 4th measurement", ok: 50, errors5: 50, want: analysis.PhaseFailed, wantReason: "4 failed measurements, more than failureLimit 3", wantQueries: 4},
		{name: "no traffic is inconclusive", ok: 0, errors5: 0, want: analysis.PhaseInconclusive, wantReason: "no data", wantQueries: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newExporter(t, func(n int64) string {
				// The stable version and staging fail a lot: the query
				// must look at the production canary only.
				body := fmt.Sprintf(exposition, 1000*n, 1000+tt.ok*n, 1000*n)
				if tt.errors5 > 0 {
					body += fmt.Sprintf("runway_gateway_requests_total{env=\"production\",app=\"ping\",version=\"v2\",code=\"503\"} %d\n", tt.errors5*n)
				}
				if tt.ok == 0 {
					body = fmt.Sprintf(exposition, 1000*n, 0, 1000*n)
					body = strings.Replace(body, `version="v2",code="200"} 0`, `version="v3",code="200"} 0`, 1)
				}
				return body
			})
			clock := &stepNow{t: time.Now().Add(-time.Hour), step: 5 * time.Second}
			p := newProvider(t, Options{Now: clock.now, Targets: func() []Target { return []Target{{URL: e.srv.URL, Labels: map[string]string{"job": "runway-gateway"}}} }})
			scrape(t, p, 8)

			tmpl, err := analysis.ParseTemplate([]byte(analysis.MaintainSuccessRate))
			if err != nil {
				t.Fatal(err)
			}
			run, err := analysis.NewRun("canary", []*analysis.Template{tmpl}, map[string]string{"app": "ping", "version": "v2"})
			if err != nil {
				t.Fatal(err)
			}
			run.Metrics[0].Count = 5 // the template runs until terminated
			run.Clock = fixedClock{t: clock.last()}
			var queries int
			providers := func(address string) (analysis.Provider, error) {
				if address != "" {
					return nil, fmt.Errorf("unexpected address %q", address)
				}
				return countingProvider{p, &queries}, nil
			}
			res, err := run.Execute(context.Background(), providers, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Phase != tt.want || !strings.Contains(res.Reason, tt.wantReason) {
				t.Errorf("result %s (%s), want %s (%s)", res.Phase, res.Reason, tt.want, tt.wantReason)
			}
			if queries != tt.wantQueries {
				t.Errorf("%d queries, want %d", queries, tt.wantQueries)
			}
		})
	}
}

type countingProvider struct {
	p *Provider
	n *int
}

func (c countingProvider) Query(ctx context.Context, q string, at time.Time) ([]float64, error) {
	*c.n++
	return c.p.Query(ctx, q, at)
}
