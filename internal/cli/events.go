package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/runway-cd/runway/internal/events"
)

func (a *app) eventsCmd() *cobra.Command {
	var opts clientOptions
	var since uint64
	var limit int
	var format, kind, name string
	var follow bool
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show recent events of environments, rollouts and pipelines, oldest first; -f follows them",
		Long: `Show the recent events of environments, rollouts and pipelines, oldest
first. With -f it then follows the event stream (Server-Sent Events from
GET /api/v1/events) until interrupted; with -o json each followed event is
one line of JSON.`,
		Example: `  runway events
  runway events --since 120 --limit 50
  runway events -f --kind Pipeline --name web-42
  runway events -f -o json | jq -c 'select(.type=="Warning")'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.printer(cmd, format)
			if err != nil {
				return err
			}
			c, err := opts.resolve()
			if err != nil {
				return err
			}
			q := url.Values{}
			q.Set("since", strconv.FormatUint(since, 10))
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			var evs []events.Event
			if err := c.getJSON(cmd.Context(), "/api/v1/events?"+q.Encode(), &evs); err != nil {
				return fmt.Errorf("reading events: %w", err)
			}
			last := since
			kept := []events.Event{}
			for _, e := range evs {
				last = max(last, e.Seq)
				if (kind == "" || strings.EqualFold(kind, e.Kind)) && (name == "" || name == e.Name) {
					kept = append(kept, e)
				}
			}
			if !follow {
				return p.print(kept, func() error { return p.eventTable(kept) })
			}
			for _, e := range kept {
				if err := p.eventLine(e); err != nil {
					return err
				}
			}
			return followEvents(cmd.Context(), c, kind, name, last, p.eventLine)
		},
	}
	addClientFlags(cmd, &opts)
	cmd.Flags().StringVarP(&format, "output", "o", formatTable, "output format: table, json or yaml")
	cmd.Flags().Uint64Var(&since, "since", 0, "only events after this sequence number (the seq of the last one seen)")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many events (default: the server's, 200; at most 2000)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "then follow new events until interrupted")
	cmd.Flags().StringVar(&kind, "kind", "", "only events about this kind of object: Pipeline, Rollout or Environment")
	cmd.Flags().StringVar(&name, "name", "", "only events about the object of this name (a pipeline id, env/app, an environment)")
	_ = cmd.RegisterFlagCompletionFunc("kind", cobra.FixedCompletions([]string{events.Pipeline, events.Rollout, events.Environment}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// followEvents prints the stream's events after since until ctx ends,
// reconnecting (with the last seq seen) when the stream drops.
func followEvents(ctx context.Context, c *client, kind, name string, since uint64, print func(events.Event) error) error {
	var printErr error
	for attempt := 0; attempt < maxReconnects; attempt++ {
		var err error
		opened := false
		since, err = c.streamEvents(ctx, kind, name, since, func() { opened = true }, func(e events.Event) {
			if printErr == nil {
				printErr = print(e)
			}
		})
		if printErr != nil {
			return printErr
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ae *apiError
		if errors.As(err, &ae) && ae.status != http.StatusServiceUnavailable {
			return fmt.Errorf("following events: %w", err)
		}
		if opened {
			attempt = 0
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(time.Duration(attempt+1)*time.Second, 5*time.Second)):
		}
	}
	return fmt.Errorf("following events: the stream dropped %d times", maxReconnects)
}

func (p *printer) eventTable(evs []events.Event) error {
	if len(evs) == 0 {
		_, err := fmt.Fprintln(p.out, "No events.")
		return err
	}
	t := &table{header: []string{"SEQ", "AGE", "TYPE", "KIND", "NAME", "REASON", "MESSAGE"}}
	for _, e := range evs {
		color := colorNone
		if e.Type == events.Warning {
			color = colorYellow
		}
		msg := truncate(e.Message, 80)
		if p.wide() {
			msg = truncate(e.Message, 400)
		}
		t.add(cell{text: strconv.FormatUint(e.Seq, 10)}, cell{text: age(p.now, e.Time)}, cell{text: e.Type, color: color},
			cell{text: e.Kind}, cell{text: e.Name}, cell{text: e.Reason}, cell{text: orDash(msg)})
	}
	return t.write(p)
}

// eventLine prints one followed event: a line of text, or of JSON.
func (p *printer) eventLine(e events.Event) error {
	if p.format == formatJSON || p.format == formatYAML {
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(p.out, "%s\n", b)
		return err
	}
	typ := e.Type
	if e.Type == events.Warning {
		typ = p.paint(colorYellow, typ)
	}
	_, err := fmt.Fprintf(p.out, "%s  %d  %s  %s/%s  %s  %s\n", e.Time.Local().Format("15:04:05"), e.Seq, typ,
		printable(e.Kind), printable(e.Name), printable(e.Reason), printable(truncate(e.Message, 200)))
	return err
}
