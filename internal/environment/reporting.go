package environment

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/runway-cd/runway/internal/reporter"
)

// reporterTokens is the part of a Reporter that hands out an expectation's
// token to hooks outside Runway; *reporter.Reporter has it. A Reporter
// without it gives jobs no reporter variables.
type reporterTokens interface {
	Token(ctx context.Context, workflow string) (string, error)
}

// reporterVars are the variables with which a job in env reports like the
// original's PostSync hooks: RUNWAY_REPORTER_URL (the API's base URL; the
// job POSTs to $RUNWAY_REPORTER_URL/workflow/update), RUNWAY_WORKFLOW (env's
// deploying workflow, the pipeline id for a staging environment) and
// RUNWAY_REPORTER_TOKEN (that workflow's own token, sent as "Authorization:
// Bearer $RUNWAY_REPORTER_TOKEN"; it can report for that workflow only).
// There are none when Options.ReporterURL is empty, env has no workflow,
// the reporter hands out no tokens or the workflow is not submitted.
func (c *Controller) reporterVars(ctx context.Context, env string) ([]string, error) {
	tokens, ok := c.reporter.(reporterTokens)
	if c.opts.ReporterURL == "" || !ok {
		return nil, nil
	}
	workflow := c.workflowOf(env)
	if workflow == "" {
		return nil, nil
	}
	token, err := tokens.Token(ctx, workflow)
	switch {
	case errors.Is(err, reporter.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("getting the reporter token of %s for a job in %s: %w", workflow, env, err)
	}
	return []string{
		"RUNWAY_REPORTER_URL=" + strings.TrimSuffix(c.opts.ReporterURL, "/"),
		"RUNWAY_REPORTER_TOKEN=" + token,
		"RUNWAY_WORKFLOW=" + workflow,
	}, nil
}

// workflowOf is env's deploying workflow as the last pass saw it, or "".
func (c *Controller) workflowOf(env string) string {
	for _, es := range c.Status() {
		if es.Name == env {
			return es.Workflow
		}
	}
	return ""
}
