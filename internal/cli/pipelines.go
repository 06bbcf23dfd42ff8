package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/oneline"
	"github.com/runway-cd/runway/internal/pipeline"
)

// maxListed is how many pipelines the API lists (the newest).
const maxListed = 100

func (a *app) pipelinesCmd() *cobra.Command {
	cmd, g := newGroup("pipelines", "List pipelines, show one with its steps, follow its logs, cancel it", `  runway pipelines ls --app web --status Running
  runway pipelines get web-42
  runway pipelines get web-42 --wait && echo deployed
  runway pipelines logs web-42 -f
  runway pipelines cancel web-42 --reason "wrong branch"`)
	cmd.Aliases = []string{"pipeline", "pl"}
	ls := a.pipelinesLsCmd(g)
	get := a.pipelinesGetCmd(g)
	// Without a subcommand: ls, or with an ID get (the commands' first
	// form, kept).
	cmd.Args = cobra.MaximumNArgs(1)
	cmd.ValidArgsFunction = completePipelines(&g.client)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 1 {
			return get.RunE(cmd, args)
		}
		return ls.RunE(cmd, args)
	}
	cmd.AddCommand(ls, get, a.pipelinesLogsCmd(g), a.pipelinesCancelCmd(&g.client, &g.format))
	return cmd
}

func (a *app) pipelinesLsCmd(g *apiGroup) *cobra.Command {
	var opts struct {
		app, status string
		limit       int
	}
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the newest pipelines, newest first",
		Long: `List the newest pipelines (at most 100, the API's page), newest first:
id, app, version, commit (short SHA, message, author), status, current step,
age and duration. --app and --status filter them.`,
		Example: `  runway pipelines ls
  runway pipelines ls --app web --status Failed,Cancelled
  runway pipelines ls -o json | jq -r '.[] | select(.phase=="Running") | .id'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.printer(cmd, g.format)
			if err != nil {
				return err
			}
			if opts.limit < 0 || opts.limit > maxListed {
				return usagef("--limit must be from 0 to %d", maxListed)
			}
			c, err := g.client.resolve()
			if err != nil {
				return err
			}
			var ps []*pipeline.Pipeline
			if err := c.getJSON(cmd.Context(), "/api/v1/pipelines", &ps); err != nil {
				return fmt.Errorf("listing pipelines: %w", err)
			}
			ps = filterPipelines(ps, opts.app, opts.status, opts.limit)
			return p.print(ps, func() error { return p.pipelineTable(ps) })
		},
	}
	cmd.Flags().StringVar(&opts.app, "app", "", "only the pipelines of this app")
	cmd.Flags().StringVar(&opts.status, "status", "", "only pipelines in these phases, comma-separated (Queued, Running, Succeeded, Failed, Cancelled, Superseded)")
	cmd.Flags().IntVar(&opts.limit, "limit", 0, fmt.Sprintf("at most this many (0: all the API lists, %d)", maxListed))
	_ = cmd.RegisterFlagCompletionFunc("app", completeApps(&g.client))
	_ = cmd.RegisterFlagCompletionFunc("status", cobra.FixedCompletions([]string{"Queued", "Running", "Succeeded", "Failed", "Cancelled", "Superseded"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// filterPipelines keeps the pipelines of app in one of the comma-separated
// statuses (case-insensitive), at most limit (0: all).
func filterPipelines(ps []*pipeline.Pipeline, app, status string, limit int) []*pipeline.Pipeline {
	var want []string
	for s := range strings.SplitSeq(status, ",") {
		if s = strings.TrimSpace(s); s != "" {
			want = append(want, strings.ToLower(s))
		}
	}
	out := []*pipeline.Pipeline{}
	for _, p := range ps {
		if app != "" && p.App != app {
			continue
		}
		if len(want) > 0 && !slices.Contains(want, strings.ToLower(string(p.Phase))) {
			continue
		}
		if limit > 0 && len(out) == limit {
			break
		}
		out = append(out, p)
	}
	return out
}

// currentStep is the step a pipeline is at: the running one, else the
// failed one.
func currentStep(p *pipeline.Pipeline) string {
	for _, s := range p.Steps {
		if s.Phase == pipeline.Running {
			return s.Name
		}
	}
	return p.FailedStep
}

func (p *printer) pipelineTable(ps []*pipeline.Pipeline) error {
	if len(ps) == 0 {
		_, err := fmt.Fprintln(p.out, "No pipelines.")
		return err
	}
	t := &table{header: []string{"ID", "APP", "VERSION", "COMMIT", "MESSAGE", "AUTHOR", "STATUS", "STEP", "AGE", "DURATION"}}
	if p.wide() {
		t.header = append(t.header, "BRANCH", "STAGING", "REASON")
	}
	for _, pl := range ps {
		msg, author := truncate(pl.Message, 40), truncate(authorName(pl.Author), 20)
		if p.wide() {
			msg, author = truncate(pl.Message, 72), pl.Author
		}
		row := []cell{{text: pl.ID}, {text: pl.App}, {text: orDash(pl.Version)}, {text: shortSHA(pl.Commit)},
			{text: orDash(msg)}, {text: orDash(author)}, {text: string(pl.Phase), color: statusColor(string(pl.Phase))},
			{text: orDash(currentStep(pl))}, {text: age(p.now, pl.Created)}, {text: span(p.now, pl.Started, pl.Finished)}}
		if p.wide() {
			row = append(row, cell{text: orDash(pl.Branch)}, cell{text: orDash(pl.StagingURL)}, cell{text: orDash(truncate(pl.Reason, 80))})
		}
		t.add(row...)
	}
	return t.write(p)
}

func (a *app) pipelinesGetCmd(g *apiGroup) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Show a pipeline: its commit, status, staging environment and steps",
		Long: `Show a pipeline: its commit, status and reason, its staging environment
while it exists, and each step with its status and duration (logs: runway
pipelines logs). With --wait it first waits for the pipeline to end, and
exits 10 unless it Succeeded.`,
		Example: `  runway pipelines get web-42
  runway pipelines get web-42 -o yaml
  runway pipelines get web-42 --wait || echo "web-42 did not make it"`,
		Args:              exactArgs("ID"),
		ValidArgsFunction: completePipelines(&g.client),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := a.printer(cmd, g.format)
			if err != nil {
				return err
			}
			c, err := g.client.resolve()
			if err != nil {
				return err
			}
			pl, err := getPipeline(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			if wait {
				var pass retries // a restarting server is waited for, as logs -f does
				err = c.follow(cmd.Context(), events.Pipeline, pl.ID, func(ctx context.Context) (bool, error) {
					next, err := getPipeline(ctx, c, pl.ID)
					if err != nil {
						return false, pass.tolerate(err)
					}
					pass.failed, pl = 0, next
					return pl.Phase.Done(), nil
				})
				if err != nil {
					return err
				}
				p.now = a.now()
			}
			if err := p.print(pl, func() error { return p.pipelineDetail(pl) }); err != nil {
				return err
			}
			if wait {
				return endedBadly(pl)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the pipeline to end; exit 10 unless it Succeeded")
	return cmd
}

// endedBadly is the error of a pipeline that ended other than Succeeded.
func endedBadly(pl *pipeline.Pipeline) error {
	if pl.Phase == pipeline.Succeeded {
		return nil
	}
	msg := fmt.Sprintf("pipeline %s ended %s", pl.ID, pl.Phase)
	if pl.FailedStep != "" {
		msg += " at " + pl.FailedStep
	}
	if pl.Reason != "" {
		msg += ": " + printable(oneline.Clean(pl.Reason, 1024))
	}
	return &unsuccessfulError{msg: msg}
}

func getPipeline(ctx context.Context, c *client, id string) (*pipeline.Pipeline, error) {
	var pl pipeline.Pipeline
	if err := c.getJSON(ctx, "/api/v1/pipelines/"+url.PathEscape(id), &pl); err != nil {
		return nil, fmt.Errorf("reading pipeline %s: %w", id, err)
	}
	return &pl, nil
}

func (p *printer) pipelineDetail(pl *pipeline.Pipeline) error {
	status := cell{text: string(pl.Phase), color: statusColor(string(pl.Phase))}
	staging := pl.StagingEnv
	if pl.StagingURL != "" {
		staging += "  " + pl.StagingURL
	}
	if !pl.StagingKeptUntil.IsZero() {
		staging += "  (kept for debugging until " + stamp(pl.StagingKeptUntil) + ")"
	}
	err := p.fields(flat(
		kv("ID", pl.ID), kv("App", pl.App), kv("Service", pl.Service), kv("Repo", pl.Repo), kv("Branch", pl.Branch),
		kv("Commit", pl.Commit), kv("Message", truncate(pl.Message, 100)), kv("Author", pl.Author),
		kv("Version", pl.Version), []cell{{text: "Status"}, status}, kv("Reason", pl.Reason),
		kv("Failed step", pl.FailedStep), kv("Staging", strings.TrimSpace(staging)),
		kv("Created", stamp(pl.Created)), kv("Duration", span(p.now, pl.Started, pl.Finished)),
	)...)
	if err != nil {
		return err
	}
	fmt.Fprintln(p.out)
	t := &table{header: []string{"STEP", "STATUS", "STARTED", "DURATION", "ERROR"}}
	for _, s := range pl.Steps {
		t.add(cell{text: s.Name}, cell{text: string(s.Phase), color: statusColor(string(s.Phase))},
			cell{text: orDash(stamp(s.Started))}, cell{text: span(p.now, s.Started, s.Finished)}, cell{text: orDash(truncate(s.Error, 80))})
	}
	if err := t.write(p); err != nil {
		return err
	}
	if s := pl.Step(pl.FailedStep); s != nil && s.Log != "" {
		fmt.Fprintf(p.out, "\nLog tail of %s:\n%s\n", s.Name, tailLines(s.Log, 20))
	}
	return nil
}

// tailLines is the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// cancelCmd is the top-level `runway cancel ID`, the same as
// `runway pipelines cancel ID`.
func (a *app) cancelCmd() *cobra.Command {
	var opts clientOptions
	var format string
	cmd := a.pipelinesCancelCmd(&opts, &format)
	cmd.Use = "cancel ID"
	cmd.Example = `  runway cancel web-42 --reason "wrong branch"`
	addClientFlags(cmd, &opts)
	cmd.Flags().StringVarP(&format, "output", "o", formatTable, "output format: table, json or yaml")
	return cmd
}

func (a *app) pipelinesCancelCmd(opts *clientOptions, format *string) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a pipeline: its running step stops, its staging environment is torn down, nothing is promoted",
		Long: `Cancel a pipeline: its running step stops, its staging environment is torn
down, nothing is promoted. A pipeline that ended, or that promoted its
change already (abort its rollout instead), is refused: exit 6.`,
		Example:           `  runway pipelines cancel web-42 --reason "wrong branch"`,
		Args:              exactArgs("ID"),
		ValidArgsFunction: completePipelines(opts),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := a.printer(cmd, *format)
			if err != nil {
				return err
			}
			c, err := opts.resolve()
			if err != nil {
				return err
			}
			var pl pipeline.Pipeline
			answer, err := c.do(cmd.Context(), http.MethodPost, "/api/v1/pipelines/"+url.PathEscape(args[0])+"/cancel", map[string]string{"reason": reason})
			if err != nil {
				return fmt.Errorf("cancelling pipeline %s: %w", args[0], err)
			}
			if err := jsonUnmarshal(answer, &pl); err != nil {
				return err
			}
			return p.print(&pl, func() error {
				_, err := fmt.Fprintf(p.out, "pipeline %s: cancel requested (%s)\n", pl.ID, p.paint(statusColor(string(pl.Phase)), string(pl.Phase)))
				return err
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "cancelled from the command line", "why (one line, at most 200 bytes are kept)")
	return cmd
}
