package build

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/fstest"

	"github.com/runway-cd/runway/internal/sandbox"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds run as sandbox uids, and can be told apart and killed by uid, only when Runway is root")
	}
}

// newSandboxedStore is a store whose builds run as uids from base on, in a
// work dir outside any 0700 temporary directory's reach.
func newSandboxedStore(t *testing.T, base uint32) (*Store, *sandbox.Sandbox, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	sb, err := sandbox.New(sandbox.Options{Base: base, Count: 10, StateFile: filepath.Join(dir, "data", "uids.json"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(dir, "data-work")
	store, err := NewStore(filepath.Join(work, "artifacts"), Options{Sandbox: sb, CacheDir: filepath.Join(work, "cache"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return store, sb, work
}

// specFor is app's spec whose app build runs script.
func specFor(app, script string) string {
	return strings.Replace(specWith(script), "name: hello", "name: "+app, 1)
}

// cancelOn is a build log that cancels the build once it shows a line.
type cancelOn struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	line   string
	cancel context.CancelFunc
}

func (w *cancelOn) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if w.line != "" && strings.Contains(w.buf.String(), w.line) {
		w.cancel()
	}
	return n, err
}

func (w *cancelOn) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestBuildLeavesNothingRunning starts, from a build script, a daemon in a
// session of its own that writes into every other build's output, as the
// finding's hostile build did. However the build ends, nothing of its
// uid runs once Build returns, and the next build of the app, a clean
// one, stores only what it wrote.
func TestBuildLeavesNothingRunning(t *testing.T) {
	requireRoot(t)
	store, sb, _ := newSandboxedStore(t, 1660000)
	uid, err := sb.UID(sandbox.BuildKey("hello"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.KillAll(context.Background(), sandbox.BuildKey("hello")) })
	// The daemon finds later builds through their processes' working
	// directories (the build uid cannot list the store's tmp; every build
	// of the app runs in the same one, so it tells its own build's output
	// by a mark), and says it runs, outside the script's process group so
	// that only a kill by uid reaches it, before the script goes on.
	daemon := `touch "$RUNWAY_OUT/daemon-build"
setsid sh -c 'touch "$HOME/started"; while true; do
  for c in /proc/[0-9]*/cwd; do
    s=$(readlink "$c") || continue
    case "$s" in */src) [ -e "${s%/src}/out/daemon-build" ] || echo planted > "${s%/src}/out/planted";; esac
  done 2>/dev/null
  sleep 0.1
done' &
while [ ! -e "$HOME/started" ]; do sleep 0.05; done
echo "daemon" "started"
`
	tests := []struct {
		name    string
		script  string
		cancel  bool
		wantErr string
	}{
		{name: "success", script: daemon + `printf x > "$RUNWAY_OUT/hello"`},
		{name: "failure", script: daemon + `exit 3`, wantErr: "exit status 3"},
		{name: "cancelled", script: daemon + `sleep 300`, cancel: true, wantErr: "killed"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			log := &cancelOn{cancel: cancel}
			if tt.cancel {
				log.line = "daemon started"
			}
			url, commit := newAppRepo(t, fstest.MapFS{"runway.yaml": {Data: []byte(specWith(tt.script))}})
			_, err := store.Build(ctx, Request{App: "hello", Version: "v" + strconv.Itoa(i), RepoURL: url, Commit: commit, Kind: App, Log: log})
			if tt.wantErr == "" && err != nil {
				t.Fatalf("build: %v\n%s", err, log)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q\n%s", err, tt.wantErr, log)
			}
			if !strings.Contains(log.String(), "daemon started") {
				t.Fatalf("the daemon never started:\n%s", log)
			}
			if left := sandbox.Processes(uid); len(left) > 0 {
				t.Errorf("processes of the build uid %d outlived the build: %v", uid, left)
			}
			// A clean build of the app that leaves the daemon (were it
			// alive) time to plant its file.
			url, commit = newAppRepo(t, fstest.MapFS{"runway.yaml": {Data: []byte(specWith(`printf clean > "$RUNWAY_OUT/hello"; sleep 0.5`))}})
			var clean bytes.Buffer
			a, err := store.Build(t.Context(), Request{App: "hello", Version: "clean" + strconv.Itoa(i), RepoURL: url, Commit: commit, Kind: App, Log: &clean})
			if err != nil {
				t.Fatalf("clean build: %v\n%s", err, clean.String())
			}
			if _, err := os.Lstat(filepath.Join(a.Dir, "planted")); err == nil {
				t.Fatal("the clean build's artifact holds the file the earlier build's daemon planted")
			}
		})
	}
}

// TestBuildCachePerApp builds two apps: each runs as a uid of its own
// with a cache of its own, 0700 and that uid's, and the second app's
// build, trying to write the first one's cache, is refused.
func TestBuildCachePerApp(t *testing.T) {
	requireRoot(t)
	store, sb, work := newSandboxedStore(t, 1670000)
	cache := filepath.Join(work, "cache")
	probe := `id -u > "$RUNWAY_OUT/uid"; printf %s "$GOCACHE" > "$RUNWAY_OUT/gocache"; printf %s "$GOMODCACHE" > "$RUNWAY_OUT/gomodcache"
touch "$GOCACHE/mine" "$GOMODCACHE/mine"
`
	// alpha's build tries what a hostile one would: poison beta's caches,
	// write beta's cache dir, list it.
	attack := `for p in gocache/poison gomodcache/poison poison; do
  if touch ` + filepath.Join(cache, "beta") + `/$p 2>>"$RUNWAY_OUT/denied"; then exit 9; fi
done
if ls ` + filepath.Join(cache, "beta") + ` 2>>"$RUNWAY_OUT/denied"; then exit 10; fi
if ls ` + cache + ` 2>>"$RUNWAY_OUT/denied"; then exit 11; fi
`
	ctx := t.Context()
	artifacts := map[string]Artifact{}
	for _, b := range []struct{ app, script string }{{"beta", probe}, {"alpha", probe + attack}} {
		url, commit := newAppRepo(t, fstest.MapFS{"runway.yaml": {Data: []byte(specFor(b.app, b.script))}})
		var log bytes.Buffer
		a, err := store.Build(ctx, Request{App: b.app, Version: "v1", RepoURL: url, Commit: commit, Kind: App, Log: &log})
		if err != nil {
			t.Fatalf("build of %s: %v\n%s", b.app, err, log.String())
		}
		artifacts[b.app] = a
	}
	read := func(app, name string) string {
		b, err := os.ReadFile(filepath.Join(artifacts[app].Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	uids := map[string]uint32{}
	for _, app := range []string{"alpha", "beta"} {
		uid, err := sb.UID(sandbox.BuildKey(app))
		if err != nil {
			t.Fatal(err)
		}
		uids[app] = uid
		if got := read(app, "uid"); got != strconv.FormatUint(uint64(uid), 10) {
			t.Errorf("%s's build ran as uid %s, want its build uid %d", app, got, uid)
		}
		dir := filepath.Join(cache, app)
		for _, v := range []string{"gocache", "gomodcache"} {
			if got, want := read(app, v), filepath.Join(dir, v); got != want {
				t.Errorf("%s's build had %s %s, want %s", app, strings.ToUpper(v), got, want)
			}
			if _, err := os.Stat(filepath.Join(dir, v, "mine")); err != nil {
				t.Errorf("%s's build could not write its own %s: %v", app, v, err)
			}
		}
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != uid || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s is %d:%d mode %#o, want %d:%d 0700", dir, st.Uid, st.Gid, fi.Mode().Perm(), uid, uid)
		}
	}
	if uids["alpha"] == uids["beta"] {
		t.Fatalf("alpha's and beta's builds share uid %d", uids["alpha"])
	}
	if denied := read("alpha", "denied"); strings.Count(denied, "Permission denied") != 5 {
		t.Errorf("alpha's build writing and listing beta's cache: %q, want 5 refusals", denied)
	}
	for _, p := range []string{"gocache/poison", "gomodcache/poison", "poison"} {
		if _, err := os.Lstat(filepath.Join(cache, "beta", p)); err == nil {
			t.Errorf("alpha's build planted %s in beta's cache", p)
		}
	}
}

// TestSharedCacheRemoved starts a store on the cache an earlier Runway's
// builds of every app shared (owned by the one build uid): its content
// goes, the cache of an app that happens to be named go-build stays, and
// the cache root becomes root's.
func TestSharedCacheRemoved(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	for _, d := range []string{"go-build/ab", "mod/cache/download", "other/kept"} {
		if err := os.MkdirAll(filepath.Join(cache, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(cache, "go-build", "ab", "poisoned"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := filepath.Walk(cache, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, 1680000, 1680000)
	}); err != nil {
		t.Fatal(err)
	}
	sb, err := sandbox.New(sandbox.Options{Base: 1680000, Count: 10, StateFile: filepath.Join(dir, "uids.json"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewStore(filepath.Join(dir, "artifacts"), Options{Sandbox: sb, CacheDir: cache, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(cache)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "other" {
		t.Errorf("the shared cache holds %v, want only what is not go-build or mod", entries)
	}
	// The same start with an app named go-build already on the new layout.
	appCache := filepath.Join(dir, "cache2")
	if err := os.MkdirAll(filepath.Join(appCache, "go-build", "gocache"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStore(filepath.Join(dir, "artifacts2"), Options{Sandbox: sb, CacheDir: appCache, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(appCache, "go-build", "gocache")); err != nil {
		t.Errorf("the cache of the app named go-build was removed: %v", err)
	}
	fi, err := os.Stat(cache)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode().Perm() != 0o711 {
		t.Errorf("cache root is uid %d mode %#o, want root's 0711", st.Uid, fi.Mode().Perm())
	}
}

// TestBuildCacheInUse shares the cache dir with another Runway whose build
// of the same app runs (as another uid) right now: the build leaves that
// cache alone and starts from an empty one of its own.
func TestBuildCacheInUse(t *testing.T) {
	requireRoot(t)
	store, _, work := newSandboxedStore(t, 1690000)
	const other = 1699999 // outside this store's range: the other Runway's build uid
	theirs := filepath.Join(work, "cache", "hello")
	if err := os.MkdirAll(filepath.Join(theirs, "gocache"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{theirs, filepath.Join(theirs, "gocache")} {
		if err := os.Lchown(p, other, other); err != nil {
			t.Fatal(err)
		}
	}
	busy := exec.Command("sleep", "300")
	busy.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: other, Gid: other, Groups: []uint32{}}}
	if err := busy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = busy.Process.Kill(); _ = busy.Wait() })
	url, commit := newAppRepo(t, fstest.MapFS{"runway.yaml": {Data: []byte(specWith(`printf %s "$GOCACHE" > "$RUNWAY_OUT/gocache"; touch "$GOCACHE/mine"`))}})
	var log bytes.Buffer
	a, err := store.Build(t.Context(), Request{App: "hello", Version: "v1", RepoURL: url, Commit: commit, Kind: App, Log: &log})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "in use by uid 1699999") {
		t.Errorf("the build log does not say the cache is in use:\n%s", log.String())
	}
	b, err := os.ReadFile(filepath.Join(a.Dir, "gocache"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(string(b), theirs) {
		t.Errorf("the build used the cache in use, %s", b)
	}
	fi, err := os.Stat(theirs)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != other {
		t.Errorf("the cache in use was handed to uid %d", st.Uid)
	}
}
