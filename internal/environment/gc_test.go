package environment_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/environment"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/logbuf"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/procfs"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/internal/runtime/local"
	"github.com/runway-cd/runway/internal/store/sqlite"
)

// testAppVar makes the test binary a tiny app: it answers on $PORT.
const testAppVar = "RUNWAY_ENVIRONMENT_TEST_APP"

func TestMain(m *testing.M) {
	if os.Getenv(testAppVar) == "1" {
		http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// binArtifacts resolves every app version to the test binary as a tiny app.
type binArtifacts struct{}

func (binArtifacts) Resolve(app, version string, kind build.Kind) (build.Artifact, error) {
	exe, err := os.Executable()
	if err != nil {
		return build.Artifact{}, err
	}
	return build.Artifact{App: app, Version: version, Kind: kind, Dir: filepath.Dir(exe), Spec: &appspec.Spec{
		Name: app,
		Run:  appspec.Run{Command: []string{exe}, PortEnv: "PORT", HealthPath: "/healthz", Replicas: 1, Env: map[string]string{testAppVar: "1"}},
	}}, nil
}

// gcRollouts answers Wanted as the rollout controller would: the versions
// it runs of each app, or "not known yet" (after a restart, before its
// first pass of the app). It records what it is told to forget.
type gcRollouts struct {
	wanted  map[string][]string // by env/app; absent: known, nothing wanted
	unknown map[string]bool
	mu      sync.Mutex
	forgot  []string
}

func (r *gcRollouts) SetDesired(rollout.Desired) {}
func (r *gcRollouts) Forget(env, app string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forgot = append(r.forgot, env+"/"+app)
}
func (r *gcRollouts) Wanted(env, app string) ([]string, bool) {
	if r.unknown[env+"/"+app] {
		return nil, false
	}
	return r.wanted[env+"/"+app], true
}
func (r *gcRollouts) Stable(string, string) string { return "" }

// Compile-time guards: the local runtime is what the controller needs of a
// runtime, and the rollout controller what it needs of the rollouts.
var (
	_ environment.Runtime  = (*local.Runtime)(nil)
	_ environment.Rollouts = (*rollout.Controller)(nil)
)

type noReports struct{}

func (noReports) Update(context.Context, string, string, bool, string) error { return nil }

func app(version string) *manifest.App {
	return &manifest.App{Images: manifest.Images{Code: manifest.Image{Image: "runway.local/x", Tag: version}}}
}

// gcWorld is a control plane restarted over leftovers: processes, routes,
// files and store rows, some wanted and some not.
type gcWorld struct {
	rt       *local.Runtime
	dir      string
	gw       *gateway.Gateway
	db       *sqlite.DB
	logs     *logbuf.Buffer
	stray    [2]uint64 // pid, start time of an unrecorded replica
	alien    [2]uint64 // a process that only looks like one
	repo     *gitops.Repo
	bare     string
	rollouts *gcRollouts
}

func newGCWorld(t *testing.T) *gcWorld {
	t.Helper()
	ctx := t.Context()
	w := &gcWorld{dir: filepath.Join(t.TempDir(), "envs"), logs: &logbuf.Buffer{}}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), w.logs), nil))
	var err error
	w.rt, err = local.New(local.Options{Dir: w.dir, SecretsDir: filepath.Join(filepath.Dir(w.dir), "secrets"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		for _, env := range w.rt.Envs() {
			_ = w.rt.Destroy(ctx, env)
		}
		_ = w.rt.Close(ctx)
	})
	start := func(env, name, version string) {
		art, _ := binArtifacts{}.Resolve(name, version, build.App)
		run := art.Spec.Run
		_, err := w.rt.Start(ctx, runtime.ReplicaSet{Env: env, App: name, Version: version, Dir: art.Dir, Command: run.Command,
			PortEnv: run.PortEnv, HealthPath: run.HealthPath, Replicas: 1, Vars: []string{testAppVar + "=1"}})
		if err != nil {
			t.Fatalf("starting %s %s in %s: %v", name, version, env, err)
		}
	}
	// Staging runs an old version beside the declared one, and an app its
	// manifest no longer has. Production was restarted mid-canary: the
	// rollout controller wants web's stable v1 and canary v2 (v0 is a
	// leftover) and api's v5 and v6 (v4 is a leftover); it does not know
	// pay yet; legacy and retired run although the manifest no longer has
	// them: legacy is not known to the rollouts (after a restart), retired
	// is, with nothing wanted.
	for _, d := range []runtime.Deployment{
		{Env: "stg", App: "web", Version: "v1"}, {Env: "stg", App: "web", Version: "v2"}, {Env: "stg", App: "old", Version: "v1"},
		{Env: "production", App: "web", Version: "v0"}, {Env: "production", App: "web", Version: "v1"}, {Env: "production", App: "web", Version: "v2"},
		{Env: "production", App: "api", Version: "v4"}, {Env: "production", App: "api", Version: "v5"}, {Env: "production", App: "api", Version: "v6"},
		{Env: "production", App: "pay", Version: "v1"}, {Env: "production", App: "pay", Version: "v2"},
		{Env: "production", App: "legacy", Version: "v1"}, {Env: "production", App: "retired", Version: "v1"},
		{Env: "broken", App: "web", Version: "v1"},
	} {
		start(d.Env, d.App, d.Version)
	}
	w.rollouts = &gcRollouts{
		wanted:  map[string][]string{"production/web": {"v1", "v2"}, "production/api": {"v5", "v6"}},
		unknown: map[string]bool{"production/pay": true, "production/legacy": true},
	}
	w.bare = filepath.Join(t.TempDir(), "state.git")
	if err := gitops.InitBare(w.bare, "main"); err != nil {
		t.Fatal(err)
	}
	files := fstest.MapFS{manifest.StagingPath("broken"): {Data: []byte("{bad json")}}
	for _, m := range []*manifest.Manifest{
		{EnvName: "stg", Apps: map[string]*manifest.App{"web": app("v2")}},
		{EnvName: "production", Apps: map[string]*manifest.App{"web": app("v2"), "api": app("v6"), "pay": app("v2")}},
	} {
		data, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		p := manifest.StagingPath(m.EnvName)
		if m.EnvName == manifest.ProductionEnv {
			p = manifest.ProductionPath
		}
		files[p] = &fstest.MapFile{Data: data}
	}
	if _, err := gitops.CommitDir(ctx, w.bare, "main", files, "seed"); err != nil {
		t.Fatal(err)
	}
	if w.repo, err = gitops.Open(ctx, w.bare, filepath.Join(t.TempDir(), "clone"), "main", nil); err != nil {
		t.Fatal(err)
	}

	// An environment half created before a crash: initdb unfinished, a
	// postmaster.pid naming no server.
	pgData := filepath.Join(w.dir, "half", "postgres", "data")
	if err := os.MkdirAll(pgData, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pgData, "postmaster.pid"), []byte("999999\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	abs, _ := filepath.Abs(w.dir)
	w.stray = spawn(t, testAppVar+"=1", "RUNWAY_ENV=stg", "RUNWAY_RUNTIME_DIR="+abs, "PORT=0")
	w.alien = spawn(t, testAppVar+"=1", "RUNWAY_ENV=stg", "PORT=0")

	w.gw = gateway.New(gateway.Options{})
	backend := []gateway.Backend{{Addr: "127.0.0.1:1"}}
	for _, r := range [][2]string{{"gone", "web"}, {"stg", "old"}, {"broken", "web"}, {"production", "web"}, {"production", "legacy"}} {
		if err := w.gw.SetRoute(gateway.Route{Env: r[0], App: r[1], StableVersion: "v1", Stable: backend}); err != nil {
			t.Fatal(err)
		}
	}

	if w.db, err = sqlite.Open(ctx, filepath.Join(t.TempDir(), "runway.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.db.Close() })
	for _, r := range []analysis.RunRecord{
		{Name: "web-v2-1", Env: "production", App: "web", Version: "v2", Phase: analysis.PhaseRunning, StartedAt: time.Now()},
		{Name: "api-v6-1", Env: "production", App: "api", Version: "v6", Phase: analysis.PhaseRunning, StartedAt: time.Now()},
		{Name: "old-v3-1", Env: "production", App: "old", Version: "v3", Phase: analysis.PhaseRunning, StartedAt: time.Now()},
		{Name: "pay-v2-1", Env: "production", App: "pay", Version: "v2", Phase: analysis.PhaseRunning, StartedAt: time.Now()},
	} {
		if err := w.db.SaveAnalysisRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// spawn starts the test binary as an app with vars, not through the
// runtime, and returns its pid and start time.
func spawn(t *testing.T, vars ...string) [2]uint64 {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), vars...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }() // reaps it once GC stops it
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	st, err := procfs.Read(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return [2]uint64{uint64(cmd.Process.Pid), st.StartTime}
}

func (w *gcWorld) routes() []string {
	var out []string
	for _, r := range w.gw.Routes() {
		out = append(out, r.Env+"/"+r.App)
	}
	return out
}

func (w *gcWorld) phase(t *testing.T, run string) analysis.Phase {
	r, err := w.db.GetAnalysisRun(t.Context(), run)
	if err != nil {
		t.Fatal(err)
	}
	return r.Phase
}

func running(p [2]uint64) bool { return procfs.Running(int(p[0]), p[1]) }

func TestGarbageCollection(t *testing.T) {
	tests := []struct {
		name        string
		unreachable bool
		assert      func(t *testing.T, w *gcWorld)
	}{
		{
			name:        "state repo unreadable: nothing is removed",
			unreachable: true,
			assert: func(t *testing.T, w *gcWorld) {
				for env, want := range map[string][]string{
					"stg/web": {"v1", "v2"}, "stg/old": {"v1"}, "production/web": {"v0", "v1", "v2"}, "production/api": {"v4", "v5", "v6"},
					"production/legacy": {"v1"}, "production/retired": {"v1"},
				} {
					e, a, _ := strings.Cut(env, "/")
					if got, err := w.rt.Versions(e, a); err != nil || !slices.Equal(got, want) {
						t.Errorf("%s runs %v (%v), want %v", env, got, err, want)
					}
				}
				if !running(w.stray) {
					t.Error("unrecorded replica stopped without a confirmed snapshot")
				}
				if got := w.routes(); len(got) != 5 {
					t.Errorf("routes = %v, want all 5", got)
				}
				if len(w.rollouts.forgot) != 0 {
					t.Errorf("forgot %v without a confirmed snapshot", w.rollouts.forgot)
				}
				if _, err := os.Stat(filepath.Join(w.dir, "half")); err != nil {
					t.Errorf("half-created env removed: %v", err)
				}
				if p := w.phase(t, "old-v3-1"); p != analysis.PhaseRunning {
					t.Errorf("analysis run = %s, want still Running", p)
				}
			},
		},
		{
			name: "state repo read: what nothing explains is removed and logged",
			assert: func(t *testing.T, w *gcWorld) {
				for env, want := range map[string][]string{
					"stg/web": {"v2"}, "stg/old": nil,
					// Restarted mid-canary: what the rollouts want is kept.
					"production/web": {"v1", "v2"},
					"production/api": {"v5", "v6"},
					// Not known to the rollouts yet: every version kept.
					"production/pay": {"v1", "v2"},
					// Undeclared: forgotten; kept until the rollouts know it.
					"production/legacy":  {"v1"},
					"production/retired": nil,
					"broken/web":         {"v1"}, // invalid manifest: left as it is
				} {
					e, a, _ := strings.Cut(env, "/")
					if got, err := w.rt.Versions(e, a); err != nil || !slices.Equal(got, want) {
						t.Errorf("%s runs %v (%v), want %v", env, got, err, want)
					}
				}
				if got := w.routes(); !slices.Equal(got, []string{"broken/web", "production/legacy", "production/web", "stg/web"}) {
					t.Errorf("routes = %v", got)
				}
				if !slices.Equal(w.rollouts.forgot, []string{"production/legacy", "production/retired"}) {
					t.Errorf("forgot %v, want production/legacy and production/retired once each", w.rollouts.forgot)
				}
				if _, err := os.Stat(filepath.Join(w.dir, "half")); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("half-created env left: %v", err)
				}
				for run, want := range map[string]analysis.Phase{
					"old-v3-1": analysis.PhaseError,   // no canary of its app
					"api-v6-1": analysis.PhaseRunning, // its app has a canary
					"web-v2-1": analysis.PhaseRunning, // its app has a canary
					"pay-v2-1": analysis.PhaseRunning, // its app's rollout is not known yet
				} {
					if p := w.phase(t, run); p != want {
						t.Errorf("analysis run %s = %s, want %s", run, p, want)
					}
				}
				logs := w.logs.String()
				for _, want := range []string{
					"garbage: stopping a version nothing wants\" env=stg app=web version=v1",
					"garbage: stopping a version nothing wants\" env=stg app=old version=v1",
					"garbage: stopping a version nothing wants\" env=production app=web version=v0",
					"garbage: stopping a version nothing wants\" env=production app=api version=v4",
					"garbage: stopping a version nothing wants\" env=production app=retired version=v1",
					"garbage: removing a route nothing wants\" env=gone app=web",
					"garbage: removing a route nothing wants\" env=stg app=old",
					"garbage: analysis run abandoned\" run=old-v3-1",
					"stray process stopped\" env=stg kind=replica pid=" + fmt.Sprint(w.stray[0]),
					"environment torn down\" env=half",
				} {
					if !strings.Contains(logs, want) {
						t.Errorf("log lacks %q", want)
					}
				}
				if strings.Count(logs, "garbage: stopping a version") != 5 {
					t.Errorf("log stops other versions too:\n%s", logs)
				}
				deadline := time.Now().Add(30 * time.Second)
				for running(w.stray) && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				if running(w.stray) {
					t.Error("unrecorded replica still runs")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newGCWorld(t)
			if tt.unreachable {
				if err := os.Rename(w.bare, w.bare+".away"); err != nil {
					t.Fatal(err)
				}
			}
			c := environment.New(w.repo, w.rt, binArtifacts{}, w.gw, noReports{}, w.rollouts,
				environment.Options{Store: w.db, Logger: slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), w.logs), nil))})
			err := c.Reconcile(t.Context())
			if (err != nil) != tt.unreachable {
				t.Fatalf("Reconcile = %v", err)
			}
			tt.assert(t, w)
			if !running(w.alien) {
				t.Error("a process without the runtime's marker was stopped")
			}
		})
	}
}
