package cli

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runway-cd/runway/internal/analysis"
)

func (a *app) analysisRunsCmd() *cobra.Command {
	cmd, g := newGroup("analysisruns", "List analysis runs, or show one with every measurement", `  runway analysisruns ls
  runway analysisruns get web-v20261201120000-step3-1
  runway analysisruns get web-v20261201120000-step3-1 -o json | jq '.metrics[].measurements[-1]'`)
	cmd.Aliases = []string{"analysisrun", "ar"}
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the newest analysis runs: app, version, verdict and reason",
		Example: "  runway analysisruns ls\n  runway analysisruns ls -o yaml",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.printer(cmd, g.format)
			if err != nil {
				return err
			}
			c, err := g.client.resolve()
			if err != nil {
				return err
			}
			runs := []analysis.RunRecord{}
			if err := c.getJSON(cmd.Context(), "/api/v1/analysisruns", &runs); err != nil {
				return fmt.Errorf("listing analysis runs: %w", err)
			}
			return p.print(runs, func() error { return p.runTable(runs) })
		},
	}
	get := &cobra.Command{
		Use:   "get NAME",
		Short: "Show an analysis run: its verdict and each metric's measurements with values, phases and reasons",
		Example: `  runway analysisruns get web-v20261201120000-step3-1
  runway analysisruns get web-v20261201120000-step3-1 -o yaml`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeRuns(&g.client),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := a.printer(cmd, g.format)
			if err != nil {
				return err
			}
			c, err := g.client.resolve()
			if err != nil {
				return err
			}
			var run analysis.RunRecord
			if err := c.getJSON(cmd.Context(), "/api/v1/analysisruns/"+url.PathEscape(args[0]), &run); err != nil {
				return fmt.Errorf("reading analysis run %s: %w", args[0], err)
			}
			return p.print(run, func() error { return p.runDetail(run) })
		},
	}
	// Without a subcommand: ls, or with a name get.
	cmd.Args = cobra.MaximumNArgs(1)
	cmd.ValidArgsFunction = completeRuns(&g.client)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 1 {
			return get.RunE(cmd, args)
		}
		return ls.RunE(cmd, args)
	}
	cmd.AddCommand(ls, get)
	return cmd
}

func (p *printer) runTable(runs []analysis.RunRecord) error {
	if len(runs) == 0 {
		_, err := fmt.Fprintln(p.out, "No analysis runs.")
		return err
	}
	t := &table{header: []string{"NAME", "ENV", "APP", "VERSION", "PHASE", "METRICS", "AGE", "DURATION", "REASON"}}
	if p.wide() {
		t.header = append(t.header, "TEMPLATES")
	}
	for _, r := range runs {
		row := []cell{{text: r.Name}, {text: r.Env}, {text: r.App}, {text: orDash(r.Version)},
			{text: string(r.Phase), color: statusColor(string(r.Phase))}, {text: strconv.Itoa(len(r.Metrics))},
			{text: age(p.now, r.StartedAt)}, {text: span(p.now, r.StartedAt, r.FinishedAt)}, {text: orDash(truncate(r.Reason, 60))}}
		if p.wide() {
			row = append(row, cell{text: orDash(strings.Join(r.Templates, ","))})
		}
		t.add(row...)
	}
	return t.write(p)
}

func (p *printer) runDetail(r analysis.RunRecord) error {
	err := p.fields(flat(kv("Name", r.Name), kv("Rollout", r.Env+"/"+r.App), kv("Version", r.Version),
		kv("Templates", strings.Join(r.Templates, ", ")), []cell{{text: "Phase"}, {text: string(r.Phase), color: statusColor(string(r.Phase))}},
		kv("Reason", r.Reason), kv("Started", stamp(r.StartedAt)), kv("Finished", stamp(r.FinishedAt)),
		kv("Duration", span(p.now, r.StartedAt, r.FinishedAt)))...)
	if err != nil || len(r.Metrics) == 0 {
		return err
	}
	fmt.Fprintln(p.out)
	t := &table{header: []string{"METRIC", "#", "PHASE", "VALUE", "AT", "REASON"}}
	for _, m := range r.Metrics {
		t.add(cell{text: m.Name}, cell{text: "-"}, cell{text: string(m.Phase), color: statusColor(string(m.Phase))},
			cell{text: "-"}, cell{text: "-"}, cell{text: orDash(truncate(m.Reason, 80))})
		for i, ms := range m.Measurements {
			reason := ms.Reason
			if ms.NotCounted && !strings.HasPrefix(reason, "not counted") {
				reason = strings.TrimSpace("not counted " + reason)
			}
			t.add(cell{text: ""}, cell{text: strconv.Itoa(i + 1)}, cell{text: string(ms.Phase), color: statusColor(string(ms.Phase))},
				cell{text: orDash(truncate(ms.Value, 40))}, cell{text: orDash(stamp(ms.FinishedAt))}, cell{text: orDash(truncate(reason, 80))})
		}
	}
	return t.write(p)
}
