package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runway-cd/runway/internal/gitops"
)

// exportArgs are the flags of an export of the examples, to which a test
// adds its own.
func exportArgs(extra ...string) []string {
	args := []string{"export", "argocd",
		"--state", "../../examples/state", "--repo-url", "https://git.example.com/state.git",
		"--app", "../../examples/homelabping", "--app", "../../examples/services/postgres-schema",
		"--reporter-url", "http://runway.runway-system.svc:8080", "--prometheus", "http://prometheus:9090"}
	return append(args, extra...)
}

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestExportArgoCDErrors(t *testing.T) {
	dir := t.TempDir()
	foreign := filepath.Join(dir, "foreign")
	os.MkdirAll(foreign, 0o755)
	os.WriteFile(filepath.Join(foreign, "notes.txt"), []byte("mine\n"), 0o644)
	state := filepath.Join(dir, "state")
	os.MkdirAll(filepath.Join(state, "apps/production/manifests"), 0o755)
	os.WriteFile(filepath.Join(state, "apps/production/manifests/production.json"),
		[]byte(`{"envname":"production","apps":{"billing":{"images":{"code":{"image":"billing","image_tag":"v1"}}}}}`), 0o644)
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no state", []string{"export", "argocd", "--app", "x", "--reporter-url", "http://r:1"}, "--state is required"},
		{"no app", []string{"export", "argocd", "--state", "../../examples/state", "--reporter-url", "http://r:1"}, "--app is required"},
		{"state dir without repo URL", []string{"export", "argocd", "--state", "../../examples/state", "--app", "../../examples/homelabping", "--reporter-url", "http://r:1"}, "--repo-url is required"},
		{"state neither dir nor URL", []string{"export", "argocd", "--state", filepath.Join(dir, "none"), "--repo-url", "https://g/s.git", "--app", "../../examples/homelabping"}, "not a directory nor a git URL"},
		{"no reporter URL", []string{"export", "argocd", "--state", "../../examples/state", "--repo-url", "https://g/s.git", "--app", "../../examples/homelabping", "--prometheus", "http://p:9090"}, "reporter URL is required"},
		{"app dir without spec", exportArgs("--app", dir), "reading app repo"},
		{"unknown flag", exportArgs("--frob"), "unknown flag"}, // a usage error: exit 2
		{"arguments", exportArgs("extra"), "unknown command"},
		{"unknown app", []string{"export", "argocd", "--state", state, "--repo-url", "https://g/s.git", "--app", "../../examples/homelabping", "--reporter-url", "http://r:1", "--prometheus", "http://p:1"}, "unknown app billing"},
		{"foreign output dir", exportArgs("-o", foreign), "holds no previous export"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := ExitError
			if tt.name == "unknown flag" || tt.name == "arguments" {
				want = ExitUsage
			}
			code, _, stderr := runCLI(t, tt.args...)
			if code != want || !strings.Contains(stderr, tt.wantErr) {
				t.Fatalf("exit %d, stderr %q, want %d and %q", code, stderr, want, tt.wantErr)
			}
		})
	}
	if data, err := os.ReadFile(filepath.Join(foreign, "notes.txt")); err != nil || string(data) != "mine\n" {
		t.Errorf("the foreign directory's file was touched: %q, %v", data, err)
	}
}

func TestExportArgoCDStdout(t *testing.T) {
	code, first, stderr := runCLI(t, exportArgs()...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"# file: applicationset.yaml\n", "# file: charts/homelabping/templates/rollout.yaml\n", "kind: ApplicationSet\n"} {
		if !strings.Contains(first, want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
	if _, again, _ := runCLI(t, exportArgs()...); again != first {
		t.Error("two exports of the same inputs differ")
	}
}

func TestExportArgoCDDirectory(t *testing.T) {
	out := filepath.Join(t.TempDir(), "argocd")
	if code, _, stderr := runCLI(t, exportArgs("-o", out)...); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, p := range []string{"applicationset.yaml", "application-production.yaml", "charts/environment/templates/namespace.yaml",
		"charts/homelabping/templates/analysistemplate-maintain-success-rate.yaml", "charts/postgres/templates/statefulset.yaml", ".runway-export"} {
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	// Rendering again without homelabping's spec removes its chart and
	// keeps a file someone added.
	os.WriteFile(filepath.Join(out, "charts", "mine.txt"), []byte("x"), 0o644)
	args := []string{"export", "argocd", "--state", "../../examples/state", "--repo-url", "https://git.example.com/state.git",
		"--app", "../../examples/services/postgres-schema", "--reporter-url", "http://runway:8080", "-o", out}
	if code, _, stderr := runCLI(t, args...); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(out, "charts", "homelabping")); !os.IsNotExist(err) {
		t.Errorf("homelabping's chart is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "charts", "mine.txt")); err != nil {
		t.Errorf("a file not of the export was removed: %v", err)
	}
}

// --state and --app may be git URLs: they are cloned with go-git.
func TestExportArgoCDFromURL(t *testing.T) {
	bare := filepath.Join(t.TempDir(), "state.git")
	if err := gitops.InitBare(bare, "main"); err != nil {
		t.Fatal(err)
	}
	url := "file://" + bare
	ctx := context.Background()
	if _, err := gitops.CommitDir(ctx, url, "main", os.DirFS("../../examples/state"), "seed"); err != nil {
		t.Fatal(err)
	}
	appURL := "file://" + filepath.Join(t.TempDir(), "homelabping.git")
	if err := gitops.InitBare(strings.TrimPrefix(appURL, "file://"), "main"); err != nil {
		t.Fatal(err)
	}
	if _, err := gitops.CommitDir(ctx, appURL, "main", os.DirFS("../../examples/homelabping"), "app"); err != nil {
		t.Fatal(err)
	}
	args := []string{"export", "argocd", "--state", url, "--repo-url", "https://git.example.com/state.git",
		"--app", appURL, "--reporter-url", "http://runway:8080", "--prometheus", "http://prometheus:9090"}
	code, stdout, stderr := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "repoURL: https://git.example.com/state.git\n") {
		t.Error("the ApplicationSet does not read --repo-url")
	}
	if !strings.Contains(stdout, "# file: charts/homelabping/templates/analysistemplate-maintain-success-rate.yaml\n") {
		t.Error("the app's chart from its repository's URL is missing its AnalysisTemplate")
	}
	// What the export checks is what is committed there.
	staging := t.TempDir()
	os.MkdirAll(filepath.Join(staging, "apps/staging/manifests"), 0o755)
	os.WriteFile(filepath.Join(staging, "apps/staging/manifests/v1.json"),
		[]byte(`{"envname":"v1","apps":{"billing":{"images":{"code":{"image":"billing","image_tag":"v1"}}}}}`), 0o644)
	if _, err := gitops.CommitDir(ctx, url, "main", os.DirFS(staging), "stage billing"); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCLI(t, args...); code != 1 || !strings.Contains(stderr, "apps/staging/manifests/v1.json: unknown app billing") {
		t.Fatalf("exit %d, stderr %q, want the committed unknown app refused", code, stderr)
	}
}
