package build

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/gitops"
)

// serviceSpec is a service repository's spec: a pipeline artifact and its
// jobs, nothing to run.
const serviceSpec = `kind: Service
name: postgres
build:
  pipeline: cp migrate.sh "$RUNWAY_OUT/migrate.sh"
migrations:
  command: ["sh", "migrate.sh"]
`

// TestBuildService: a service's pipeline artifact builds as an app's; its
// app artifact, and a spec of the other kind than the repository is
// tracked as, are refused with an error saying why, and leave no tag.
func TestBuildService(t *testing.T) {
	ctx := t.Context()
	svcURL, svcCommit := newAppRepo(t, fstest.MapFS{"runway.yaml": {Data: []byte(serviceSpec)}, "migrate.sh": {Data: []byte("echo migrated\n")}})
	appURL, appCommit := newAppRepo(t, fstest.MapFS{"runway.yaml": {Data: []byte(strings.Replace(spec, "name: hello", "name: postgres", 1))}, "tests.sh": {Data: []byte("echo ok\n")}})
	store, err := NewStore(t.TempDir(), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		req     Request
		wantErr string
		wantIs  error
		assert  func(t *testing.T, a Artifact)
	}{
		{name: "pipeline artifact", req: Request{App: "postgres", Version: "v1", RepoURL: svcURL, Commit: svcCommit, Kind: Pipeline, SpecKind: appspec.KindService},
			assert: func(t *testing.T, a Artifact) {
				if b, err := os.ReadFile(filepath.Join(a.Dir, "migrate.sh")); err != nil || string(b) != "echo migrated\n" {
					t.Errorf("migrate.sh in the artifact = %q, %v", b, err)
				}
				if !a.Spec.IsService() || a.Spec.Migrations == nil {
					t.Errorf("artifact spec = %+v, want the service's with its migrations", a.Spec)
				}
				if r, err := store.Resolve("postgres", "v1", Pipeline); err != nil || !r.Spec.IsService() {
					t.Errorf("resolving the stored artifact: %+v, %v", r, err)
				}
			}},
		{name: "pipeline artifact, kind not asked", req: Request{App: "postgres", Version: "v2", RepoURL: svcURL, Commit: svcCommit, Kind: Pipeline},
			assert: func(t *testing.T, a Artifact) {
				if !a.Spec.IsService() {
					t.Errorf("artifact spec = %+v, want the service's", a.Spec)
				}
			}},
		{name: "app artifact of a service", req: Request{App: "postgres", Version: "v3", RepoURL: svcURL, Commit: svcCommit, Kind: App, SpecKind: appspec.KindService},
			wantIs:  ErrNoAppArtifact,
			wantErr: "building the app artifact of postgres: a service has no app artifact: its spec is of kind Service, which builds only the pipeline artifact (build.pipeline)"},
		{name: "app artifact of a service, kind not asked", req: Request{App: "postgres", Version: "v3", RepoURL: svcURL, Commit: svcCommit, Kind: App},
			wantIs: ErrNoAppArtifact, wantErr: "a service has no app artifact"},
		{name: "service spec in an app's repository", req: Request{App: "postgres", Version: "v4", RepoURL: svcURL, Commit: svcCommit, Kind: Pipeline, SpecKind: appspec.KindApp},
			wantErr: "app spec runway.yaml is of kind Service, but postgres is tracked as an app (server config apps[].service): want kind App"},
		{name: "app spec in a service's repository", req: Request{App: "postgres", Version: "v5", RepoURL: appURL, Commit: appCommit, Kind: Pipeline, SpecKind: appspec.KindService},
			wantErr: "app spec runway.yaml is of kind App, but postgres is tracked as a service (server config apps[].service): want kind Service"},
		{name: "service named other than its entry", req: Request{App: "db", Version: "v6", RepoURL: svcURL, Commit: svcCommit, Kind: Pipeline, SpecKind: appspec.KindService},
			wantErr: `app spec names "postgres", pushed repository is tracked as "db"`},
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
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("err = %v, want it to be %v", err, tt.wantIs)
				}
				if _, err := store.Resolve(tt.req.App, tt.req.Version, tt.req.Kind); !errors.Is(err, ErrNotFound) {
					t.Errorf("refused build left a tag: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("build: %v\n%s", err, log.String())
			}
			tt.assert(t, a)
		})
	}
}

// serviceExample is the service repository shipped with Runway.
const serviceExample = "../../examples/services/postgres-schema"

// TestBuildServiceExample builds the example service repository's pipeline
// artifact from a git repository of its files, as a push of it would be
// built, and runs its two programs in an environment where no app needs
// postgres: each says so and succeeds. (With databases they are run by
// the environment's job tests.)
func TestBuildServiceExample(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go command on PATH")
	}
	// A module cache the test's cleanup can remove.
	t.Setenv("GOFLAGS", "-modcacherw")
	t.Setenv("GOTOOLCHAIN", "local")
	useModuleCache(t)
	url := filepath.Join(t.TempDir(), "postgres-schema.git")
	if err := gitops.InitBare(url, "main"); err != nil {
		t.Fatal(err)
	}
	commit, err := gitops.CommitDir(t.Context(), url, "main", os.DirFS(serviceExample), "postgres schema")
	if err != nil {
		t.Fatal(err)
	}
	// The Go build cache is kept across runs of the test (Go's cache is
	// safe to share), so only the first compiles pgx and the standard
	// library; the module cache comes with it, from useModuleCache's proxy.
	cache := filepath.Join(os.TempDir(), "runway-build-test-cache")
	store, err := NewStore(t.TempDir(), Options{CacheDir: cache, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	a, err := store.Build(t.Context(), Request{App: "postgres", Version: "v1", RepoURL: url, Commit: commit, Kind: Pipeline, SpecKind: appspec.KindService, Log: &log})
	if err != nil {
		t.Fatalf("building the example's pipeline artifact: %v\n%s", err, log.String())
	}
	if !a.Spec.IsService() || a.Spec.Migrations == nil || a.Spec.Tests == nil {
		t.Fatalf("artifact spec = %+v, want a service with migrations and tests", a.Spec)
	}
	for _, job := range []struct {
		cmd  []string
		want string
	}{
		{a.Spec.Migrations.Command, "no app of staging-1 needs postgres: nothing to migrate"},
		{a.Spec.Tests.Command, "no app of this environment needs postgres"},
	} {
		cmd := exec.CommandContext(t.Context(), filepath.Join(a.Dir, job.cmd[0]), job.cmd[1:]...)
		cmd.Dir = a.Dir
		cmd.Env = []string{"RUNWAY_ENV=staging-1", "RUNWAY_DATABASE_APPS=", "HOME=" + t.TempDir()}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), job.want) {
			t.Errorf("%v: %v\n%s\nwant it to say %q", job.cmd, err, out, job.want)
		}
	}
	if _, err := store.Build(t.Context(), Request{App: "postgres", Version: "v1", RepoURL: url, Commit: commit, Kind: App, SpecKind: appspec.KindService}); !errors.Is(err, ErrNoAppArtifact) {
		t.Errorf("building the example's app artifact: err = %v, want ErrNoAppArtifact", err)
	}
}

// useModuleCache points the builds (which get an empty module cache of
// their own) at this machine's module download cache as a file GOPROXY,
// then at the usual GOPROXY for what it lacks, so that building the
// example's dependencies needs no network where they were downloaded
// before. The builds run as this user (no sandbox), who can read it.
func useModuleCache(t *testing.T) {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMODCACHE", "GOPROXY").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	modcache, fallback, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	proxy := "file://" + filepath.Join(modcache, "cache", "download")
	if fallback = strings.TrimSpace(fallback); fallback != "" && fallback != "off" {
		proxy += "," + fallback
	}
	t.Setenv("GOPROXY", proxy)
	t.Setenv("GOSUMDB", "off") // go.sum still verifies every module
}
