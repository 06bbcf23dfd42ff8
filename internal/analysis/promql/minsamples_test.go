package promql

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/analysis"
)

// scrapingClock is a run's clock in step with the scrapes: waiting d
// scrapes once per 5s of d (the scrape clock's step), so a measurement
// taken after the wait sees the samples a real scraper would have stored.
type scrapingClock struct {
	t      *testing.T
	p      *Provider
	scrape *stepNow
	mu     sync.Mutex
}

func (c *scrapingClock) Now() time.Time { return c.scrape.last() }

func (c *scrapingClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	for waited := time.Duration(0); waited < d; waited += c.scrape.step {
		if err := c.p.ScrapeNow(context.Background()); err != nil {
			c.t.Error(err)
		}
	}
	ch := make(chan time.Time, 1)
	ch <- c.scrape.last()
	return ch
}

const minSamplesTemplate = `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: error-ratio
  annotations:
    runway.io/min-samples: "10"
    runway.io/min-samples-wait: 30s
spec:
  args: [{name: env}, {name: app}, {name: version}]
  metrics:
  - name: error-ratio
    interval: 5s
    count: 2
    successCondition: result[0] <= 0.2
    provider:
      prometheus:
        query: (sum(rate(runway_gateway_requests_total{job="runway-gateway",version="{{args.version}}",code=~"5.."}[30s])) or vector(0)) / sum(rate(runway_gateway_requests_total{job="runway-gateway",version="{{args.version}}"}[30s]))
`

// TestMinSamplesWaitsForTraffic runs a min-samples template against the
// embedded TSDB with the default samples query: while the canary has
// served too few requests its measurements are not counted, and they are
// taken again as the scrapes bring traffic in.
func TestMinSamplesWaitsForTraffic(t *testing.T) {
	tests := []struct {
		name        string
		trafficFrom int64 // the scrape from which the canary serves 4 requests per 5s; 0: never
		want        analysis.Phase
		wantPattern func(string) bool
		wantReason  string
	}{
		{
			name: "traffic comes: not counted until it does, then judged", trafficFrom: 10,
			want: analysis.PhaseSuccessful,
			wantPattern: func(p string) bool {
				return strings.HasPrefix(p, "NN") && strings.HasSuffix(p, "SS") && strings.Trim(p, "N") == "SS"
			},
			wantReason: "all 1 metrics successful",
		},
		{
			name: "traffic never comes: Inconclusive after the wait", trafficFrom: 0,
			want:        analysis.PhaseInconclusive,
			wantPattern: func(p string) bool { return p == "NNNNNNI" }, // 0s..25s not counted, 30s counts
			wantReason:  "only 0 of 10 samples after waiting 30s (runway.io/min-samples-wait)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newExporter(t, func(n int64) string {
				var served int64
				if tt.trafficFrom > 0 && n >= tt.trafficFrom {
					served = 4 * (n - tt.trafficFrom + 1)
				}
				return fmt.Sprintf(requestsExposition, served, 0)
			})
			scrapeClock := &stepNow{t: time.Now().Add(-time.Hour), step: 5 * time.Second}
			p := newProvider(t, Options{Now: scrapeClock.now, Targets: func() []Target {
				return []Target{{URL: e.srv.URL, Labels: map[string]string{"job": "runway-gateway"}}}
			}})
			scrape(t, p, 8) // 40s of a canary without traffic

			tmpl, err := analysis.ParseTemplate([]byte(minSamplesTemplate))
			if err != nil {
				t.Fatal(err)
			}
			run, err := analysis.NewRun("canary", []*analysis.Template{tmpl}, map[string]string{"env": "production", "app": "ping", "version": "v2"})
			if err != nil {
				t.Fatal(err)
			}
			run.Clock = &scrapingClock{t: t, p: p, scrape: scrapeClock}
			res, err := run.Execute(context.Background(), func(string) (analysis.Provider, error) { return p, nil }, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			ms := res.Metrics[0].Measurements
			var pattern strings.Builder
			for _, m := range ms {
				if m.NotCounted {
					pattern.WriteByte('N')
					if !strings.HasPrefix(m.Reason, "not counted: ") || m.Phase != analysis.PhaseInconclusive {
						t.Errorf("not counted measurement %+v", m)
					}
					continue
				}
				pattern.WriteByte(string(m.Phase)[0])
			}
			t.Logf("measurements %s", pattern.String())
			if res.Phase != tt.want || !strings.Contains(res.Reason, tt.wantReason) || !tt.wantPattern(pattern.String()) {
				t.Errorf("result %s (%s), measurements %s; want %s (%s)", res.Phase, res.Reason, pattern.String(), tt.want, tt.wantReason)
				for _, m := range ms {
					t.Logf("  %+v", m)
				}
			}
		})
	}
}
