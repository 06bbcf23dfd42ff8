package environment

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/runtime"
)

// stateRepo is a real state repository: a bare repository in a temp dir
// and Runway's clone of it, as the server has.
type stateRepo struct {
	*gitops.Repo
	bare string
}

// newStateRepo seeds a state repository with manifests (and raw files,
// path -> content, for manifests that do not parse).
func newStateRepo(t *testing.T, raw map[string]string, ms ...*manifest.Manifest) *stateRepo {
	t.Helper()
	dir := t.TempDir()
	bare := filepath.Join(dir, "state.git")
	if err := gitops.InitBare(bare, "main"); err != nil {
		t.Fatal(err)
	}
	files := fstest.MapFS{"README.md": {Data: []byte("state\n")}}
	for p, data := range raw {
		files[p] = &fstest.MapFile{Data: []byte(data)}
	}
	for _, m := range ms {
		files[manifestPath(m.EnvName)] = &fstest.MapFile{Data: marshal(t, m)}
	}
	if _, err := gitops.CommitDir(t.Context(), bare, "main", files, "seed"); err != nil {
		t.Fatal(err)
	}
	repo, err := gitops.Open(t.Context(), bare, filepath.Join(dir, "clone"), "main", nil)
	if err != nil {
		t.Fatal(err)
	}
	return &stateRepo{Repo: repo, bare: bare}
}

func manifestPath(env string) string {
	if env == manifest.ProductionEnv {
		return manifest.ProductionPath
	}
	return manifest.StagingPath(env)
}

func marshal(t *testing.T, m *manifest.Manifest) []byte {
	t.Helper()
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// put commits m as its environment's manifest.
func (r *stateRepo) put(t *testing.T, m *manifest.Manifest) {
	t.Helper()
	if _, err := r.Commit(t.Context(), "put "+m.EnvName, gitops.Change{Path: manifestPath(m.EnvName), Data: marshal(t, m)}); err != nil {
		t.Fatal(err)
	}
}

// remove commits the deletion of env's manifest.
func (r *stateRepo) remove(t *testing.T, env string) {
	t.Helper()
	if _, err := r.Commit(t.Context(), "remove "+env, gitops.Change{Path: manifestPath(env), Delete: true}); err != nil {
		t.Fatal(err)
	}
}

// cutOff makes the remote unreachable, as a network outage does, until
// the returned function is called.
func (r *stateRepo) cutOff(t *testing.T) (restore func()) {
	t.Helper()
	if err := os.Rename(r.bare, r.bare+".away"); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Rename(r.bare+".away", r.bare); err != nil {
			t.Fatal(err)
		}
	}
}

// readCounter wraps a Snapshotter and counts its reads and failures.
type readCounter struct {
	Snapshotter
	mu           sync.Mutex
	reads, fails int
	wake         chan struct{}
}

func countReads(s Snapshotter) *readCounter {
	return &readCounter{Snapshotter: s, wake: make(chan struct{})}
}

func (r *readCounter) Snapshot(ctx context.Context) (*gitops.Snapshot, error) {
	snap, err := r.Snapshotter.Snapshot(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reads++
	if err != nil {
		r.fails++
	}
	close(r.wake)
	r.wake = make(chan struct{})
	return snap, err
}

func (r *readCounter) counts() (reads, fails int, wake <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reads, r.fails, r.wake
}

func envManifest(name string) *manifest.Manifest {
	return &manifest.Manifest{EnvName: name, DeployingWorkflowName: "wf-" + name, Apps: map[string]*manifest.App{
		"postgres": {Images: manifest.Images{Code: manifest.Image{Image: "postgres", Tag: "15"}}},
	}}
}

func appAt(version string) *manifest.App {
	return &manifest.App{Images: manifest.Images{Code: manifest.Image{Image: "runway.local/x", Tag: version}}}
}

// withApps returns a manifest of env with apps (name -> version) and no
// services.
func withApps(env string, apps map[string]string) *manifest.Manifest {
	m := &manifest.Manifest{EnvName: env, DeployingWorkflowName: "wf-" + env, Apps: map[string]*manifest.App{}}
	for name, v := range apps {
		m.Apps[name] = appAt(v)
	}
	return m
}

// fakeRuntime is an in-memory runtime that records what it is asked.
// Tests use it where the real local runtime cannot be made to block, count
// or fail on cue; the hooks, when set, run first and may fail the call.
type fakeRuntime struct {
	mu       sync.Mutex
	envs     []string
	running  []runtime.Deployment
	calls    []string // "postgres env", "start env app version", "stop ...", "destroy env"
	jobs     []runtime.Job
	replicas int

	onPostgres func(ctx context.Context, env string) error
	onDatabase func(ctx context.Context, env, app string) error
	onStart    func(ctx context.Context, rs runtime.ReplicaSet) error
}

var _ Runtime = (*fakeRuntime)(nil)

func (f *fakeRuntime) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeRuntime) addEnvLocked(env string) {
	if !slices.Contains(f.envs, env) {
		f.envs = append(f.envs, env)
	}
}

func (f *fakeRuntime) EnsurePostgres(ctx context.Context, env string) error {
	if f.onPostgres != nil {
		if err := f.onPostgres(ctx, env); err != nil {
			return err
		}
	}
	f.record("postgres " + env)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addEnvLocked(env)
	return nil
}

func (f *fakeRuntime) Database(ctx context.Context, env, app string) (runtime.Database, error) {
	if f.onDatabase != nil {
		if err := f.onDatabase(ctx, env, app); err != nil {
			return nil, err
		}
	}
	return fakeDB{}, nil
}

type fakeDB struct{}

func (fakeDB) Env() []string { return []string{"DATABASE_URL=postgres://web@127.0.0.1/web"} }

func (f *fakeRuntime) Start(ctx context.Context, rs runtime.ReplicaSet) ([]runtime.Replica, error) {
	if f.onStart != nil {
		if err := f.onStart(ctx, rs); err != nil {
			return nil, err
		}
	}
	f.record(fmt.Sprintf("start %s %s %s", rs.Env, rs.App, rs.Version))
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addEnvLocked(rs.Env)
	d := runtime.Deployment{Env: rs.Env, App: rs.App, Version: rs.Version}
	if !slices.Contains(f.running, d) {
		f.running = append(f.running, d)
	}
	f.replicas++
	return []runtime.Replica{{Addr: fmt.Sprintf("127.0.0.1:%d", 10000+f.replicas)}}, nil
}

func (f *fakeRuntime) Stop(_ context.Context, env, app, version string) error {
	f.record(fmt.Sprintf("stop %s %s %s", env, app, version))
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running = slices.DeleteFunc(f.running, func(d runtime.Deployment) bool {
		return d == runtime.Deployment{Env: env, App: app, Version: version}
	})
	return nil
}

func (f *fakeRuntime) Status(string, string, string) []runtime.ReplicaStatus { return nil }

func (f *fakeRuntime) RunJob(_ context.Context, j runtime.Job) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs = append(f.jobs, j)
	return nil
}

func (f *fakeRuntime) Destroy(_ context.Context, env string) error {
	f.record("destroy " + env)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.envs = slices.DeleteFunc(f.envs, func(e string) bool { return e == env })
	f.running = slices.DeleteFunc(f.running, func(d runtime.Deployment) bool { return d.Env == env })
	return nil
}

func (f *fakeRuntime) Envs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.envs)
}

func (f *fakeRuntime) Running() []runtime.Deployment {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.running)
}

func (f *fakeRuntime) CollectStrays(context.Context) ([]string, error) { return nil, nil }

// callsMatching returns the recorded calls that start with prefix.
func (f *fakeRuntime) callsMatching(prefix string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if len(c) >= len(prefix) && c[:len(prefix)] == prefix {
			out = append(out, c)
		}
	}
	return out
}

type noArtifacts struct{}

func (noArtifacts) Resolve(string, string, build.Kind) (build.Artifact, error) {
	return build.Artifact{}, build.ErrNotFound
}

// anyArtifact resolves every version to an artifact without needs.
type anyArtifact struct{}

func (anyArtifact) Resolve(app, version string, kind build.Kind) (build.Artifact, error) {
	return build.Artifact{App: app, Version: version, Kind: kind, Spec: &appspec.Spec{Name: app}}, nil
}

// needsPostgres resolves every version to an artifact that needs a
// database.
type needsPostgres struct{}

func (needsPostgres) Resolve(app, version string, kind build.Kind) (build.Artifact, error) {
	return build.Artifact{App: app, Version: version, Kind: kind, Spec: &appspec.Spec{Needs: []string{"postgres"}}}, nil
}

// someArtifacts resolves the apps it lists, and counts its lookups.
type someArtifacts struct {
	missing map[string]bool
	mu      sync.Mutex
	lookups int
}

func (a *someArtifacts) Resolve(app, version string, kind build.Kind) (build.Artifact, error) {
	a.mu.Lock()
	a.lookups++
	a.mu.Unlock()
	if a.missing[app] {
		return build.Artifact{}, fmt.Errorf("%s %s: %w", app, version, build.ErrNotFound)
	}
	return anyArtifact{}.Resolve(app, version, kind)
}

type reports struct {
	mu  sync.Mutex
	got []string
}

func (r *reports) Update(_ context.Context, workflow, app string, ok bool, _ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	state := "ok"
	if !ok {
		state = "failed"
	}
	r.got = append(r.got, workflow+"/"+app+"/"+state)
	return nil
}

func (r *reports) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// fakeRollouts records what it is handed, as the rollout controller
// would take it; it starts nothing. Wanted answers the versions set in
// wanted, else the last desired version, else "not known".
type fakeRollouts struct {
	mu        sync.Mutex
	desired   map[string]rollout.Desired // by env/app, the last one
	handed    []string                   // "env/app version workflow", in order
	forgotten []string                   // "env/app"
	wanted    map[string][]string
	unknown   map[string]bool // env/app the rollouts do not know yet
	stable    map[string]string
	wake      chan struct{}
}

var _ Rollouts = (*fakeRollouts)(nil)

func newFakeRollouts() *fakeRollouts {
	return &fakeRollouts{desired: map[string]rollout.Desired{}, wanted: map[string][]string{}, unknown: map[string]bool{},
		stable: map[string]string{}, wake: make(chan struct{})}
}

func (r *fakeRollouts) changedLocked() {
	close(r.wake)
	r.wake = make(chan struct{})
}

func (r *fakeRollouts) SetDesired(d rollout.Desired) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := d.Env + "/" + d.App
	if old, ok := r.desired[k]; !ok || old.Version != d.Version || old.Workflow != d.Workflow {
		r.handed = append(r.handed, fmt.Sprintf("%s %s %s", k, d.Version, d.Workflow))
	}
	r.desired[k] = d
	r.changedLocked()
}

func (r *fakeRollouts) Forget(env, app string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forgotten = append(r.forgotten, env+"/"+app)
	delete(r.desired, env+"/"+app)
	r.changedLocked()
}

func (r *fakeRollouts) Wanted(env, app string) ([]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := env + "/" + app
	if r.unknown[k] {
		return nil, false
	}
	if v, ok := r.wanted[k]; ok {
		return slices.Clone(v), true
	}
	if d, ok := r.desired[k]; ok {
		return []string{d.Version}, true
	}
	return nil, false
}

func (r *fakeRollouts) Stable(env, app string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stable[env+"/"+app]
}

// handedOver returns what was handed over so far and a channel closed at
// the next call.
func (r *fakeRollouts) handedOver() ([]string, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.handed), r.wake
}

func (r *fakeRollouts) forgot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.forgotten)
}

// waitHanded waits until want was handed over.
func (r *fakeRollouts) waitHanded(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		got, wake := r.handedOver()
		if slices.Contains(got, want) {
			return
		}
		select {
		case <-wake:
		case <-deadline:
			t.Fatalf("%q never handed to the rollouts; handed %v", want, got)
		}
	}
}

// waitEvent waits for an Environment event of name with reason recorded
// after seq, and returns it. The wait is bounded so a broken controller
// fails the test rather than hanging it; it asserts nothing about time.
func waitEvent(t *testing.T, rec *events.Recorder, seq uint64, name, reason string) events.Event {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		evs, wake := rec.Since(seq, 0)
		for _, e := range evs {
			if e.Kind == events.Environment && e.Name == name && e.Reason == reason {
				return e
			}
			seq = e.Seq
		}
		select {
		case <-wake:
		case <-deadline:
			t.Fatalf("no %s event for %s; events: %v", reason, name, envEvents(rec, ""))
		}
	}
}

// envEvents lists the Environment events recorded (of name, when name is
// not ""), as "name Reason".
func envEvents(rec *events.Recorder, name string) []string {
	evs, _ := rec.Since(0, 0)
	var out []string
	for _, e := range evs {
		if e.Kind == events.Environment && (name == "" || e.Name == name) {
			out = append(out, e.Name+" "+e.Reason)
		}
	}
	return out
}

// run runs c until the test ends.
func run(t *testing.T, c *Controller) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// until waits for cond, woken by wake (a channel closed on the next
// change); the wait is bounded.
func until(t *testing.T, what string, cond func() (bool, <-chan struct{})) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		ok, wake := cond()
		if ok {
			return
		}
		select {
		case <-wake:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

var errOutage = errors.New("ensuring role web: tuple concurrently updated")

// poll waits for cond where no change can be waited on, looking every few
// milliseconds; the wait is bounded.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// stepUntil steps clk by step until cond holds: the work queue's retries
// come due as the fake clock passes their backoff. Bounded in steps.
func stepUntil(t *testing.T, clk *clocktesting.FakeClock, step time.Duration, what string, cond func() bool) {
	t.Helper()
	for range 2000 {
		if cond() {
			return
		}
		clk.Step(step)
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s did not happen in 2000 steps of %s", what, step)
}
