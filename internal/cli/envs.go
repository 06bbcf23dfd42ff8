package cli

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runway-cd/runway/internal/environment"
)

func (a *app) envsCmd() *cobra.Command {
	cmd, g := newGroup("envs", "List environments, or show one: apps, versions, URLs and each replica's health and restarts", `  runway envs ls
  runway envs get production
  runway envs ls -o json | jq -r '.[].name'`)
	cmd.Aliases = []string{"env", "environments"}
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List production and every staging environment, one line per app",
		Example: `  runway envs ls
  runway envs ls -o wide`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.printer(cmd, g.format)
			if err != nil {
				return err
			}
			envs, err := listEnvs(cmd, &g.client)
			if err != nil {
				return err
			}
			return p.print(envs, func() error { return p.envTable(envs) })
		},
	}
	get := &cobra.Command{
		Use:   "get NAME",
		Short: "Show an environment: its apps, versions, URLs and each replica's state, readiness and restarts",
		Example: `  runway envs get production
  runway envs get homelabping-v20261201120000 -o yaml`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeEnvs(&g.client),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := a.printer(cmd, g.format)
			if err != nil {
				return err
			}
			c, err := g.client.resolve()
			if err != nil {
				return err
			}
			var e environment.EnvStatus
			if err := c.getJSON(cmd.Context(), "/api/v1/environments/"+url.PathEscape(args[0]), &e); err != nil {
				return fmt.Errorf("reading environment %s: %w", args[0], err)
			}
			return p.print(e, func() error { return p.envDetail(e) })
		},
	}
	// Without a subcommand: ls, or with a name get.
	cmd.Args = cobra.MaximumNArgs(1)
	cmd.ValidArgsFunction = completeEnvs(&g.client)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 1 {
			return get.RunE(cmd, args)
		}
		return ls.RunE(cmd, args)
	}
	cmd.AddCommand(ls, get)
	return cmd
}

func listEnvs(cmd *cobra.Command, opts *clientOptions) ([]environment.EnvStatus, error) {
	c, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	envs := []environment.EnvStatus{}
	if err := c.getJSON(cmd.Context(), "/api/v1/environments", &envs); err != nil {
		return nil, fmt.Errorf("listing environments: %w", err)
	}
	return envs, nil
}

// readiness is an app's ready replicas of all, its restarts, and whether
// all are ready.
func readiness(app environment.AppStatus) (ready string, restarts int, ok bool) {
	n, total := 0, len(app.Health)
	for _, h := range app.Health {
		if h.Ready {
			n++
		}
		restarts += h.Restarts
	}
	if total == 0 {
		total = len(app.Replicas)
		n = total // no health known: the gateway serves them
	}
	return fmt.Sprintf("%d/%d", n, total), restarts, n == total && total > 0
}

// appVersion is what an app runs, or is starting or failed to start.
func appVersion(app environment.AppStatus) string {
	switch {
	case app.Version != "":
		return app.Version
	case app.Starting != "":
		return app.Starting + " (starting)"
	case app.Failed != "":
		return app.Failed + " (failed)"
	}
	return "-"
}

func (p *printer) envTable(envs []environment.EnvStatus) error {
	if len(envs) == 0 {
		_, err := fmt.Fprintln(p.out, "No environments.")
		return err
	}
	t := &table{header: []string{"ENV", "APP", "VERSION", "READY", "RESTARTS", "URL"}}
	if p.wide() {
		t.header = append(t.header, "HOST URL", "REPLICAS", "NOTE")
	}
	for _, e := range envs {
		note := ""
		if e.Adopted {
			note = "adopted (not reconciled yet)"
		}
		if len(e.Apps) == 0 {
			row := []cell{{text: e.Name}, {text: "-"}, {text: "-"}, {text: "-"}, {text: "-"}, {text: "-"}}
			if p.wide() {
				row = append(row, cell{text: "-"}, cell{text: "-"}, cell{text: orDash(note)})
			}
			t.add(row...)
			continue
		}
		for _, app := range e.Apps {
			ready, restarts, ok := readiness(app)
			color := colorGreen
			if !ok {
				color = colorYellow
			}
			row := []cell{{text: e.Name}, {text: app.Name}, {text: appVersion(app)}, {text: ready, color: color},
				{text: strconv.Itoa(restarts)}, {text: orDash(app.URL)}}
			if p.wide() {
				row = append(row, cell{text: orDash(app.HostURL)}, cell{text: orDash(strings.Join(app.Replicas, ","))}, cell{text: orDash(note)})
			}
			t.add(row...)
		}
	}
	return t.write(p)
}

func (p *printer) envDetail(e environment.EnvStatus) error {
	adopted := ""
	if e.Adopted {
		adopted = "yes: listed as the gateway serves it; not reconciled yet"
	}
	if err := p.fields(flat(kv("Name", e.Name), kv("Workflow", e.Workflow), kv("Adopted", adopted))...); err != nil {
		return err
	}
	for _, app := range e.Apps {
		ready, restarts, _ := readiness(app)
		fmt.Fprintln(p.out)
		if err := p.fields(flat(kv("App", app.Name), kv("Version", appVersion(app)), kv("URL", app.URL), kv("Host URL", app.HostURL),
			kv("Ready", ready), kv("Restarts", strconv.Itoa(restarts)))...); err != nil {
			return err
		}
		if len(app.Health) == 0 {
			continue
		}
		t := &table{header: []string{"REPLICA", "ADDR", "STATE", "READY", "RESTARTS", "LAST EXIT", "SINCE"}}
		for _, h := range app.Health {
			readyText := strconv.FormatBool(h.Ready)
			t.add(cell{text: strconv.Itoa(h.Index)}, cell{text: h.Addr}, cell{text: string(h.State)},
				cell{text: readyText, color: statusColor(readyText)}, cell{text: strconv.Itoa(h.Restarts)},
				cell{text: orDash(truncate(h.LastExit, 40))}, cell{text: age(p.now, h.Since)})
		}
		if err := t.write(p); err != nil {
			return err
		}
	}
	return nil
}
