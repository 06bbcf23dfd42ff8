package analysis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Provider runs an instant PromQL query at a time. An instant vector gives
// one value per series, a scalar a single value. No series is an empty
// result or ErrNoData; both make the measurement Inconclusive.
type Provider interface {
	Query(ctx context.Context, query string, at time.Time) ([]float64, error)
}

// ErrNoData may be returned by a Provider whose query matched no series.
var ErrNoData = errors.New("query returned no data")

// ErrTerminated is the cause to cancel Execute's context with
// (context.WithCancelCause) to end a run on purpose, as Argo Rollouts'
// terminate does: metrics that have not failed end Successful and Execute
// returns the result with a nil error.
var ErrTerminated = errors.New("analysis run terminated")

// ProviderFor returns the provider for a metric's prometheus address; ""
// means Runway's embedded provider.
type ProviderFor func(address string) (Provider, error)

// Observer is told of every measurement as soon as it is taken, so the
// caller can persist it and pass it back to Execute after a restart.
type Observer interface {
	Measured(ctx context.Context, metric string, m Measurement)
}

// Clock is the source of time of a run, replaceable in tests.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// queryTimeout bounds one measurement's query.
const queryTimeout = 30 * time.Second

// Result is the outcome of a run.
type Result struct {
	Phase   Phase          `json:"phase"`
	Reason  string         `json:"reason,omitempty"`
	Metrics []MetricResult `json:"metrics"`
}

// MetricResult is the outcome of one metric with all its measurements,
// including those passed in as previous.
type MetricResult struct {
	Name   string `json:"name"`
	Phase  Phase  `json:"phase"`
	Reason string `json:"reason,omitempty"`
	// Query is the PromQL query measured, with the run's arguments in
	// it; SuccessCondition and FailureCondition judge its results. They
	// say why a verdict is what it is (the dashboard draws the
	// conditions' thresholds).
	Query            string        `json:"query,omitempty"`
	SuccessCondition string        `json:"successCondition,omitempty"`
	FailureCondition string        `json:"failureCondition,omitempty"`
	Measurements     []Measurement `json:"measurements"`
}

// Execute runs all metrics concurrently, each on its own schedule: the
// first measurement initialDelay after StartedAt, each next one interval
// after the previous one finished. previous holds measurements already
// taken by an earlier Execute of this run (after a crash); they count as if
// taken now, and the schedule continues from the last one. obs, if not nil,
// sees every new measurement.
//
// Execute returns when every metric has completed, or as soon as one is
// Failed, Error or Inconclusive (the others are then stopped, as Argo
// Rollouts terminates a run). When ctx is done first it returns the result
// so far, every unfinished metric assessed as terminated, and ctx's error;
// if ctx was cancelled with cause ErrTerminated the error is nil.
func (r *Run) Execute(ctx context.Context, providers ProviderFor, obs Observer, previous map[string][]Measurement) (Result, error) {
	if providers == nil {
		return Result{}, fmt.Errorf("executing analysis run %q: no provider", r.Name)
	}
	if len(r.Metrics) == 0 {
		return Result{}, fmt.Errorf("executing analysis run %q: no metric", r.Name)
	}
	clock := r.Clock
	if clock == nil {
		clock = systemClock{}
	}
	started := r.StartedAt
	if started.IsZero() {
		started = clock.Now()
	}
	execs := make([]*metricExec, len(r.Metrics))
	for i, m := range r.Metrics {
		e, err := newMetricExec(m, providers, previous[m.Name])
		if err != nil {
			return Result{}, fmt.Errorf("executing analysis run %q: %w", r.Name, err)
		}
		execs[i] = e
	}

	stopCtx, stop := context.WithCancel(ctx)
	defer stop()
	results := make([]MetricResult, len(execs))
	completed := make([]bool, len(execs))
	var wg sync.WaitGroup
	for i, e := range execs {
		wg.Go(func() {
			results[i], completed[i] = e.run(stopCtx, ctx, clock, started, obs)
			if results[i].Phase != PhaseSuccessful {
				stop()
			}
		})
	}
	wg.Wait()

	res := summarize(results)
	if err := ctx.Err(); err != nil && res.Phase == PhaseSuccessful && slices.Contains(completed, false) {
		if errors.Is(context.Cause(ctx), ErrTerminated) {
			return res, nil
		}
		return res, fmt.Errorf("executing analysis run %q: %w", r.Name, err)
	}
	return res, nil
}

// summarize computes the run's phase: Failed if a metric Failed or Errored,
// else Inconclusive if one was, else Successful.
func summarize(results []MetricResult) Result {
	res := Result{Phase: PhaseSuccessful, Metrics: results}
	rank := map[Phase]int{PhaseSuccessful: 0, PhaseInconclusive: 1, PhaseError: 2, PhaseFailed: 3}
	worst := -1
	for i, mr := range results {
		if mr.Phase == PhaseSuccessful {
			continue
		}
		if worst < 0 || rank[mr.Phase] > rank[results[worst].Phase] {
			worst = i
		}
	}
	if worst < 0 {
		res.Reason = fmt.Sprintf("all %d metrics successful", len(results))
		return res
	}
	w := results[worst]
	res.Phase = w.Phase
	if w.Phase == PhaseError {
		res.Phase = PhaseFailed
	}
	res.Reason = fmt.Sprintf("metric %q %s: %s", w.Name, w.Phase, w.Reason)
	return res
}

// metricExec is one metric being executed.
type metricExec struct {
	metric   Metric
	provider Provider
	conds    conditions
	ms       []Measurement
}

func newMetricExec(m Metric, providers ProviderFor, previous []Measurement) (*metricExec, error) {
	conds, err := compileConditions(m, false)
	if err != nil {
		return nil, fmt.Errorf("metric %q: %w", m.Name, err)
	}
	p, err := providers(m.Address)
	if err != nil {
		return nil, fmt.Errorf("metric %q: provider for address %q: %w", m.Name, m.Address, err)
	}
	return &metricExec{metric: m, provider: p, conds: conds, ms: slices.Clone(previous)}, nil
}

// run measures until the metric is done, and then reports true, or until
// stopCtx is done. obsCtx is the caller's context, used to report
// measurements even while stopping.
func (e *metricExec) run(stopCtx, obsCtx context.Context, clock Clock, started time.Time, obs Observer) (MetricResult, bool) {
	for {
		if phase, reason, done := assess(e.metric, e.ms, false); done {
			return e.result(phase, reason), true
		}
		if wait := e.nextAt(started).Sub(clock.Now()); wait > 0 {
			select {
			case <-stopCtx.Done():
				return e.terminated(), false
			case <-clock.After(wait):
			}
		}
		if stopCtx.Err() != nil {
			return e.terminated(), false
		}
		m := e.measure(stopCtx, clock)
		if stopCtx.Err() != nil {
			// The query was interrupted by the stop, not judged: drop it.
			return e.terminated(), false
		}
		e.ms = append(e.ms, m)
		if obs != nil {
			obs.Measured(obsCtx, e.metric.Name, m)
		}
	}
}

func (e *metricExec) terminated() MetricResult {
	phase, reason, _ := assess(e.metric, e.ms, true)
	return e.result(phase, reason)
}

func (e *metricExec) result(phase Phase, reason string) MetricResult {
	return MetricResult{Name: e.metric.Name, Phase: phase, Reason: reason, Measurements: e.ms,
		Query: e.metric.Query, SuccessCondition: e.metric.SuccessCondition, FailureCondition: e.metric.FailureCondition}
}

// nextAt is when the next measurement is due.
func (e *metricExec) nextAt(started time.Time) time.Time {
	if len(e.ms) == 0 {
		return started.Add(e.metric.InitialDelay)
	}
	last := e.ms[len(e.ms)-1]
	interval := e.metric.Interval
	switch {
	case interval > 0:
	case last.NotCounted:
		interval = DefaultSamplesRetryInterval
	case last.Phase == PhaseError:
		interval = DefaultErrorRetryInterval
	}
	return last.FinishedAt.Add(interval)
}

// measure takes one measurement.
func (e *metricExec) measure(ctx context.Context, clock Clock) Measurement {
	m := Measurement{StartedAt: clock.Now()}
	if skip, ok := e.checkSamples(ctx, m.StartedAt); !ok {
		skip.StartedAt, skip.FinishedAt = m.StartedAt, clock.Now()
		return skip
	}
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	values, err := e.provider.Query(qctx, e.metric.Query, m.StartedAt)
	cancel()
	m.FinishedAt = clock.Now()
	switch {
	case errors.Is(err, ErrNoData):
		m.Phase, m.Reason = PhaseInconclusive, ErrNoData.Error()
	case err != nil:
		m.Phase, m.Reason = PhaseError, fmt.Sprintf("querying: %v", err)
	default:
		m.Value = formatValues(values)
		m.Phase, m.Reason = e.conds.evaluate(values)
	}
	return m
}
