package workload_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/internal/runtime/local"
	"github.com/runway-cd/runway/internal/workload"
)

// testAppVar makes the test binary a tiny app: it answers on $PORT.
const testAppVar = "RUNWAY_WORKLOAD_TEST_APP"

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

func artifact(t *testing.T, version string, needs ...string) build.Artifact {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return build.Artifact{App: "web", Version: version, Kind: build.App, Dir: filepath.Dir(exe), Spec: &appspec.Spec{
		Name: "web", Needs: needs,
		Run: appspec.Run{Command: []string{exe}, PortEnv: "PORT", HealthPath: "/healthz", Replicas: 2, Env: map[string]string{testAppVar: "1"}},
	}}
}

// Start runs an artifact's replicas on the real local runtime and, called
// again for the same version, adopts them as they are.
func TestStartIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	rt, err := local.New(local.Options{Dir: filepath.Join(dir, "envs"), SecretsDir: filepath.Join(dir, "secrets")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = rt.Destroy(context.Background(), "stg")
		_ = rt.Close(context.Background())
	})
	s := workload.Starter{RT: rt}
	art := artifact(t, "v1")
	first, err := s.Start(t.Context(), "stg", art, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 2 {
		t.Fatalf("backends %v, want 2", first)
	}
	again, err := s.Start(t.Context(), "stg", art, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(first, again) {
		t.Fatalf("second start gave %v, want the running %v adopted", again, first)
	}
	if st := s.Status("stg", "web", "v1"); len(st) != 2 {
		t.Fatalf("status %+v, want 2 replicas", st)
	}
	if err := s.Stop(t.Context(), "stg", "web", "v1"); err != nil {
		t.Fatal(err)
	}
	if vs, err := rt.Versions("stg", "web"); err != nil || len(vs) != 0 {
		t.Fatalf("after Stop versions %v (%v), want none", vs, err)
	}
}

// dbRuntime provides a database, or fails to with err; it records the
// replica set it is asked to start. A fake: the real runtime's PostgreSQL
// cannot be made to fail on cue.
type dbRuntime struct {
	err     error
	started []runtime.ReplicaSet
}

type db struct{}

func (db) Env() []string { return []string{"DATABASE_URL=postgres://web@127.0.0.1/web"} }

func (r *dbRuntime) Database(context.Context, string, string) (runtime.Database, error) {
	if r.err != nil {
		return nil, r.err
	}
	return db{}, nil
}
func (r *dbRuntime) Start(_ context.Context, rs runtime.ReplicaSet) ([]runtime.Replica, error) {
	r.started = append(r.started, rs)
	return []runtime.Replica{{Addr: "127.0.0.1:4001"}}, nil
}
func (r *dbRuntime) Stop(context.Context, string, string, string) error    { return nil }
func (r *dbRuntime) Status(string, string, string) []runtime.ReplicaStatus { return nil }

// A database that cannot be provided is not the version's fault (ErrRetry);
// a need that cannot be met is. The replicas get the database's variables
// and the spec's own.
func TestStartDatabase(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		wantRetry bool
		wantErr   bool
	}{
		{name: "database provided"},
		{name: "database failed: retry later", err: errors.New("tuple concurrently updated"), wantErr: true, wantRetry: true},
		{name: "need cannot be met: the version's fault", err: fmt.Errorf("%w: no postgres", runtime.ErrUnsatisfiable), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := &dbRuntime{err: tt.err}
			backends, err := workload.Starter{RT: rt}.Start(t.Context(), "stg", artifact(t, "v1", "postgres"), time.Second)
			if (err != nil) != tt.wantErr || errors.Is(err, workload.ErrRetry) != tt.wantRetry {
				t.Fatalf("Start = %v, want error %v, retry %v", err, tt.wantErr, tt.wantRetry)
			}
			if tt.wantErr {
				if len(rt.started) != 0 {
					t.Fatalf("started %+v without its database", rt.started)
				}
				return
			}
			if len(backends) != 1 || backends[0].Addr != "127.0.0.1:4001" {
				t.Fatalf("backends %v", backends)
			}
			rs := rt.started[0]
			vars := strings.Join(rs.Vars, " ")
			if !strings.Contains(vars, "DATABASE_URL=") || !strings.Contains(vars, testAppVar+"=1") {
				t.Fatalf("vars %q lack the database's or the spec's", rs.Vars)
			}
			if rs.Replicas != 2 || rs.Readiness.Path != "/healthz" || rs.HealthTimeout != time.Second || rs.Env != "stg" || rs.Version != "v1" {
				t.Fatalf("replica set %+v does not follow the artifact", rs)
			}
		})
	}
}

// startErrRuntime fails every Start with err (a fake: the real outage is
// in runtimetest's AnOutageIsNeverNothingRuns, run against the local
// runtime over its supervisor's socket).
type startErrRuntime struct {
	dbRuntime
	err error
}

func (r *startErrRuntime) Start(context.Context, runtime.ReplicaSet) ([]runtime.Replica, error) {
	return nil, r.err
}

// A runtime that is unavailable (its data plane restarting) is not the
// version's fault: Start says retry later. A version that fails to start
// is the version's.
func TestStartRuntimeUnavailable(t *testing.T) {
	for _, tt := range []struct {
		err       error
		wantRetry bool
	}{
		{fmt.Errorf("starting web v1 in stg: %w: connection refused", runtime.ErrUnavailable), true},
		{errors.New("web v1 exited at start: exit status 1"), false},
	} {
		_, err := workload.Starter{RT: &startErrRuntime{err: tt.err}}.Start(t.Context(), "stg", artifact(t, "v1"), time.Second)
		if err == nil || errors.Is(err, workload.ErrRetry) != tt.wantRetry {
			t.Errorf("Start with %v = %v, want retry %v", tt.err, err, tt.wantRetry)
		}
	}
}
