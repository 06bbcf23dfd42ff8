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
// job POSTs to $RUNWAY_REPORTER_URL/workflow/update), RUNWAY_WORKFLOW (app's
// deploying workflow in env, manifest.Workflow: the pipeline id for a
// staging environment) and
// RUNWAY_REPORTER_TOKEN (that workflow's own token, sent as "Authorization:
// Bearer $RUNWAY_REPORTER_TOKEN"; it can report for that workflow only).
// There are none when Options.ReporterURL is empty, env has no workflow,
// the reporter hands out no tokens or the workflow is not submitted.
func (c *Controller) reporterVars(ctx context.Context, env, app string) ([]string, error) {
	tokens, ok := c.reporter.(reporterTokens)
	if c.opts.ReporterURL == "" || !ok {
		return nil, nil
	}
	workflow := c.workflowOf(env, app)
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

// workflowOf is app's deploying workflow in env as the last pass of env
// saw it, or "" when env was not reconciled.
func (c *Controller) workflowOf(env, app string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.envs[env]; st != nil {
		return st.manifest.Workflow(app)
	}
	return ""
}
