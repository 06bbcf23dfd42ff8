package analysis

import (
	"math"
	"testing"

	"github.com/expr-lang/expr"
)

func TestIsNaNOnValueAndResult(t *testing.T) {
	tests := []struct {
		name   string
		src    string
		result []float64
		want   bool
	}{
		{"value", "isNaN(result[0])", []float64{math.NaN()}, true},
		{"whole result", "isNaN(result)", []float64{math.NaN()}, true},
		{"whole result, a number", "isNaN(result)", []float64{0.1}, false},
		{"argo style guard", "isNaN(result) || result[0] >= 0.95", []float64{0.97}, true},
		{"inf", "isInf(result)", []float64{math.Inf(1)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := expr.Compile(tt.src, expr.Env(conditionEnv(nil)), expr.AsBool())
			if err != nil {
				t.Fatal(err)
			}
			got, err := expr.Run(p, conditionEnv(tt.result))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("%s = %v, want %v", tt.src, got, tt.want)
			}
		})
	}
}
