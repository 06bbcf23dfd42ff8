package build

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/runway-cd/runway/internal/gitops"
)

const spec = `name: hello
build:
  app: printf 'app %s' "$RUNWAY_APP" > "$RUNWAY_OUT/hello"
  pipeline: cp tests.sh "$RUNWAY_OUT/tests.sh"
run:
  command: ["./hello"]
tests:
  command: ["sh", "tests.sh"]
`

func newAppRepo(t *testing.T, files fstest.MapFS) (url, commit string) {
	t.Helper()
	url = filepath.Join(t.TempDir(), "app.git")
	if err := gitops.InitBare(url, "main"); err != nil {
		t.Fatal(err)
	}
	commit, err := gitops.CommitDir(context.Background(), url, "main", files, "app")
	if err != nil {
		t.Fatal(err)
	}
	return url, commit
}

func TestBuild(t *testing.T) {
	ctx := context.Background()
	url, commit := newAppRepo(t, fstest.MapFS{"runway.yaml": {Data: []byte(spec)}, "tests.sh": {Data: []byte("echo ok\n")}})
	badURL, badCommit := newAppRepo(t, fstest.MapFS{"runway.yaml": {Data: []byte(strings.Replace(spec, "printf", "exit 3; printf", 1))}})
	store, err := NewStore(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		req     Request
		wantErr string
		assert  func(t *testing.T, a Artifact, log string)
	}{
		{name: "app", req: Request{App: "hello", Version: "v1", RepoURL: url, Commit: commit, Kind: App},
			assert: func(t *testing.T, a Artifact, log string) {
				b, err := os.ReadFile(filepath.Join(a.Dir, "hello"))
				if err != nil || string(b) != "app hello" {
					t.Fatalf("artifact content = %q, %v", b, err)
				}
				if a.Spec.Name != "hello" || !strings.HasPrefix(a.Digest, "sha256:") {
					t.Fatalf("artifact = %+v", a)
				}
				if !strings.Contains(log, "checking out") {
					t.Fatalf("log lacks progress: %q", log)
				}
			}},
		{name: "pipeline", req: Request{App: "hello", Version: "v1", RepoURL: url, Commit: commit, Kind: Pipeline},
			assert: func(t *testing.T, a Artifact, _ string) {
				if _, err := os.Stat(filepath.Join(a.Dir, "tests.sh")); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "rebuild is a lookup", req: Request{App: "hello", Version: "v1", RepoURL: "/nonexistent", Commit: commit, Kind: App},
			assert: func(t *testing.T, a Artifact, log string) {
				if log != "" {
					t.Fatalf("rebuild did work: %q", log)
				}
			}},
		{name: "failing script", req: Request{App: "hello", Version: "v2", RepoURL: badURL, Commit: badCommit, Kind: App}, wantErr: "exit status 3"},
		{name: "name mismatch", req: Request{App: "other", Version: "v1", RepoURL: url, Commit: commit, Kind: App}, wantErr: "tracked as"},
		{name: "hostile version", req: Request{App: "hello", Version: "../../x", RepoURL: url, Commit: commit, Kind: App}, wantErr: "invalid"},
		{name: "unknown commit", req: Request{App: "hello", Version: "v3", RepoURL: url, Commit: strings.Repeat("a", 40), Kind: App}, wantErr: "checking out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			tt.req.Log = &log
			a, err := store.Build(ctx, tt.req)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if _, err := store.Resolve(tt.req.App, tt.req.Version, tt.req.Kind); !errors.Is(err, ErrNotFound) {
					t.Fatalf("failed build left a tag: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("build: %v\n%s", err, log.String())
			}
			tt.assert(t, a, log.String())
		})
	}
	entries, _ := os.ReadDir(filepath.Join(store.dir, "tmp"))
	if len(entries) != 0 {
		t.Fatalf("build left %d temp dirs", len(entries))
	}
}

func TestRemoveInterrupted(t *testing.T) {
	dir := t.TempDir()
	s, err := NewStore(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// What a build killed mid-way leaves: its work directory in tmp.
	work := filepath.Join(dir, "tmp", "web-v1-123")
	if err := os.MkdirAll(filepath.Join(work, "src"), 0o755); err != nil {
		t.Fatal(err)
	}
	kept := filepath.Join(dir, "sha256", "abc")
	if err := os.MkdirAll(kept, 0o755); err != nil {
		t.Fatal(err)
	}
	removed, err := s.RemoveInterrupted()
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != "web-v1-123" {
		t.Fatalf("removed %v, want [web-v1-123]", removed)
	}
	if _, err := os.Stat(work); !os.IsNotExist(err) {
		t.Fatalf("work dir still there: %v", err)
	}
	if _, err := os.Stat(kept); err != nil {
		t.Fatalf("artifact dir removed: %v", err)
	}
}
