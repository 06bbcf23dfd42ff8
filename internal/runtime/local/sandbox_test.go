package local

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/internal/sandbox"
)

// TestJobEnvironment checks, with or without root, that a job gets the
// allow-listed environment and its own variables, never Runway's.
func TestJobEnvironment(t *testing.T) {
	t.Setenv("RUNWAY_WEBHOOK_SECRET", "whsec-0123456789abcdef")
	t.Setenv("RUNWAY_ADMIN_TOKEN", "admin-0123456789abcdef")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-on-the-allow-list")
	t.Setenv("LANG", "C.UTF-8")
	rt := newRuntime(t)
	var log bytes.Buffer
	err := rt.RunJob(t.Context(), runtime.Job{
		Env: "env-a", App: "web", Name: "tests", Dir: appDir,
		Command: []string{"sh", "-c", "env; echo cwd=$(pwd)"}, Vars: []string{"DATABASE_URL=postgres://x", "RUNWAY_APP_URL=http://web.env-a.localhost"}, Log: &log,
	})
	if err != nil {
		t.Fatalf("job: %v\n%s", err, log.String())
	}
	got := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(log.String()), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	home := filepath.Join(rt.opts.Dir, "env-a", "home")
	for k, want := range map[string]string{
		"DATABASE_URL": "postgres://x", "RUNWAY_APP_URL": "http://web.env-a.localhost", "LANG": "C.UTF-8",
		"HOME": home, "TMPDIR": home, "cwd": appDir,
	} {
		if got[k] != want {
			t.Errorf("%s = %q, want %q", k, got[k], want)
		}
	}
	for _, k := range []string{"RUNWAY_WEBHOOK_SECRET", "RUNWAY_ADMIN_TOKEN", "AWS_SECRET_ACCESS_KEY", "RUNWAY_RUNTIME_DIR"} {
		if _, ok := got[k]; ok {
			t.Errorf("the job got %s", k)
		}
	}
}

// TestEnvironmentLayout checks the modes of an environment's files.
func TestEnvironmentLayout(t *testing.T) {
	rt := newRuntime(t)
	if _, err := rt.Start(t.Context(), testReplicaSet("env-a", "v1", 1)); err != nil {
		t.Fatal(err)
	}
	env := filepath.Join(rt.opts.Dir, "env-a")
	for path, want := range map[string]os.FileMode{
		rt.opts.Dir:                0o711 | os.ModeDir,
		env:                        0o711 | os.ModeDir,
		filepath.Join(env, "home"): 0o700 | os.ModeDir,
		filepath.Join(env, "logs"): 0o700 | os.ModeDir,
		filepath.Join(env, "logs", "web-v1-0.log"):      0o600,
		filepath.Join(rt.opts.Dir, supervisorStateFile): 0o600,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
	}
}

// TestFreesUIDsOfVanishedEnvironments checks that a uid whose environment
// directory is gone (a crash between removing it and freeing the uid) is
// freed when the runtime starts, and the others are kept.
func TestFreesUIDsOfVanishedEnvironments(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: sandbox uids are only handed out when Runway is root")
	}
	base := t.TempDir()
	sb, err := sandbox.New(sandbox.Options{Base: 1720000, Count: 10, StateFile: filepath.Join(base, "uids.json"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "envs")
	for _, env := range []string{"kept", "vanished"} {
		if _, err := sb.UID(env); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "kept"), 0o711); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Dir: dir, SecretsDir: filepath.Join(base, "secrets"), Sandbox: sb, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	if got := sb.Allocated(); !slices.Equal(got, []string{"kept"}) {
		t.Fatalf("allocated after start = %v, want [kept]", got)
	}
}
