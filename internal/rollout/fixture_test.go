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
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/go-git/go-git/v5"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/runtime"
)

const (
	env           = manifest.ProductionEnv
	app           = "web"
	stableVersion = "v20260101000000"
	canaryVersion = "v20260102000000"
	workflow      = "web-123-production"
	// checkEvery is the tests' CanaryCheck; the fake clock is stepped by
	// it.
	checkEvery = time.Second
)

// productionJSON is the production manifest as the pipeline leaves it when
// it starts a rollout: the app already at the canary version.
func productionJSON(version, revision string) string {
	return fmt.Sprintf(`{"envname":"production","change_description":"deploy %[1]s","apps":{
  "postgres":{"images":{"code":{"image":"postgres","image_tag":"15"}}},
  "web":{"images":{"code":{"image":"web","image_tag":"%[1]s","label":"web"},"pipeline":{"image":"web-pipeline","image_tag":"%[1]s"}},
         "deploy":{"revision":"%[2]s"},"last_change_description":"change %[1]s","kept":"unknown field"}}}`, version, revision)
}

func entryOf(t testing.TB, version, revision string) *manifest.App {
	t.Helper()
	m, err := manifest.Parse([]byte(productionJSON(version, revision)))
	if err != nil {
		t.Fatal(err)
	}
	return m.Apps[app]
}

func stableEntry(t testing.TB) *manifest.App { return entryOf(t, stableVersion, "57ab1e") }
func canaryEntry(t testing.TB) *manifest.App { return entryOf(t, canaryVersion, "c4n4ry") }

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
	Superseded    bool
	Message       string
}

// fakeReporter records what the controller reports.
type fakeReporter struct {
	mu      sync.Mutex
	updates []update
}

func (r *fakeReporter) Update(_ context.Context, workflow, app string, success bool, message string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.updates = append(r.updates, update{Workflow: workflow, App: app, Success: success, Message: message})
	return nil
}

func (r *fakeReporter) Supersede(_ context.Context, workflow, app, message string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.updates = append(r.updates, update{Workflow: workflow, App: app, Superseded: true, Message: message})
	return nil
}

func (r *fakeReporter) all() []update {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.updates)
}

// fakeWorkloads runs each version as one real HTTP backend answering its
// body, says how a version's replicas are doing as it is told, and records
// what it started and stopped.
type fakeWorkloads struct {
	t      testing.TB
	bodies map[string]string // version -> what its backend answers

	mu       sync.Mutex
	running  map[string][]gateway.Backend // by env/app/version
	started  []string                     // env/app/version, in order
	stopped  []string
	replicas map[string][]runtime.ReplicaStatus // Status's answer by version
	// status, if set, answers Status of version instead, given that
	// version's calls so far.
	status func(version string, looks int) []runtime.ReplicaStatus
	looks  map[string]int
	// startHook, if set, runs in Start; its error is Start's.
	startHook func(ctx context.Context, art build.Artifact) error
}

func newWorkloads(t testing.TB) *fakeWorkloads {
	return &fakeWorkloads{
		t: t, bodies: map[string]string{stableVersion: "stable", canaryVersion: "canary"},
		running: map[string][]gateway.Backend{}, replicas: map[string][]runtime.ReplicaStatus{}, looks: map[string]int{},
	}
}

func (f *fakeWorkloads) Start(ctx context.Context, env string, art build.Artifact, _ time.Duration) ([]gateway.Backend, error) {
	f.mu.Lock()
	hook := f.startHook
	f.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, art); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	k := env + "/" + art.App + "/" + art.Version
	f.started = append(f.started, k)
	if b, ok := f.running[k]; ok {
		return slices.Clone(b), nil // adopted
	}
	body := f.bodies[art.Version]
	if body == "" {
		body = art.Version
	}
	b := []gateway.Backend{backend(f.t, body)}
	f.running[k] = b
	return slices.Clone(b), nil
}

func (f *fakeWorkloads) Stop(_ context.Context, env, app, version string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := env + "/" + app + "/" + version
	f.stopped = append(f.stopped, k)
	delete(f.running, k)
	return nil
}

func (f *fakeWorkloads) Status(_, _, version string) []runtime.ReplicaStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.looks[version]++
	if f.status != nil {
		return f.status(version, f.looks[version])
	}
	if rs, ok := f.replicas[version]; ok {
		return slices.Clone(rs)
	}
	// Untold: the running replicas, ready.
	var out []runtime.ReplicaStatus
	for i, b := range f.running[env+"/"+app+"/"+version] {
		out = append(out, runtime.ReplicaStatus{Index: i, Addr: b.Addr, State: runtime.ReplicaRunning, Ready: true})
	}
	return out
}

// setReplicas changes what Status of the canary answers and returns how
// many times it had been asked.
func (f *fakeWorkloads) setReplicas(rs ...runtime.ReplicaStatus) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replicas[canaryVersion] = rs
	return f.looks[canaryVersion]
}

func (f *fakeWorkloads) looked() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.looks[canaryVersion]
}

func (f *fakeWorkloads) stops() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.stopped)
}

func (f *fakeWorkloads) backendsOf(version string) []gateway.Backend {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.running[env+"/"+app+"/"+version])
}

func (f *fakeWorkloads) setStartHook(h func(ctx context.Context, art build.Artifact) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.startHook = h
}

// memStore is a rollout.Store in memory. The SQLite store that keeps them
// in Runway is tested in internal/store/sqlite; it cannot be used here (it
// imports this package).
type memStore struct {
	mu    sync.Mutex
	saved map[string]Checkpoint // by env/app/canary
	order []string
	apps  map[string]AppRecord
}

func newMemStore() *memStore {
	return &memStore{saved: map[string]Checkpoint{}, apps: map[string]AppRecord{}}
}

func (m *memStore) SaveRollout(_ context.Context, cp Checkpoint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := cp.Env + "/" + cp.App + "/" + cp.CanaryVersion
	if _, ok := m.saved[k]; !ok {
		m.order = append(m.order, k)
	}
	m.saved[k] = cp.clone()
	return nil
}

func (m *memStore) UnfinishedRollouts(_ context.Context, env, app string) ([]Checkpoint, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Checkpoint
	for _, k := range m.order {
		if cp := m.saved[k]; cp.Env == env && cp.App == app && !cp.Done() {
			out = append(out, cp.clone())
		}
	}
	slices.SortStableFunc(out, func(a, b Checkpoint) int { return a.Started.Compare(b.Started) })
	return out, nil
}

func (m *memStore) ListRollouts(_ context.Context, limit int) ([]Checkpoint, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Checkpoint
	for _, k := range m.order {
		out = append(out, m.saved[k].clone())
	}
	slices.SortStableFunc(out, func(a, b Checkpoint) int { return b.Started.Compare(a.Started) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (m *memStore) SaveApp(_ context.Context, a AppRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.apps[a.Env+"/"+a.App] = a
	return nil
}

func (m *memStore) GetApp(_ context.Context, env, app string) (AppRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.apps[env+"/"+app]
	if !ok {
		return AppRecord{}, ErrAppNotFound
	}
	return a, nil
}

func (m *memStore) get(canary string) Checkpoint {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.saved[env+"/"+app+"/"+canary].clone()
}

func (m *memStore) record(app string) AppRecord {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.apps[env+"/"+app]
}

// fixture is one app's production world: a real gateway serving real
// stable and canary backends, a real state repository, a fake clock, and
// fakes for the rest.
type fixture struct {
	ctl      *Controller
	clk      *clocktesting.FakeClock
	router   *recordingRouter
	front    *httptest.Server // the gateway
	analyzer *scriptedAnalyzer
	reporter Reporter
	reports  *fakeReporter
	work     *fakeWorkloads
	store    *memStore
	events   *events.Recorder
	bare     string
	repo     *gitops.Repo
	stable   []gateway.Backend
	log      *slog.Logger
	workers  int
	// committed counts the controller's Committed calls.
	committed atomic.Int32
	// stop stops the running controller as a shutdown stops it.
	stop func()
}

func backend(t testing.TB, body string) gateway.Backend {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return gateway.Backend{Addr: srv.Listener.Addr().String()}
}

// newFixture makes the world of web running stableVersion in production,
// its state repository already at canaryVersion; the controller is not
// running yet (run starts it).
func newFixture(t testing.TB, outcomes []Outcome) *fixture {
	t.Helper()
	ctx := t.Context()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	fx := &fixture{
		clk:      clk,
		router:   &recordingRouter{Gateway: gateway.New(gateway.Options{Logger: log})},
		analyzer: &scriptedAnalyzer{outcomes: outcomes},
		reports:  &fakeReporter{},
		work:     newWorkloads(t),
		store:    newMemStore(),
		events:   events.New(clk, nil),
		log:      log,
		workers:  2,
	}
	fx.reporter = fx.reports
	fx.stable = []gateway.Backend{backend(t, "stable"), backend(t, "stable")}
	fx.work.running[env+"/"+app+"/"+stableVersion] = fx.stable
	fx.front = httptest.NewServer(fx.router.Gateway)
	t.Cleanup(fx.front.Close)
	if err := fx.router.SetRoute(gateway.Route{Env: env, App: app, StableVersion: stableVersion, Stable: fx.stable}); err != nil {
		t.Fatal(err)
	}
	if err := fx.store.SaveApp(ctx, AppRecord{Env: env, App: app, StableVersion: stableVersion, StableEntry: stableEntry(t)}); err != nil {
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
	fx.ctl = fx.newController()
	return fx
}

func (fx *fixture) newController() *Controller {
	return New(Options{
		Router: fx.router, Analyzer: fx.analyzer, Repo: fx.repo, Reporter: fx.reporter, Store: fx.store,
		Workloads: fx.work, Events: fx.events, Clock: fx.clk, Logger: fx.log, Workers: fx.workers, CanaryCheck: checkEvery,
		Committed: func() { fx.committed.Add(1) },
	})
}

// run starts the controller; the test's end stops it.
func (fx *fixture) run(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ctl := fx.ctl
	errc := make(chan error, 1)
	go func() { errc <- ctl.Run(ctx) }()
	var once sync.Once
	fx.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("the controller did not stop")
			}
		})
	}
	t.Cleanup(fx.stop)
}

// restart stands in for a control plane killed and started again: the
// running controller is stopped as a shutdown stops it (leaving its
// rollouts where they were), and a new one with the same store, gateway,
// runtime and repository takes over, with a new analyzer.
func (fx *fixture) restart(t testing.TB, outcomes []Outcome) {
	t.Helper()
	fx.stop()
	fx.analyzer = &scriptedAnalyzer{outcomes: outcomes}
	fx.ctl = fx.newController()
	fx.run(t)
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

// desired is the production manifest's canaryVersion of web.
func desired(t testing.TB, spec *appspec.Spec) Desired {
	return Desired{
		Env: env, App: app, Version: canaryVersion, Entry: canaryEntry(t), Workflow: workflow,
		Artifact: build.Artifact{App: app, Version: canaryVersion, Kind: build.App, Spec: spec},
	}
}

// start runs the controller and hands it the canary: the rollout begins.
func (fx *fixture) start(t testing.TB, spec *appspec.Spec) {
	t.Helper()
	fx.run(t)
	fx.ctl.SetDesired(desired(t, spec))
}

// until steps the fake clock by checkEvery until cond holds, with a short
// real pause between steps for the controller to catch up. It fails the
// test after a bounded number of steps.
func (fx *fixture) until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < 10000 && time.Now().Before(deadline); i++ {
		if cond() {
			return
		}
		time.Sleep(2 * time.Millisecond)
		fx.clk.Step(checkEvery)
	}
	t.Fatalf("%s: never happened; rollouts %+v", what, fx.ctl.List())
}

// eventually waits, without moving the clock, until cond holds.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("%s: never happened", what)
}

// finished returns the ended rollout of canary, if it ended.
func (fx *fixture) finished(canary string) (Status, bool) {
	for _, s := range fx.ctl.List() {
		if s.Env == env && s.App == app && s.CanaryVersion == canary && !s.Finished.IsZero() {
			return s, true
		}
	}
	return Status{}, false
}

// wait returns the canary's rollout's final status once it has ended.
func (fx *fixture) wait(t testing.TB) Status {
	t.Helper()
	var st Status
	fx.until(t, "rollout end", func() bool {
		var ok bool
		st, ok = fx.finished(canaryVersion)
		// The end's event is recorded once the end is saved.
		return ok && (fx.seq(app, "Promoted") > 0 || fx.seq(app, "Aborted") > 0 || fx.seq(app, "Superseded") > 0)
	})
	if s, ok := fx.ctl.Active(env, app); ok {
		t.Fatalf("rollout still active after it ended: %+v", s)
	}
	return st
}

// waitPaused waits until the rollout pauses for a person.
func (fx *fixture) waitPaused(t testing.TB) Status {
	t.Helper()
	return fx.waitPausedAt(t, -1)
}

// waitPausedAt waits until the rollout pauses for a person at step (any
// step if step < 0).
func (fx *fixture) waitPausedAt(t testing.TB, step int) Status {
	t.Helper()
	var st Status
	fx.until(t, fmt.Sprintf("pause at step %d", step), func() bool {
		if s, ok := fx.finished(canaryVersion); ok {
			t.Fatalf("rollout ended instead of pausing: %+v", s)
		}
		var ok bool
		st, ok = fx.ctl.Active(env, app)
		return ok && st.Phase == Paused && (step < 0 || st.Step == step)
	})
	return st
}

// waitMessage waits until the running rollout's message contains s.
func (fx *fixture) waitMessage(t testing.TB, s string) {
	t.Helper()
	fx.until(t, "message "+s, func() bool {
		st, ok := fx.ctl.Active(env, app)
		return ok && strings.Contains(st.Message, s)
	})
}

// hits sends n requests through the gateway and counts the answers.
func (fx *fixture) hits(t testing.TB, n int) map[string]int {
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
func (fx *fixture) production(t testing.TB) (*manifest.App, string) {
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

// eventsOf returns the rollout events of app, oldest first.
func (fx *fixture) eventsOf(app string) []events.Event {
	all, _ := fx.events.Since(0, 0)
	var out []events.Event
	for _, e := range all {
		if e.Kind == events.Rollout && e.Name == env+"/"+app {
			out = append(out, e)
		}
	}
	return out
}

// reasons returns the reasons of the rollout events of app, oldest first.
func (fx *fixture) reasons(app string) []string {
	var out []string
	for _, e := range fx.eventsOf(app) {
		out = append(out, e.Reason)
	}
	return out
}

// seq returns the sequence number of app's first rollout event with
// reason, 0 if none.
func (fx *fixture) seq(app, reason string) uint64 {
	for _, e := range fx.eventsOf(app) {
		if e.Reason == reason {
			return e.Seq
		}
	}
	return 0
}

func (fx *fixture) assertPromoted(t testing.TB, st Status) {
	t.Helper()
	if st.Phase != Healthy || st.Weight != 100 || st.Step != st.Steps || st.Finished.IsZero() {
		t.Errorf("status = %+v, want Healthy at weight 100 after every step", st)
	}
	canary := fx.work.backendsOf(canaryVersion)
	route, ok := fx.router.Route(env, app)
	if !ok || route.StableVersion != canaryVersion || len(canary) == 0 || !slices.Equal(route.Stable, canary) || route.CanaryVersion != "" || len(route.Canary) != 0 {
		t.Errorf("route = %+v, want the canary %v as the only, stable version", route, canary)
	}
	if got := fx.hits(t, 4); got["200 canary"] != 4 {
		t.Errorf("answers after promotion = %v, want all from the canary", got)
	}
	if got := fx.work.stops(); !slices.Equal(got, []string{env + "/" + app + "/" + stableVersion}) {
		t.Errorf("stopped %v, want the old stable version once", got)
	}
	ups := fx.reports.all()
	if len(ups) != 1 || ups[0].Workflow != workflow || ups[0].App != app || !ups[0].Success || !strings.Contains(ups[0].Message, canaryVersion) {
		t.Errorf("reports = %+v, want one success for %s", ups, canaryVersion)
	}
	entry, msg := fx.production(t)
	if entry.Version() != canaryVersion || msg != "promote "+canaryVersion {
		t.Errorf("production = %s after commit %q; a promoted rollout must leave git alone", entry.Version(), msg)
	}
	if rec := fx.store.record(app); rec.StableVersion != canaryVersion || rec.StableEntry == nil || rec.StableEntry.Deploy.Revision != "c4n4ry" {
		t.Errorf("app record = %+v, want the canary stable with its entry", rec)
	}
	if fx.seq(app, "Promoted") == 0 {
		t.Errorf("events %v, want Promoted", fx.reasons(app))
	}
	if v, known := fx.ctl.Wanted(env, app); !known || !slices.Equal(v, []string{canaryVersion}) {
		t.Errorf("Wanted = %v, %v; want the canary only", v, known)
	}
	if s := fx.ctl.Stable(env, app); s != canaryVersion {
		t.Errorf("Stable = %q, want %s", s, canaryVersion)
	}
}

func (fx *fixture) assertAborted(t testing.TB, st Status, reason string) {
	t.Helper()
	if st.Phase != Degraded || st.Weight != 0 || !strings.Contains(st.Message, reason) || st.Finished.IsZero() {
		t.Errorf("status = %+v, want Degraded at weight 0 with %q", st, reason)
	}
	fx.assertStable(t)
	if got := fx.work.stops(); !slices.Equal(got, []string{env + "/" + app + "/" + canaryVersion}) {
		t.Errorf("stopped %v, want the canary once", got)
	}
	ups := fx.reports.all()
	if len(ups) != 1 || ups[0].Workflow != workflow || ups[0].Success || ups[0].Superseded || !strings.Contains(ups[0].Message, reason) {
		t.Errorf("reports = %+v, want one failure with %q", ups, reason)
	}
	entry, msg := fx.production(t)
	if entry.Version() != stableVersion || entry.Deploy.Revision != "57ab1e" || entry.Images.Pipeline == nil || entry.Images.Pipeline.Tag != stableVersion {
		t.Errorf("production entry = %+v, want the stable entry back", entry)
	}
	if !strings.Contains(msg, canaryVersion+" failed") || !strings.Contains(msg, stableVersion) || !strings.Contains(msg, reason) {
		t.Errorf("revert commit message = %q, want it to name the failed version %s and the reason", msg, canaryVersion)
	}
	if n := fx.committed.Load(); n != 1 {
		t.Errorf("Committed called %d times, want once for the revert", n)
	}
	aborting, aborted := fx.seq(app, "Aborting"), fx.seq(app, "Aborted")
	if aborting == 0 || aborted <= aborting {
		t.Errorf("events %v, want Aborting then Aborted", fx.reasons(app))
	}
}

// assertStable checks that all of web's traffic goes to the stable version
// it had, which stays the record's.
func (fx *fixture) assertStable(t testing.TB) {
	t.Helper()
	route, ok := fx.router.Route(env, app)
	if !ok || route.StableVersion != stableVersion || !slices.Equal(route.Stable, fx.stable) || route.CanaryVersion != "" || len(route.Canary) != 0 || route.CanaryWeight != 0 {
		t.Errorf("route = %+v, want stable only", route)
	}
	if got := fx.hits(t, 4); got["200 stable"] != 4 {
		t.Errorf("answers = %v, want all from stable", got)
	}
	if rec := fx.store.record(app); rec.StableVersion != stableVersion {
		t.Errorf("app record = %+v, want stable %s", rec, stableVersion)
	}
	if v, known := fx.ctl.Wanted(env, app); !known || !slices.Equal(v, []string{stableVersion}) {
		t.Errorf("Wanted = %v, %v; want the stable version only", v, known)
	}
}
