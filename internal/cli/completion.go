package cli

import (
	"context"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/environment"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/rollout"
)

// completionTimeout bounds the API call of a completion: a shell waits
// for it.
const completionTimeout = 2 * time.Second

// completeFrom completes the first argument with the names list reads
// from the API; any failure completes nothing.
func completeFrom(opts *clientOptions, list func(ctx context.Context, c *client) ([]string, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := opts.resolve()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
		defer cancel()
		names, err := list(ctx, c)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// completePipelines completes pipeline IDs, described by app and phase.
func completePipelines(opts *clientOptions) cobra.CompletionFunc {
	return completeFrom(opts, func(ctx context.Context, c *client) ([]string, error) {
		var ps []*pipeline.Pipeline
		if err := c.getJSON(ctx, "/api/v1/pipelines", &ps); err != nil {
			return nil, err
		}
		var out []string
		for _, p := range ps {
			out = append(out, p.ID+"\t"+p.App+" "+string(p.Phase))
		}
		return out, nil
	})
}

// completeApps completes the apps of rollouts and pipelines.
func completeApps(opts *clientOptions) cobra.CompletionFunc {
	return completeFrom(opts, func(ctx context.Context, c *client) ([]string, error) {
		var rs []rollout.Status
		var ps []*pipeline.Pipeline
		if err := c.getJSON(ctx, "/api/v1/rollouts", &rs); err != nil {
			return nil, err
		}
		_ = c.getJSON(ctx, "/api/v1/pipelines", &ps)
		var out []string
		for _, r := range rs {
			out = append(out, r.App)
		}
		for _, p := range ps {
			out = append(out, p.App)
		}
		slices.Sort(out)
		return slices.Compact(out), nil
	})
}

func completeEnvs(opts *clientOptions) cobra.CompletionFunc {
	return completeFrom(opts, func(ctx context.Context, c *client) ([]string, error) {
		var envs []environment.EnvStatus
		if err := c.getJSON(ctx, "/api/v1/environments", &envs); err != nil {
			return nil, err
		}
		var out []string
		for _, e := range envs {
			out = append(out, e.Name)
		}
		return out, nil
	})
}

func completeRuns(opts *clientOptions) cobra.CompletionFunc {
	return completeFrom(opts, func(ctx context.Context, c *client) ([]string, error) {
		var runs []analysis.RunRecord
		if err := c.getJSON(ctx, "/api/v1/analysisruns", &runs); err != nil {
			return nil, err
		}
		var out []string
		for _, r := range runs {
			out = append(out, r.Name+"\t"+string(r.Phase))
		}
		return out, nil
	})
}
