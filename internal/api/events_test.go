package api

import (
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
