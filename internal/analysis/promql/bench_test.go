package promql

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/runway-cd/runway/internal/analysis"
)

// BenchmarkSuccessRateQuery evaluates the maintain-success-rate template's
// query over 10 minutes of gateway counters scraped every 5s: 10 apps, 2
// versions, 3 status codes (60 series, 120 samples each).
func BenchmarkSuccessRateQuery(b *testing.B) {
	p, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	end := time.Now()
	start := end.Add(-10 * time.Minute)
	app := p.db.AppenderV2(context.Background())
	for ts := start; !ts.After(end); ts = ts.Add(5 * time.Second) {
		step := float64(ts.Sub(start) / (5 * time.Second))
		for a := range 10 {
			for _, version := range []string{"v1", "v2"} {
				for code, perStep := range map[string]float64{"200": 50, "500": 5, "503": 1} {
					lset := labels.FromStrings(model.MetricNameLabel, "runway_gateway_requests_total",
						"env", "production", "app", fmt.Sprintf("app%d", a), "version", version, "code", code)
					if _, err := app.Append(0, lset, 0, ts.UnixMilli(), perStep*step, nil, nil, storage.AppendV2Options{}); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
	}
	if err := app.Commit(); err != nil {
		b.Fatal(err)
	}
	tmpl, err := analysis.ParseTemplate([]byte(analysis.MaintainSuccessRate))
	if err != nil {
		b.Fatal(err)
	}
	run, err := analysis.NewRun("bench", []*analysis.Template{tmpl}, map[string]string{"app": "app3", "version": "v2"})
	if err != nil {
		b.Fatal(err)
	}
	query := run.Metrics[0].Query
	got, err := p.Query(context.Background(), query, end)
	if err != nil {
		b.Fatal(err)
	}
	if want := 6.0 / 56; len(got) != 1 || got[0] < want-1e-9 || got[0] > want+1e-9 {
		b.Fatalf("error ratio = %v, want [%v]", got, want)
	}
	ctx := context.Background()
	for b.Loop() {
		if _, err := p.Query(ctx, query, end); err != nil {
			b.Fatal(err)
		}
	}
}
