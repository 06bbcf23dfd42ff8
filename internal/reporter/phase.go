package reporter

import (
	"fmt"
	"strings"
)

// evaluate computes the phase of an expectation from its apps and the last
// report of each app. Any expected app whose last report is a failure fails
// the expectation; the earliest such failure is named in the reason. Reports
// of apps that are not expected do not count.
func evaluate(apps []string, reports map[string]Report) (Phase, string) {
	var failed *Report
	succeeded := 0
	for _, app := range apps {
		rep, ok := reports[app]
		if !ok {
			continue
		}
		if rep.Success {
			succeeded++
			continue
		}
		// apps order breaks ties between failures reported at the same instant.
		if failed == nil || rep.Time.Before(failed.Time) {
			failed = &rep
		}
	}
	switch {
	case failed != nil:
		reason := fmt.Sprintf("app %s reported failure", failed.App)
		if failed.Message != "" {
			reason += ": " + failed.Message
		}
		return PhaseFailed, reason
	case succeeded == len(apps):
		return PhaseSucceeded, ""
	default:
		return PhasePending, "waiting for reports from: " + strings.Join(missing(apps, reports), ", ")
	}
}

// missing lists the expected apps that have not reported, in apps order.
func missing(apps []string, reports map[string]Report) []string {
	var out []string
	for _, app := range apps {
		if _, ok := reports[app]; !ok {
			out = append(out, app)
		}
	}
	return out
}
