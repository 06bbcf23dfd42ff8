package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/oneline"
	"github.com/runway-cd/runway/internal/rollout"
)

func (a *app) rolloutCmd() *cobra.Command {
	cmd, g := newGroup("rollout", "Show and steer canary rollouts", `  runway rollout ls
  runway rollout get web
  runway rollout watch web
  runway rollout promote web
  runway rollout abort web --reason "p99 latency"`)
	cmd.Aliases = []string{"rollouts", "ro"}
	var env string
	cmd.AddCommand(a.rolloutLsCmd(g))
	for _, c := range append([]*cobra.Command{a.rolloutGetCmd(g, &env), a.rolloutWatchCmd(g, &env)}, a.rolloutActionCmds(g, &env)...) {
		c.Flags().StringVar(&env, "env", manifest.ProductionEnv, "the rollout's environment")
		cmd.AddCommand(c)
	}
	return cmd
}

func (a *app) rolloutLsCmd(g *apiGroup) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List rollouts: step, weight, phase and message",
		Example: `  runway rollout ls
  runway rollout ls -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.printer(cmd, g.format)
			if err != nil {
				return err
			}
			c, err := g.client.resolve()
			if err != nil {
				return err
			}
			rs, err := listRollouts(cmd.Context(), c)
			if err != nil {
				return err
			}
			return p.print(rs, func() error { return p.rolloutTable(rs) })
		},
	}
}

func (a *app) rolloutGetCmd(g *apiGroup, env *string) *cobra.Command {
	return &cobra.Command{
		Use:   "get APP",
		Short: "Show APP's rollout: versions, step, weight, message and its analysis runs",
		Example: `  runway rollout get web
  runway rollout get web --env production -o yaml`,
		Args:              exactArgs("APP"),
		ValidArgsFunction: completeApps(&g.client),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := a.printer(cmd, g.format)
			if err != nil {
				return err
			}
			c, err := g.client.resolve()
			if err != nil {
				return err
			}
			r, err := getRollout(cmd.Context(), c, *env, args[0])
			if err != nil {
				return err
			}
			return p.print(r, func() error { return p.rolloutDetail(r) })
		},
	}
}

// rolloutAction is one of the commands that steer a rollout.
type rolloutAction struct {
	use, short, long, example string
	// verb is the API's: /api/v1/rollouts/{env}/{app}/{verb}.
	verb string
	// body and query, if set, are the request's.
	body  func() any
	query func() string
}

// rolloutActionCmds are promote, abort and retry.
func (a *app) rolloutActionCmds(g *apiGroup, env *string) []*cobra.Command {
	var full bool
	var reason string
	promote := a.rolloutActionCmd(g, env, rolloutAction{
		use: "promote APP", verb: "promote",
		short:   "End the current pause of APP's rollout (--full: skip every remaining step)",
		long:    "End the current pause of APP's rollout, or with --full skip every remaining step, pause and\nanalysis. A rollout that is not paused is refused (exit 6) unless --full.",
		example: "  runway rollout promote web\n  runway rollout promote web --full",
		query:   func() string { return "?full=" + strconv.FormatBool(full) },
	})
	promote.Flags().BoolVar(&full, "full", false, "skip every remaining step, pause and analysis")
	abort := a.rolloutActionCmd(g, env, rolloutAction{
		use: "abort APP", verb: "abort",
		short:   "Abort APP's rollout: traffic back to stable, git reverted",
		example: "  runway rollout abort web --reason \"p99 latency over budget\"",
		body:    func() any { return map[string]string{"reason": reason} },
	})
	abort.Flags().StringVar(&reason, "reason", "aborted from the command line", "why (one line, at most 200 bytes are kept)")
	retry := a.rolloutActionCmd(g, env, rolloutAction{
		use: "retry APP", verb: "retry",
		short:   "Run the inconclusive analysis of APP's paused rollout again, as a fresh run",
		example: "  runway rollout retry web",
	})
	return []*cobra.Command{promote, abort, retry}
}

func (a *app) rolloutActionCmd(g *apiGroup, env *string, act rolloutAction) *cobra.Command {
	return &cobra.Command{
		Use: act.use, Short: act.short, Long: act.long, Example: act.example,
		Args:              exactArgs("APP"),
		ValidArgsFunction: completeApps(&g.client),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := a.printer(cmd, g.format)
			if err != nil {
				return err
			}
			c, err := g.client.resolve()
			if err != nil {
				return err
			}
			path := fmt.Sprintf("/api/v1/rollouts/%s/%s/%s", url.PathEscape(*env), url.PathEscape(args[0]), act.verb)
			if act.query != nil {
				path += act.query()
			}
			var body any
			if act.body != nil {
				body = act.body()
			}
			answer, err := c.do(cmd.Context(), http.MethodPost, path, body)
			if err != nil {
				return fmt.Errorf("%s of the rollout of %s in %s: %w", act.verb, args[0], *env, err)
			}
			var res map[string]string
			if err := jsonUnmarshal(answer, &res); err != nil {
				return err
			}
			return p.print(res, func() error {
				_, err := fmt.Fprintf(p.out, "%s/%s: %s\n", *env, args[0], res["status"])
				return err
			})
		},
	}
}

func listRollouts(ctx context.Context, c *client) ([]rollout.Status, error) {
	rs := []rollout.Status{}
	if err := c.getJSON(ctx, "/api/v1/rollouts", &rs); err != nil {
		return nil, fmt.Errorf("listing rollouts: %w", err)
	}
	return rs, nil
}

// getRollout is the rollout of app in env; a 404 *apiError when there is
// none.
func getRollout(ctx context.Context, c *client, env, app string) (*rollout.Status, error) {
	rs, err := listRollouts(ctx, c)
	if err != nil {
		return nil, err
	}
	for i := range rs {
		if rs[i].Env == env && rs[i].App == app {
			return &rs[i], nil
		}
	}
	return nil, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("no rollout of %s in %s", app, env)}
}

func (p *printer) rolloutTable(rs []rollout.Status) error {
	if len(rs) == 0 {
		_, err := fmt.Fprintln(p.out, "No rollouts.")
		return err
	}
	t := &table{header: []string{"ENV", "APP", "STABLE", "CANARY", "PHASE", "STEP", "WEIGHT", "AGE", "MESSAGE"}}
	if p.wide() {
		t.header = append(t.header, "DURATION", "ANALYSES")
	}
	for _, r := range rs {
		msg := truncate(r.Message, 60)
		if p.wide() {
			msg = truncate(r.Message, 120)
		}
		row := []cell{{text: r.Env}, {text: r.App}, {text: orDash(r.StableVersion)}, {text: orDash(r.CanaryVersion)},
			{text: r.Phase, color: statusColor(r.Phase)}, {text: fmt.Sprintf("%d/%d", r.Step, r.Steps)},
			{text: fmt.Sprintf("%d%%", r.Weight)}, {text: age(p.now, r.Started)}, {text: orDash(msg)}}
		if p.wide() {
			row = append(row, cell{text: span(p.now, r.Started, r.Finished)}, cell{text: strconv.Itoa(len(r.Analyses))})
		}
		t.add(row...)
	}
	return t.write(p)
}

func (p *printer) rolloutDetail(r *rollout.Status) error {
	err := p.fields(flat(kv("Rollout", r.Env+"/"+r.App), kv("Stable", r.StableVersion), kv("Canary", r.CanaryVersion),
		[]cell{{text: "Phase"}, {text: r.Phase, color: statusColor(r.Phase)}},
		kv("Step", fmt.Sprintf("%d of %d", r.Step, r.Steps)), kv("Weight", fmt.Sprintf("%d%% to the canary", r.Weight)),
		kv("Message", r.Message), kv("Started", stamp(r.Started)), kv("Finished", stamp(r.Finished)),
		kv("Duration", span(p.now, r.Started, r.Finished)))...)
	if err != nil || len(r.Analyses) == 0 {
		return err
	}
	fmt.Fprintln(p.out)
	t := &table{header: []string{"ANALYSIS RUN", "PHASE", "REASON"}}
	for _, run := range r.Analyses {
		t.add(cell{text: run.Name}, cell{text: run.Phase, color: statusColor(run.Phase)}, cell{text: orDash(truncate(run.Reason, 100))})
	}
	return t.write(p)
}

func (a *app) rolloutWatchCmd(g *apiGroup, env *string) *cobra.Command {
	return &cobra.Command{
		Use:   "watch APP",
		Short: "Follow APP's rollout live: each step, weight, message and analysis verdict, until it ends",
		Long: `Follow APP's rollout live, a line for each change of its step, weight,
phase or message and for each analysis run's verdict, until the rollout
ends: exit 0 when it ended Healthy (promoted), 10 when Degraded (aborted).
With -o json it prints each new state as one line of JSON.`,
		Example: `  runway rollout watch web
  runway rollout watch web -o json | jq -c '{step, weight, phase}'`,
		Args:              exactArgs("APP"),
		ValidArgsFunction: completeApps(&g.client),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := a.printer(cmd, g.format)
			if err != nil {
				return err
			}
			c, err := g.client.resolve()
			if err != nil {
				return err
			}
			app := args[0]
			last, err := getRollout(cmd.Context(), c, *env, app)
			if err != nil {
				return err
			}
			w := &rolloutWatcher{p: p, now: a.now}
			if err := w.show(last); err != nil {
				return err
			}
			var pass retries
			err = c.follow(cmd.Context(), events.Rollout, *env+"/"+app, func(ctx context.Context) (bool, error) {
				r, err := getRollout(ctx, c, *env, app)
				var ae *apiError
				if errors.As(err, &ae) && ae.status == http.StatusNotFound {
					fmt.Fprintf(cmd.ErrOrStderr(), "the rollout of %s in %s is no longer listed\n", app, *env)
					return true, nil
				}
				if err != nil {
					return false, pass.tolerate(err)
				}
				pass.failed, last = 0, r
				return rolloutEnded(r), w.show(r)
			})
			if err != nil {
				return err
			}
			if last.Phase == rollout.Degraded {
				return &unsuccessfulError{msg: fmt.Sprintf("rollout of %s in %s ended Degraded: %s", app, *env, printable(oneline.Clean(last.Message, 1024)))}
			}
			return nil
		},
	}
}

// rolloutEnded reports whether r ended: promoted (Healthy) or aborted
// (Degraded), or marked finished.
func rolloutEnded(r *rollout.Status) bool {
	return !r.Finished.IsZero() || r.Phase == rollout.Healthy || r.Phase == rollout.Degraded
}

// rolloutWatcher prints what changed between successive reads of a
// rollout.
type rolloutWatcher struct {
	p    *printer
	now  func() time.Time
	last *rollout.Status
	runs map[string]string // analysis run -> phase printed
}

func (w *rolloutWatcher) show(r *rollout.Status) error {
	p := w.p
	if p.format == formatJSON || p.format == formatYAML {
		if w.last != nil && sameRollout(w.last, r) {
			return nil
		}
		w.last = r
		if p.format == formatJSON {
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(p.out, "%s\n", b)
			return err
		}
		fmt.Fprintln(p.out, "---")
		return p.print(r, nil)
	}
	clock := w.now().Format("15:04:05")
	if w.last == nil || w.last.Phase != r.Phase || w.last.Step != r.Step || w.last.Weight != r.Weight || w.last.Message != r.Message || w.last.CanaryVersion != r.CanaryVersion {
		fmt.Fprintf(p.out, "%s  %s  step %d/%d  weight %d%%  %s  %s\n", clock, p.paint(statusColor(r.Phase), r.Phase),
			r.Step, r.Steps, r.Weight, printable(orDash(r.CanaryVersion)), printable(r.Message))
	}
	if w.runs == nil {
		w.runs = map[string]string{}
	}
	for _, run := range r.Analyses {
		if w.runs[run.Name] == run.Phase {
			continue
		}
		w.runs[run.Name] = run.Phase
		line := fmt.Sprintf("%s    analysis %s %s", clock, printable(run.Name), p.paint(statusColor(run.Phase), printable(run.Phase)))
		if run.Reason != "" {
			line += ": " + printable(run.Reason)
		}
		fmt.Fprintln(p.out, line)
	}
	w.last = r
	return nil
}

func sameRollout(a, b *rollout.Status) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
