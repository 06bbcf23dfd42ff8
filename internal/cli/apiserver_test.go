package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/api"
	"github.com/runway-cd/runway/internal/auth"
	"github.com/runway-cd/runway/internal/environment"
	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/runtime"
)

// testToken is the admin token of the test API.
const testToken = "test-admin-token-0123456789abcdef"

// now is the test's clock: ages and durations are counted from it.
var testNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// memPipelines keeps pipelines in memory, newest first, for api.Pipelines.
type memPipelines struct {
	mu    sync.Mutex
	byID  map[string]*pipeline.Pipeline
	order []string
}

func newMemPipelines(ps ...*pipeline.Pipeline) *memPipelines {
	m := &memPipelines{byID: map[string]*pipeline.Pipeline{}}
	for _, p := range ps {
		m.byID[p.ID] = p
		m.order = append(m.order, p.ID)
	}
	return m
}

func (m *memPipelines) Get(_ context.Context, id string) (*pipeline.Pipeline, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.byID[id]
	if !ok {
		return nil, fmt.Errorf("reading pipeline %s: %w", id, pipeline.ErrNotFound)
	}
	return p.Clone(), nil
}

func (m *memPipelines) List(_ context.Context, limit int) ([]*pipeline.Pipeline, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*pipeline.Pipeline
	for _, id := range m.order {
		if len(out) == limit {
			break
		}
		out = append(out, m.byID[id].Clone())
	}
	return out, nil
}

func (m *memPipelines) Cancel(_ context.Context, id, reason string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.byID[id]
	switch {
	case !ok:
		return fmt.Errorf("cancelling pipeline %s: %w", id, pipeline.ErrNotFound)
	case p.Phase.Done():
		return fmt.Errorf("cancelling pipeline %s: %w", id, pipeline.ErrDone)
	}
	p.CancelRequested = reason
	return nil
}

// update changes pipeline id under the lock.
func (m *memPipelines) update(id string, f func(p *pipeline.Pipeline)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(m.byID[id])
}

type memEnvs []environment.EnvStatus

func (m memEnvs) Status() []environment.EnvStatus { return m }

// memRollouts lists rollouts; only a Paused one is promoted.
type memRollouts struct {
	mu   sync.Mutex
	list []rollout.Status
}

func (m *memRollouts) List() []rollout.Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]rollout.Status(nil), m.list...)
}

func (m *memRollouts) find(env, app string) (*rollout.Status, error) {
	for i := range m.list {
		if m.list[i].Env == env && m.list[i].App == app {
			return &m.list[i], nil
		}
	}
	return nil, fmt.Errorf("rollout %s/%s: %w", env, app, rollout.ErrNoRollout)
}

func (m *memRollouts) Promote(env, app string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.find(env, app)
	if err != nil {
		return err
	}
	if r.Phase != rollout.Paused {
		return fmt.Errorf("promoting %s/%s: %w", env, app, rollout.ErrNotPaused)
	}
	r.Phase = rollout.Progressing
	return nil
}

func (m *memRollouts) PromoteFull(env, app string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err := m.find(env, app)
	return err
}

func (m *memRollouts) Abort(env, app, _ string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err := m.find(env, app)
	return err
}

func (m *memRollouts) Retry(env, app string) error { return m.Promote(env, app) }

func (m *memRollouts) update(f func(rs []rollout.Status)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(m.list)
}

type memRuns []analysis.RunRecord

func (m memRuns) GetAnalysisRun(_ context.Context, name string) (analysis.RunRecord, error) {
	for _, r := range m {
		if r.Name == name {
			return r, nil
		}
	}
	return analysis.RunRecord{}, fmt.Errorf("reading analysis run %s: %w", name, analysis.ErrRunNotFound)
}

func (m memRuns) ListAnalysisRuns(_ context.Context, limit int) ([]analysis.RunRecord, error) {
	return m[:min(limit, len(m))], nil
}

// testAPI is the real API handler, behind the real authentication, over
// in-memory pipelines, environments, rollouts and analysis runs and a real
// event log.
type testAPI struct {
	*httptest.Server
	pipelines *memPipelines
	rollouts  *memRollouts
	events    *events.Recorder
	// streams counts requests for the event stream.
	streams atomic.Int64
}

// fixture is the data of the golden tests.
func fixture() (*memPipelines, memEnvs, *memRollouts, memRuns) {
	at := func(d time.Duration) time.Time { return testNow.Add(-d) }
	steps := func(upTo int, last pipeline.Phase, errMsg string) []pipeline.Step {
		var out []pipeline.Step
		for i, name := range pipeline.StepNames {
			s := pipeline.Step{Name: name, Phase: pipeline.Pending}
			switch {
			case i < upTo:
				s.Phase, s.Started, s.Finished = pipeline.Succeeded, at(time.Duration(30-i)*time.Minute), at(time.Duration(30-i)*time.Minute-42*time.Second)
			case i == upTo:
				s.Phase, s.Started, s.Error = last, at(time.Duration(30-i)*time.Minute), errMsg
				if last.Done() {
					s.Finished = at(time.Duration(30-i)*time.Minute - 75*time.Second)
				}
			}
			out = append(out, s)
		}
		return out
	}
	running := &pipeline.Pipeline{ID: "web-3", App: "web", Repo: "acme/web", Branch: "main", Commit: "3f2a9c1d7e5b4a6c8d0e2f4a6b8c0d2e4f6a8b0c",
		Message: "checkout: retry the payment call once\n\nThe provider drops one in a thousand.", Author: "Ada Lovelace <ada@example.com>",
		Version: "v20261201114500", StagingEnv: "web-v20261201114500", StagingURL: "http://web.web-v20261201114500.localhost:8080",
		Phase: pipeline.Running, Created: at(31 * time.Minute), Started: at(30 * time.Minute), Steps: steps(7, pipeline.Running, "")}
	running.Steps[7].Log = "running 12 tests\nok   checkout\n"
	failed := &pipeline.Pipeline{ID: "api-7", App: "api", Repo: "acme/api", Branch: "main", Commit: "9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c",
		Message: "orders: a column for the coupon, and a much longer subject line than anyone should write", Author: "Grace Hopper <grace@example.com>",
		Version: "v20261201110000", Phase: pipeline.Failed, FailedStep: pipeline.StepStagingTests,
		Reason: "staging-functional-tests: 1 of 12 tests failed: TestCoupon", Created: at(3 * time.Hour), Started: at(31 * time.Minute), Finished: at(20 * time.Minute),
		Steps: steps(7, pipeline.Failed, "1 of 12 tests failed: TestCoupon")}
	failed.Steps[7].Log = "running 12 tests\n--- FAIL: TestCoupon (0.02s)\n    coupon_test.go:14: got 0, want 10\nFAIL\n"
	done := &pipeline.Pipeline{ID: "web-2", App: "web", Repo: "acme/web", Branch: "main", Commit: "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b",
		Message: "ping answers JSON", Author: "Ada Lovelace <ada@example.com>", Version: "v20261130090000", Phase: pipeline.Succeeded,
		Created: at(27 * time.Hour), Started: at(27 * time.Hour), Finished: at(26*time.Hour + 48*time.Minute), Steps: steps(len(pipeline.StepNames), pipeline.Succeeded, "")}
	queued := &pipeline.Pipeline{ID: "web-4", App: "web", Repo: "acme/web", Branch: "main", Commit: "c0ffee0000000000000000000000000000000000",
		Message: "docs: typo", Phase: pipeline.Queued, Reason: "queued: 2 pipelines run (at most 2); 1st in line", Created: at(5 * time.Second),
		Steps: steps(-1, pipeline.Pending, "")}
	envs := memEnvs{
		{Name: "production", Workflow: "production", Apps: []environment.AppStatus{
			{Name: "api", Version: "v20261130080000", URL: "http://127.0.0.1:8081", HostURL: "http://api.localhost:8080", Replicas: []string{"127.0.0.1:40001", "127.0.0.1:40002"},
				Health: []runtime.ReplicaStatus{
					{Index: 0, Addr: "127.0.0.1:40001", PID: 4242, State: "Running", Ready: true, Since: at(26 * time.Hour)},
					{Index: 1, Addr: "127.0.0.1:40002", PID: 4243, State: "Running", Ready: true, Restarts: 2, LastExit: "exit status 1", LastExitAt: at(2 * time.Hour), Since: at(2 * time.Hour)},
				}},
			{Name: "web", Version: "v20261130090000", URL: "http://127.0.0.1:8082", HostURL: "http://web.localhost:8080", Replicas: []string{"127.0.0.1:40003"},
				Health: []runtime.ReplicaStatus{{Index: 0, Addr: "127.0.0.1:40003", PID: 4244, State: "Running", Ready: true, Since: at(26 * time.Hour)}}},
		}},
		{Name: "web-v20261201114500", Workflow: "web-3", Apps: []environment.AppStatus{
			{Name: "web", Starting: "v20261201114500", Health: []runtime.ReplicaStatus{{Index: 0, Addr: "127.0.0.1:40010", State: "Starting", Since: at(20 * time.Second)}}},
		}},
	}
	rollouts := &memRollouts{list: []rollout.Status{
		{Env: "production", App: "web", StableVersion: "v20261130090000", CanaryVersion: "v20261201114500", Phase: rollout.Paused, Step: 3, Steps: 7, Weight: 20,
			Message: "paused: analysis web-v20261201114500-step3-1 was inconclusive: no traffic", Started: at(4 * time.Minute),
			Analyses: []rollout.Run{{Name: "web-v20261201114500-step3-1", Phase: rollout.Inconclusive, Reason: "error-rate: no traffic"}}},
		{Env: "production", App: "api", StableVersion: "v20261130080000", CanaryVersion: "v20261130070000", Phase: rollout.Degraded, Step: 2, Steps: 7, Weight: 0,
			Message: "aborted: analysis failed: error-rate 0.12 > 0.05", Started: at(28 * time.Hour), Finished: at(27*time.Hour + 50*time.Minute)},
	}}
	runs := memRuns{
		{Name: "web-v20261201114500-step3-1", Env: "production", App: "web", Version: "v20261201114500", Templates: []string{"error-rate", "latency"},
			Phase: analysis.PhaseInconclusive, Reason: "error-rate: no traffic", StartedAt: at(3 * time.Minute), FinishedAt: at(2 * time.Minute),
			Metrics: []analysis.MetricResult{
				{Name: "error-rate", Phase: analysis.PhaseInconclusive, Reason: "no traffic", Measurements: []analysis.Measurement{
					{Phase: analysis.PhaseInconclusive, Value: "[]", Reason: "not counted: 3 of 20 samples", NotCounted: true, StartedAt: at(3 * time.Minute), FinishedAt: at(3 * time.Minute)},
					{Phase: analysis.PhaseInconclusive, Value: "[]", Reason: "no traffic", StartedAt: at(2 * time.Minute), FinishedAt: at(2 * time.Minute)},
				}},
				{Name: "latency", Phase: analysis.PhaseSuccessful, Measurements: []analysis.Measurement{
					{Phase: analysis.PhaseSuccessful, Value: "[0.031]", StartedAt: at(2 * time.Minute), FinishedAt: at(2 * time.Minute)},
				}},
			}},
		{Name: "api-v20261130070000-step2-1", Env: "production", App: "api", Version: "v20261130070000", Templates: []string{"error-rate"},
			Phase: analysis.PhaseFailed, Reason: "error-rate: 0.12 > 0.05", StartedAt: at(28 * time.Hour), FinishedAt: at(27*time.Hour + 55*time.Minute)},
	}
	return newMemPipelines(queued, running, failed, done), envs, rollouts, runs
}

// newTestAPI serves the fixture, events in rec (nil: the real API's
// empty log).
func newTestAPI(t *testing.T, rec *events.Recorder) *testAPI {
	t.Helper()
	ps, envs, rs, runs := fixture()
	tokens, err := auth.Load(t.TempDir(), testToken, "")
	if err != nil {
		t.Fatal(err)
	}
	a := &testAPI{pipelines: ps, rollouts: rs, events: rec}
	var ev api.Events
	if rec != nil {
		ev = rec
	}
	h := api.New(ps, envs, rs, runs, ev, nil)
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/events" && strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
			a.streams.Add(1)
		}
		h.ServeHTTP(w, r)
	})
	a.Server = httptest.NewServer(auth.Protect(counted, auth.Options{Tokens: tokens}))
	t.Cleanup(func() {
		if rec != nil {
			rec.Close() // ends the streams, as the server's shutdown does
		}
		a.Close()
	})
	return a
}

// result is what a run of the command line did.
type result struct {
	code           int
	stdout, stderr string
}

// syncBuffer is a buffer written by the command and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// cliEnv is the environment a test runs the command line in.
type cliEnv struct {
	env      map[string]string
	terminal bool
	stdout   *syncBuffer
}

// run runs the command line with args against the API srv (with its
// token), in env.
func (e cliEnv) run(ctx context.Context, srv *testAPI, args ...string) result {
	stdout, stderr := e.stdout, &syncBuffer{}
	if stdout == nil {
		stdout = &syncBuffer{}
	}
	if srv != nil {
		args = append(args, "--api", srv.URL, "--token", testToken)
	}
	a := &app{
		stdout: stdout, stderr: stderr,
		lookupEnv: func(k string) (string, bool) { v, ok := e.env[k]; return v, ok },
		now:       func() time.Time { return testNow },
		terminal:  func(io.Writer) bool { return e.terminal },
	}
	code := a.run(ctx, args)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}
