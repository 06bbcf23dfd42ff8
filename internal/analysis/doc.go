// Package analysis judges a canary the way Argo Rollouts' AnalysisRun does.
//
// It parses AnalysisTemplate documents (argoproj.io/v1alpha1) verbatim,
// resolves them with arguments into a [Run], takes measurements through a
// [Provider] (PromQL, embedded or on a Prometheus server) and decides, per
// metric and for the whole run, Successful, Failed, Inconclusive or Error
// with a reason a person can read.
//
// Semantics follow Argo Rollouts: failureLimit and inconclusiveLimit default
// to 0 (the first failed or inconclusive measurement decides), a metric
// errors after more than consecutiveErrorLimit (default 4) errors in a row,
// errors do not count towards count, a metric with neither count nor
// interval takes one measurement, and one with an interval but no count
// measures until the run is terminated. A measurement is Successful when
// both conditions are absent; with only a successCondition it is Failed when
// that is false; with only a failureCondition it is Successful when that is
// false; with both and neither true it is Inconclusive.
//
// Deviations from Argo Rollouts, on purpose:
//
//   - A query that returns no series, or a NaN (a ratio with no traffic:
//     0/0), gives an Inconclusive measurement instead of an Error or a
//     Failed one (Argo Rollouts issues #1466 and #1905): an absence of
//     data is not evidence that the canary is bad. A template whose
//     conditions call isNaN handles NaN itself and gets the plain result.
//   - result is always a []float64: an instant vector gives one element per
//     series, a scalar a one-element slice. Conditions are written
//     result[0] <= 0.2, never result <= 0.2.
//   - An Error metric makes the run Failed (Argo Rollouts' run phase would
//     be Error, which a Rollout also treats as a failure).
//   - Only the prometheus provider (address and query) is supported; any
//     other field is rejected by name rather than ignored.
//
// Extensions, in annotations Argo Rollouts ignores:
//
//   - runway.io/min-samples: N makes each metric of the template wait for
//     traffic. Before its query, a measurement counts samples
//     (runway.io/samples-query, by default the version's requests through
//     the gateway over the last minute). With fewer than N it is recorded
//     with phase Inconclusive, NotCounted set and a reason such as "not
//     counted: 3 of 20 samples (runway.io/min-samples); waited 10s of
//     10m0s", counts towards nothing (count, failureLimit,
//     inconclusiveLimit, consecutiveErrorLimit) and is taken again at the
//     next interval (DefaultSamplesRetryInterval for a metric without
//     one). The wait is bounded: once a streak of not-counted measurements
//     began runway.io/min-samples-wait ago (default DefaultMinSamplesWait,
//     10m, Argo Rollouts' default progressDeadlineSeconds) — or, should
//     the clock not move, once as many as fit in that wait were taken —
//     the measurement counts as an ordinary Inconclusive ("only 3 of 20
//     samples after waiting 10m0s"), which inconclusiveLimit then judges.
//     A counted measurement ends the streak. Counting samples that fails
//     is an Error measurement like any other. The run's context (the
//     rollout's own deadline) still bounds everything.
package analysis
