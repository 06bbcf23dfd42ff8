package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/runway-cd/runway/internal/events"
)

// Bounds of following the event stream.
const (
	// maxSSELine bounds one line of the stream, in bytes (an event is at
	// most a few KiB).
	maxSSELine = 256 << 10
	// maxReconnects bounds the stream's reconnections; then the follower
	// only polls.
	maxReconnects = 1000
	// streamIdle is how long a stream may say nothing (not even its
	// keepalive, every 15s) before it is taken for dead.
	streamIdle = 45 * time.Second
	// streamHeaders bounds the wait for the stream's answer.
	streamHeaders = 30 * time.Second
)

// Re-read intervals of a follower: with the stream up, a safety re-read;
// with it down, polling.
const (
	pollStreamUp   = 10 * time.Second
	pollStreamDown = time.Second
)

// streamEvents reads the API's event stream of kind and name (either may
// be empty) from after since, calling onEvent with each event, until ctx
// ends or the stream does. It returns the seq of the last event seen.
func (c *client) streamEvents(ctx context.Context, kind, name string, since uint64, onOpen func(), onEvent func(events.Event)) (uint64, error) {
	q := url.Values{}
	if kind != "" {
		q.Set("kind", kind)
	}
	if name != "" {
		q.Set("name", name)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := c.request(ctx, http.MethodGet, "/api/v1/events?"+q.Encode(), nil)
	if err != nil {
		return since, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Last-Event-ID", strconv.FormatUint(since, 10))
	// The client's overall timeout would cut the stream: the transport's
	// own bounds and the idle watchdog below stand instead.
	hc := &http.Client{Transport: c.http.Transport}
	headers := time.AfterFunc(streamHeaders, cancel)
	resp, err := hc.Do(req)
	headers.Stop()
	if err != nil {
		if ctx.Err() != nil {
			return since, ctx.Err()
		}
		return since, &unreachableError{err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return since, c.answerError(resp.StatusCode, resp.Status, nil)
	}
	if onOpen != nil {
		onOpen()
	}
	// A stream that goes quiet past its keepalives is dead (a peer gone
	// without a FIN): the watchdog ends the request.
	var alive atomic.Int64
	alive.Store(time.Now().UnixNano())
	go func() {
		t := time.NewTicker(streamIdle / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if time.Since(time.Unix(0, alive.Load())) > streamIdle {
					cancel()
					return
				}
			}
		}
	}()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), maxSSELine)
	var data strings.Builder
	for sc.Scan() {
		alive.Store(time.Now().UnixNano())
		line := sc.Text()
		if line == "" { // the end of an event
			if data.Len() > 0 {
				var e events.Event
				if err := json.Unmarshal([]byte(data.String()), &e); err == nil {
					// In order; a lower seq is a restarted server's log.
					since = e.Seq
					onEvent(e)
				}
				data.Reset()
			}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		if field == "data" {
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(value)
		}
	}
	if ctx.Err() != nil && ctx.Err() != context.Canceled {
		return since, ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return since, fmt.Errorf("reading the event stream: %w", err)
	}
	return since, nil
}

// follow calls check now, after every event of kind and name on the
// event stream, and every pollStreamUp (pollStreamDown while the stream
// is down: the follower then polls), until check says done or fails, or
// ctx ends. Events wake it without being read: check reads the state
// again, so a burst of events costs one read.
func (c *client) follow(ctx context.Context, kind, name string, check func(ctx context.Context) (done bool, err error)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wake := make(chan struct{}, 1)
	var up atomic.Bool
	go func() {
		var since uint64
		for attempt := range maxReconnects {
			var err error
			since, err = c.streamEvents(ctx, kind, name, since, func() { up.Store(true) }, func(events.Event) {
				select {
				case wake <- struct{}{}:
				default:
				}
			})
			up.Store(false)
			if ctx.Err() != nil {
				return
			}
			_ = err // the follower polls meanwhile
			select {
			case <-ctx.Done():
				return
			case <-time.After(min(time.Duration(attempt+1)*time.Second, 5*time.Second)):
			}
		}
	}()
	for {
		done, err := check(ctx)
		if err != nil || done {
			return err
		}
		interval := pollStreamDown
		if up.Load() {
			interval = pollStreamUp
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-time.After(interval):
		}
	}
}

// maxUnreachable is how many reads in a row a follower lets fail because
// the API did not answer (a server restarting) before it gives up.
const maxUnreachable = 30

// retries counts a follower's reads that the API did not answer.
type retries struct{ failed int }

// tolerate is nil for the first maxUnreachable unanswered reads in a
// row, and err for any other error.
func (r *retries) tolerate(err error) error {
	var ue *unreachableError
	if !errors.As(err, &ue) {
		return err
	}
	r.failed++
	if r.failed > maxUnreachable {
		return err
	}
	return nil
}
