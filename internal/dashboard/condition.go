package dashboard

import (
	"regexp"
	"strconv"
	"strings"
)

// threshold is a metric condition that is a comparison of the first
// result with a constant ("result[0] < 0.05"), which a chart can draw as
// a line.
type threshold struct {
	Op    string // <, <=, >, >=, ==
	Value float64
}

// conditionRE matches "result[0] OP number" and "result OP number"
// (Argo's shorthand when the query returns one value); nothing else is
// drawn. The other way round ("0.05 > result[0]") is flipped.
var (
	conditionRE  = regexp.MustCompile(`^\s*result(?:\[0\])?\s*(<=|>=|==|<|>)\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$`)
	reversedRE   = regexp.MustCompile(`^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(<=|>=|==|<|>)\s*result(?:\[0\])?\s*$`)
	flipOperator = map[string]string{"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "=="}
)

// maxCondition bounds the condition text parsed.
const maxCondition = 500

// parseThreshold returns the threshold a condition draws, and false for
// a condition that is not a simple comparison (it is listed as text).
func parseThreshold(cond string) (threshold, bool) {
	if cond == "" || len(cond) > maxCondition {
		return threshold{}, false
	}
	cond = strings.TrimSpace(cond)
	if m := conditionRE.FindStringSubmatch(cond); m != nil {
		v, err := strconv.ParseFloat(m[2], 64)
		return threshold{Op: m[1], Value: v}, err == nil
	}
	if m := reversedRE.FindStringSubmatch(cond); m != nil {
		v, err := strconv.ParseFloat(m[1], 64)
		return threshold{Op: flipOperator[m[2]], Value: v}, err == nil
	}
	return threshold{}, false
}

// firstValue is the first number of a measurement's value as Argo shows
// it ("[0.05]", "[0.05 0.1]", "0.05", "[]"), and false when there is none.
func firstValue(v string) (float64, bool) {
	v = strings.Trim(strings.TrimSpace(v), "[]")
	f := strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' })
	if len(f) == 0 {
		return 0, false
	}
	x, err := strconv.ParseFloat(f[0], 64)
	if err != nil || x != x { // NaN draws nowhere
		return 0, false
	}
	return x, true
}
