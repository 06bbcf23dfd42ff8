package local

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/internal/sandbox"
)

// probeAttempt is one thing the probe (testdata/probe) tries.
type probeAttempt struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	Path string `json:"path"`
	// want is a piece of the error the refusal must show; "" for an
	// attempt that must succeed (the controls that prove the probe works).
	want string
}

type probeResult struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	Err  string `json:"err"`
}

// privilegeWorld is a Runway's directories as the server lays them out,
// with its runtime and build store on the sandbox.
type privilegeWorld struct {
	dataDir, workDir string
	sb               *sandbox.Sandbox
	rt               *Runtime
	store            *build.Store
}

const webhookSecret = "whsec-0123456789abcdef-must-not-leak"

// TestPrivilege is the privilege test: on the real local runtime,
// with a real PostgreSQL server per environment, a staging job, a staging
// replica and a build try to reach Runway's data dir, production's files,
// processes and database, and are refused every time.
// dataDirAttempts are what no app code may do in Runway's data dir.
func dataDirAttempts(dataDir string) []probeAttempt {
	return []probeAttempt{
		{Name: "list the data dir", Kind: "list", Path: dataDir, want: "permission denied"},
		{Name: "read the store", Kind: "read", Path: filepath.Join(dataDir, "runway.db"), want: "permission denied"},
		{Name: "read the secret", Kind: "read", Path: filepath.Join(dataDir, "secret"), want: "permission denied"},
		{Name: "read the admin token", Kind: "read", Path: filepath.Join(dataDir, "admin.token"), want: "permission denied"},
		{Name: "read the read token", Kind: "read", Path: filepath.Join(dataDir, "read.token"), want: "permission denied"},
		{Name: "read the sandbox uid table", Kind: "read", Path: filepath.Join(dataDir, "uids.json"), want: "permission denied"},
	}
}

func TestPrivilege(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the privilege test needs root (CI runs it as root): app code runs as sandbox uids only when Runway is root")
	}
	if testing.Short() {
		t.Skip("builds a probe program and starts two PostgreSQL servers")
	}
	t.Setenv("RUNWAY_WEBHOOK_SECRET", webhookSecret)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-on-the-allow-list")
	ctx := t.Context()
	w := newPrivilegeWorld(t)

	// The build tries these as the build uid, from its build script.
	buildAttempts := append(dataDirAttempts(w.dataDir), []probeAttempt{
		{Name: "list the environments", Kind: "list", Path: filepath.Join(w.workDir, "envs"), want: "permission denied"},
		{Name: "write the artifact store", Kind: "write", Path: filepath.Join(w.workDir, "artifacts", "sha256", "planted"), want: "permission denied"},
		{Name: "control: write the output", Kind: "write", Path: "out-probe.txt"},
	}...)
	var buildLog bytes.Buffer
	repoURL, commit := probeRepo(t, buildAttempts)
	app, err := w.store.Build(ctx, build.Request{App: "web", Version: "v1", RepoURL: repoURL, Commit: commit, Kind: build.App, Log: &buildLog})
	if err != nil {
		t.Fatalf("building the probe as the build uid: %v\n%s", err, buildLog.String())
	}

	for _, env := range []string{"production", "staging"} {
		if err := w.rt.EnsurePostgres(ctx, env); err != nil {
			t.Fatal(err)
		}
	}
	prodDB, err := w.rt.Database(ctx, "production", "web")
	if err != nil {
		t.Fatal(err)
	}
	stagingDB, err := w.rt.Database(ctx, "staging", "web")
	if err != nil {
		t.Fatal(err)
	}
	prodEnv := envMap(prodDB.Env())
	stagingEnv := envMap(stagingDB.Env())
	prod := startProbe(t, w, "production", app.Dir, prodDB.Env())
	staging := startProbe(t, w, "staging", app.Dir, stagingDB.Env())

	prodDir := filepath.Join(w.workDir, "envs", "production")
	stagingHome := filepath.Join(w.workDir, "envs", "staging", "home")
	attempts := append(dataDirAttempts(w.dataDir), []probeAttempt{
		{Name: "read production's database password", Kind: "read", Path: filepath.Join(w.dataDir, "secrets", "production", "web.password"), want: "permission denied"},
		{Name: "list the environments", Kind: "list", Path: filepath.Join(w.workDir, "envs"), want: "permission denied"},
		{Name: "list production's dir", Kind: "list", Path: prodDir, want: "permission denied"},
		{Name: "list production's home", Kind: "list", Path: filepath.Join(prodDir, "home"), want: "permission denied"},
		{Name: "read production's home", Kind: "read", Path: filepath.Join(prodDir, "home", "note.txt"), want: "permission denied"},
		{Name: "write production's home", Kind: "write", Path: filepath.Join(prodDir, "home", "planted"), want: "permission denied"},
		{Name: "list production's logs", Kind: "list", Path: filepath.Join(prodDir, "logs"), want: "permission denied"},
		{Name: "read production's log", Kind: "read", Path: filepath.Join(prodDir, "logs", "web-v1-0.log"), want: "permission denied"},
		{Name: "read the supervisor's state", Kind: "read", Path: filepath.Join(w.workDir, "envs", supervisorStateFile), want: "permission denied"},
		{Name: "read production's replica environment", Kind: "read", Path: fmt.Sprintf("/proc/%d/environ", prod.PID), want: "permission denied"},
		{Name: "write the artifact store", Kind: "write", Path: filepath.Join(app.Dir, "planted"), want: "permission denied"},
		{Name: "production's database as the superuser over the socket", Kind: "pg",
			Path: pgDSN(map[string]string{"host": postgresSocketDir(t, prodDir), "port": prodEnv["PGPORT"], "user": superuserName, "dbname": "postgres"}),
			want: "permission denied"},
		{Name: "production's database as the superuser over TCP", Kind: "pg",
			Path: pgDSN(map[string]string{"host": "127.0.0.1", "port": prodEnv["PGPORT"], "user": superuserName, "dbname": "postgres"}),
			want: "no pg_hba.conf entry"},
		{Name: "production's database as its app role with a guessed password", Kind: "pg",
			Path: pgDSN(map[string]string{"host": "127.0.0.1", "port": prodEnv["PGPORT"], "user": prodEnv["PGUSER"], "dbname": prodEnv["PGDATABASE"], "password": prodEnv["PGUSER"]}),
			want: "password authentication failed"},
		{Name: "production's database as its app role with staging's password", Kind: "pg",
			Path: pgDSN(map[string]string{"host": "127.0.0.1", "port": prodEnv["PGPORT"], "user": prodEnv["PGUSER"], "dbname": prodEnv["PGDATABASE"], "password": stagingEnv["PGPASSWORD"]}),
			want: "password authentication failed"},
		// Controls: what the environment may do works, so the refusals
		// above are the sandbox's and not a broken probe's.
		{Name: "control: write its own home", Kind: "write", Path: filepath.Join(stagingHome, "mine")},
		{Name: "control: read its own home", Kind: "read", Path: filepath.Join(stagingHome, "note.txt")},
		{Name: "control: its own database", Kind: "pg", Path: stagingEnv["DATABASE_URL"]},
	}...)
	// Every target exists (root sees it), so a refusal is the sandbox's,
	// not a wrong path's.
	for _, a := range attempts {
		if a.Kind == "list" || a.Kind == "read" {
			if _, err := os.Stat(a.Path); err != nil {
				t.Fatalf("target of %q: %v", a.Name, err)
			}
		}
	}
	if stagingEnv["PGPASSWORD"] == prodEnv["PGPASSWORD"] {
		t.Fatal("staging and production have the same database password")
	}
	spec, err := json.Marshal(attempts)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("staging job", func(t *testing.T) {
		var log bytes.Buffer
		vars := append(stagingDB.Env(), "RUNWAY_APP_URL=http://web.staging.localhost", "RUNWAY_ENV=staging", "RUNWAY_APP=web", "RUNWAY_VERSION=v1")
		err := w.rt.RunJob(ctx, runtime.Job{
			Env: "staging", App: "web", Name: "tests", Dir: app.Dir,
			Command: []string{"./probe", "check", string(spec)}, Vars: vars, Log: &log, Timeout: 2 * time.Minute,
		})
		if err != nil {
			t.Fatalf("job: %v\n%s", err, log.String())
		}
		results, environ := parseProbe(t, log.String())
		assertRefused(t, attempts, results)
		assertAllowListed(t, w.sb, environ, vars)
	})

	t.Run("staging replica", func(t *testing.T) {
		resp, err := http.PostForm("http://"+staging.Addr+"/probe", url.Values{"spec": {string(spec)}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var results []probeResult
		if err := json.NewDecoder(resp.Body).Decode(&results); err != nil {
			t.Fatal(err)
		}
		assertRefused(t, attempts, results)
	})

	t.Run("build", func(t *testing.T) {
		results, environ := parseProbe(t, buildLog.String())
		assertRefused(t, buildAttempts, results)
		assertAllowListed(t, w.sb, environ, []string{"GOCACHE", "GOMODCACHE", "GOFLAGS", "RUNWAY_OUT", "RUNWAY_APP", "RUNWAY_VERSION", "RUNWAY_COMMIT", "RUNWAY_TREE"})
		if uid := fileUID(t, filepath.Join(app.Dir, "probe")); uid != 0 {
			t.Errorf("the stored artifact is uid %d's, want root's", uid)
		}
		assertOwner(t, app.Dir, 0, 0o755)
		assertOwner(t, filepath.Join(app.Dir, "probe"), 0, 0o755)
		assertOwner(t, filepath.Join(app.Dir, "out-probe.txt"), 0, 0o644)
		buildUID, err := w.sb.UID(sandbox.BuildKey("web"))
		if err != nil {
			t.Fatal(err)
		}
		assertOwner(t, filepath.Join(w.workDir, "cache"), 0, 0o711)
		assertOwner(t, filepath.Join(w.workDir, "cache", "web"), buildUID, 0o700)
	})

	t.Run("layout", func(t *testing.T) {
		prodUID, err := w.sb.UID("production")
		if err != nil {
			t.Fatal(err)
		}
		stagingUID, err := w.sb.UID("staging")
		if err != nil {
			t.Fatal(err)
		}
		if prodUID == stagingUID {
			t.Fatalf("production and staging share uid %d", prodUID)
		}
		assertOwner(t, w.dataDir, 0, 0o700)
		assertOwner(t, filepath.Join(w.workDir, "envs"), 0, 0o711)
		assertOwner(t, prodDir, 0, 0o711)
		assertOwner(t, filepath.Join(prodDir, "home"), prodUID, 0o700)
		assertOwner(t, filepath.Join(prodDir, "logs"), 0, 0o700)
		assertOwner(t, filepath.Join(prodDir, "logs", "web-v1-0.log"), 0, 0o600)
		assertOwner(t, filepath.Join(w.workDir, "envs", supervisorStateFile), 0, 0o600)
		if uid := processUID(t, prod.PID); uid != prodUID {
			t.Errorf("production's replica runs as uid %d, want %d", uid, prodUID)
		}
		if uid := processUID(t, staging.PID); uid != stagingUID {
			t.Errorf("staging's replica runs as uid %d, want %d", uid, stagingUID)
		}
	})

	t.Run("teardown frees the uid and kills what detached", func(t *testing.T) {
		uid, err := w.sb.UID("staging")
		if err != nil {
			t.Fatal(err)
		}
		// A daemon the staging job leaves behind in a session of its own,
		// with a scrubbed environment: no marker tells it is Runway's.
		var log bytes.Buffer
		err = w.rt.RunJob(ctx, runtime.Job{Env: "staging", App: "web", Name: "daemon", Dir: app.Dir,
			Command: []string{"sh", "-c", "env -i setsid sleep 600 >/dev/null 2>&1 < /dev/null &"}, Log: &log})
		if err != nil {
			t.Fatalf("%v: %s", err, log.String())
		}
		if len(sandbox.Processes(uid)) == 0 {
			t.Fatal("the daemon does not run")
		}
		if err := w.rt.Destroy(ctx, "staging"); err != nil {
			t.Fatal(err)
		}
		if left := sandbox.Processes(uid); len(left) > 0 {
			t.Errorf("processes of staging's uid %d outlived its teardown: %v", uid, left)
		}
		if slices.Contains(w.sb.Allocated(), "staging") {
			t.Errorf("staging still holds a uid after teardown: %v", w.sb.Allocated())
		}
	})
}

// superuserName is the PostgreSQL superuser Runway's servers have.
const superuserName = "runway"

func newPrivilegeWorld(t *testing.T) *privilegeWorld {
	t.Helper()
	base := t.TempDir()
	w := &privilegeWorld{dataDir: filepath.Join(base, "data"), workDir: filepath.Join(base, "data-work")}
	if err := os.Mkdir(w.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(w.workDir, 0o711); err != nil {
		t.Fatal(err)
	}
	// What the server keeps in its data dir.
	for _, f := range []string{"runway.db", "secret", "admin.token", "read.token"} {
		if err := os.WriteFile(filepath.Join(w.dataDir, f), []byte("private "+f+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
	var err error
	w.sb, err = sandbox.New(sandbox.Options{Base: 1700000, Count: 100, StateFile: filepath.Join(w.dataDir, "uids.json"), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.sb.Traversable(w.workDir); err != nil {
		t.Fatal(err)
	}
	if w.store, err = build.NewStore(filepath.Join(w.workDir, "artifacts"), build.Options{Sandbox: w.sb, CacheDir: filepath.Join(w.workDir, "cache")}); err != nil {
		t.Fatal(err)
	}
	w.rt, err = New(Options{Dir: filepath.Join(w.workDir, "envs"), SecretsDir: filepath.Join(w.dataDir, "secrets"), Sandbox: w.sb, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		for _, env := range w.rt.Envs() {
			if err := w.rt.Destroy(ctx, env); err != nil {
				t.Errorf("cleanup Destroy %s: %v", env, err)
			}
		}
		if err := w.rt.Close(ctx); err != nil {
			t.Errorf("cleanup Close: %v", err)
		}
	})
	return w
}

// probeRepo builds the probe (as root, from this module) and commits it
// with an app spec whose build copies it into the artifact and, as the
// build uid, tries the same things against Runway's data dir.
func probeRepo(t *testing.T, attempts []probeAttempt) (repo, commit string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "probe")
	cmd := exec.Command("go", "build", "-ldflags=-s -w", "-o", bin, "./testdata/probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the probe: %v\n%s", err, out)
	}
	probe, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	buildSpec, err := json.Marshal(attempts)
	if err != nil {
		t.Fatal(err)
	}
	spec := `name: web
build:
  app: |
    cp probe "$RUNWAY_OUT/probe"
    chmod 755 "$RUNWAY_OUT/probe"
    ./probe check "$(cat build-spec.json)"
    mv out-probe.txt "$RUNWAY_OUT/"
run:
  command: ["./probe", "serve"]
`
	repo = filepath.Join(t.TempDir(), "web.git")
	if err := gitops.InitBare(repo, "main"); err != nil {
		t.Fatal(err)
	}
	commit, err = gitops.CommitDir(t.Context(), repo, "main", fstest.MapFS{
		"runway.yaml":     {Data: []byte(spec)},
		"probe":           {Data: probe, Mode: 0o755},
		"build-spec.json": {Data: buildSpec},
	}, "the probe")
	if err != nil {
		t.Fatal(err)
	}
	return repo, commit
}

// startProbe runs the probe as env's replica.
func startProbe(t *testing.T, w *privilegeWorld, env, dir string, vars []string) runtime.Replica {
	t.Helper()
	reps, err := w.rt.Start(t.Context(), runtime.ReplicaSet{
		Env: env, App: "web", Version: "v1", Dir: dir, Command: []string{"./probe", "serve"},
		PortEnv: "PORT", HealthPath: "/healthz", Replicas: 1, Vars: vars, HealthTimeout: time.Minute,
	})
	if err != nil {
		t.Fatalf("starting %s's replica: %v", env, err)
	}
	return reps[0]
}

func parseProbe(t *testing.T, log string) (results []probeResult, environ []string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "PROBE "); ok {
			var r probeResult
			if err := json.Unmarshal([]byte(rest), &r); err != nil {
				t.Fatalf("probe line %q: %v", line, err)
			}
			results = append(results, r)
		}
		if rest, ok := strings.CutPrefix(line, "ENV "); ok {
			if err := json.Unmarshal([]byte(rest), &environ); err != nil {
				t.Fatalf("probe line %q: %v", line, err)
			}
		}
	}
	if len(results) == 0 {
		t.Fatalf("no probe results in:\n%s", log)
	}
	return results, environ
}

// assertRefused checks each attempt separately: refused with the expected
// error, or, for a control, allowed.
func assertRefused(t *testing.T, attempts []probeAttempt, results []probeResult) {
	t.Helper()
	byName := map[string]probeResult{}
	for _, r := range results {
		byName[r.Name] = r
	}
	for _, a := range attempts {
		t.Run(a.Name, func(t *testing.T) {
			r, ok := byName[a.Name]
			switch {
			case !ok:
				t.Fatal("not attempted")
			case a.want == "" && !r.OK:
				t.Fatalf("control failed: %s", r.Err)
			case a.want == "":
			case r.OK:
				t.Fatal("allowed, want refused")
			case !strings.Contains(r.Err, a.want):
				t.Fatalf("refused with %q, want an error with %q", r.Err, a.want)
			default:
				t.Logf("refused: %s", r.Err)
			}
		})
	}
}

// assertAllowListed checks that the job's environment has nothing of
// Runway's: only allow-listed names, HOME and TMPDIR, and what the job was
// given.
func assertAllowListed(t *testing.T, sb *sandbox.Sandbox, environ, given []string) {
	t.Helper()
	if len(environ) == 0 {
		t.Fatal("the probe reported no environment")
	}
	// HOME and TMPDIR are the sandbox's; a shell sets PWD (a build script
	// runs in sh).
	own := map[string]bool{"HOME": true, "TMPDIR": true, "PWD": true}
	for _, kv := range given {
		k, _, _ := strings.Cut(kv, "=")
		own[k] = true
	}
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if k == "RUNWAY_WEBHOOK_SECRET" || strings.Contains(kv, webhookSecret) {
			t.Errorf("the job got the webhook secret: %s", k)
		}
		if !own[k] && !sb.Allowed(k) {
			t.Errorf("the job got %s, which is neither allow-listed nor the job's", k)
		}
	}
}

func assertOwner(t *testing.T, path string, uid uint32, perm os.FileMode) {
	t.Helper()
	out, err := exec.Command("stat", "-c", "%u %a", path).Output()
	if err != nil {
		t.Errorf("stat %s: %v", path, err)
		return
	}
	want := fmt.Sprintf("%d %o", uid, perm)
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("%s: owner and mode %s, want %s", path, got, want)
	}
}

func fileUID(t *testing.T, path string) uint32 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Uid
}

func processUID(t *testing.T, pid int) uint32 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(rest)
			u, err := strconv.ParseUint(f[0], 10, 32)
			if err != nil {
				t.Fatal(err)
			}
			return uint32(u)
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return 0
}

// postgresSocketDir is where env's server has its unix socket, from the
// postgres package's instance record.
func postgresSocketDir(t *testing.T, envDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(envDir, "postgres", "instance.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		SocketDir string `json:"socketDir"`
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.SocketDir == "" {
		t.Fatalf("instance.json has no socket dir: %s (%v)", b, err)
	}
	return rec.SocketDir
}

func pgDSN(kv map[string]string) string {
	keys := slices.Sorted(maps.Keys(kv))
	parts := []string{"sslmode=disable", "connect_timeout=5"}
	for _, k := range keys {
		parts = append(parts, k+"='"+strings.ReplaceAll(kv[k], "'", `\'`)+"'")
	}
	return strings.Join(parts, " ")
}

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}
