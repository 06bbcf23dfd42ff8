package analysis

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// conditions are a metric's compiled success and failure conditions.
type conditions struct {
	success, failure       *vm.Program
	successSrc, failureSrc string
	// handlesNaN is set when a condition calls isNaN: the template then
	// judges NaN itself instead of Runway calling it Inconclusive.
	handlesNaN bool
}

// conditionEnv is the environment conditions are compiled and run against:
// the same names Argo Rollouts offers for a Prometheus result.
func conditionEnv(result []float64) map[string]any {
	return map[string]any{
		"result": result,
		"isNaN":  isNaN,
		"isInf":  isInf,
	}
}

// isNaN accepts a value or the whole result, as Argo Rollouts' templates
// write both isNaN(result[0]) and isNaN(result): for a result it reports
// whether any value is NaN (a scalar query has one).
func isNaN(v any) bool {
	switch x := v.(type) {
	case float64:
		return math.IsNaN(x)
	case []float64:
		for _, f := range x {
			if math.IsNaN(f) {
				return true
			}
		}
	}
	return false
}

// isInf is isNaN's counterpart for infinities.
func isInf(v any) bool {
	switch x := v.(type) {
	case float64:
		return math.IsInf(x, 0)
	case []float64:
		for _, f := range x {
			if math.IsInf(f, 0) {
				return true
			}
		}
	}
	return false
}

// compileConditions compiles m's conditions; in partial mode a condition
// still holding an {{args...}} placeholder is skipped.
func compileConditions(m Metric, partial bool) (conditions, error) {
	c := conditions{successSrc: m.SuccessCondition, failureSrc: m.FailureCondition}
	compile := func(field, src string) (*vm.Program, error) {
		if src == "" || (partial && hasPlaceholder(src)) {
			return nil, nil
		}
		p, err := expr.Compile(src, expr.Env(conditionEnv(nil)), expr.AsBool())
		if err != nil {
			return nil, &fieldError{field: field, err: fmt.Errorf("%q: %w", src, err)}
		}
		return p, nil
	}
	var err error
	if c.success, err = compile("successCondition", m.SuccessCondition); err != nil {
		return conditions{}, err
	}
	if c.failure, err = compile("failureCondition", m.FailureCondition); err != nil {
		return conditions{}, err
	}
	c.handlesNaN = strings.Contains(m.SuccessCondition, "isNaN") || strings.Contains(m.FailureCondition, "isNaN")
	return c, nil
}

// evaluate judges one query result with Argo Rollouts' rules, plus Runway's
// rule that no data and NaN are Inconclusive (see the package doc).
func (c conditions) evaluate(result []float64) (Phase, string) {
	if len(result) == 0 {
		return PhaseInconclusive, "query returned no data"
	}
	if !c.handlesNaN && hasNaN(result) {
		return PhaseInconclusive, "query returned NaN (no traffic to compute a ratio?)"
	}
	env := conditionEnv(result)
	run := func(field string, p *vm.Program, src string) (bool, error) {
		out, err := expr.Run(p, env)
		if err != nil {
			return false, fmt.Errorf("evaluating %s %q: %w", field, src, err)
		}
		ok, isBool := out.(bool)
		if !isBool {
			return false, fmt.Errorf("evaluating %s %q: got %T, want bool", field, src, out)
		}
		return ok, nil
	}
	var success, failure bool
	var err error
	if c.success != nil {
		if success, err = run("successCondition", c.success, c.successSrc); err != nil {
			return PhaseError, err.Error()
		}
	}
	if c.failure != nil {
		if failure, err = run("failureCondition", c.failure, c.failureSrc); err != nil {
			return PhaseError, err.Error()
		}
	}
	switch {
	case c.success == nil && c.failure == nil:
		return PhaseSuccessful, "no condition: any result is a success"
	case c.failure == nil:
		if !success {
			return PhaseFailed, fmt.Sprintf("successCondition %q not met", c.successSrc)
		}
		return PhaseSuccessful, fmt.Sprintf("successCondition %q met", c.successSrc)
	case c.success == nil:
		if failure {
			return PhaseFailed, fmt.Sprintf("failureCondition %q met", c.failureSrc)
		}
		return PhaseSuccessful, fmt.Sprintf("failureCondition %q not met", c.failureSrc)
	case failure:
		return PhaseFailed, fmt.Sprintf("failureCondition %q met", c.failureSrc)
	case success:
		return PhaseSuccessful, fmt.Sprintf("successCondition %q met", c.successSrc)
	default:
		return PhaseInconclusive, fmt.Sprintf("neither successCondition %q nor failureCondition %q met", c.successSrc, c.failureSrc)
	}
}

func hasNaN(values []float64) bool {
	for _, v := range values {
		if math.IsNaN(v) {
			return true
		}
	}
	return false
}

// formatValues renders a result the way Argo Rollouts shows it: [0.05,1].
func formatValues(values []float64) string {
	parts := make([]string, len(values))
	for i, v := range values {
		parts[i] = strconv.FormatFloat(v, 'g', -1, 64)
	}
	return "[" + strings.Join(parts, ",") + "]"
}
