package analysis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Annotations of an AnalysisTemplate that Runway reads. Argo Rollouts
// ignores annotations, so a template carrying them stays valid there.
const (
	// AnnotationMinSamples makes every metric of the template Inconclusive,
	// not Failed or Successful, until the samples query counts at least
	// this many samples (requests): no judgement without traffic.
	AnnotationMinSamples = "runway.io/min-samples"
	// AnnotationSamplesQuery is the PromQL that counts samples; it may use
	// {{args.NAME}}. Default: DefaultSamplesQuery.
	AnnotationSamplesQuery = "runway.io/samples-query"
)

// DefaultSamplesQuery counts the version's requests through Runway's
// gateway over the last minute; it needs the args env, app and version,
// which Runway passes to every run (the template must declare them).
const DefaultSamplesQuery = `sum(increase(runway_gateway_requests_total{job="runway-gateway",env="{{args.env}}",app="{{args.app}}",version="{{args.version}}"}[1m]))`

// minSamples reads the template's min-samples annotations.
func minSamples(t *Template, args map[string]string) (int, string, error) {
	raw, ok := t.Metadata.Annotations[AnnotationMinSamples]
	if !ok {
		return 0, "", nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(raw))
	if err != nil || n < 1 {
		return 0, "", fmt.Errorf("annotation %s: %q is not a positive integer", AnnotationMinSamples, raw)
	}
	q := DefaultSamplesQuery
	if custom, ok := t.Metadata.Annotations[AnnotationSamplesQuery]; ok {
		q = custom
	}
	q, err = substitute(q, args)
	if err != nil {
		return 0, "", fmt.Errorf("annotation %s: %w", AnnotationSamplesQuery, err)
	}
	return n, q, nil
}

// checkSamples reports, as an Inconclusive measurement, that too few
// samples exist to judge; ok means the metric may be judged.
func (e *metricExec) checkSamples(ctx context.Context, at time.Time) (m Measurement, ok bool) {
	if e.metric.MinSamples == 0 {
		return Measurement{}, true
	}
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	values, err := e.provider.Query(qctx, e.metric.SamplesQuery, at)
	cancel()
	switch {
	case errors.Is(err, ErrNoData) || (err == nil && (len(values) == 0 || values[0] != values[0])):
		return Measurement{Phase: PhaseInconclusive, Reason: fmt.Sprintf("no samples yet; %s is %d", AnnotationMinSamples, e.metric.MinSamples)}, false
	case err != nil:
		return Measurement{Phase: PhaseError, Reason: fmt.Sprintf("counting samples: %v", err)}, false
	case values[0] < float64(e.metric.MinSamples):
		return Measurement{Phase: PhaseInconclusive, Reason: fmt.Sprintf("only %.0f samples, fewer than %s %d", values[0], AnnotationMinSamples, e.metric.MinSamples)}, false
	}
	return Measurement{}, true
}
