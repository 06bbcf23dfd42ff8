// Package providertest is the conformance suite of analysis.Provider:
// every implementation runs Run against a setup of its own, so the embedded
// PromQL and a Prometheus server answer the same queries the same way.
package providertest

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/analysis"
)

// Exposition is the data a Setup must make queryable, in Prometheus text
// format, as scraped from a target.
const Exposition = `# HELP runway_test_gauge A gauge for the provider conformance suite.
# TYPE runway_test_gauge gauge
runway_test_gauge{k="a"} 1
runway_test_gauge{k="b"} 2
runway_test_gauge{k="nan"} NaN
`

// Setup returns a provider that has scraped Exposition, and a time at
// which a query sees it.
type Setup func(t *testing.T) (p analysis.Provider, at time.Time)

// Run checks the behaviour every analysis.Provider must have.
func Run(t *testing.T, setup Setup) {
	p, at := setup(t)
	tests := []struct {
		name    string
		query   string
		want    []float64 // nil with wantErr false: no data
		wantErr bool
	}{
		{name: "vector sum", query: `sum(runway_test_gauge{k=~"a|b"})`, want: []float64{3}},
		{name: "vector sorted by labels", query: `runway_test_gauge{k=~"a|b"}`, want: []float64{1, 2}},
		{name: "vector sorted by labels, reversed values", query: `-runway_test_gauge{k=~"a|b"}`, want: []float64{-1, -2}},
		{name: "NaN passes through", query: `runway_test_gauge{k="nan"}`, want: []float64{math.NaN()}},
		{name: "scalar is one value", query: `1 + 1`, want: []float64{2}},
		{name: "vector function", query: `vector(5)`, want: []float64{5}},
		{name: "ratio", query: `sum(runway_test_gauge{k="a"}) / sum(runway_test_gauge{k=~"a|b"})`, want: []float64{1.0 / 3}},
		{name: "no series is no data", query: `runway_test_gauge{k="none"}`},
		{name: "syntax error", query: `sum(runway_test_gauge`, wantErr: true},
		{name: "range vector is an error", query: `runway_test_gauge[1m]`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.Query(context.Background(), tt.query, at)
			if tt.wantErr {
				if err == nil || errors.Is(err, analysis.ErrNoData) {
					t.Fatalf("Query(%s) = %v, %v; want an error other than ErrNoData", tt.query, got, err)
				}
				return
			}
			if tt.want == nil {
				if (err != nil && !errors.Is(err, analysis.ErrNoData)) || len(got) != 0 {
					t.Fatalf("Query(%s) = %v, %v; want no data", tt.query, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Query(%s): %v", tt.query, err)
			}
			if !same(got, tt.want) {
				t.Errorf("Query(%s) = %v, want %v", tt.query, got, tt.want)
			}
		})
	}
	t.Run("cancelled context is an error", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if got, err := p.Query(ctx, `sum(runway_test_gauge)`, at); err == nil {
			t.Errorf("Query with cancelled ctx = %v, want an error", got)
		}
	})
}

func same(got, want []float64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		switch {
		case math.IsNaN(want[i]):
			if !math.IsNaN(got[i]) {
				return false
			}
		case math.Abs(got[i]-want[i]) > 1e-9:
			return false
		}
	}
	return true
}
