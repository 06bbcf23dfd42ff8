package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/go-git/go-git/v5"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/runtime"
)

// testCanaryCheck is how often the tests' rollouts look at the canary.
const testCanaryCheck = 5 * time.Millisecond

const (
	env           = manifest.ProductionEnv
	app           = "web"
	stableVersion = "v20260101000000"
	canaryVersion = "v20260102000000"
	workflow      = "web-123-production"
)

// productionJSON is the production manifest as the pipeline leaves it when
// it starts a rollout: the app already at the canary version.
func productionJSON(version, revision string) string {
	return fmt.Sprintf(`{"envname":"production","change_description":"deploy %[1]s","apps":{
  "postgres":{"images":{"code":{"image":"postgres","image_tag":"15"}}},
  "web":{"images":{"code":{"image":"web","image_tag":"%[1]s","label":"web"},"pipeline":{"image":"web-pipeline","image_tag":"%[1]s"}},
         "deploy":{"revision":"%[2]s"},"last_change_description":"change %[1]s","kept":"unknown field"}}}`, version, revision)
}

// recordingRouter is the real gateway, with the weights a rollout sets
// written down on the way.
type recordingRouter struct {
	*gateway.Gateway
	mu      sync.Mutex
	weights []int
	// stableAt is when a route without canary was last set.
	stableAt time.Time
}

func (r *recordingRouter) SetRoute(rt gateway.Route) error {
	err := r.Gateway.SetRoute(rt)
	if len(rt.Canary) == 0 {
		r.mu.Lock()
		r.stableAt = time.Now()
		r.mu.Unlock()
	}
	return err
}

func (r *recordingRouter) SetCanaryWeight(env, app string, weight int) error {
	r.mu.Lock()
	r.weights = append(r.weights, weight)
	r.mu.Unlock()
	return r.Gateway.SetCanaryWeight(env, app, weight)
}

func (r *recordingRouter) seen() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.weights)
}

// blockUntilCancelled scripts an analysis that runs until its context ends.
const blockUntilCancelled = "block"

// scriptedAnalyzer is a fake: the real analysis (PromQL over the gateway's
// metrics) runs in the end-to-end tests. It answers the scripted outcomes
// in order, then Successful; an outcome without a phase is returned as an
// error of Analyze with its reason.
type scriptedAnalyzer struct {
	mu       sync.Mutex
	outcomes []Outcome
	requests []AnalysisRequest
	// verdictAt is when the last scripted outcome was returned.
	verdictAt time.Time
}

func (a *scriptedAnalyzer) Analyze(ctx context.Context, req AnalysisRequest) (Outcome, error) {
	a.mu.Lock()
	a.requests = append(a.requests, req)
	if len(a.outcomes) == 0 {
		a.mu.Unlock()
		return Outcome{Phase: Successful}, nil
	}
	out := a.outcomes[0]
	a.outcomes = a.outcomes[1:]
	a.verdictAt = time.Now()
	a.mu.Unlock()
	if out.Phase == blockUntilCancelled {
		<-ctx.Done()
		return Outcome{}, ctx.Err()
	}
	if out.Phase == "" {
		return Outcome{}, errors.New(out.Reason)
	}
	return out, nil
}

func (a *scriptedAnalyzer) calls() []AnalysisRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.requests)
}

type update struct {
	Workflow, App string
	Success       bool
	Message       string
}

// fakeReporter records what the rollout reports.
type fakeReporter struct {
	mu      sync.Mutex
	updates []update
}

func (r *fakeReporter) Update(_ context.Context, workflow, app string, success bool, message string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.updates = append(r.updates, update{workflow, app, success, message})
	return nil
}

func (r *fakeReporter) all() []update {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.updates)
}

// fakeTarget hands out the canary backend, says how its replicas are
// doing as it is told, and records what became of it.
type fakeTarget struct {
	canary []gateway.Backend
	// startHook, if set, runs in StartCanary; its error is StartCanary's.
	startHook func(ctx context.Context) error

	mu       sync.Mutex
	promoted [][]gateway.Backend
	aborted  int
	replicas []runtime.ReplicaStatus // CanaryStatus's answer
	// status, if set, answers CanaryStatus instead, given the calls so far.
	status func(looks int) []runtime.ReplicaStatus
	looks  int // CanaryStatus calls
}

func (f *fakeTarget) StartCanary(ctx context.Context) ([]gateway.Backend, error) {
	if f.startHook != nil {
		if err := f.startHook(ctx); err != nil {
			return nil, err
		}
	}
	return f.canary, nil
}

func (f *fakeTarget) CanaryStatus(context.Context) []runtime.ReplicaStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.looks++
	if f.status != nil {
		return f.status(f.looks)
	}
	return slices.Clone(f.replicas)
}

// setReplicas changes what CanaryStatus answers and returns how many
// times it had been called.
func (f *fakeTarget) setReplicas(rs ...runtime.ReplicaStatus) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replicas = rs
	return f.looks
}

func (f *fakeTarget) looked() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.looks
}

func (f *fakeTarget) Promoted(_ context.Context, canary []gateway.Backend) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.promoted = append(f.promoted, canary)
	return nil
}

func (f *fakeTarget) Aborted(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.aborted++
	return nil
}

func (f *fakeTarget) calls() (promoted [][]gateway.Backend, aborted int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.promoted), f.aborted
}

// fixture is one rollout's world: a real gateway serving real stable and
// canary backends, a real state repository, and fakes for the rest.
type fixture struct {
	ctl      *Controller
	router   *recordingRouter
	front    *httptest.Server // the gateway
	analyzer *scriptedAnalyzer
	reporter *fakeReporter
	target   *fakeTarget
	bare     string
	repo     *gitops.Repo
	stable   []gateway.Backend
	done     chan struct{}
}

func backend(t testing.TB, body string) gateway.Backend {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return gateway.Backend{Addr: srv.Listener.Addr().String()}
}

func newFixture(t testing.TB, outcomes []Outcome) *fixture {
	t.Helper()
	ctx := t.Context()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	fx := &fixture{
		router:   &recordingRouter{Gateway: gateway.New(gateway.Options{Logger: log})},
		analyzer: &scriptedAnalyzer{outcomes: outcomes},
		reporter: &fakeReporter{},
		target: &fakeTarget{canary: []gateway.Backend{backend(t, "canary")},
			replicas: []runtime.ReplicaStatus{{Index: 0, State: runtime.ReplicaRunning, Ready: true}}},
		stable: []gateway.Backend{backend(t, "stable"), backend(t, "stable")},
		done:   make(chan struct{}, 1),
	}
	fx.front = httptest.NewServer(fx.router.Gateway)
	t.Cleanup(fx.front.Close)
	if err := fx.router.SetRoute(gateway.Route{Env: env, App: app, StableVersion: stableVersion, Stable: fx.stable}); err != nil {
		t.Fatal(err)
	}

	fx.bare = filepath.Join(t.TempDir(), "state.git")
	if err := gitops.InitBare(fx.bare, "main"); err != nil {
		t.Fatal(err)
	}
	files := fstest.MapFS{manifest.ProductionPath: {Data: []byte(productionJSON(canaryVersion, "c4n4ry"))}}
	if _, err := gitops.CommitDir(ctx, fx.bare, "main", files, "promote "+canaryVersion); err != nil {
		t.Fatal(err)
	}
	repo, err := gitops.Open(ctx, fx.bare, filepath.Join(t.TempDir(), "clone"), "main", log)
	if err != nil {
		t.Fatal(err)
	}
	fx.repo = repo
	fx.ctl = New(fx.router, fx.analyzer, repo, fx.reporter, func() { fx.done <- struct{}{} }, log)
	fx.ctl.canaryCheck = testCanaryCheck
	return fx
}

func parseSpec(t testing.TB, steps string) *appspec.Spec {
	t.Helper()
	spec, err := appspec.Parse([]byte(`
name: web
build: {app: make}
run: {command: [./web]}
strategy:
  canary:
    steps:
` + steps))
	if err != nil {
		t.Fatalf("parsing the app spec: %v", err)
	}
	return spec
}

func stableEntry(t testing.TB) *manifest.App {
	t.Helper()
	m, err := manifest.Parse([]byte(productionJSON(stableVersion, "57ab1e")))
	if err != nil {
		t.Fatal(err)
	}
	return m.Apps[app]
}

// start begins the rollout; the test's end cancels it and waits for it.
func (fx *fixture) start(t testing.TB, spec *appspec.Spec) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); fx.ctl.Wait() })
	err := fx.ctl.Start(ctx, Request{
		Env: env, App: app, Workflow: workflow,
		StableVersion: stableVersion, Stable: fx.stable, StableEntry: stableEntry(t),
		CanaryVersion: canaryVersion,
		Artifact:      build.Artifact{App: app, Version: canaryVersion, Kind: build.App, Spec: spec},
		Target:        fx.target,
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
}

// wait returns the rollout's final status once it has ended.
func (fx *fixture) wait(t testing.TB) Status {
	t.Helper()
	select {
	case <-fx.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("rollout did not end; status %+v", fx.ctl.List())
	}
	if _, ok := fx.ctl.Active(env, app); ok {
		t.Fatal("rollout still active after it ended")
	}
	list := fx.ctl.List()
	if len(list) != 1 {
		t.Fatalf("List = %+v, want one finished rollout", list)
	}
	return list[0]
}

// waitPaused waits until the rollout pauses for a person.
func (fx *fixture) waitPaused(t *testing.T) Status {
	t.Helper()
	for range 3000 {
		if s, ok := fx.ctl.Active(env, app); ok && s.Phase == Paused {
			return s
		}
		select {
		case <-fx.done:
			t.Fatalf("rollout ended instead of pausing: %+v", fx.ctl.List())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("rollout never paused: %+v", fx.ctl.List())
	return Status{}
}

// hits sends n requests through the gateway and counts the answers.
func (fx *fixture) hits(t *testing.T, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, fx.front.URL+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = fx.router.Host(env, app)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("request through the gateway: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got[fmt.Sprintf("%d %s", resp.StatusCode, b)]++
	}
	return got
}

// production reads the production manifest's app entry and the head
// commit's message from the bare state repository.
func (fx *fixture) production(t *testing.T) (*manifest.App, string) {
	t.Helper()
	data, err := fx.repo.ReadFile(t.Context(), manifest.ProductionPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	r, err := git.PlainOpen(fx.bare)
	if err != nil {
		t.Fatal(err)
	}
	head, err := r.Head()
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.CommitObject(head.Hash())
	if err != nil {
		t.Fatal(err)
	}
	return m.Apps[app], c.Message
}

func (fx *fixture) assertPromoted(t *testing.T, st Status) {
	t.Helper()
	if st.Phase != Healthy || st.Weight != 100 || st.Step != st.Steps || st.Finished.IsZero() {
		t.Errorf("status = %+v, want Healthy at weight 100 after every step", st)
	}
	route, ok := fx.router.Route(env, app)
	if !ok || route.StableVersion != canaryVersion || !slices.Equal(route.Stable, fx.target.canary) || route.CanaryVersion != "" || len(route.Canary) != 0 {
		t.Errorf("route = %+v, want the canary as the only, stable version", route)
	}
	if got := fx.hits(t, 4); got["200 canary"] != 4 {
		t.Errorf("answers after promotion = %v, want all from the canary", got)
	}
	promoted, aborted := fx.target.calls()
	if len(promoted) != 1 || !slices.Equal(promoted[0], fx.target.canary) || aborted != 0 {
		t.Errorf("target: promoted %v, aborted %d times; want promoted once with the canary", promoted, aborted)
	}
	ups := fx.reporter.all()
	if len(ups) != 1 || ups[0].Workflow != workflow || ups[0].App != app || !ups[0].Success || !strings.Contains(ups[0].Message, canaryVersion) {
		t.Errorf("reports = %+v, want one success for %s", ups, canaryVersion)
	}
	entry, msg := fx.production(t)
	if entry.Version() != canaryVersion || msg != "promote "+canaryVersion {
		t.Errorf("production = %s after commit %q; a promoted rollout must leave git alone", entry.Version(), msg)
	}
}

func (fx *fixture) assertAborted(t *testing.T, st Status, reason string) {
	t.Helper()
	if st.Phase != Degraded || st.Weight != 0 || !strings.Contains(st.Message, reason) || st.Finished.IsZero() {
		t.Errorf("status = %+v, want Degraded at weight 0 with %q", st, reason)
	}
	route, ok := fx.router.Route(env, app)
	want := gateway.Route{Env: env, App: app, StableVersion: stableVersion, Stable: fx.stable}
	if !ok || route.StableVersion != want.StableVersion || !slices.Equal(route.Stable, want.Stable) || route.CanaryVersion != "" || len(route.Canary) != 0 || route.CanaryWeight != 0 {
		t.Errorf("route = %+v, want stable only: %+v", route, want)
	}
	if got := fx.hits(t, 4); got["200 stable"] != 4 {
		t.Errorf("answers after abort = %v, want all from stable", got)
	}
	promoted, aborted := fx.target.calls()
	if len(promoted) != 0 || aborted != 1 {
		t.Errorf("target: promoted %v, aborted %d times; want aborted once", promoted, aborted)
	}
	ups := fx.reporter.all()
	if len(ups) != 1 || ups[0].Workflow != workflow || ups[0].Success || !strings.Contains(ups[0].Message, reason) {
		t.Errorf("reports = %+v, want one failure with %q", ups, reason)
	}
	entry, msg := fx.production(t)
	if entry.Version() != stableVersion || entry.Deploy.Revision != "57ab1e" || entry.Images.Pipeline == nil || entry.Images.Pipeline.Tag != stableVersion {
		t.Errorf("production entry = %+v, want the stable entry back", entry)
	}
	if !strings.Contains(msg, canaryVersion+" failed") || !strings.Contains(msg, stableVersion) || !strings.Contains(msg, reason) {
		t.Errorf("revert commit message = %q, want it to name the failed version %s and the reason", msg, canaryVersion)
	}
}

func TestRollout(t *testing.T) {
	const steps = `
      - setWeight: 20
      - pause: {duration: 10ms}
      - analysis: {templates: [{templateName: maintain-success-rate}], args: [{name: extra, value: "1"}]}
      - setWeight: 50
      - pause: {duration: 10ms}
      - analysis: {templates: [{templateName: maintain-success-rate}]}
`
	tests := []struct {
		name     string
		steps    string
		outcomes []Outcome
		// drive steers the running rollout, as a person would.
		drive  func(t *testing.T, fx *fixture)
		assert func(t *testing.T, fx *fixture, st Status)
	}{
		{
			name:  "all steps pass",
			steps: steps,
			assert: func(t *testing.T, fx *fixture, st Status) {
				fx.assertPromoted(t, st)
				if got := fx.router.seen(); !slices.Equal(got, []int{20, 50, 100}) {
					t.Errorf("weights = %v, want [20 50 100]", got)
				}
				calls := fx.analyzer.calls()
				if len(calls) != 2 || len(st.Analyses) != 2 {
					t.Fatalf("analyses = %+v (status %+v), want 2", calls, st.Analyses)
				}
				args := calls[0].Args
				if args["app"] != app || args["env"] != env || args["version"] != canaryVersion ||
					args["canary-version"] != canaryVersion || args["stable-version"] != stableVersion || args["extra"] != "1" {
					t.Errorf("analysis args = %v", args)
				}
				if calls[0].Templates[0].TemplateName != "maintain-success-rate" || calls[0].Name == calls[1].Name {
					t.Errorf("analysis requests = %+v", calls)
				}
				for _, r := range st.Analyses {
					if r.Phase != Successful {
						t.Errorf("analysis run %+v, want Successful", r)
					}
				}
			},
		},
		{
			name:     "failed analysis aborts and reverts",
			steps:    steps,
			outcomes: []Outcome{{Phase: Failed, Reason: "error-ratio 0.5 > 0.2"}},
			assert: func(t *testing.T, fx *fixture, st Status) {
				fx.assertAborted(t, st, "error-ratio 0.5 > 0.2")
				if got := fx.router.seen(); !slices.Equal(got, []int{20}) {
					t.Errorf("weights = %v, want [20]: the rollout must stop at the failed analysis", got)
				}
				if len(st.Analyses) != 1 || st.Analyses[0].Phase != Failed {
					t.Errorf("analyses = %+v, want one Failed", st.Analyses)
				}
			},
		},
		{
			name:     "analysis error aborts",
			steps:    steps,
			outcomes: []Outcome{{Reason: "prometheus unreachable"}}, // no phase: Analyze fails
			assert: func(t *testing.T, fx *fixture, st Status) {
				fx.assertAborted(t, st, "prometheus unreachable")
				if len(st.Analyses) != 1 || st.Analyses[0].Phase != Error {
					t.Errorf("analyses = %+v, want one Error", st.Analyses)
				}
			},
		},
		{
			name:     "inconclusive pauses until promoted",
			steps:    steps,
			outcomes: []Outcome{{Phase: Inconclusive, Reason: "no traffic yet"}},
			drive: func(t *testing.T, fx *fixture) {
				st := fx.waitPaused(t)
				if st.Weight != 20 || !strings.Contains(st.Message, "no traffic yet") {
					t.Errorf("paused status = %+v, want weight 20 and the reason", st)
				}
				if err := fx.ctl.Promote(env, app); err != nil {
					t.Fatalf("Promote: %v", err)
				}
			},
			assert: func(t *testing.T, fx *fixture, st Status) {
				fx.assertPromoted(t, st)
				if got := fx.router.seen(); !slices.Equal(got, []int{20, 50, 100}) {
					t.Errorf("weights = %v, want [20 50 100]", got)
				}
				if len(st.Analyses) != 2 || st.Analyses[0].Phase != Inconclusive || st.Analyses[1].Phase != Successful {
					t.Errorf("analyses = %+v, want Inconclusive then Successful", st.Analyses)
				}
			},
		},
		{
			name:     "inconclusive analysis retried runs afresh",
			steps:    steps,
			outcomes: []Outcome{{Phase: Inconclusive, Reason: "no traffic yet"}},
			drive: func(t *testing.T, fx *fixture) {
				fx.waitPaused(t)
				if err := fx.ctl.Retry(env, app); err != nil {
					t.Fatalf("Retry: %v", err)
				}
			},
			assert: func(t *testing.T, fx *fixture, st Status) {
				fx.assertPromoted(t, st)
				calls := fx.analyzer.calls()
				if len(calls) != 3 || calls[0].Name == calls[1].Name {
					t.Fatalf("analysis requests = %+v, want the first step's analysis twice under new names, then the second", calls)
				}
				if len(st.Analyses) != 3 || st.Analyses[0].Phase != Inconclusive || st.Analyses[1].Phase != Successful {
					t.Errorf("analyses = %+v, want Inconclusive kept beside the retried run", st.Analyses)
				}
			},
		},
		{
			name: "abort during a pause",
			steps: `
      - setWeight: 20
      - pause: {}
      - setWeight: 100
`,
			drive: func(t *testing.T, fx *fixture) {
				st := fx.waitPaused(t)
				if st.Step != 1 || st.Weight != 20 {
					t.Errorf("paused status = %+v, want step 1 at weight 20", st)
				}
				// The real gateway splits exactly: 2 of 10 to the canary.
				if got := fx.hits(t, 10); got["200 canary"] != 2 || got["200 stable"] != 8 {
					t.Errorf("answers at weight 20 = %v, want 2 canary and 8 stable", got)
				}
				if err := fx.ctl.Abort(env, app, "operator saw errors"); err != nil {
					t.Fatalf("Abort: %v", err)
				}
			},
			assert: func(t *testing.T, fx *fixture, st Status) {
				fx.assertAborted(t, st, "aborted by request: operator saw errors")
				if got := fx.router.seen(); !slices.Equal(got, []int{20}) {
					t.Errorf("weights = %v, want [20]", got)
				}
			},
		},
		{
			name: "indefinite pause continues when promoted",
			steps: `
      - setWeight: 30
      - pause: {}
`,
			drive: func(t *testing.T, fx *fixture) {
				fx.waitPaused(t)
				if err := fx.ctl.Promote(env, app); err != nil {
					t.Fatalf("Promote: %v", err)
				}
			},
			assert: func(t *testing.T, fx *fixture, st Status) {
				fx.assertPromoted(t, st)
				if got := fx.router.seen(); !slices.Equal(got, []int{30, 100}) {
					t.Errorf("weights = %v, want [30 100]", got)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, tt.outcomes)
			fx.start(t, parseSpec(t, tt.steps))
			if tt.drive != nil {
				tt.drive(t, fx)
			}
			tt.assert(t, fx, fx.wait(t))
		})
	}
}

func TestControllerWithoutRollout(t *testing.T) {
	fx := newFixture(t, nil)
	tests := []struct {
		name string
		call func() error
	}{
		{"promote", func() error { return fx.ctl.Promote(env, app) }},
		{"abort", func() error { return fx.ctl.Abort(env, app, "why") }},
		{"retry", func() error { return fx.ctl.Retry(env, app) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, ErrNoRollout) {
				t.Fatalf("err = %v, want ErrNoRollout", err)
			}
		})
	}
}

func TestStartRefusesASecondRollout(t *testing.T) {
	fx := newFixture(t, nil)
	spec := parseSpec(t, "      - pause: {}\n")
	fx.start(t, spec)
	fx.waitPaused(t)
	err := fx.ctl.Start(t.Context(), Request{Env: env, App: app, CanaryVersion: "v3", Target: fx.target,
		Artifact: build.Artifact{Spec: spec}})
	if err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Start: err = %v, want already running", err)
	}
	if err := fx.ctl.Abort(env, app, "done"); err != nil {
		t.Fatal(err)
	}
	fx.wait(t)
}

func TestRetryNeedsAPause(t *testing.T) {
	fx := newFixture(t, nil)
	fx.start(t, parseSpec(t, "      - setWeight: 10\n      - pause: {duration: 1h}\n"))
	for i := 0; ; i++ {
		if s, ok := fx.ctl.Active(env, app); ok && strings.Contains(s.Message, "pause 1h") {
			break
		}
		if i == 3000 {
			t.Fatalf("rollout never reached its timed pause: %+v", fx.ctl.List())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := fx.ctl.Retry(env, app); !errors.Is(err, ErrNotPaused) {
		t.Fatalf("Retry during a timed pause: err = %v, want ErrNotPaused", err)
	}
	if err := fx.ctl.Abort(env, app, "done"); err != nil {
		t.Fatal(err)
	}
	fx.assertAborted(t, fx.wait(t), "aborted by request: done")
}

func TestAbortDuringAnalysis(t *testing.T) {
	fx := newFixture(t, []Outcome{{Phase: blockUntilCancelled}})
	fx.start(t, parseSpec(t, "      - setWeight: 10\n      - analysis: {templates: [{templateName: t}]}\n"))
	for i := 0; len(fx.analyzer.calls()) == 0; i++ {
		if i == 3000 {
			t.Fatalf("analysis never started: %+v", fx.ctl.List())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := fx.ctl.Promote(env, app); !errors.Is(err, ErrNotPaused) {
		t.Fatalf("Promote during an analysis: err = %v, want ErrNotPaused", err)
	}
	if err := fx.ctl.Abort(env, app, "bad canary"); err != nil {
		t.Fatal(err)
	}
	fx.assertAborted(t, fx.wait(t), "aborted by request: bad canary")
}

// BenchmarkFailingVerdictToStable measures the time from an analysis run's
// Failed verdict to the gateway sending all traffic to stable (reported as
// ns/op; git revert and canary shutdown come after and are not included).
func BenchmarkFailingVerdictToStable(b *testing.B) {
	var total time.Duration
	for i := 0; i < b.N; i++ {
		fx := newFixture(b, []Outcome{{Phase: Failed, Reason: "error ratio 0.4 > 0.2"}})
		fx.start(b, parseSpec(b, "      - setWeight: 50\n      - analysis: {templates: [{templateName: t}]}\n"))
		fx.wait(b)
		fx.router.mu.Lock()
		stableAt := fx.router.stableAt
		fx.router.mu.Unlock()
		fx.analyzer.mu.Lock()
		verdictAt := fx.analyzer.verdictAt
		fx.analyzer.mu.Unlock()
		total += stableAt.Sub(verdictAt)
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns-to-stable/op")
}

func TestBackgroundInconclusivePauses(t *testing.T) {
	fx := newFixture(t, []Outcome{{Phase: Inconclusive, Reason: "no data"}})
	spec := parseSpec(t, "      - setWeight: 10\n      - pause: {duration: 100ms}\n      - setWeight: 20\n")
	spec.Strategy.Canary.Analysis = &appspec.BackgroundAnalysis{Templates: []appspec.TemplateRef{{TemplateName: "t"}}}
	fx.start(t, spec)
	st := fx.waitPaused(t)
	if !strings.Contains(st.Message, "background analysis inconclusive") {
		t.Fatalf("paused for another reason: %s", st.Message)
	}
	if err := fx.ctl.Promote(env, app); err != nil {
		t.Fatal(err)
	}
	fx.assertPromoted(t, fx.wait(t))
}

func TestPromoteFullSkipsRemainingSteps(t *testing.T) {
	fx := newFixture(t, []Outcome{{Phase: blockUntilCancelled}})
	fx.start(t, parseSpec(t, "      - setWeight: 10\n      - analysis: {templates: [{templateName: t}]}\n      - setWeight: 30\n      - pause: {}\n"))
	for i := 0; len(fx.analyzer.calls()) == 0; i++ {
		if i == 3000 {
			t.Fatalf("analysis never started: %+v", fx.ctl.List())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := fx.ctl.PromoteFull(env, app); err != nil {
		t.Fatal(err)
	}
	st := fx.wait(t)
	fx.assertPromoted(t, st)
	if w := fx.router.seen(); slices.Contains(w, 30) {
		t.Fatalf("weights %v: the skipped setWeight 30 ran", w)
	}
}
