package analysis

import (
	"strings"
	"testing"
	"time"
)

// phases builds measurements from letters: S successful, F failed,
// I inconclusive, E error, N not counted (waiting for samples).
func phases(s string) []Measurement {
	byLetter := map[rune]Phase{'S': PhaseSuccessful, 'F': PhaseFailed, 'I': PhaseInconclusive, 'E': PhaseError, 'N': PhaseInconclusive}
	var ms []Measurement
	for _, r := range s {
		ms = append(ms, Measurement{Phase: byLetter[r], NotCounted: r == 'N'})
	}
	return ms
}

// defaults is a metric as NewRun resolves it from a template that sets
// nothing but a query: Argo Rollouts' defaults.
func defaults(t *testing.T, metricYAML string) Metric {
	t.Helper()
	tp, err := ParseTemplate([]byte(doc(metricYAML + promQuery)))
	if err != nil {
		t.Fatal(err)
	}
	run, err := NewRun("r", []*Template{tp}, map[string]string{"app": "a"})
	if err != nil {
		t.Fatal(err)
	}
	return run.Metrics[0]
}

func TestAssess(t *testing.T) {
	tests := []struct {
		name       string
		metric     string // metric YAML lines before the provider
		ms         string
		want       Phase
		wantDone   bool
		wantReason string
	}{
		{name: "no measurement is pending", ms: "", want: PhasePending},
		{name: "no count no interval: one success completes", ms: "S", want: PhaseSuccessful, wantDone: true, wantReason: "count 1 reached"},
		{name: "failureLimit 0: first failure fails", ms: "F", want: PhaseFailed, wantDone: true, wantReason: "more than failureLimit 0"},
		{name: "inconclusiveLimit 0: first inconclusive decides", ms: "I", want: PhaseInconclusive, wantDone: true, wantReason: "more than inconclusiveLimit 0"},
		{name: "error is retried, not counted", ms: "E", want: PhaseRunning},
		{name: "consecutiveErrorLimit 4: four errors keep going", ms: "EEEE", want: PhaseRunning},
		{name: "consecutiveErrorLimit 4: fifth consecutive error is Error", ms: "EEEEE", want: PhaseError, wantDone: true, wantReason: "5 consecutive errors, more than consecutiveErrorLimit 4"},
		{name: "errors then success: count reached", ms: "EEEES", want: PhaseSuccessful, wantDone: true},
		{name: "consecutive count resets on a measurement", metric: "    interval: 10s\n", ms: "EEEESEEEE", want: PhaseRunning},
		{name: "custom consecutiveErrorLimit 0", metric: "    consecutiveErrorLimit: 0\n", ms: "E", want: PhaseError, wantDone: true},
		{name: "interval without count runs until terminated", metric: "    interval: 10s\n", ms: "SSSSSSSSSS", want: PhaseRunning, wantReason: "10 measurements taken"},
		{name: "interval without count fails on first failure", metric: "    interval: 10s\n", ms: "SSSF", want: PhaseFailed, wantDone: true},
		{name: "count 3 interval: two taken", metric: "    interval: 10s\n    count: 3\n", ms: "SS", want: PhaseRunning, wantReason: "2 of 3"},
		{name: "count 3 interval: three taken", metric: "    interval: 10s\n    count: 3\n", ms: "SSS", want: PhaseSuccessful, wantDone: true},
		{name: "count as string", metric: "    interval: 10s\n    count: \"2\"\n", ms: "SS", want: PhaseSuccessful, wantDone: true},
		{name: "count from arg", metric: "    interval: 10s\n    count: \"{{args.count}}\"\n", ms: "SS", want: PhaseRunning, wantReason: "2 of 3"},
		{name: "count 1 without interval is allowed", metric: "    count: 1\n", ms: "S", want: PhaseSuccessful, wantDone: true},
		{name: "failureLimit 3: three failures tolerated", metric: "    interval: 10s\n    failureLimit: 3\n", ms: "FSFSF", want: PhaseRunning},
		{name: "failureLimit 3: fourth failure fails", metric: "    interval: 10s\n    failureLimit: 3\n", ms: "FSFSFF", want: PhaseFailed, wantDone: true, wantReason: "4 failed measurements, more than failureLimit 3"},
		{name: "failures below limit do not stop success at count", metric: "    interval: 10s\n    count: 4\n    failureLimit: 2\n", ms: "FFSS", want: PhaseSuccessful, wantDone: true},
		{name: "failure checked before inconclusive", metric: "    interval: 10s\n", ms: "IF", want: PhaseFailed, wantDone: true},
		{name: "inconclusiveLimit 2: third inconclusive decides", metric: "    interval: 10s\n    inconclusiveLimit: 2\n", ms: "IISI", want: PhaseInconclusive, wantDone: true},
		{name: "inconclusiveLimit 2: two tolerated", metric: "    interval: 10s\n    inconclusiveLimit: 2\n", ms: "IIS", want: PhaseRunning},
		{name: "failed and inconclusive both over: Failed wins", metric: "    interval: 10s\n    failureLimit: 1\n    inconclusiveLimit: 1\n", ms: "IIFF", want: PhaseFailed, wantDone: true},
		{name: "not counted is not inconclusive", ms: "NNN", want: PhaseRunning, wantReason: "0 of 1 measurements taken (0 successful, 0 failed, 0 inconclusive, 0 errors, 3 not counted)"},
		{name: "not counted then success completes count 1", ms: "NNS", want: PhaseSuccessful, wantDone: true, wantReason: "count 1 reached (1 successful, 0 failed, 0 inconclusive, 0 errors, 2 not counted)"},
		{name: "not counted then a counted inconclusive decides", ms: "NI", want: PhaseInconclusive, wantDone: true, wantReason: "1 inconclusive measurements"},
		{name: "not counted do not count towards count", metric: "    interval: 10s\n    count: 3\n", ms: "SNNSN", want: PhaseRunning, wantReason: "2 of 3"},
		{name: "count reached with not counted between", metric: "    interval: 10s\n    count: 3\n", ms: "SNNSNS", want: PhaseSuccessful, wantDone: true},
		{name: "not counted do not reset consecutive errors", metric: "    interval: 10s\n", ms: "ENENENENE", want: PhaseError, wantDone: true, wantReason: "5 consecutive errors"},
		{name: "not counted do not count towards failureLimit", metric: "    interval: 10s\n    failureLimit: 1\n", ms: "FNNNN", want: PhaseRunning},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := defaults(t, tt.metric)
			got, reason, done := Assess(m, phases(tt.ms))
			if got != tt.want || done != tt.wantDone {
				t.Fatalf("Assess = %s, done %v (%s); want %s, done %v", got, done, reason, tt.want, tt.wantDone)
			}
			if !strings.Contains(reason, tt.wantReason) {
				t.Errorf("reason %q lacks %q", reason, tt.wantReason)
			}
		})
	}
}

func TestAssessTerminated(t *testing.T) {
	m := Metric{Name: "m", Interval: time.Second, ConsecutiveErrorLimit: DefaultConsecutiveErrorLimit}
	tests := []struct {
		name string
		ms   string
		want Phase
	}{
		{name: "nothing measured", ms: "", want: PhaseSuccessful},
		{name: "running metric", ms: "SSE", want: PhaseSuccessful},
		{name: "failed stays failed", ms: "SF", want: PhaseFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason, done := assess(m, phases(tt.ms), true)
			if got != tt.want || !done {
				t.Errorf("assess = %s, %v (%s); want %s, done", got, done, reason, tt.want)
			}
		})
	}
}
