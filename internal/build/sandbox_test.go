package build

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"

	"github.com/runway-cd/runway/internal/sandbox"
)

// specWith is an app spec whose app build runs script.
func specWith(script string) string {
	return "name: hello\nbuild:\n  app: |\n" + indent(script) + "run:\n  command: [\"./hello\"]\n"
}

func indent(s string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("    " + line + "\n")
	}
	return b.String()
}

func TestBuildOutput(t *testing.T) {
	ctx := context.Background()
	store, err := NewStore(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		script  string
		wantErr string
		assert  func(t *testing.T, a Artifact, log string)
	}{
		{
			name: "files and dirs get the stored modes",
			script: `umask 077
printf run > "$RUNWAY_OUT/hello"; chmod 700 "$RUNWAY_OUT/hello"
mkdir -p "$RUNWAY_OUT/static/css"; printf body > "$RUNWAY_OUT/static/css/site.css"; chmod 600 "$RUNWAY_OUT/static/css/site.css"`,
			assert: func(t *testing.T, a Artifact, _ string) {
				for path, want := range map[string]os.FileMode{
					"hello": 0o755, "static": 0o755 | os.ModeDir, "static/css": 0o755 | os.ModeDir, "static/css/site.css": 0o644, "runway.yaml": 0o644,
				} {
					fi, err := os.Lstat(filepath.Join(a.Dir, path))
					if err != nil {
						t.Fatal(err)
					}
					if fi.Mode() != want {
						t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
					}
				}
			},
		},
		{
			name:   "the commit's app spec wins over the output's",
			script: `printf 'name: evil\n' > "$RUNWAY_OUT/runway.yaml"; printf x > "$RUNWAY_OUT/hello"`,
			assert: func(t *testing.T, a Artifact, log string) {
				if a.Spec.Name != "hello" {
					t.Errorf("stored spec names %q", a.Spec.Name)
				}
				if !strings.Contains(log, "build output runway.yaml ignored") {
					t.Errorf("log does not say the output's runway.yaml was ignored:\n%s", log)
				}
			},
		},
		{name: "a symlink out of the output", script: `ln -s /etc/passwd "$RUNWAY_OUT/passwd"`, wantErr: "passwd is a symlink"},
		{name: "a symlink inside the output", script: `printf x > "$RUNWAY_OUT/a"; ln -s a "$RUNWAY_OUT/b"`, wantErr: "b is a symlink"},
		{name: "a symlinked dir", script: `ln -s / "$RUNWAY_OUT/root"`, wantErr: "root is a symlink"},
		{name: "a named pipe", script: `mkfifo "$RUNWAY_OUT/pipe"`, wantErr: "pipe is a named pipe"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, commit := newAppRepo(t, fstest.MapFS{"runway.yaml": {Data: []byte(specWith(tt.script))}})
			var log bytes.Buffer
			version := "v" + string(rune('a'+i))
			a, err := store.Build(ctx, Request{App: "hello", Version: version, RepoURL: url, Commit: commit, Kind: App, Log: &log})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("build: %v\n%s", err, log.String())
			}
			tt.assert(t, a, log.String())
		})
	}
}

// TestBuildAsSandboxUID runs a build script as its app's build uid and checks
// what it could see and that the stored artifact is Runway's.
func TestBuildAsSandboxUID(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds run as a sandbox uid only when Runway is root")
	}
	t.Setenv("RUNWAY_WEBHOOK_SECRET", "whsec-0123456789abcdef")
	t.Setenv("SOME_TOKEN", "not-allow-listed")
	ctx := context.Background()
	base := t.TempDir()
	secret := filepath.Join(base, "data", "secret")
	if err := os.MkdirAll(filepath.Dir(secret), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("s3cr3t"), 0o600); err != nil {
		t.Fatal(err)
	}
	sb, err := sandbox.New(sandbox.Options{Base: 1650000, Count: 10, StateFile: filepath.Join(base, "data", "uids.json"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(base, "data-work")
	store, err := NewStore(filepath.Join(work, "artifacts"), Options{Sandbox: sb, CacheDir: filepath.Join(work, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	script := `id -u > "$RUNWAY_OUT/uid"
env > "$RUNWAY_OUT/env"
if cat ` + secret + ` 2>"$RUNWAY_OUT/secret-err"; then exit 9; fi
if touch "$RUNWAY_OUT/../../../sha256/planted" 2>"$RUNWAY_OUT/store-err"; then exit 10; fi
touch "$GOCACHE-probe" "$HOME/probe"
printf x > "$RUNWAY_OUT/hello"`
	url, commit := newAppRepo(t, fstest.MapFS{"runway.yaml": {Data: []byte(specWith(script))}})
	var log bytes.Buffer
	a, err := store.Build(ctx, Request{App: "hello", Version: "v1", RepoURL: url, Commit: commit, Kind: App, Log: &log})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	uid, err := sb.UID(sandbox.BuildKey("hello"))
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(a.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if got := read("uid"); got != strconv.FormatUint(uint64(uid), 10) || uid == 1650000 {
		t.Errorf("build ran as uid %s, want hello's build uid %d (not the range's base)", got, uid)
	}
	for _, f := range []string{"secret-err", "store-err"} {
		if got := read(f); !strings.Contains(got, "Permission denied") {
			t.Errorf("%s = %q, want Permission denied", f, got)
		}
	}
	for kv := range strings.SplitSeq(read("env"), "\n") {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "RUNWAY_WEBHOOK_SECRET" || k == "SOME_TOKEN":
			t.Errorf("the build got %s", k)
		case k == "GOCACHE" && !strings.HasPrefix(kv, "GOCACHE="+filepath.Join(work, "cache", "hello")+"/"):
			t.Errorf("the build's %s, want it in the app's cache", kv)
		}
	}
	err = filepath.Walk(a.Dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || st.Gid != 0 {
			t.Errorf("stored %s is %d:%d's, want root's", p, st.Uid, st.Gid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		uid  uint32
		perm os.FileMode
	}{{filepath.Join(work, "cache"), 0, 0o711}, {filepath.Join(work, "cache", "hello"), uid, 0o700}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != c.uid || fi.Mode().Perm() != c.perm {
			t.Errorf("%s is uid %d mode %v, want uid %d mode %v", c.path, st.Uid, fi.Mode().Perm(), c.uid, c.perm)
		}
	}
}
