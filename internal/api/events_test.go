package api

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/runway-cd/runway/internal/events"
)

// watchedEvents is a Recorder that tells each read of an empty log, so
// that a test records an event only once a long poll waits for it.
type watchedEvents struct {
	*events.Recorder
	emptyReads chan struct{}
}

func (w *watchedEvents) Since(seq uint64, limit int) ([]events.Event, <-chan struct{}) {
	evs, wake := w.Recorder.Since(seq, limit)
	if len(evs) == 0 {
		select {
		case w.emptyReads <- struct{}{}:
		default:
		}
	}
	return evs, wake
}

// newEventsServer serves the API with ev as its event log and clk timing
// its long polls.
func newEventsServer(t *testing.T, ev Events, clk *clocktesting.FakeClock) *httptest.Server {
	t.Helper()
	f := defaultFakes()
	h := New(f.pipelines, f.envs, f.rollouts, f.runs, ev, nil)
	h.clock = clk
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// longPoll starts GET path and returns the channel its response comes on.
func longPoll(t *testing.T, srv *httptest.Server, ctx context.Context, path string) <-chan response {
	t.Helper()
	done := make(chan response, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil)
		if err != nil {
			done <- response{status: -1, body: err.Error()}
			return
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			done <- response{status: -1, body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- response{status: resp.StatusCode, body: string(b)}
	}()
	return done
}

// await is the long poll's response; the wait is bounded so that a broken
// handler fails the test rather than hanging it.
func await(t *testing.T, done <-chan response) response {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(60 * time.Second):
		t.Fatal("long poll never answered")
		return response{}
	}
}

// untilWaiting returns once the long poll set its timer on clk; it fails
// if the poll answers first. Bounded.
func untilWaiting(t *testing.T, clk *clocktesting.FakeClock, done <-chan response) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !clk.HasWaiters(); time.Sleep(time.Millisecond) {
		select {
		case r := <-done:
			t.Fatalf("answered before its wait passed: %d %s", r.status, r.body)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the long poll never waited")
		}
	}
}

func TestEventsLongPoll(t *testing.T) {
	t.Run("answers with the first event recorded while it waits", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
		rec := &watchedEvents{Recorder: events.New(clk, nil), emptyReads: make(chan struct{}, 1)}
		rec.Normal(events.Pipeline, "web-1", "Started", "")
		srv := newEventsServer(t, rec, clk)
		done := longPoll(t, srv, t.Context(), "/api/v1/events?since=1&wait=30s")
		<-rec.emptyReads // the poll found nothing after 1 and waits
		rec.Normal(events.Pipeline, "web-1", "Succeeded", "")
		r := await(t, done)
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		if evs := decode[[]events.Event](t, r.body); len(evs) != 1 || evs[0].Seq != 2 || evs[0].Reason != "Succeeded" {
			t.Fatalf("events %+v, want the one recorded while waiting", evs)
		}
	})
	t.Run("answers at once when there are events", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
		rec := events.New(clk, nil)
		rec.Normal(events.Pipeline, "web-1", "Started", "")
		srv := newEventsServer(t, rec, clk)
		// The fake clock never moves: only an answer without waiting
		// comes back.
		r := await(t, longPoll(t, srv, t.Context(), "/api/v1/events?since=0&wait=60s"))
		if evs := decode[[]events.Event](t, r.body); r.status != http.StatusOK || len(evs) != 1 {
			t.Fatalf("status %d events %s", r.status, r.body)
		}
	})
	t.Run("ends when the event log is closed (the server shuts down)", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
		rec := &watchedEvents{Recorder: events.New(clk, nil), emptyReads: make(chan struct{}, 1)}
		srv := newEventsServer(t, rec, clk)
		done := longPoll(t, srv, t.Context(), "/api/v1/events?wait=60s")
		<-rec.emptyReads // the poll found nothing and waits
		rec.Close()
		// The fake clock never moves: only the close ends the wait.
		r := await(t, done)
		if r.status != http.StatusOK || strings.TrimSpace(r.body) != "[]" {
			t.Fatalf("status %d body %q, want an empty array", r.status, r.body)
		}
	})
	t.Run("answers empty when the wait passes", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
		rec := events.New(clk, nil)
		srv := newEventsServer(t, rec, clk)
		done := longPoll(t, srv, t.Context(), "/api/v1/events?wait=30s")
		untilWaiting(t, clk, done)
		clk.Step(30 * time.Second)
		r := await(t, done)
		if r.status != http.StatusOK || strings.TrimSpace(r.body) != "[]" {
			t.Fatalf("status %d body %q, want an empty array", r.status, r.body)
		}
	})
	t.Run("ends when the client goes", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
		rec := &watchedEvents{Recorder: events.New(clk, nil), emptyReads: make(chan struct{}, 1)}
		ended := make(chan struct{})
		f := defaultFakes()
		h := New(f.pipelines, f.envs, f.rollouts, f.runs, rec, nil)
		h.clock = clk
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer close(ended)
			h.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		ctx, cancel := context.WithCancel(t.Context())
		done := longPoll(t, srv, ctx, "/api/v1/events?wait=60s")
		<-rec.emptyReads
		cancel()
		<-done
		select {
		case <-ended:
		case <-time.After(60 * time.Second):
			t.Fatal("the handler kept waiting after its client went")
		}
	})
	for _, wait := range []string{"61s", "-1s", "soon", "1h"} {
		t.Run("refuses wait="+wait, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(time.Now())
			srv := newEventsServer(t, events.New(clk, nil), clk)
			r := do(t, srv, "GET", "/api/v1/events?wait="+wait)
			if r.status != http.StatusBadRequest || !strings.Contains(errorBody(t, r.body), "wait must be a duration from 0s to 1m0s") {
				t.Fatalf("status %d body %s", r.status, r.body)
			}
		})
	}
	t.Run("a nil log waits out the wait", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(time.Now())
		srv := newEventsServer(t, nil, clk)
		done := longPoll(t, srv, t.Context(), "/api/v1/events?wait=5s")
		untilWaiting(t, clk, done)
		clk.Step(5 * time.Second)
		if r := await(t, done); r.status != http.StatusOK || strings.TrimSpace(r.body) != "[]" {
			t.Fatalf("status %d body %q", r.status, r.body)
		}
	})
}

// sseFrame is one block of an event stream: an event, or a comment.
type sseFrame struct {
	id, event, data, comment, retry string
}

// sseStream is an open event stream read frame by frame.
type sseStream struct {
	resp   *http.Response
	frames chan sseFrame // closed at the end of the stream
}

// openStream GETs path with Accept: text/event-stream (and the extra
// headers) and reads its frames in the background.
func openStream(t *testing.T, ctx context.Context, srv *httptest.Server, path string, header map[string]string) *sseStream {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	s := &sseStream{resp: resp, frames: make(chan sseFrame, 100)}
	go func() {
		defer close(s.frames)
		sc := bufio.NewScanner(resp.Body)
		var f sseFrame
		for sc.Scan() {
			line := sc.Text()
			if line == "" {
				if f != (sseFrame{}) {
					s.frames <- f
				}
				f = sseFrame{}
				continue
			}
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "":
				f.comment = value
			case "id":
				f.id = value
			case "event":
				f.event = value
			case "data":
				f.data = value
			case "retry":
				f.retry = value
			}
		}
	}()
	return s
}

// next returns the next event of the stream, skipping comments and the
// retry announcement; ok is false at the end of the stream. Bounded.
func (s *sseStream) next(t *testing.T) (f sseFrame, ok bool) {
	t.Helper()
	for {
		select {
		case f, ok = <-s.frames:
			if !ok || f.id != "" {
				return f, ok
			}
		case <-time.After(60 * time.Second):
			t.Fatal("no event came")
		}
	}
}

// nextFrame returns the next frame of any sort. Bounded.
func (s *sseStream) nextFrame(t *testing.T) sseFrame {
	t.Helper()
	select {
	case f, ok := <-s.frames:
		if !ok {
			t.Fatal("the stream ended")
		}
		return f
	case <-time.After(60 * time.Second):
		t.Fatal("no frame came")
	}
	return sseFrame{}
}

func TestEventStream(t *testing.T) {
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	t.Run("sends events as they are recorded", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(start)
		rec := events.New(clk, nil)
		rec.Normal(events.Pipeline, "web-1", "Started", "web at commit abc")
		srv := newEventsServer(t, rec, clk)
		s := openStream(t, t.Context(), srv, "/api/v1/events", nil)
		if ct := s.resp.Header.Get("Content-Type"); s.resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
			t.Fatalf("status %d content type %q", s.resp.StatusCode, ct)
		}
		f, _ := s.next(t)
		if f.id != "1" || f.event != "pipeline" {
			t.Fatalf("first frame %+v", f)
		}
		if e := decode[events.Event](t, f.data); e.Seq != 1 || e.Reason != "Started" || e.Message != "web at commit abc" {
			t.Fatalf("first event %+v", e)
		}
		rec.Warning(events.Rollout, "production/web", "Aborted", "error rate\nover 5%")
		rec.Record(events.Normal, "", "x", "Odd", "")
		f, _ = s.next(t)
		if e := decode[events.Event](t, f.data); f.id != "2" || f.event != "rollout" || e.Message != "error rate\nover 5%" {
			t.Fatalf("second frame %+v", f)
		}
		if f, _ = s.next(t); f.id != "3" || f.event != "event" {
			t.Fatalf("an event without kind: %+v", f)
		}
	})
	t.Run("resumes after Last-Event-ID, which beats since", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(start)
		rec := events.New(clk, nil)
		for _, r := range []string{"A", "B", "C"} {
			rec.Normal(events.Pipeline, "web-1", r, "")
		}
		srv := newEventsServer(t, rec, clk)
		s := openStream(t, t.Context(), srv, "/api/v1/events?since=0", map[string]string{"Last-Event-ID": "2"})
		if f, _ := s.next(t); f.id != "3" {
			t.Fatalf("first frame after Last-Event-ID 2: %+v", f)
		}
		s = openStream(t, t.Context(), srv, "/api/v1/events?stream=1&since=1", map[string]string{"Accept": "*/*"})
		if f, _ := s.next(t); f.id != "2" {
			t.Fatalf("first frame of ?stream=1&since=1: %+v", f)
		}
	})
	t.Run("a Last-Event-ID from before a restart gets what is kept", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(start)
		rec := events.New(clk, nil)
		rec.Normal(events.Pipeline, "web-1", "Started", "")
		srv := newEventsServer(t, rec, clk)
		s := openStream(t, t.Context(), srv, "/api/v1/events", map[string]string{"Last-Event-ID": "1234"})
		if f, _ := s.next(t); f.id != "1" {
			t.Fatalf("first frame %+v, want event 1", f)
		}
	})
	t.Run("filters by kind and name", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(start)
		rec := events.New(clk, nil)
		rec.Normal(events.Pipeline, "web-1", "Started", "")
		rec.Normal(events.Rollout, "production/web", "Progressing", "")
		rec.Normal(events.Pipeline, "web-2", "Started", "")
		rec.Normal(events.Pipeline, "web-1", "Succeeded", "")
		srv := newEventsServer(t, rec, clk)
		s := openStream(t, t.Context(), srv, "/api/v1/events?kind=pipeline&name=web-1", nil)
		var ids []string
		for range 2 {
			f, _ := s.next(t)
			ids = append(ids, f.id)
		}
		if strings.Join(ids, ",") != "1,4" {
			t.Fatalf("ids %v, want 1,4", ids)
		}
	})
	t.Run("ends when the event log is closed", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(start)
		rec := events.New(clk, nil)
		rec.Normal(events.Pipeline, "web-1", "Started", "")
		srv := newEventsServer(t, rec, clk)
		s := openStream(t, t.Context(), srv, "/api/v1/events", nil)
		if f, _ := s.next(t); f.id != "1" {
			t.Fatalf("first frame %+v", f)
		}
		rec.Close()
		if f, ok := s.next(t); ok {
			t.Fatalf("after Close the stream goes on: %+v", f)
		}
	})
	t.Run("ends when the client goes", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(start)
		rec := events.New(clk, nil)
		ended := make(chan struct{})
		f := defaultFakes()
		h := New(f.pipelines, f.envs, f.rollouts, f.runs, rec, nil)
		h.clock = clk
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer close(ended)
			h.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		ctx, cancel := context.WithCancel(t.Context())
		s := openStream(t, ctx, srv, "/api/v1/events", nil)
		s.nextFrame(t) // retry: the stream is open
		cancel()
		select {
		case <-ended:
		case <-time.After(60 * time.Second):
			t.Fatal("the handler kept streaming after its client went")
		}
		if n := h.streams.Load(); n != 0 {
			t.Fatalf("%d streams counted after the last ended", n)
		}
	})
	t.Run("sends a keepalive while quiet", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(start)
		srv := newEventsServer(t, events.New(clk, nil), clk)
		s := openStream(t, t.Context(), srv, "/api/v1/events", nil)
		if f := s.nextFrame(t); f.retry != "2000" {
			t.Fatalf("first frame %+v, want the retry announcement", f)
		}
		for deadline := time.Now().Add(60 * time.Second); !clk.HasWaiters(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the stream never waited")
			}
		}
		clk.Step(EventKeepalive)
		if f := s.nextFrame(t); f.comment != "keepalive" {
			t.Fatalf("frame %+v, want a keepalive comment", f)
		}
	})
	t.Run("refuses a stream over the limit", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(start)
		f := defaultFakes()
		h := New(f.pipelines, f.envs, f.rollouts, f.runs, events.New(clk, nil), nil)
		h.clock = clk
		h.streams.Store(MaxEventStreams)
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		r := do(t, srv, "GET", "/api/v1/events?stream=1")
		if r.status != http.StatusServiceUnavailable || !strings.Contains(errorBody(t, r.body), "at most 64 event streams") {
			t.Fatalf("status %d body %s", r.status, r.body)
		}
		if n := h.streams.Load(); n != MaxEventStreams {
			t.Fatalf("refused stream left the count at %d", n)
		}
	})
	for _, tt := range []struct{ name, path, lastID, want string }{
		{"bad Last-Event-ID", "/api/v1/events?stream=1", "x", "Last-Event-ID must be"},
		{"bad since", "/api/v1/events?stream=1&since=-1", "", "since must be"},
		{"long filter", "/api/v1/events?stream=1&name=" + strings.Repeat("n", 300), "", "at most 256 bytes"},
	} {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(start)
			srv := newEventsServer(t, events.New(clk, nil), clk)
			req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+tt.path, nil)
			if tt.lastID != "" {
				req.Header.Set("Last-Event-ID", tt.lastID)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(errorBody(t, string(b)), tt.want) {
				t.Fatalf("status %d body %s", resp.StatusCode, b)
			}
		})
	}
	t.Run("a nil log answers 204", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(start)
		srv := newEventsServer(t, nil, clk)
		if r := do(t, srv, "GET", "/api/v1/events?stream=1"); r.status != http.StatusNoContent {
			t.Fatalf("status %d", r.status)
		}
	})
}
