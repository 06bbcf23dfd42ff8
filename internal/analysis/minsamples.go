package analysis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Annotations of an AnalysisTemplate that Runway reads. Argo Rollouts
// ignores annotations, so a template carrying them stays valid there.
const (
	// AnnotationMinSamples makes every metric of the template wait for
	// traffic: while the samples query counts fewer than this many samples
	// (requests), a measurement is not counted and is taken again at the
	// next interval, for at most AnnotationMinSamplesWait.
	AnnotationMinSamples = "runway.io/min-samples"
	// AnnotationSamplesQuery is the PromQL that counts samples; it may use
	// {{args.NAME}}. Default: DefaultSamplesQuery.
	AnnotationSamplesQuery = "runway.io/samples-query"
	// AnnotationMinSamplesWait is how long, as a duration such as 5m, a
	// metric waits for AnnotationMinSamples samples before a measurement
	// with too few counts as Inconclusive. Default: DefaultMinSamplesWait.
	AnnotationMinSamplesWait = "runway.io/min-samples-wait"
)

// DefaultSamplesQuery counts the version's requests through Runway's
// gateway over the last minute; it needs the args env, app and version,
// which Runway passes to every run (the template must declare them).
const DefaultSamplesQuery = `sum(increase(runway_gateway_requests_total{job="runway-gateway",env="{{args.env}}",app="{{args.app}}",version="{{args.version}}"}[1m]))`

// DefaultMinSamplesWait is how long a metric waits for samples by default:
// Argo Rollouts' default progressDeadlineSeconds, 600.
const DefaultMinSamplesWait = 10 * time.Minute

// DefaultSamplesRetryInterval spaces the retakes of a metric without an
// interval whose measurement was not counted (as DefaultErrorRetryInterval
// spaces its retries after an error).
const DefaultSamplesRetryInterval = 10 * time.Second

// maxNotCounted caps maxRetakes for a metric with a tiny interval.
const maxNotCounted = 10_000

// samplesRule is what a template's min-samples annotations ask for.
type samplesRule struct {
	min   int
	query string
	wait  time.Duration
}

// minSamples reads the template's min-samples annotations.
func minSamples(t *Template, args map[string]string) (samplesRule, error) {
	raw, ok := t.Metadata.Annotations[AnnotationMinSamples]
	if !ok {
		return samplesRule{}, nil
	}
	n, err := parseMinSamples(raw)
	if err != nil {
		return samplesRule{}, fmt.Errorf("annotation %s: %w", AnnotationMinSamples, err)
	}
	wait, err := parseMinSamplesWait(t.Metadata.Annotations)
	if err != nil {
		return samplesRule{}, fmt.Errorf("annotation %s: %w", AnnotationMinSamplesWait, err)
	}
	q := DefaultSamplesQuery
	if custom, ok := t.Metadata.Annotations[AnnotationSamplesQuery]; ok {
		q = custom
	}
	q, err = substitute(q, args)
	if err != nil {
		return samplesRule{}, fmt.Errorf("annotation %s: %w", AnnotationSamplesQuery, err)
	}
	return samplesRule{min: n, query: q, wait: wait}, nil
}

func parseMinSamples(raw string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(raw))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%q is not a positive integer", raw)
	}
	return n, nil
}

// parseMinSamplesWait reads AnnotationMinSamplesWait from annotations;
// absent is DefaultMinSamplesWait.
func parseMinSamplesWait(annotations map[string]string) (time.Duration, error) {
	raw, ok := annotations[AnnotationMinSamplesWait]
	if !ok {
		return DefaultMinSamplesWait, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(raw))
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration like 90s or 10m", raw)
	}
	return d, nil
}

// checkSamples counts the samples the metric needs before it is judged. ok
// means it may be judged; otherwise m is the measurement to record: not
// counted while the metric has waited less than MinSamplesWait for samples,
// else a counted Inconclusive (or an Error when counting failed).
func (e *metricExec) checkSamples(ctx context.Context, at time.Time) (m Measurement, ok bool) {
	if e.metric.MinSamples == 0 {
		return Measurement{}, true
	}
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	values, err := e.provider.Query(qctx, e.metric.SamplesQuery, at)
	cancel()
	noData := errors.Is(err, ErrNoData) || (err == nil && (len(values) == 0 || values[0] != values[0]))
	switch {
	case noData:
	case err != nil:
		return Measurement{Phase: PhaseError, Reason: fmt.Sprintf("counting samples: %v", err)}, false
	case values[0] >= float64(e.metric.MinSamples):
		return Measurement{}, true
	}
	have := fmt.Sprintf("0 of %d samples, no data", e.metric.MinSamples)
	if !noData {
		have = fmt.Sprintf("%s of %d samples", formatSamples(values[0]), e.metric.MinSamples)
	}
	wait := e.metric.MinSamplesWait
	if wait <= 0 {
		wait = DefaultMinSamplesWait
	}
	since, streak := e.waitingSince(at)
	if waited := at.Sub(since); waited < wait && streak < maxRetakes(e.metric.Interval, wait) {
		return Measurement{
			Phase:      PhaseInconclusive,
			NotCounted: true,
			Reason:     fmt.Sprintf("not counted: %s (%s); waited %s of %s", have, AnnotationMinSamples, roundDuration(waited), wait),
		}, false
	}
	return Measurement{
		Phase:  PhaseInconclusive,
		Reason: fmt.Sprintf("only %s after waiting %s (%s)", have, wait, AnnotationMinSamplesWait),
	}, false
}

// maxRetakes bounds a streak of not-counted measurements in number as well
// as in time, should the clock not move: as many as fit in the wait.
func maxRetakes(interval, wait time.Duration) int {
	if interval <= 0 {
		interval = DefaultSamplesRetryInterval
	}
	return int(min(int64(wait/interval)+1, maxNotCounted))
}

// waitingSince returns when the trailing streak of not-counted
// measurements began (at itself when the last measurement was counted),
// and how long the streak is.
func (e *metricExec) waitingSince(at time.Time) (time.Time, int) {
	since, streak := at, 0
	for i := len(e.ms) - 1; i >= 0 && e.ms[i].NotCounted; i-- {
		since, streak = e.ms[i].StartedAt, streak+1
	}
	return since, streak
}

// formatSamples shows a count of samples, which increase() extrapolates
// to a fraction, rounded down so that it never reads as enough.
func formatSamples(v float64) string {
	if v == math.Trunc(v) {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(math.Floor(v*10)/10, 'f', 1, 64)
}

// roundDuration shortens a waited time for a person to read.
func roundDuration(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}
