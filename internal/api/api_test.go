package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/environment"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/rollout"
)

// secret is in internal errors; it must never reach a client.
const secret = "dial tcp 10.0.0.7:5432: password=hunter2"

// fakePipelines holds pipelines by id; listErr, if set, fails List.
type fakePipelines struct {
	byID    map[string]*pipeline.Pipeline
	order   []string
	listErr error
}

func (f *fakePipelines) Get(_ context.Context, id string) (*pipeline.Pipeline, error) {
	if id == "broken" {
		return nil, fmt.Errorf("reading pipeline %s: %s", id, secret)
	}
	p, ok := f.byID[id]
	if !ok {
		return nil, fmt.Errorf("reading pipeline %s: %w", id, pipeline.ErrNotFound)
	}
	return p, nil
}

func (f *fakePipelines) List(_ context.Context, limit int) ([]*pipeline.Pipeline, error) {
	if f.listErr != nil {
		return nil, f.listErr
	}
	var out []*pipeline.Pipeline
	for _, id := range f.order {
		if len(out) == limit {
			break
		}
		out = append(out, f.byID[id])
	}
	return out, nil
}

type fakeEnvironments struct{ envs []environment.EnvStatus }

func (f *fakeEnvironments) Status() []environment.EnvStatus { return f.envs }

// fakeRollouts knows one running rollout, production/web; the app "broken"
// fails with an internal error.
type fakeRollouts struct {
	list []rollout.Status

	mu       sync.Mutex
	paused   bool // Retry needs a paused rollout
	promoted []string
	aborted  []string
	retried  []string
}

func (f *fakeRollouts) List() []rollout.Status { return f.list }

type rolloutCalls struct{ promoted, aborted, retried []string }

func (f *fakeRollouts) calls() rolloutCalls {
	f.mu.Lock()
	defer f.mu.Unlock()
	return rolloutCalls{slices.Clone(f.promoted), slices.Clone(f.aborted), slices.Clone(f.retried)}
}

// fakeRuns holds recorded analysis runs; the run "broken" fails with an
// internal error.
type fakeRuns struct{ runs []analysis.RunRecord }

func (f *fakeRuns) GetAnalysisRun(_ context.Context, name string) (analysis.RunRecord, error) {
	if name == "broken" {
		return analysis.RunRecord{}, errors.New(secret)
	}
	for _, r := range f.runs {
		if r.Name == name {
			return r, nil
		}
	}
	return analysis.RunRecord{}, fmt.Errorf("analysis run %q: %w", name, analysis.ErrRunNotFound)
}

func (f *fakeRuns) ListAnalysisRuns(_ context.Context, limit int) ([]analysis.RunRecord, error) {
	return f.runs[:min(limit, len(f.runs))], nil
}

func (f *fakeRollouts) check(verb, env, app string) error {
	switch {
	case app == "broken":
		return errors.New(secret)
	case env != "production" || app != "web":
		return fmt.Errorf("%s %s in %s: %w", verb, app, env, rollout.ErrNoRollout)
	}
	return nil
}

func (f *fakeRollouts) PromoteFull(env, app string) error {
	if err := f.check("promoting", env, app); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.promoted = append(f.promoted, env+"/"+app+" full")
	return nil
}

func (f *fakeRollouts) Promote(env, app string) error {
	if err := f.check("promoting", env, app); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.promoted = append(f.promoted, env+"/"+app)
	return nil
}

func (f *fakeRollouts) Retry(env, app string) error {
	if err := f.check("retrying", env, app); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.paused {
		return fmt.Errorf("retrying %s in %s: %w", app, env, rollout.ErrNotPaused)
	}
	f.retried = append(f.retried, env+"/"+app)
	return nil
}

func (f *fakeRollouts) Abort(env, app, reason string) error {
	if err := f.check("aborting", env, app); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.aborted = append(f.aborted, env+"/"+app+": "+reason)
	return nil
}

type fakes struct {
	events    Events
	pipelines *fakePipelines
	envs      *fakeEnvironments
	rollouts  *fakeRollouts
	runs      *fakeRuns
}

func newServer(t *testing.T, f fakes) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(New(f.pipelines, f.envs, f.rollouts, f.runs, f.events, slog.New(slog.NewTextHandler(t.Output(), nil))))
	t.Cleanup(srv.Close)
	return srv
}

func defaultFakes() fakes {
	p1 := &pipeline.Pipeline{ID: "web-1", App: "web", Commit: "abc", Phase: pipeline.Succeeded, Version: "v20260101000000",
		Steps: []pipeline.Step{{Name: pipeline.StepVersion, Phase: pipeline.Succeeded}}}
	p2 := &pipeline.Pipeline{ID: "web-2", App: "web", Commit: "def", Phase: pipeline.Failed, Reason: "staging-functional-tests failed"}
	return fakes{
		pipelines: &fakePipelines{byID: map[string]*pipeline.Pipeline{"web-1": p1, "web-2": p2}, order: []string{"web-2", "web-1"}},
		envs: &fakeEnvironments{envs: []environment.EnvStatus{{Name: "production", Apps: []environment.AppStatus{
			{Name: "web", Version: "v20260101000000", URL: "http://web.localhost", Replicas: []string{"127.0.0.1:4000"}}}}}},
		rollouts: &fakeRollouts{list: []rollout.Status{{Env: "production", App: "web", CanaryVersion: "v2", Phase: rollout.Paused, Weight: 20}}, paused: true},
		runs: &fakeRuns{runs: []analysis.RunRecord{
			{Name: "web-v2-step3-1", Env: "production", App: "web", Version: "v2", Phase: analysis.PhaseInconclusive, Reason: "no traffic"},
			{Name: "web-v2-step3-2", Env: "production", App: "web", Version: "v2", Phase: analysis.PhaseRunning},
		}},
	}
}

type response struct {
	status int
	ctype  string
	body   string
}

func do(t *testing.T, srv *httptest.Server, method, path string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header.Get("Content-Type"), string(b)}
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	return v
}

// errorBody asserts body is {"error": ...} and returns the message.
func errorBody(t *testing.T, body string) string {
	t.Helper()
	m := decode[map[string]string](t, body)
	msg, ok := m["error"]
	if !ok || len(m) != 1 {
		t.Fatalf("error body = %q, want {\"error\": ...}", body)
	}
	return msg
}

func TestAPI(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		path       string
		fakes      func(*fakes)
		wantStatus int
		// fromMux marks answers of the router itself, which are not JSON.
		fromMux bool
		assert  func(t *testing.T, f fakes, body string)
	}{
		{
			name: "list pipelines", method: "GET", path: "/api/v1/pipelines", wantStatus: http.StatusOK,
			assert: func(t *testing.T, _ fakes, body string) {
				ps := decode[[]pipeline.Pipeline](t, body)
				if len(ps) != 2 || ps[0].ID != "web-2" || ps[1].ID != "web-1" || ps[0].Reason != "staging-functional-tests failed" {
					t.Errorf("pipelines = %+v", ps)
				}
			},
		},
		{
			name: "empty pipeline list is an empty array", method: "GET", path: "/api/v1/pipelines", wantStatus: http.StatusOK,
			fakes: func(f *fakes) { f.pipelines.order = nil },
			assert: func(t *testing.T, _ fakes, body string) {
				if strings.TrimSpace(body) != "[]" {
					t.Errorf("body = %q, want []", body)
				}
			},
		},
		{
			name: "get pipeline", method: "GET", path: "/api/v1/pipelines/web-1", wantStatus: http.StatusOK,
			assert: func(t *testing.T, _ fakes, body string) {
				p := decode[pipeline.Pipeline](t, body)
				if p.ID != "web-1" || p.Phase != pipeline.Succeeded || p.Version != "v20260101000000" || len(p.Steps) != 1 {
					t.Errorf("pipeline = %+v", p)
				}
			},
		},
		{
			name: "unknown pipeline is 404", method: "GET", path: "/api/v1/pipelines/nope", wantStatus: http.StatusNotFound,
			assert: func(t *testing.T, _ fakes, body string) {
				if msg := errorBody(t, body); !strings.Contains(msg, "pipeline not found") || !strings.Contains(msg, "nope") {
					t.Errorf("error = %q, want it to say pipeline nope was not found", msg)
				}
			},
		},
		{
			name: "internal error on get does not leak", method: "GET", path: "/api/v1/pipelines/broken", wantStatus: http.StatusInternalServerError,
			assert: func(t *testing.T, _ fakes, body string) {
				if msg := errorBody(t, body); msg != "internal error" {
					t.Errorf("error = %q, want \"internal error\"", msg)
				}
			},
		},
		{
			name: "internal error on list does not leak", method: "GET", path: "/api/v1/pipelines", wantStatus: http.StatusInternalServerError,
			fakes: func(f *fakes) { f.pipelines.listErr = errors.New(secret) },
			assert: func(t *testing.T, _ fakes, body string) {
				if msg := errorBody(t, body); msg != "internal error" {
					t.Errorf("error = %q, want \"internal error\"", msg)
				}
			},
		},
		{
			name: "list environments", method: "GET", path: "/api/v1/environments", wantStatus: http.StatusOK,
			assert: func(t *testing.T, _ fakes, body string) {
				envs := decode[[]environment.EnvStatus](t, body)
				if len(envs) != 1 || envs[0].Name != "production" || envs[0].Apps[0].URL != "http://web.localhost" {
					t.Errorf("environments = %+v", envs)
				}
			},
		},
		{
			name: "list rollouts", method: "GET", path: "/api/v1/rollouts", wantStatus: http.StatusOK,
			assert: func(t *testing.T, _ fakes, body string) {
				rs := decode[[]rollout.Status](t, body)
				if len(rs) != 1 || rs[0].Phase != rollout.Paused || rs[0].Weight != 20 {
					t.Errorf("rollouts = %+v", rs)
				}
			},
		},
		{
			name: "no rollouts is an empty array", method: "GET", path: "/api/v1/rollouts", wantStatus: http.StatusOK,
			fakes: func(f *fakes) { f.rollouts.list = nil },
			assert: func(t *testing.T, _ fakes, body string) {
				if strings.TrimSpace(body) != "[]" {
					t.Errorf("body = %q, want []", body)
				}
			},
		},
		{
			name: "promote", method: "POST", path: "/api/v1/rollouts/production/web/promote", wantStatus: http.StatusAccepted,
			assert: func(t *testing.T, f fakes, body string) {
				if got := decode[map[string]string](t, body)["status"]; got != "promoting" {
					t.Errorf("status = %q", got)
				}
				if len(f.rollouts.calls().promoted) != 1 || f.rollouts.calls().promoted[0] != "production/web" {
					t.Errorf("promoted = %v", f.rollouts.calls().promoted)
				}
			},
		},
		{
			name: "full promote", method: "POST", path: "/api/v1/rollouts/production/web/promote?full=true", wantStatus: http.StatusAccepted,
			assert: func(t *testing.T, f fakes, body string) {
				if got := f.rollouts.calls().promoted; len(got) != 1 || got[0] != "production/web full" {
					t.Errorf("promoted = %v", got)
				}
			},
		},
		{
			name: "abort with a reason", method: "POST", path: "/api/v1/rollouts/production/web/abort?reason=too+many+errors", wantStatus: http.StatusAccepted,
			assert: func(t *testing.T, f fakes, body string) {
				if got := decode[map[string]string](t, body)["status"]; got != "aborting" {
					t.Errorf("status = %q", got)
				}
				if len(f.rollouts.calls().aborted) != 1 || f.rollouts.calls().aborted[0] != "production/web: too many errors" {
					t.Errorf("aborted = %v", f.rollouts.calls().aborted)
				}
			},
		},
		{
			name: "abort without a reason gets one", method: "POST", path: "/api/v1/rollouts/production/web/abort", wantStatus: http.StatusAccepted,
			assert: func(t *testing.T, f fakes, _ string) {
				if len(f.rollouts.calls().aborted) != 1 || f.rollouts.calls().aborted[0] != "production/web: aborted through the API" {
					t.Errorf("aborted = %v", f.rollouts.calls().aborted)
				}
			},
		},
		{
			name: "promote without a rollout is 404", method: "POST", path: "/api/v1/rollouts/production/other/promote", wantStatus: http.StatusNotFound,
			assert: func(t *testing.T, f fakes, body string) {
				if msg := errorBody(t, body); !strings.Contains(msg, "no rollout in progress") {
					t.Errorf("error = %q", msg)
				}
				if len(f.rollouts.calls().promoted) != 0 {
					t.Errorf("promoted = %v", f.rollouts.calls().promoted)
				}
			},
		},
		{
			name: "abort without a rollout is 404", method: "POST", path: "/api/v1/rollouts/staging/web/abort", wantStatus: http.StatusNotFound,
			assert: func(t *testing.T, _ fakes, body string) {
				if msg := errorBody(t, body); !strings.Contains(msg, "no rollout in progress") {
					t.Errorf("error = %q", msg)
				}
			},
		},
		{
			name: "internal error on promote does not leak", method: "POST", path: "/api/v1/rollouts/production/broken/promote", wantStatus: http.StatusInternalServerError,
			assert: func(t *testing.T, _ fakes, body string) {
				if msg := errorBody(t, body); msg != "internal error" {
					t.Errorf("error = %q, want \"internal error\"", msg)
				}
			},
		},
		{
			name: "retry a paused rollout", method: "POST", path: "/api/v1/rollouts/production/web/retry", wantStatus: http.StatusAccepted,
			assert: func(t *testing.T, f fakes, body string) {
				if got := decode[map[string]string](t, body)["status"]; got != "retrying" {
					t.Errorf("status = %q", got)
				}
				if got := f.rollouts.calls().retried; len(got) != 1 || got[0] != "production/web" {
					t.Errorf("retried = %v", got)
				}
			},
		},
		{
			name: "retry of a rollout that is not paused is 409", method: "POST", path: "/api/v1/rollouts/production/web/retry", wantStatus: http.StatusConflict,
			fakes: func(f *fakes) { f.rollouts.paused = false },
			assert: func(t *testing.T, _ fakes, body string) {
				if msg := errorBody(t, body); !strings.Contains(msg, "rollout not paused") {
					t.Errorf("error = %q", msg)
				}
			},
		},
		{
			name: "retry without a rollout is 404", method: "POST", path: "/api/v1/rollouts/production/other/retry", wantStatus: http.StatusNotFound,
			assert: func(t *testing.T, _ fakes, body string) {
				if msg := errorBody(t, body); !strings.Contains(msg, "no rollout in progress") {
					t.Errorf("error = %q", msg)
				}
			},
		},
		{
			name: "list analysis runs", method: "GET", path: "/api/v1/analysisruns", wantStatus: http.StatusOK,
			assert: func(t *testing.T, _ fakes, body string) {
				runs := decode[[]analysis.RunRecord](t, body)
				if len(runs) != 2 || runs[0].Phase != analysis.PhaseInconclusive || runs[0].Reason != "no traffic" {
					t.Errorf("runs = %+v", runs)
				}
			},
		},
		{
			name: "get analysis run", method: "GET", path: "/api/v1/analysisruns/web-v2-step3-2", wantStatus: http.StatusOK,
			assert: func(t *testing.T, _ fakes, body string) {
				if r := decode[analysis.RunRecord](t, body); r.Name != "web-v2-step3-2" || r.Phase != analysis.PhaseRunning {
					t.Errorf("run = %+v", r)
				}
			},
		},
		{
			name: "unknown analysis run is 404", method: "GET", path: "/api/v1/analysisruns/nope", wantStatus: http.StatusNotFound,
			assert: func(t *testing.T, _ fakes, body string) {
				if msg := errorBody(t, body); !strings.Contains(msg, "nope") || !strings.Contains(msg, "not found") {
					t.Errorf("error = %q", msg)
				}
			},
		},
		{
			name: "internal error on an analysis run does not leak", method: "GET", path: "/api/v1/analysisruns/broken", wantStatus: http.StatusInternalServerError,
			assert: func(t *testing.T, _ fakes, body string) {
				if msg := errorBody(t, body); msg != "internal error" {
					t.Errorf("error = %q, want \"internal error\"", msg)
				}
			},
		},
		{
			name: "promote needs POST", method: "GET", path: "/api/v1/rollouts/production/web/promote", wantStatus: http.StatusMethodNotAllowed, fromMux: true,
			assert: func(t *testing.T, f fakes, _ string) {
				if len(f.rollouts.calls().promoted) != 0 {
					t.Errorf("a GET promoted: %v", f.rollouts.calls().promoted)
				}
			},
		},
		{
			name: "unknown path is 404", method: "GET", path: "/api/v1/nothing", wantStatus: http.StatusNotFound, fromMux: true,
			assert: func(*testing.T, fakes, string) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := defaultFakes()
			if tt.fakes != nil {
				tt.fakes(&f)
			}
			resp := do(t, newServer(t, f), tt.method, tt.path)
			if resp.status != tt.wantStatus {
				t.Fatalf("%s %s = %d %q, want %d", tt.method, tt.path, resp.status, resp.body, tt.wantStatus)
			}
			if strings.Contains(resp.body, "hunter2") || strings.Contains(resp.body, "10.0.0.7") {
				t.Errorf("body leaks an internal error: %q", resp.body)
			}
			if !tt.fromMux && resp.ctype != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", resp.ctype)
			}
			tt.assert(t, f, resp.body)
		})
	}
}
