package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/runway-cd/runway/internal/events"
)

// The event stream's bounds.
const (
	// MaxEventStreams is how many event streams are served at once; one
	// more is answered 503 with Retry-After.
	MaxEventStreams = 64
	// EventKeepalive is how often a quiet stream sends a comment, so that
	// proxies and clients see it is alive.
	EventKeepalive = 15 * time.Second
	// MaxEventStream is how long one stream is served; the client then
	// reconnects with Last-Event-ID (EventSource does so by itself after
	// the retry the stream announces) and misses nothing kept.
	MaxEventStream = 30 * time.Minute
	// eventRetry is the reconnection delay the stream announces, in
	// milliseconds.
	eventRetry = 2000
	// eventWriteTimeout bounds each write of a stream: a client that stops
	// reading is dropped.
	eventWriteTimeout = 30 * time.Second
	// maxFilter bounds the kind and name filters, in bytes.
	maxFilter = 256
)

// wantsStream reports whether the request asks for Server-Sent Events:
// Accept: text/event-stream (what EventSource sends), or ?stream=1 for
// clients that cannot set headers.
func wantsStream(r *http.Request) bool {
	if r.URL.Query().Get("stream") == "1" {
		return true
	}
	for _, a := range r.Header.Values("Accept") {
		for _, part := range strings.Split(a, ",") {
			mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.EqualFold(strings.TrimSpace(mt), "text/event-stream") {
				return true
			}
		}
	}
	return false
}

// eventFilter keeps the events of one kind and/or one name; empty fields
// keep everything.
type eventFilter struct{ kind, name string }

func parseEventFilter(r *http.Request) (eventFilter, error) {
	q := r.URL.Query()
	f := eventFilter{kind: q.Get("kind"), name: q.Get("name")}
	if len(f.kind) > maxFilter || len(f.name) > maxFilter {
		return f, fmt.Errorf("%w: kind and name are at most %d bytes", ErrBadRequest, maxFilter)
	}
	return f, nil
}

func (f eventFilter) match(e events.Event) bool {
	return (f.kind == "" || strings.EqualFold(f.kind, e.Kind)) && (f.name == "" || f.name == e.Name)
}

// streamStart is where a stream begins: after Last-Event-ID (a client
// reconnecting) when set, else after ?since.
func streamStart(r *http.Request, since uint64) (uint64, error) {
	v := strings.TrimSpace(r.Header.Get("Last-Event-ID"))
	if v == "" {
		return since, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: Last-Event-ID must be an event sequence number", ErrBadRequest)
	}
	return n, nil
}

// streamEvents serves the event log after since as Server-Sent Events,
// each as
//
//	id: <seq>
//	event: <kind, lowercased; "event" when it has none>
//	data: <the event as JSON, one line>
//
// with a ": keepalive" comment every EventKeepalive. It ends when the
// client goes, when the log is closed (the server shuts down: a stream
// must not hold the shutdown), or after MaxEventStream.
func (h *Handler) streamEvents(w http.ResponseWriter, r *http.Request, since uint64, f eventFilter) error {
	if h.events == nil {
		// Nothing will ever come: 204 tells EventSource not to reconnect.
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if n := h.streams.Add(1); n > MaxEventStreams {
		h.streams.Add(-1)
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": fmt.Sprintf("at most %d event streams at once; try again later", MaxEventStreams)})
		return nil
	}
	defer h.streams.Add(-1)
	rc := http.NewResponseController(w)
	// The server's read timeout would end the request's context (and its
	// write timeout the answer) in mid-stream; each write gets its own
	// deadline instead.
	_ = rc.SetReadDeadline(time.Time{})
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "retry: %d\n\n", eventRetry)
	send := func() bool {
		_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
		_, err := w.Write(buf.Bytes())
		buf.Reset()
		return err == nil && rc.Flush() == nil
	}
	if !send() {
		return nil
	}
	keepalive := h.clock.NewTimer(EventKeepalive)
	defer keepalive.Stop()
	end := h.clock.NewTimer(MaxEventStream)
	defer end.Stop()
	seq := since
	if seq > 0 {
		// A seq the log has not reached is from before a restart (the log
		// starts again at 1): such a client gets what is kept.
		if kept, _ := h.events.Since(0, 0); len(kept) == 0 || kept[len(kept)-1].Seq < seq {
			seq = 0
		}
	}
	var woken <-chan struct{} // the wake channel that last fired
	for {
		evs, wake := h.events.Since(seq, MaxEventLimit)
		for _, e := range evs {
			seq = e.Seq
			if f.match(e) {
				writeEvent(&buf, e)
			}
		}
		if buf.Len() > 0 && !send() {
			return nil
		}
		if len(evs) == MaxEventLimit {
			continue // more are kept
		}
		// A recorder hands out a new channel with every event until it
		// is closed; the one that fired, handed out again, is a closed
		// log.
		if len(evs) == 0 && wake == woken {
			return nil
		}
		select {
		case <-wake:
			woken = wake
		case <-keepalive.C():
			buf.WriteString(": keepalive\n\n")
			if !send() {
				return nil
			}
			keepalive.Reset(EventKeepalive)
		case <-end.C():
			return nil
		case <-r.Context().Done():
			return nil
		}
	}
}

// writeEvent writes e in the stream's format.
func writeEvent(buf *bytes.Buffer, e events.Event) {
	data, err := json.Marshal(e)
	if err != nil { // an Event always marshals
		return
	}
	name := strings.ToLower(e.Kind)
	if name == "" || strings.ContainsAny(name, "\r\n") {
		name = "event"
	}
	fmt.Fprintf(buf, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, name, data)
}
