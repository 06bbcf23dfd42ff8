// Package notify sends outbound notifications of what Runway did: a
// pipeline ended (succeeded, failed, was superseded or cancelled), a
// rollout paused, was aborted or was promoted. It follows the event log
// (internal/events) as any reader does, so the controllers only record
// events and are never slowed by a receiver: each receiver has its own
// bounded queue and worker, and a slow or failing one delays only itself.
//
// Bodies are a versioned generic JSON document (Kind) or a Slack
// incoming-webhook payload. Delivery is at most once per attempt, retried
// with exponential backoff and jitter on network errors, 408, 429 and
// 5xx, MaxAttempts times at most; notifications still queued when the
// server stops are dropped (the event log is in memory, so there is
// nothing to resume from). docs/notifications.md is the user reference.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/runway-cd/runway/internal/api"
	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/pipeline"
)

// Options are what the notifier reads.
type Options struct {
	Config Config
	// Events is the event log followed. Nil: nothing is sent.
	Events api.Events
	// Pipelines gives the details of a pipeline (commit, author, failed
	// step). Nil: notifications carry what the event says.
	Pipelines api.Pipelines
	// Redact masks known secrets in what is logged and sent. Nil: none.
	Redact func(string) string
	// AddSecret, if set, is given every receiver URL and header value
	// read from a file, so that the server's redactor masks them
	// everywhere (the server passes its Redactor.Add).
	AddSecret func(...string)
	// Link, if set, returns the dashboard's URL of an event's object
	// (kind events.Pipeline with a pipeline id, or events.Rollout with
	// "env/app"), or "" for none.
	Link func(kind, name string) string
	// Client sends the requests. Nil: a client of its own. Its
	// CheckRedirect is replaced: only redirects to the same host are
	// followed.
	Client *http.Client
	// Clock times retries. Nil: the real clock.
	Clock clock.WithTicker
	// QueueSize is how many notifications wait per receiver. Zero:
	// DefaultQueueSize.
	QueueSize int
	// Logger nil: slog.Default().
	Logger *slog.Logger
}

// batch is how many events are read from the log at once.
const batch = 100

// recentEnds is how many pipeline ends are remembered so that one
// recorded twice is notified once.
const recentEnds = 1024

// Notifier follows the event log and sends notifications.
type Notifier struct {
	o         Options
	log       *slog.Logger
	redact    func(string) string
	receivers []*receiver
	client    *http.Client
	// seen holds the ids of recently notified pipeline ends; order is
	// their order, oldest first, to forget the oldest.
	seen  map[string]bool
	order []string
}

// New returns a notifier for o.Config, reading the receivers' URL and
// header files. It fails if the config is invalid or a file cannot be
// read; no error repeats a URL or a header's value.
func New(o Options) (*Notifier, error) {
	if errs := o.Config.Validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	n := &Notifier{o: o, log: o.Logger, redact: o.Redact, seen: map[string]bool{}}
	if n.log == nil {
		n.log = slog.Default()
	}
	if n.redact == nil {
		n.redact = func(s string) string { return s }
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	client := &http.Client{}
	if o.Client != nil {
		c := *o.Client
		client = &c
	}
	client.CheckRedirect = sameHostRedirects
	n.client = client
	for i, rc := range o.Config.Receivers {
		r, err := n.receiver(rc, client, o)
		if err != nil {
			return nil, fmt.Errorf("notifications.receivers[%d].%w", i, err)
		}
		n.receivers = append(n.receivers, r)
	}
	n.o = o
	return n, nil
}

// receiver resolves one receiver's config; an error starts with the
// field's name.
func (n *Notifier) receiver(rc Receiver, client *http.Client, o Options) (*receiver, error) {
	var secrets []string
	u := rc.URL
	if rc.URLFile != "" {
		b, err := readSmall(rc.URLFile, maxURL)
		if err != nil {
			return nil, fmt.Errorf("urlFile: %w", err)
		}
		u = strings.TrimSpace(string(b))
		if err := checkURL(u); err != nil {
			return nil, fmt.Errorf("urlFile: the URL in %s: %w", rc.URLFile, err)
		}
	}
	secrets = append(secrets, u)
	if pu, err := url.Parse(u); err == nil && pu.Scheme == "http" && !loopback(pu.Hostname()) {
		n.log.Warn("notification receiver is not https: its URL and headers cross the network in the clear", "receiver", rc.Name)
	}
	r := &receiver{
		name: rc.Name, url: u, format: rc.Format, timeout: rc.Timeout.Duration,
		apps: set(rc.Apps), events: set(rc.Events), headers: http.Header{},
		client: client, clock: o.Clock, maxQ: o.QueueSize, jitter: equalJitter,
		log: n.log, wake: make(chan struct{}, 1),
	}
	if r.format == "" {
		r.format = FormatJSON
	}
	if r.timeout == 0 {
		r.timeout = DefaultTimeout
	}
	for j, h := range rc.Headers {
		v := h.Value
		if h.ValueFile != "" {
			b, err := readSmall(h.ValueFile, maxHeaderValue)
			if err != nil {
				return nil, fmt.Errorf("headers[%d].valueFile: %w", j, err)
			}
			v = strings.TrimSpace(string(b))
			if err := checkHeaderValue(v); err != nil {
				return nil, fmt.Errorf("headers[%d].valueFile: the value in %s: %w", j, h.ValueFile, err)
			}
			secrets = append(secrets, v)
		} else if credentialHeader(h.Name) {
			secrets = append(secrets, v) // written inline, a credential all the same
		}
		r.headers.Add(h.Name, v)
	}
	if o.AddSecret != nil {
		o.AddSecret(secrets...)
	}
	// Mask the URL and the credentials in what this package logs even
	// when the server's redactor does not know them.
	masked := slices.DeleteFunc(slices.Clone(secrets), func(s string) bool { return len(s) < 8 })
	r.mask = func(s string) string {
		s = strings.ReplaceAll(s, u, "[REDACTED]")
		for _, sec := range masked {
			s = strings.ReplaceAll(s, sec, "[REDACTED]")
		}
		return n.redact(s)
	}
	return r, nil
}

// loopback reports whether host is localhost or a loopback address.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readSmall reads a file of at most limit bytes.
func readSmall(path string, limit int) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%s is longer than %d bytes", path, limit)
	}
	return b, nil
}

func set(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, s := range list {
		m[s] = true
	}
	return m
}

// Run sends notifications until ctx ends, then returns once every
// receiver's worker has stopped. Notifications queued or being retried at
// that moment are dropped. Call it once.
func (n *Notifier) Run(ctx context.Context) {
	if len(n.receivers) == 0 || n.o.Events == nil {
		<-ctx.Done()
		return
	}
	var wg sync.WaitGroup
	for _, r := range n.receivers {
		wg.Go(func() { r.work(ctx) })
	}
	n.follow(ctx)
	wg.Wait()
	n.client.CloseIdleConnections()
}

// follow reads the event log from its start, queueing a notification for
// each notified event, until ctx ends.
func (n *Notifier) follow(ctx context.Context) {
	var last uint64
	for ctx.Err() == nil {
		evs, wake := n.o.Events.Since(last, batch)
		for _, e := range evs {
			if last != 0 && e.Seq > last+1 {
				n.log.Warn("notifications fell behind the event log; some events were not notified", "missed", e.Seq-last-1)
			}
			last = e.Seq
			n.handle(ctx, e)
		}
		if len(evs) == batch {
			continue
		}
		var poll <-chan time.Time
		if len(evs) == 0 && closed(wake) {
			// The log was closed (the server stops): its channels no
			// longer wait, so poll instead of spinning.
			wake, poll = nil, n.o.Clock.After(time.Second)
		}
		select {
		case <-ctx.Done():
		case <-wake:
		case <-poll:
		}
	}
}

// closed reports whether ch is closed (a nil ch never is).
func closed[T any](ch <-chan T) bool {
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// handle queues e's notification for each receiver that wants it.
func (n *Notifier) handle(ctx context.Context, e events.Event) {
	ev := eventOf(e)
	if ev == "" {
		return
	}
	if e.Kind == events.Pipeline {
		id := "pipeline/" + e.Name + "/" + ev
		if n.seen[id] {
			return // the same end recorded twice
		}
		n.remember(id)
	}
	msg := n.notification(ctx, e, ev)
	for _, r := range n.receivers {
		if r.wants(msg) {
			r.enqueue(msg)
		}
	}
}

// remember marks a pipeline end notified, forgetting the oldest past
// recentEnds.
func (n *Notifier) remember(id string) {
	n.seen[id] = true
	n.order = append(n.order, id)
	if len(n.order) > recentEnds {
		delete(n.seen, n.order[0])
		n.order = n.order[1:]
	}
}

// notification builds e's notification, with the pipeline's details.
func (n *Notifier) notification(ctx context.Context, e events.Event, ev string) *Notification {
	msg := &Notification{
		Kind: Kind, Event: ev, Severity: severity(e), Time: e.Time,
		Message: line(n.redact(e.Message), maxMessage),
	}
	var p *pipeline.Pipeline
	switch e.Kind {
	case events.Pipeline:
		msg.ID = "pipeline/" + e.Name + "/" + ev
		p = n.pipeline(ctx, e.Name)
		if p == nil {
			p = &pipeline.Pipeline{ID: e.Name, Phase: pipeline.Phase(e.Reason)}
		}
	case events.Rollout:
		msg.Env, msg.App = splitRollout(e.Name)
		msg.ID = fmt.Sprintf("rollout/%s/%s/%d", e.Name, ev, e.Seq)
		p = n.rolloutPipeline(ctx, msg.App, e.Time)
	}
	if n.o.Link != nil {
		msg.URL = n.o.Link(e.Kind, e.Name)
	}
	if p != nil {
		if msg.App == "" {
			msg.App = p.App
		}
		msg.Version = line(p.Version, maxField)
		msg.Pipeline = &PipelineInfo{
			ID: p.ID, Phase: string(p.Phase), Repo: line(p.Repo, maxField), Branch: line(p.Branch, maxField),
			Commit: line(p.Commit, maxField), CommitMessage: firstLine(n.redact(p.Message)),
			Author: line(n.redact(p.Author), maxField), Started: p.Started, Finished: p.Finished,
		}
		if e.Kind == events.Pipeline {
			msg.Pipeline.Reason = line(n.redact(p.Reason), maxMessage)
			if p.Phase == pipeline.Failed {
				msg.Pipeline.FailedStep = line(p.FailedStep, maxField)
			}
		}
	}
	msg.Title = title(msg)
	return msg
}

// pipeline reads a pipeline, or nil if it cannot be read.
func (n *Notifier) pipeline(ctx context.Context, id string) *pipeline.Pipeline {
	if n.o.Pipelines == nil {
		return nil
	}
	p, err := n.o.Pipelines.Get(ctx, id)
	if err != nil {
		if ctx.Err() == nil {
			n.log.Warn("notification without the pipeline's details", "pipeline", id, "err", err)
		}
		return nil
	}
	return p
}

// rolloutLookback is how many recent pipelines are searched for the one a
// rollout event is about.
const rolloutLookback = 20

// rolloutPipeline finds the pipeline whose version app's rollout rolls
// out: the newest of the app's that took its promotion and was still
// running at the event's time. Nil if there is none (a rollout started by
// hand) or the pipelines cannot be read.
func (n *Notifier) rolloutPipeline(ctx context.Context, app string, at time.Time) *pipeline.Pipeline {
	if n.o.Pipelines == nil {
		return nil
	}
	ps, err := n.o.Pipelines.List(ctx, rolloutLookback)
	if err != nil {
		if ctx.Err() == nil {
			n.log.Warn("notification without the pipeline's details", "app", app, "err", err)
		}
		return nil
	}
	for _, p := range ps {
		if p.App == app && p.Promoting && (!p.Phase.Done() || !p.Finished.Before(at)) {
			return p
		}
	}
	return nil
}

// credentialHeader reports whether a header of that name carries a
// credential (Authorization, an API key or token, a cookie), whose value
// is masked in logs even when written inline in the config.
func credentialHeader(name string) bool {
	n := strings.ToLower(name)
	for _, w := range []string{"authorization", "token", "key", "secret", "cookie", "password", "signature"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}
