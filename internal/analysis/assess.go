package analysis

import (
	"fmt"
	"time"
)

// Phase is the state of a measurement, a metric or a run.
type Phase string

// Phases, with Argo Rollouts' names. A measurement is only ever Successful,
// Failed, Inconclusive or Error; Pending and Running are for metrics that
// are not done yet.
const (
	PhasePending      Phase = "Pending"
	PhaseRunning      Phase = "Running"
	PhaseSuccessful   Phase = "Successful"
	PhaseFailed       Phase = "Failed"
	PhaseInconclusive Phase = "Inconclusive"
	PhaseError        Phase = "Error"
)

// Completed reports whether p is final.
func (p Phase) Completed() bool {
	switch p {
	case PhaseSuccessful, PhaseFailed, PhaseInconclusive, PhaseError:
		return true
	}
	return false
}

// Measurement is one query of a metric and its verdict.
type Measurement struct {
	Phase Phase `json:"phase"`
	// Value is the query result as Argo Rollouts shows it, e.g. "[0.05]".
	Value      string    `json:"value,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt"`
	// NotCounted marks a measurement taken before the canary had served
	// runway.io/min-samples samples (Phase Inconclusive, Reason "not
	// counted: ..."). It is kept for the record but counts towards
	// nothing: not count, failureLimit, inconclusiveLimit nor
	// consecutiveErrorLimit; the metric is measured again at its next
	// interval.
	NotCounted bool `json:"notCounted,omitempty"`
}

// tally counts measurements the way Argo Rollouts' MetricResult does.
type tally struct {
	count, successful, failed, inconclusive, errors, consecutiveErrors int
	notCounted                                                         int
}

func count(ms []Measurement) tally {
	var t tally
	for _, m := range ms {
		if m.NotCounted {
			t.notCounted++
			continue // waiting for samples: neither judged nor an error
		}
		switch m.Phase {
		case PhaseSuccessful:
			t.successful++
		case PhaseFailed:
			t.failed++
		case PhaseInconclusive:
			t.inconclusive++
		case PhaseError:
			t.errors++
			t.consecutiveErrors++
			continue // errors are retried: they do not count towards count
		}
		t.count++
		t.consecutiveErrors = 0
	}
	return t
}

func (t tally) String() string {
	s := fmt.Sprintf("%d successful, %d failed, %d inconclusive, %d errors", t.successful, t.failed, t.inconclusive, t.errors)
	if t.notCounted > 0 {
		s += fmt.Sprintf(", %d not counted", t.notCounted)
	}
	return s
}

// Assess decides the phase of metric m given its measurements so far, with
// Argo Rollouts' rules, in this order: Failed when more measurements failed
// than failureLimit; Inconclusive when more were inconclusive than
// inconclusiveLimit; Error when more errors in a row than
// consecutiveErrorLimit; Successful once count non-error measurements are
// taken. Measurements marked NotCounted are skipped. done is false while
// the metric needs more measurements.
func Assess(m Metric, ms []Measurement) (phase Phase, reason string, done bool) {
	return assess(m, ms, false)
}

// assess is Assess; with terminated set (the run was stopped) a metric that
// has not failed is Successful, as in Argo Rollouts.
func assess(m Metric, ms []Measurement, terminated bool) (Phase, string, bool) {
	if len(ms) == 0 {
		if terminated {
			return PhaseSuccessful, "run terminated before the first measurement", true
		}
		return PhasePending, "no measurement yet", false
	}
	t := count(ms)
	last := ms[len(ms)-1]
	lastText := describe(last)
	if t.failed > m.FailureLimit {
		return PhaseFailed, fmt.Sprintf("%d failed measurements, more than failureLimit %d (%s); last: %s", t.failed, m.FailureLimit, t, lastText), true
	}
	if t.inconclusive > m.InconclusiveLimit {
		return PhaseInconclusive, fmt.Sprintf("%d inconclusive measurements, more than inconclusiveLimit %d (%s); last: %s", t.inconclusive, m.InconclusiveLimit, t, lastText), true
	}
	if t.consecutiveErrors > m.ConsecutiveErrorLimit {
		return PhaseError, fmt.Sprintf("%d consecutive errors, more than consecutiveErrorLimit %d; last: %s", t.consecutiveErrors, m.ConsecutiveErrorLimit, lastText), true
	}
	n, bounded := m.effectiveCount()
	if bounded && t.count >= n {
		return PhaseSuccessful, fmt.Sprintf("count %d reached (%s); last: %s", n, t, lastText), true
	}
	if terminated {
		return PhaseSuccessful, fmt.Sprintf("run terminated after %d measurements (%s); last: %s", len(ms), t, lastText), true
	}
	if bounded {
		return PhaseRunning, fmt.Sprintf("%d of %d measurements taken (%s)", t.count, n, t), false
	}
	return PhaseRunning, fmt.Sprintf("%d measurements taken (%s)", len(ms), t), false
}

func describe(m Measurement) string {
	s := string(m.Phase)
	if m.Value != "" {
		s += " " + m.Value
	}
	if m.Reason != "" {
		s += ": " + m.Reason
	}
	return s
}
