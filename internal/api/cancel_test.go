package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/runway-cd/runway/internal/auth"
	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/pipeline"
)

// cancelMu guards the fake pipelines Cancel changes.
var cancelMu sync.Mutex

// Cancel refuses the done web-1 and the promoted web-3, and records the
// reason on the others.
func (f *fakePipelines) Cancel(_ context.Context, id, reason string) error {
	cancelMu.Lock()
	defer cancelMu.Unlock()
	p, ok := f.byID[id]
	switch {
	case !ok:
		return fmt.Errorf("cancelling pipeline %s: %w", id, pipeline.ErrNotFound)
	case p.Phase.Done():
		return fmt.Errorf("cancelling pipeline %s: %w", id, pipeline.ErrDone)
	case p.Promoting:
		return fmt.Errorf("cancelling pipeline %s: %w", id, pipeline.ErrPromoted)
	}
	p.CancelRequested = reason
	return nil
}

// tokens is a Verifier with one admin and one read token.
type tokens struct{}

func (tokens) Role(tok string) auth.Role {
	switch tok {
	case "admin-tok":
		return auth.Admin
	case "read-tok":
		return auth.Read
	}
	return auth.None
}

func TestCancelAndEventsRoutes(t *testing.T) {
	rec := events.New(clocktesting.NewFakePassiveClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)), nil)
	rec.Normal(events.Pipeline, "web-2", "Queued", "queued: position 1 of 1; 1 running (limits.pipelines)")
	rec.Normal(events.Pipeline, "web-2", "Started", "")
	rec.Normal(events.Pipeline, "web-2", "Cancelled", "cancelled: x")
	tests := []struct {
		name, method, path, token, body string
		wantStatus                      int
		assert                          func(t *testing.T, f fakes, body string)
	}{
		{name: "cancel needs a token", method: "POST", path: "/api/v1/pipelines/web-2/cancel", wantStatus: http.StatusUnauthorized},
		{name: "cancel needs the admin token", method: "POST", path: "/api/v1/pipelines/web-2/cancel", token: "read-tok", wantStatus: http.StatusForbidden},
		{name: "cancel unknown", method: "POST", path: "/api/v1/pipelines/nope/cancel", token: "admin-tok", wantStatus: http.StatusNotFound},
		{
			name: "cancel done is a conflict", method: "POST", path: "/api/v1/pipelines/web-1/cancel", token: "admin-tok", wantStatus: http.StatusConflict,
			assert: func(t *testing.T, _ fakes, body string) {
				if msg := errorBody(t, body); !strings.Contains(msg, "already ended") {
					t.Errorf("error = %q", msg)
				}
			},
		},
		{
			name: "cancel promoted is a conflict", method: "POST", path: "/api/v1/pipelines/web-3/cancel", token: "admin-tok", wantStatus: http.StatusConflict,
			assert: func(t *testing.T, _ fakes, body string) {
				if msg := errorBody(t, body); !strings.Contains(msg, "abort its rollout instead") {
					t.Errorf("error = %q", msg)
				}
			},
		},
		{
			name: "cancel with a reason made one line", method: "POST", path: "/api/v1/pipelines/web-2/cancel", token: "admin-tok",
			body: `{"reason": "wrong\nbranch` + strings.Repeat("x", 300) + `"}`, wantStatus: http.StatusAccepted,
			assert: func(t *testing.T, _ fakes, body string) {
				p := decode[pipeline.Pipeline](t, body)
				if p.ID != "web-2" || !strings.HasPrefix(p.CancelRequested, "wrong branchxxx") || len(p.CancelRequested) > MaxReason {
					t.Errorf("pipeline = %+v", p)
				}
			},
		},
		{
			name: "cancel without a body gets a reason", method: "POST", path: "/api/v1/pipelines/web-2/cancel", token: "admin-tok", wantStatus: http.StatusAccepted,
			assert: func(t *testing.T, _ fakes, body string) {
				if p := decode[pipeline.Pipeline](t, body); p.CancelRequested != "cancelled through the API" {
					t.Errorf("reason = %q", p.CancelRequested)
				}
			},
		},
		{name: "cancel with a bad body", method: "POST", path: "/api/v1/pipelines/web-2/cancel", token: "admin-tok", body: `{"why": 1}`, wantStatus: http.StatusBadRequest},
		{name: "events need a token", method: "GET", path: "/api/v1/events", wantStatus: http.StatusUnauthorized},
		{
			name: "events with the read token", method: "GET", path: "/api/v1/events", token: "read-tok", wantStatus: http.StatusOK,
			assert: func(t *testing.T, _ fakes, body string) {
				evs := decode[[]events.Event](t, body)
				if len(evs) != 3 || evs[0].Reason != "Queued" || evs[2].Seq != 3 {
					t.Errorf("events = %+v", evs)
				}
			},
		},
		{
			name: "events since and limit", method: "GET", path: "/api/v1/events?since=1&limit=1", token: "read-tok", wantStatus: http.StatusOK,
			assert: func(t *testing.T, _ fakes, body string) {
				if evs := decode[[]events.Event](t, body); len(evs) != 1 || evs[0].Seq != 2 || evs[0].Reason != "Started" {
					t.Errorf("events = %+v", evs)
				}
			},
		},
		{
			name: "events past the end is an empty array", method: "GET", path: "/api/v1/events?since=3", token: "read-tok", wantStatus: http.StatusOK,
			assert: func(t *testing.T, _ fakes, body string) {
				if strings.TrimSpace(body) != "[]" {
					t.Errorf("body = %q", body)
				}
			},
		},
		{name: "events bad since", method: "GET", path: "/api/v1/events?since=-1", token: "read-tok", wantStatus: http.StatusBadRequest},
		{name: "events bad limit", method: "GET", path: "/api/v1/events?limit=abc", token: "read-tok", wantStatus: http.StatusBadRequest},
		{name: "events limit over the max", method: "GET", path: "/api/v1/events?limit=2001", token: "read-tok", wantStatus: http.StatusBadRequest},
		{name: "events limit zero", method: "GET", path: "/api/v1/events?limit=0", token: "read-tok", wantStatus: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := defaultFakes()
			f.pipelines.byID["web-2"].Phase = pipeline.Running
			f.pipelines.byID["web-3"] = &pipeline.Pipeline{ID: "web-3", App: "web", Phase: pipeline.Running, Promoting: true}
			f.events = rec
			h := New(f.pipelines, f.envs, f.rollouts, f.runs, f.events, slog.New(slog.NewTextHandler(t.Output(), nil)))
			srv := httptest.NewServer(auth.Protect(h, auth.Options{Tokens: tokens{}}))
			t.Cleanup(srv.Close)
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req, err := http.NewRequestWithContext(t.Context(), tt.method, srv.URL+tt.path, body)
			if err != nil {
				t.Fatal(err)
			}
			if tt.method == "POST" {
				req.Header.Set("Content-Type", "application/json")
			}
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.wantStatus, b)
			}
			if tt.assert != nil {
				tt.assert(t, f, string(b))
			}
		})
	}
}
