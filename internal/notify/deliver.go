package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Delivery policy (docs/notifications.md, "Retries").
const (
	// DefaultQueueSize is how many notifications wait per receiver; when
	// the queue is full the oldest is dropped.
	DefaultQueueSize = 256
	// MaxAttempts is how many times one notification is sent at most.
	MaxAttempts = 5
	// FirstBackoff is the wait before the first retry; each retry waits
	// twice as long as the last, with jitter, at most MaxBackoff.
	FirstBackoff = time.Second
	// MaxBackoff bounds one wait, a Retry-After's included.
	MaxBackoff = time.Minute
	// maxRedirects is how many same-host redirects a request follows.
	maxRedirects = 3
	// maxResponse is how much of a response body is read.
	maxResponse = 64 << 10
	// maxLoggedResponse is how much of a refusal's body is logged.
	maxLoggedResponse = 256
)

// errOffHost is a redirect to another host or scheme, never followed.
var errOffHost = errors.New("redirect to another host not followed")

// receiver is one configured receiver with its queue and worker.
type receiver struct {
	name    string
	url     string
	format  string
	apps    map[string]bool // empty: all
	events  map[string]bool // empty: all
	headers http.Header
	timeout time.Duration

	client  *http.Client
	clock   clock.WithTicker
	log     *slog.Logger
	mask    func(string) string
	maxQ    int
	jitter  func(time.Duration) time.Duration
	mu      sync.Mutex
	queue   []*Notification
	dropped uint64 // notifications dropped from a full queue, in all
	wake    chan struct{}
}

// wants reports whether the receiver takes n.
func (r *receiver) wants(n *Notification) bool {
	return (len(r.apps) == 0 || r.apps[n.App]) && (len(r.events) == 0 || r.events[n.Event])
}

// enqueue adds n to the queue without waiting, dropping the oldest
// notification when the queue is full.
func (r *receiver) enqueue(n *Notification) {
	r.mu.Lock()
	var dropped *Notification
	if len(r.queue) >= r.maxQ {
		dropped = r.queue[0]
		r.queue[0] = nil
		r.queue = r.queue[1:]
		r.dropped++
	}
	r.queue = append(r.queue, n)
	total := r.dropped
	r.mu.Unlock()
	if dropped != nil {
		r.log.Warn("notification queue full: dropped the oldest", "receiver", r.name,
			"event", dropped.Event, "app", dropped.App, "id", dropped.ID, "dropped", total)
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// next takes the oldest queued notification, waiting for one; nil once
// ctx ends.
func (r *receiver) next(ctx context.Context) *Notification {
	for {
		r.mu.Lock()
		if len(r.queue) > 0 {
			n := r.queue[0]
			r.queue[0] = nil
			r.queue = r.queue[1:]
			r.mu.Unlock()
			return n
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		}
	}
}

// work delivers queued notifications until ctx ends.
func (r *receiver) work(ctx context.Context) {
	for {
		n := r.next(ctx)
		if n == nil {
			return
		}
		r.deliver(ctx, n)
	}
}

// outcome is what one attempt's result calls for.
type outcome int

const (
	delivered outcome = iota
	retry
	giveUp
)

// deliver sends n, retrying as the policy says; it gives up at ctx end.
func (r *receiver) deliver(ctx context.Context, n *Notification) {
	b, err := body(r.format, n)
	if err != nil {
		r.log.Error("notification not sent", "receiver", r.name, "id", n.ID, "err", err)
		return
	}
	log := r.log.With("receiver", r.name, "event", n.Event, "app", n.App, "id", n.ID)
	for attempt := 1; ; attempt++ {
		out, wait, err := r.attempt(ctx, b)
		switch {
		case out == delivered:
			log.Debug("notification sent", "attempt", attempt)
			return
		case ctx.Err() != nil:
			log.Info("notification dropped at shutdown", "attempt", attempt)
			return
		case out == giveUp:
			log.Warn("notification refused; not retried", "attempt", attempt, "err", err)
			return
		case attempt == MaxAttempts:
			log.Warn("notification not sent; giving up", "attempts", attempt, "err", err)
			return
		}
		if wait <= 0 {
			wait = r.jitter(backoff(attempt))
		}
		log.Info("notification not sent; retrying", "attempt", attempt, "in", wait, "err", err)
		t := r.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			log.Info("notification dropped at shutdown", "attempt", attempt)
			return
		case <-t.C():
		}
	}
}

// attempt POSTs b once. wait, if positive, is how long the receiver asked
// to wait before the next attempt (Retry-After). err says why it failed,
// without the URL.
func (r *receiver) attempt(ctx context.Context, b []byte) (_ outcome, wait time.Duration, _ error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(b))
	if err != nil {
		return giveUp, 0, errors.New("making the request failed")
	}
	for k, v := range r.headers {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "runway-notify/1")
	resp, err := r.client.Do(req)
	if err != nil {
		out := retry
		if errors.Is(err, errOffHost) {
			out = giveUp
		}
		return out, 0, r.scrub(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse)) // let the connection be reused
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return delivered, 0, nil
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		wait = retryAfter(resp.Header.Get("Retry-After"), r.clock.Now())
	}
	err = fmt.Errorf("status %d %s", code, r.mask(line(string(data), maxLoggedResponse)))
	if code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500 {
		return retry, wait, err
	}
	return giveUp, 0, err
}

// scrub returns err without the request's URL: a *url.Error names it,
// and the URL may be a secret.
func (r *receiver) scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := strings.ReplaceAll(err.Error(), r.url, "[REDACTED]")
	return errors.New(r.mask(msg))
}

// backoff is the wait after the attempt-th failed attempt, before jitter:
// FirstBackoff doubled attempt-1 times, at most MaxBackoff.
func backoff(attempt int) time.Duration {
	d := FirstBackoff
	for i := 1; i < attempt && d < MaxBackoff; i++ {
		d *= 2
	}
	return min(d, MaxBackoff)
}

// equalJitter spreads retries of many receivers: a wait of d becomes one
// between d/2 and d.
func equalJitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// retryAfter parses a Retry-After header (seconds or an HTTP date),
// bounded by MaxBackoff; 0 when absent or unreadable.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		d = time.Duration(min(s, int64(MaxBackoff/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), MaxBackoff)
}

// sameHostRedirects follows up to maxRedirects redirects to the same
// scheme and host, and no other.
func sameHostRedirects(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	if first := via[0].URL; req.URL.Scheme != first.Scheme || req.URL.Host != first.Host {
		return errOffHost
	}
	return nil
}
