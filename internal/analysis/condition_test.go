package analysis

import (
	"math"
	"strings"
	"testing"
)

func TestConditions(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name       string
		success    string
		failure    string
		result     []float64
		want       Phase
		wantReason string
	}{
		{name: "no conditions: success", result: []float64{42}, want: PhaseSuccessful},
		{name: "success only, met", success: "result[0] <= 0.2", result: []float64{0.1}, want: PhaseSuccessful},
		{name: "success only, not met: failed", success: "result[0] <= 0.2", result: []float64{0.5}, want: PhaseFailed, wantReason: `successCondition "result[0] <= 0.2" not met`},
		{name: "failure only, met: failed", failure: "result[0] > 0.2", result: []float64{0.5}, want: PhaseFailed},
		{name: "failure only, not met: success", failure: "result[0] > 0.2", result: []float64{0.1}, want: PhaseSuccessful},
		{name: "both, neither met: inconclusive", success: "result[0] < 0.1", failure: "result[0] > 0.5", result: []float64{0.3}, want: PhaseInconclusive},
		{name: "both met: failure wins", success: "result[0] < 1", failure: "result[0] > 0", result: []float64{0.5}, want: PhaseFailed},
		{name: "every series", success: "all(result, # < 1)", result: []float64{0.1, 0.9}, want: PhaseSuccessful},
		{name: "len builtin", success: "len(result) == 2", result: []float64{0.1, 0.9}, want: PhaseSuccessful},
		{name: "empty result: inconclusive", success: "result[0] <= 0.2", result: nil, want: PhaseInconclusive, wantReason: "no data"},
		{name: "NaN: inconclusive", success: "result[0] <= 0.2", result: []float64{nan}, want: PhaseInconclusive, wantReason: "NaN"},
		{name: "NaN with isNaN: template decides", failure: "isNaN(result[0])", result: []float64{nan}, want: PhaseFailed},
		{name: "isInf", failure: "isInf(result[0])", result: []float64{inf}, want: PhaseFailed},
		{name: "index out of range: error", success: "result[1] < 1", result: []float64{0.5}, want: PhaseError, wantReason: "evaluating successCondition"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := compileConditions(Metric{SuccessCondition: tt.success, FailureCondition: tt.failure}, false)
			if err != nil {
				t.Fatal(err)
			}
			got, reason := c.evaluate(tt.result)
			if got != tt.want {
				t.Fatalf("evaluate = %s (%s), want %s", got, reason, tt.want)
			}
			if !strings.Contains(reason, tt.wantReason) {
				t.Errorf("reason %q lacks %q", reason, tt.wantReason)
			}
		})
	}
}

func TestFormatValues(t *testing.T) {
	if got := formatValues([]float64{0.05, 1, math.NaN()}); got != "[0.05,1,NaN]" {
		t.Errorf("formatValues = %s", got)
	}
}
