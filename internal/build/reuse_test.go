package build

import (
	"bytes"
	"context"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/sandbox"
)

// commitOn commits files on top of url's main branch (kept files stay;
// the same files again make a commit with the same tree) and returns it.
func commitOn(t *testing.T, url string, files fstest.MapFS, msg string) string {
	t.Helper()
	commit, err := gitops.CommitDir(context.Background(), url, "main", files, msg)
	if err != nil {
		t.Fatal(err)
	}
	return commit
}

// countingSpec is an app spec whose builds append a line to runs, so a
// test can count how often a script ran.
func countingSpec(runs string) string {
	return "name: hello\nbuild:\n  app: |\n    echo app >> " + runs + "\n    printf x > \"$RUNWAY_OUT/hello\"\n" +
		"  pipeline: |\n    echo pipeline >> " + runs + "\n    printf y > \"$RUNWAY_OUT/tests\"\n" +
		"run:\n  command: [\"./hello\"]\n"
}

func readRuns(t *testing.T, runs string) string {
	t.Helper()
	b, err := os.ReadFile(runs)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

// TestBuildReuse builds versions of one app in order: a commit with the
// tree of an earlier one is not built again, a changed tree or build
// environment is; equal outputs are stored once whatever built them.
func TestBuildReuse(t *testing.T) {
	runs := filepath.Join(t.TempDir(), "runs")
	files := fstest.MapFS{"runway.yaml": {Data: []byte(countingSpec(runs))}, "README": {Data: []byte("one")}}
	url, first := newAppRepo(t, files)
	dir := t.TempDir()
	store, err := NewStore(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	build := func(version, commit string, kind Kind) (Artifact, string) {
		t.Helper()
		var log bytes.Buffer
		a, err := store.Build(t.Context(), Request{App: "hello", Version: version, RepoURL: url, Commit: commit, Kind: kind, Log: &log})
		if err != nil {
			t.Fatalf("build of %s %s: %v\n%s", version, kind, err, log.String())
		}
		return a, log.String()
	}
	v1, _ := build("v1", first, App)
	if v1.Reused || !strings.HasPrefix(v1.InputKey, "sha256:") {
		t.Fatalf("first build: Reused %v, InputKey %q", v1.Reused, v1.InputKey)
	}
	// An empty commit on top: a new commit, the same tree.
	same := commitOn(t, url, files, "empty")
	if same == first {
		t.Fatal("the empty commit has the first one's id")
	}
	v2, log := build("v2", same, App)
	if !v2.Reused || v2.Digest != v1.Digest || v2.InputKey != v1.InputKey || v2.Version != "v2" {
		t.Errorf("same tree: got %+v, want v1's artifact %s reused", v2, v1.Digest)
	}
	if !strings.Contains(log, "build reused: inputs "+v1.InputKey+" were built before as "+v1.Digest) {
		t.Errorf("the build log does not say the build was reused:\n%s", log)
	}
	if got, err := store.Resolve("hello", "v2", App); err != nil || got.Digest != v1.Digest {
		t.Errorf("v2 resolves to %+v, %v", got, err)
	}
	if got := readRuns(t, runs); got != "app" {
		t.Fatalf("script runs %q, want the app script once", got)
	}
	// The other kind of the same tree is another build.
	p2, _ := build("v2", same, Pipeline)
	if p2.Reused || p2.Digest == v1.Digest {
		t.Errorf("pipeline artifact of the tree: %+v, want a build of its own", p2)
	}
	// A changed tree is built again; its output is the same, so its
	// artifact is the same, stored once.
	files["README"] = &fstest.MapFile{Data: []byte("two")}
	changed := commitOn(t, url, files, "readme")
	v3, _ := build("v3", changed, App)
	if v3.Reused || v3.InputKey == v1.InputKey {
		t.Errorf("changed tree: %+v, want a build with other inputs", v3)
	}
	if v3.Digest != v1.Digest {
		t.Errorf("equal outputs stored as %s and %s", v1.Digest, v3.Digest)
	}
	// A changed build environment too.
	t.Setenv("GOFLAGS", "-mod=mod")
	v4, _ := build("v4", changed, App)
	if v4.Reused || v4.InputKey == v3.InputKey {
		t.Errorf("changed GOFLAGS: %+v, want a build with other inputs", v4)
	}
	if got := readRuns(t, runs); got != "app pipeline app app" {
		t.Fatalf("script runs %q, want app pipeline app app", got)
	}
	if n := len(readDir(t, filepath.Join(dir, "sha256"))); n != 2 {
		t.Errorf("store holds %d artifacts, want 2 (app and pipeline)", n)
	}
	if n := len(readDir(t, filepath.Join(dir, "tmp"))); n != 0 {
		t.Errorf("builds left %d work dirs", n)
	}
}

// TestBuildReuseNeedsTheWholeArtifact: an index entry whose artifact is
// gone or altered (a crash, a disk repaired by hand) is not trusted; the
// build runs again and stores the artifact anew.
func TestBuildReuseNeedsTheWholeArtifact(t *testing.T) {
	tests := []struct {
		name  string
		spoil func(t *testing.T, a Artifact)
	}{
		{name: "artifact removed", spoil: func(t *testing.T, a Artifact) {
			if err := os.RemoveAll(a.Dir); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "artifact altered", spoil: func(t *testing.T, a Artifact) {
			if err := os.WriteFile(filepath.Join(a.Dir, "hello"), []byte("altered"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runs := filepath.Join(t.TempDir(), "runs")
			files := fstest.MapFS{"runway.yaml": {Data: []byte(countingSpec(runs))}}
			url, first := newAppRepo(t, files)
			second := commitOn(t, url, files, "empty")
			store, err := NewStore(t.TempDir(), Options{})
			if err != nil {
				t.Fatal(err)
			}
			v1, err := store.Build(t.Context(), Request{App: "hello", Version: "v1", RepoURL: url, Commit: first, Kind: App})
			if err != nil {
				t.Fatal(err)
			}
			tt.spoil(t, v1)
			var log bytes.Buffer
			v2, err := store.Build(t.Context(), Request{App: "hello", Version: "v2", RepoURL: url, Commit: second, Kind: App, Log: &log})
			if err != nil {
				t.Fatalf("build: %v\n%s", err, log.String())
			}
			if v2.Reused || v2.Digest != v1.Digest {
				t.Errorf("got %+v, want the artifact %s built again", v2, v1.Digest)
			}
			if got := readRuns(t, runs); got != "app app" {
				t.Errorf("script runs %q, want two", got)
			}
			if b, err := os.ReadFile(filepath.Join(v2.Dir, "hello")); err != nil || string(b) != "x" {
				t.Errorf("stored hello = %q, %v", b, err)
			}
		})
	}
}

// TestBuildCheckout: every build of an app runs in the same directory, a
// tree without git's metadata, with GOFLAGS making Go builds carry no path
// and no VCS stamp (after the flags of Runway's environment, which win).
func TestBuildCheckout(t *testing.T) {
	script := `pwd > "$RUNWAY_OUT/pwd"
printf %s "$GOFLAGS" > "$RUNWAY_OUT/goflags"
printf %s "$RUNWAY_TREE" > "$RUNWAY_OUT/tree"
printf '%s' "${RUNWAY_VERSION-unset} ${RUNWAY_COMMIT-unset}" > "$RUNWAY_OUT/unset"
if [ -e .git ]; then echo has-git > "$RUNWAY_OUT/git"; fi
ls -a > "$RUNWAY_OUT/ls"`
	store, err := NewStore(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	read := func(a Artifact, name string) string {
		b, err := os.ReadFile(filepath.Join(a.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	var pwds []string
	for i, goflags := range []string{"", "-mod=mod", "-trimpath=false -buildvcs=true"} {
		t.Setenv("GOFLAGS", goflags)
		files := fstest.MapFS{"runway.yaml": {Data: []byte(specWith(script))}, "n": {Data: []byte{byte('0' + i)}}}
		url, commit := newAppRepo(t, files)
		a, err := store.Build(t.Context(), Request{App: "hello", Version: "v1" + string(rune('a'+i)), RepoURL: url, Commit: commit, Kind: App})
		if err != nil {
			t.Fatal(err)
		}
		want := strings.TrimSpace(goflags + " -trimpath -buildvcs=false")
		if goflags == "-trimpath=false -buildvcs=true" {
			want = goflags
		}
		if got := read(a, "goflags"); got != want {
			t.Errorf("GOFLAGS %q: the build got %q, want %q", goflags, got, want)
		}
		if got := read(a, "unset"); got != "unset unset" {
			t.Errorf("RUNWAY_VERSION and RUNWAY_COMMIT: %q, want both unset", got)
		}
		if _, err := os.Stat(filepath.Join(a.Dir, "git")); err == nil {
			t.Errorf("the checkout has .git: %s", read(a, "ls"))
		}
		if tree := read(a, "tree"); len(tree) != 40 || tree == commit {
			t.Errorf("RUNWAY_TREE = %q, want the commit's tree id", tree)
		}
		pwds = append(pwds, read(a, "pwd"))
	}
	for _, p := range pwds[1:] {
		if p != pwds[0] {
			t.Errorf("builds of one app ran in %q and %q", pwds[0], p)
		}
	}
}

// goProgram is a Go program with no dependencies: building it needs no
// network.
var goProgram = fstest.MapFS{
	"go.mod":  {Data: []byte("module example.com/hello\n\ngo 1.21\n")},
	"main.go": {Data: []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n")},
	"runway.yaml": {Data: []byte("name: hello\nbuild:\n  app: go build -o \"$RUNWAY_OUT/hello\" .\n" +
		"  pipeline: go test -c -o \"$RUNWAY_OUT/functest\" .\nrun:\n  command: [\"./hello\"]\n")},
	"main_test.go": {Data: []byte("package main\n\nimport \"testing\"\n\nfunc TestNothing(t *testing.T) {}\n")},
}

// TestGoBuildReproducible builds one Go program from commits of different
// trees (a README changed, so nothing is reused) and in stores in
// different places, with the sandbox and without: every build of a kind
// gives one digest, and no binary holds the path it was built in. The
// stores share a build cache, to spare compiling the standard library
// three times; a build whose output held its path would miss it.
func TestGoBuildReproducible(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go command on PATH")
	}
	t.Setenv("GOFLAGS", "")
	t.Setenv("GOTOOLCHAIN", "local")
	type store struct {
		s   *Store
		dir string
	}
	cache := filepath.Join(t.TempDir(), "cache")
	var stores []store
	for range 2 {
		dir := t.TempDir()
		s, err := NewStore(dir, Options{CacheDir: cache, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		stores = append(stores, store{s, dir})
	}
	if os.Geteuid() == 0 {
		dir := t.TempDir()
		sb, err := sandbox.New(sandbox.Options{Base: 1710000, Count: 10, StateFile: filepath.Join(dir, "uids.json"), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sb.KillAll(context.Background(), sandbox.BuildKey("hello")) })
		s, err := NewStore(filepath.Join(dir, "artifacts"), Options{Sandbox: sb, CacheDir: cache, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		stores = append(stores, store{s, dir})
	}
	files := maps.Clone(goProgram)
	url, first := newAppRepo(t, files)
	files["README"] = &fstest.MapFile{Data: []byte("changed")}
	second := commitOn(t, url, files, "readme")
	for _, kind := range []Kind{App, Pipeline} {
		digests := map[string][]string{}
		for i, st := range stores {
			for j, commit := range []string{first, second} {
				version := "v" + string(rune('a'+j))
				var log bytes.Buffer
				a, err := st.s.Build(t.Context(), Request{App: "hello", Version: version, RepoURL: url, Commit: commit, Kind: kind, Log: &log})
				if err != nil {
					t.Fatalf("store %d, %s %s: %v\n%s", i, version, kind, err, log.String())
				}
				if a.Reused {
					t.Fatalf("store %d, %s %s was reused: the trees differ", i, version, kind)
				}
				digests[a.Digest] = append(digests[a.Digest], st.dir+" "+version)
				for _, f := range readDir(t, a.Dir) {
					b, err := os.ReadFile(filepath.Join(a.Dir, f.Name()))
					if err != nil {
						t.Fatal(err)
					}
					if bytes.Contains(b, []byte(st.dir)) {
						t.Errorf("%s of store %d holds the store's path %s", f.Name(), i, st.dir)
					}
				}
			}
		}
		if len(digests) != 1 {
			t.Errorf("%s builds of one program gave %d digests: %v", kind, len(digests), digests)
		}
	}
}

func readDir(t *testing.T, dir string) []os.DirEntry {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}
