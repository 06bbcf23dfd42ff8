package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/pipeline"
)

func (a *app) pipelinesLogsCmd(g *apiGroup) *cobra.Command {
	var opts struct {
		follow bool
		step   string
	}
	cmd := &cobra.Command{
		Use:   "logs ID",
		Short: "Print a pipeline's step logs; -f follows the running step to the pipeline's end",
		Long: `Print the logs of a pipeline's steps, each under a "==> STEP <==" header
(none with --step). With -f it follows: it prints each running step's new
output as the server stores it (it learns of it from the event stream,
GET /api/v1/events, and polls when the stream is not available), and exits
when the pipeline ends: 0 if it Succeeded, 10 otherwise.`,
		Example: `  runway pipelines logs web-42
  runway pipelines logs web-42 --step build-app
  runway pipelines logs web-42 -f`,
		Args:              exactArgs("ID"),
		ValidArgsFunction: completePipelines(&g.client),
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.format != formatTable {
				return usagef("logs prints text: -o is not for it (try pipelines get -o json)")
			}
			c, err := g.client.resolve()
			if err != nil {
				return err
			}
			pl, err := getPipeline(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			if opts.step != "" && pl.Step(opts.step) == nil {
				return &apiError{status: 404, msg: fmt.Sprintf("pipeline %s has no step %q", pl.ID, opts.step)}
			}
			lp := &logPrinter{out: cmd.OutOrStdout(), step: opts.step, printed: map[string]string{}}
			if err := lp.update(pl); err != nil || !opts.follow {
				return err
			}
			var pass retries
			err = c.follow(cmd.Context(), events.Pipeline, pl.ID, func(ctx context.Context) (bool, error) {
				next, err := getPipeline(ctx, c, pl.ID)
				if err != nil {
					return false, pass.tolerate(err)
				}
				pass.failed, pl = 0, next
				return pl.Phase.Done(), lp.update(pl)
			})
			if err != nil {
				return err
			}
			lp.endLine()
			fmt.Fprintf(cmd.ErrOrStderr(), "pipeline %s %s\n", pl.ID, pl.Phase)
			return endedBadly(pl)
		},
	}
	cmd.Flags().BoolVarP(&opts.follow, "follow", "f", false, "follow the running step's log until the pipeline ends")
	cmd.Flags().StringVar(&opts.step, "step", "", "only this step's log, without a header")
	_ = cmd.RegisterFlagCompletionFunc("step", cobra.FixedCompletions(pipeline.StepNames, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// logPrinter prints the step logs of successive reads of a pipeline,
// each byte once: what a step's log has beyond what was printed of it.
type logPrinter struct {
	out io.Writer
	// step, if set, is the one step printed, without a header.
	step string
	// printed is what was printed of each step's log.
	printed map[string]string
	// current is the step whose log was printed last; midLine is set
	// when that did not end with a newline.
	current string
	midLine bool
}

// update prints what is new in pl's step logs.
func (lp *logPrinter) update(pl *pipeline.Pipeline) error {
	for _, s := range pl.Steps {
		if lp.step != "" && s.Name != lp.step {
			continue
		}
		if err := lp.print(s.Name, lp.newPart(s.Name, s.Log)); err != nil {
			return err
		}
	}
	return nil
}

// Finding where a cut log resumes: the probe is the start of what was
// kept, looked for at most maxProbes times in what was printed.
const (
	probeLen  = 64
	maxProbes = 1000
)

// newPart is what log has beyond what was printed of step. A stored log
// keeps its last 64 KiB, marked "...\n" once cut at its start: then what
// was kept is found in what was printed, and what follows it is new.
func (lp *logPrinter) newPart(step, log string) string {
	old := lp.printed[step]
	lp.printed[step] = log
	switch {
	case log == old:
		return ""
	case strings.HasPrefix(log, old):
		return log[len(old):]
	}
	if rest, cut := strings.CutPrefix(log, "...\n"); cut && rest != "" {
		probe := rest[:min(len(rest), probeLen)]
		from := 0
		for range maxProbes {
			i := strings.Index(old[from:], probe)
			if i < 0 {
				break
			}
			at := from + i
			if strings.HasPrefix(rest, old[at:]) {
				return rest[len(old)-at:]
			}
			from = at + 1
		}
	}
	return "-- (some of the log was cut) --\n" + log
}

func (lp *logPrinter) print(step, part string) error {
	if part == "" {
		return nil
	}
	if step != lp.current && lp.step == "" {
		lp.endLine()
		if _, err := fmt.Fprintf(lp.out, "==> %s <==\n", step); err != nil {
			return err
		}
	}
	lp.current = step
	lp.midLine = !strings.HasSuffix(part, "\n")
	_, err := io.WriteString(lp.out, part)
	return err
}

// endLine ends a log printed without its last newline.
func (lp *logPrinter) endLine() {
	if lp.midLine {
		fmt.Fprintln(lp.out)
		lp.midLine = false
	}
}
