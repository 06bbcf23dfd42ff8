package local

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/runway-cd/runway/internal/runtime"
)

// serverSource is a tiny app: it listens on $PORT, answers /healthz (or
// not, by its -mode flag) and tells who it is on /whoami.
const serverSource = `package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
)

func main() {
	mode := flag.String("mode", "ok", "ok, crash or unhealthy")
	crashIf := flag.String("crash-if", "", "crash at start while this file exists")
	flag.Parse()
	fmt.Printf("pid %d starting in mode %s\n", os.Getpid(), *mode)
	if _, err := os.Stat(*crashIf); *crashIf != "" && err == nil {
		*mode = "crash"
	}
	if *mode == "crash" {
		fmt.Fprintln(os.Stderr, "fatal: the config file is missing")
		os.Exit(3)
	}
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if *mode == "unhealthy" {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	http.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d %s %s %s %s", os.Getpid(), os.Getenv("RUNWAY_ENV"), os.Getenv("RUNWAY_APP"), os.Getenv("RUNWAY_VERSION"), os.Getenv("GREETING"))
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
`

// appDir is the directory holding the built test server as ./server, the
// way an app artifact holds its program.
var appDir string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "runway-local-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(serverSource), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	build := exec.Command("go", "build", "-o", "server", "main.go")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the test server: %v\n%s", err, out)
		return 1
	}
	appDir = dir
	return m.Run()
}

// newRuntime returns a runtime in a temporary dir that stops everything it
// started when the test ends.
func newRuntime(t *testing.T) *Runtime {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "envs")
	rt, err := New(Options{
		Dir:        dir,
		SecretsDir: secretsFor(dir),
		Logger:     slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	destroyAtEnd(t, rt)
	return rt
}

// destroyAtEnd destroys every environment of rt and closes it when the
// test ends.
func destroyAtEnd(t *testing.T, rt *Runtime) {
	t.Cleanup(func() {
		ctx := context.Background()
		for _, env := range rt.Envs() {
			if err := rt.Destroy(ctx, env); err != nil {
				t.Errorf("cleanup Destroy %s: %v", env, err)
			}
		}
		if err := rt.Close(ctx); err != nil {
			t.Errorf("cleanup Close: %v", err)
		}
	})
}

func testReplicaSet(env, version string, replicas int, args ...string) runtime.ReplicaSet {
	return runtime.ReplicaSet{
		Env: env, App: "web", Version: version,
		Dir:        appDir,
		Command:    append([]string{"./server"}, args...),
		PortEnv:    "PORT",
		HealthPath: "/healthz",
		Replicas:   replicas,
		Vars:       []string{"GREETING=hello"},
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d %q, %v", url, resp.StatusCode, b, err)
	}
	return string(b)
}

func listens(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// gone reports whether no process has pid (a reaped child is gone).
func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestStartStopReplicas(t *testing.T) {
	ctx := t.Context()
	rt := newRuntime(t)
	rs := testReplicaSet("env-a", "v1", 2)

	first, err := rt.Start(ctx, rs)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if len(first) != 2 || first[0].Addr == first[1].Addr || first[0].PID == first[1].PID {
		t.Fatalf("Start = %+v, want 2 distinct replicas", first)
	}

	steps := []struct {
		name   string
		act    func(t *testing.T) []runtime.Replica
		assert func(t *testing.T, got []runtime.Replica)
	}{
		{
			name: "both replicas answer with their own pid and variables",
			act:  func(*testing.T) []runtime.Replica { return first },
			assert: func(t *testing.T, got []runtime.Replica) {
				for _, r := range got {
					want := fmt.Sprintf("%d env-a web v1 hello", r.PID)
					if body := get(t, "http://"+r.Addr+"/whoami"); body != want {
						t.Errorf("replica %s says %q, want %q", r.Addr, body, want)
					}
				}
			},
		},
		{
			name: "starting again returns the same processes",
			act: func(t *testing.T) []runtime.Replica {
				again, err := rt.Start(ctx, rs)
				if err != nil {
					t.Fatalf("second Start: %v", err)
				}
				return again
			},
			assert: func(t *testing.T, got []runtime.Replica) {
				if !slices.Equal(got, first) {
					t.Errorf("second Start = %+v, want the first replicas %+v", got, first)
				}
			},
		},
		{
			name: "another version runs beside it",
			act: func(t *testing.T) []runtime.Replica {
				v2, err := rt.Start(ctx, testReplicaSet("env-a", "v2", 1))
				if err != nil {
					t.Fatalf("Start v2: %v", err)
				}
				return v2
			},
			assert: func(t *testing.T, got []runtime.Replica) {
				if body := get(t, "http://"+got[0].Addr+"/whoami"); !strings.Contains(body, " v2 ") {
					t.Errorf("v2 replica says %q", body)
				}
				for _, r := range first {
					if !listens(r.Addr) {
						t.Errorf("v1 replica %s stopped when v2 started", r.Addr)
					}
				}
				if err := rt.Stop(ctx, "env-a", "web", "v2"); err != nil {
					t.Fatalf("Stop v2: %v", err)
				}
			},
		},
		{
			name: "stop closes the ports and ends the processes",
			act: func(t *testing.T) []runtime.Replica {
				if err := rt.Stop(ctx, "env-a", "web", "v1"); err != nil {
					t.Fatalf("Stop: %v", err)
				}
				return first
			},
			assert: func(t *testing.T, got []runtime.Replica) {
				for _, r := range got {
					if listens(r.Addr) {
						t.Errorf("%s still listens after Stop", r.Addr)
					}
					if !gone(r.PID) {
						t.Errorf("process %d still exists after Stop", r.PID)
					}
				}
			},
		},
		{
			name: "stopping again is a no-op",
			act: func(t *testing.T) []runtime.Replica {
				if err := rt.Stop(ctx, "env-a", "web", "v1"); err != nil {
					t.Fatalf("second Stop: %v", err)
				}
				return nil
			},
			assert: func(*testing.T, []runtime.Replica) {},
		},
		{
			name: "start after stop starts new processes",
			act: func(t *testing.T) []runtime.Replica {
				again, err := rt.Start(ctx, rs)
				if err != nil {
					t.Fatalf("Start after Stop: %v", err)
				}
				return again
			},
			assert: func(t *testing.T, got []runtime.Replica) {
				if len(got) != 2 {
					t.Fatalf("Start after Stop = %+v", got)
				}
				for _, r := range got {
					if r.PID == first[0].PID || r.PID == first[1].PID {
						t.Errorf("pid %d reused from the stopped set", r.PID)
					}
					get(t, "http://"+r.Addr+"/healthz")
				}
			},
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.assert(t, st.act(t))
		})
	}
}

func TestStartFailures(t *testing.T) {
	tests := []struct {
		name    string
		rs      runtime.ReplicaSet
		want    []string
		logWant string
	}{
		{
			name:    "program exits at once",
			rs:      testReplicaSet("env-b", "crash", 1, "-mode=crash"),
			want:    []string{"starting web crash in env-b", "replica exited before it was healthy", "fatal: the config file is missing"},
			logWant: "mode crash",
		},
		{
			name: "health never passes",
			rs: func() runtime.ReplicaSet {
				rs := testReplicaSet("env-b", "sick", 2, "-mode=unhealthy")
				rs.HealthTimeout = 500 * time.Millisecond
				return rs
			}(),
			want:    []string{"not healthy at /healthz before the deadline", "pid "},
			logWant: "mode unhealthy",
		},
		{
			name: "program does not exist",
			rs: func() runtime.ReplicaSet {
				rs := testReplicaSet("env-b", "missing", 1)
				rs.Command = []string{"./no-such-program"}
				return rs
			}(),
			want: []string{"starting ./no-such-program"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := newRuntime(t)
			got, err := rt.Start(t.Context(), tt.rs)
			if err == nil {
				t.Fatalf("Start succeeded with %+v", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tt.logWant == "" {
				return
			}
			// Every replica started must have been stopped: their logs
			// say which pids they had.
			logs, _ := filepath.Glob(filepath.Join(rt.opts.Dir, tt.rs.Env, "logs", "*.log"))
			if len(logs) != tt.rs.Replicas {
				t.Fatalf("logs = %v, want %d", logs, tt.rs.Replicas)
			}
			for _, l := range logs {
				b, err := os.ReadFile(l)
				if err != nil {
					t.Fatal(err)
				}
				var pid int
				if _, err := fmt.Sscanf(string(b), "pid %d", &pid); err != nil || !bytes.Contains(b, []byte(tt.logWant)) {
					t.Fatalf("log %s = %q", l, b)
				}
				if !gone(pid) {
					t.Errorf("replica %d left running after a failed Start", pid)
				}
			}
		})
	}
}

func TestRunJob(t *testing.T) {
	rt := newRuntime(t)
	dir := t.TempDir()
	tests := []struct {
		name    string
		job     runtime.Job
		want    []string // substrings of the error; none means success
		wantLog string
	}{
		{
			name:    "success writes its output to the log, in its dir, with its variables",
			job:     runtime.Job{Name: "migrations", Dir: dir, Command: []string{"sh", "-c", `echo "$GREETING from $(pwd)"`}, Vars: []string{"GREETING=hi"}},
			wantLog: "hi from " + dir,
		},
		{
			name:    "non-zero exit is an error naming the job",
			job:     runtime.Job{Name: "tests", Dir: dir, Command: []string{"sh", "-c", "echo 1 test failed; exit 3"}},
			want:    []string{"tests: exit status 3"},
			wantLog: "1 test failed",
		},
		{
			name: "timeout kills the job and its children",
			job:  runtime.Job{Name: "tests", Dir: dir, Command: []string{"sh", "-c", "sleep 60 & wait"}, Timeout: 200 * time.Millisecond},
			want: []string{"tests timed out after 200ms"},
		},
		{
			name: "no command",
			job:  runtime.Job{Name: "tests", Dir: dir},
			want: []string{"job has no command"},
		},
		{
			name: "missing program",
			job:  runtime.Job{Name: "migrations", Dir: dir, Command: []string{"./migrate"}},
			want: []string{"migrations:", "migrate"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			tt.job.Env, tt.job.Log = "jobs", &log
			err := rt.RunJob(t.Context(), tt.job)
			if len(tt.want) == 0 && err != nil {
				t.Fatalf("RunJob: %v", err)
			}
			if len(tt.want) > 0 && err == nil {
				t.Fatalf("RunJob succeeded, want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !strings.Contains(log.String(), tt.wantLog) {
				t.Errorf("log = %q, want it to contain %q", log.String(), tt.wantLog)
			}
		})
	}
}

// envValue returns the value of key in a KEY=value list.
func envValue(vars []string, key string) string {
	for _, kv := range vars {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

func TestPostgresDatabaseAndDestroy(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	rt := newRuntime(t)
	const env = "env-db"

	if _, err := rt.Database(ctx, env, "my-app"); err == nil {
		t.Fatal("Database before EnsurePostgres succeeded")
	}
	if err := rt.EnsurePostgres(ctx, env); err != nil {
		t.Fatalf("EnsurePostgres: %v", err)
	}
	pgPID := rt.env(env).pg.PID()
	if err := rt.EnsurePostgres(ctx, env); err != nil {
		t.Fatalf("second EnsurePostgres: %v", err)
	}
	if got := rt.env(env).pg.PID(); got != pgPID {
		t.Fatalf("second EnsurePostgres restarted the server: pid %d, then %d", pgPID, got)
	}

	var vars []string
	for i := range 2 { // the hook may run again: same database, same password
		db, err := rt.Database(ctx, env, "my-app")
		if err != nil {
			t.Fatalf("Database (call %d): %v", i+1, err)
		}
		if vars != nil && !slices.Equal(db.Env(), vars) {
			t.Fatalf("Database again = %v, want %v", db.Env(), vars)
		}
		vars = db.Env()
	}
	if got := envValue(vars, "PGUSER"); got != "my_app" {
		t.Errorf("PGUSER = %q, want my_app", got)
	}
	if got := envValue(vars, "PGDATABASE"); got != "my_app" {
		t.Errorf("PGDATABASE = %q, want my_app", got)
	}
	conn, err := pgx.Connect(ctx, envValue(vars, "DATABASE_URL"))
	if err != nil {
		t.Fatalf("connecting with DATABASE_URL: %v", err)
	}
	var one int
	err = conn.QueryRow(ctx, "SELECT 1").Scan(&one)
	conn.Close(ctx)
	if err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
	pgAddr := net.JoinHostPort(envValue(vars, "PGHOST"), envValue(vars, "PGPORT"))

	replicas, err := rt.Start(ctx, testReplicaSet(env, "v1", 1))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	// A directory left by an earlier run counts as an environment too.
	if err := os.MkdirAll(filepath.Join(rt.opts.Dir, "leftover"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := rt.Envs(); !slices.Equal(got, []string{env, "leftover"}) {
		t.Fatalf("Envs = %v, want [%s leftover]", got, env)
	}

	if err := rt.Destroy(ctx, env); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	checks := []struct {
		name string
		ok   func() bool
	}{
		{"env dir removed", func() bool {
			_, err := os.Stat(filepath.Join(rt.opts.Dir, env))
			return errors.Is(err, os.ErrNotExist)
		}},
		{"env secrets removed", func() bool {
			_, err := os.Stat(rt.secretsDir(env))
			return errors.Is(err, os.ErrNotExist)
		}},
		{"postgres process gone", func() bool { return gone(pgPID) }},
		{"postgres port closed", func() bool { return !listens(pgAddr) }},
		{"replica process gone", func() bool { return gone(replicas[0].PID) }},
		{"replica port closed", func() bool { return !listens(replicas[0].Addr) }},
		{"env no longer listed", func() bool { return slices.Equal(rt.Envs(), []string{"leftover"}) }},
		{"destroying again succeeds", func() bool { return rt.Destroy(ctx, env) == nil }},
		{"leftover dir destroyed too", func() bool {
			return rt.Destroy(ctx, "leftover") == nil && len(rt.Envs()) == 0
		}},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !c.ok() {
				t.Error("not so")
			}
		})
	}
}

// secretsFor is the secrets dir tests give the runtime on dir: beside it,
// where a restarted runtime finds it again.
func secretsFor(dir string) string { return filepath.Join(filepath.Dir(dir), "secrets") }

func TestNewNeedsSecretsDir(t *testing.T) {
	if _, err := New(Options{Dir: t.TempDir()}); err == nil {
		t.Fatal("New without a secrets dir succeeded")
	}
}

// TestDatabasePasswords: every environment's app gets a random password of
// its own, stored 0600 in the environment's 0700 secrets dir outside the
// runtime dir, the same after the control plane restarts and adopts the
// server, refused by any other environment's server, and gone with its
// environment.
func TestDatabasePasswords(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "envs")
	cleanupDir(t, dir)
	rt := newRuntimeIn(t, dir)
	envs, apps := []string{"staging-1", "production"}, []string{"web", "my-api"}
	urls := map[string]string{} // env/app → DATABASE_URL
	seen := map[string]bool{}
	for _, env := range envs {
		if err := rt.EnsurePostgres(ctx, env); err != nil {
			t.Fatalf("EnsurePostgres %s: %v", env, err)
		}
		for _, app := range apps {
			db, err := rt.Database(ctx, env, app)
			if err != nil {
				t.Fatalf("Database %s/%s: %v", env, app, err)
			}
			password := envValue(db.Env(), "PGPASSWORD")
			if raw, err := hex.DecodeString(password); err != nil || len(raw) != 32 {
				t.Errorf("password of %s/%s is not 32 random bytes in hex", env, app)
			}
			if seen[password] {
				t.Errorf("password of %s/%s is another app's too", env, app)
			}
			seen[password] = true
			urls[env+"/"+app] = envValue(db.Env(), "DATABASE_URL")
		}
	}

	secrets := secretsFor(dir)
	wantModes := map[string]os.FileMode{secrets: os.ModeDir | 0o700}
	for _, env := range envs {
		wantModes[filepath.Join(secrets, env)] = os.ModeDir | 0o700
		for _, f := range []string{"runway", "web", "my_api"} {
			wantModes[filepath.Join(secrets, env, f+".password")] = 0o600
		}
	}
	err := filepath.WalkDir(secrets, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want, ok := wantModes[path]
		switch {
		case !ok:
			t.Errorf("unexpected %s in the secrets dir", path)
		case fi.Mode() != want:
			t.Errorf("%s has mode %v, want %v", path, fi.Mode(), want)
		case int(fi.Sys().(*syscall.Stat_t).Uid) != os.Geteuid():
			t.Errorf("%s is not owned by Runway's uid", path)
		}
		delete(wantModes, path)
		return nil
	})
	if err != nil || len(wantModes) != 0 {
		t.Fatalf("walking the secrets dir: %v; missing %v", err, wantModes)
	}

	// One environment's app role cannot log into another's server.
	stagingWeb, err := pgx.ParseConfig(urls["staging-1/web"])
	if err != nil {
		t.Fatal(err)
	}
	prodWeb, err := pgx.ParseConfig(urls["production/web"])
	if err != nil {
		t.Fatal(err)
	}
	stagingWeb.Port = prodWeb.Port
	if conn, err := pgx.ConnectConfig(ctx, stagingWeb); err == nil {
		conn.Close(ctx)
		t.Fatal("staging's password opened production's database")
	}

	// A restarted control plane adopts the servers and hands out the same
	// passwords.
	rt.Detach()
	rt = newRuntimeIn(t, dir)
	if _, err := rt.Adopt(ctx); err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	for _, env := range envs {
		for _, app := range apps {
			db, err := rt.Database(ctx, env, app)
			if err != nil {
				t.Fatalf("Database %s/%s after the restart: %v", env, app, err)
			}
			if got := envValue(db.Env(), "DATABASE_URL"); got != urls[env+"/"+app] {
				t.Errorf("DATABASE_URL of %s/%s changed with the restart", env, app)
			}
		}
	}
	conn, err := pgx.Connect(ctx, urls["production/my-api"])
	if err != nil {
		t.Fatalf("connecting after the restart: %v", err)
	}
	conn.Close(ctx)

	if err := rt.Destroy(ctx, "staging-1"); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if _, err := os.Stat(filepath.Join(secrets, "staging-1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("staging's secrets after Destroy: stat err = %v, want not exist", err)
	}
	if _, err := os.Stat(filepath.Join(secrets, "production", "web.password")); err != nil {
		t.Errorf("production's secrets after destroying staging: %v", err)
	}
	if err := rt.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}
