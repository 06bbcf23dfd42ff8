package build

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// repoFile is a file of a test app repository; link makes it a symlink
// to link instead.
type repoFile struct {
	data string
	link string
}

// newRepoWith commits files (symlinks included, as a person's git would)
// to a new repository and returns its path and the commit.
func newRepoWith(t *testing.T, files map[string]repoFile) (url, commit string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "app")
	repo, err := git.PlainInit(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	for p, f := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if f.link != "" {
			err = os.Symlink(f.link, full)
		} else {
			err = os.WriteFile(full, []byte(f.data), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := wt.Add(p); err != nil {
			t.Fatalf("adding %s: %v", p, err)
		}
	}
	sig := &object.Signature{Name: "dev", Email: "dev@localhost", When: time.Now()}
	h, err := wt.Commit("app", &git.CommitOptions{Author: sig, Committer: sig})
	if err != nil {
		t.Fatal(err)
	}
	return dir, h.String()
}

const templateSpec = `name: hello
build:
  app: printf app > "$RUNWAY_OUT/hello"
run:
  command: ["./hello"]
strategy:
  canary:
    steps:
    - setWeight: 20
    - analysis:
        templates:
        - templateName: maintain-success-rate
analysisTemplates:
- analysis/rate.yaml
`

// rateTemplate is a valid template; address is its prometheus address.
func rateTemplate(name, address string) string {
	return `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: ` + name + `
spec:
  metrics:
  - name: up
    provider:
      prometheus:
        address: "` + address + `"
        query: up
`
}

// TestBuildRefusesHostileSources builds app repositories that try to get
// files from outside the checkout into the artifact store, or to reach a
// Prometheus server that is not allowed, or that are simply wrong: each
// must fail the build with the exact message, leave no tag and store no
// file.
func TestBuildRefusesHostileSources(t *testing.T) {
	ctx := context.Background()
	outside := t.TempDir()
	secret := "secret-of-the-data-dir-0123456789"
	secretFile := filepath.Join(outside, "secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	good := repoFile{data: rateTemplate("maintain-success-rate", "")}
	tests := []struct {
		name  string
		files map[string]repoFile
		want  string
	}{
		{
			name:  "relative symlink to /etc/shadow",
			files: map[string]repoFile{"runway.yaml": {data: templateSpec}, "analysis/rate.yaml": {link: "../../../../../../../../etc/shadow"}},
			want:  `invalid analysis templates: runway.yaml:14: analysisTemplates[0]: "analysis/rate.yaml": analysis/rate.yaml is a symlink: Runway copies only regular files of the repository, never what a link points to`,
		},
		{
			name:  "absolute symlink to a secret",
			files: map[string]repoFile{"runway.yaml": {data: templateSpec}, "analysis/rate.yaml": {link: secretFile}},
			want:  `invalid analysis templates: runway.yaml:14: analysisTemplates[0]: "analysis/rate.yaml": analysis/rate.yaml is a symlink: Runway copies only regular files of the repository, never what a link points to`,
		},
		{
			name:  "symlink to a file of the repository",
			files: map[string]repoFile{"runway.yaml": {data: templateSpec}, "real.yaml": good, "analysis/rate.yaml": {link: "../real.yaml"}},
			want:  `invalid analysis templates: runway.yaml:14: analysisTemplates[0]: "analysis/rate.yaml": analysis/rate.yaml is a symlink: Runway copies only regular files of the repository, never what a link points to`,
		},
		{
			name:  "directory symlink on the way",
			files: map[string]repoFile{"runway.yaml": {data: strings.Replace(templateSpec, "analysis/rate.yaml", "analysis/secret", 1)}, "analysis": {link: outside}},
			want:  `invalid analysis templates: runway.yaml:14: analysisTemplates[0]: "analysis/secret": analysis is a symlink: Runway copies only regular files of the repository, never what a link points to`,
		},
		{
			name:  "runway.yaml is a symlink",
			files: map[string]repoFile{"runway.yaml": {link: secretFile}},
			want:  `reading app spec: runway.yaml: runway.yaml is a symlink: Runway copies only regular files of the repository, never what a link points to`,
		},
		{
			name:  "entry outside the repository",
			files: map[string]repoFile{"runway.yaml": {data: strings.Replace(templateSpec, "analysis/rate.yaml", "../../secret", 1)}},
			want:  `invalid app spec: runway.yaml:14: analysisTemplates[0]: "../../secret" is outside the repository`,
		},
		{
			name:  "template file missing",
			files: map[string]repoFile{"runway.yaml": {data: templateSpec}},
			want:  `invalid analysis templates: runway.yaml:14: analysisTemplates[0]: "analysis/rate.yaml": analysis/rate.yaml: no such file or directory`,
		},
		{
			name:  "template name misspelt in a step",
			files: map[string]repoFile{"runway.yaml": {data: strings.Replace(templateSpec, "templateName: maintain-success-rate", "templateName: maintain-succes-rate", 1)}, "analysis/rate.yaml": good},
			want:  `invalid analysis templates: runway.yaml:12: strategy.canary.steps[1].analysis.templates[0].templateName: "maintain-succes-rate" is not defined by any file in analysisTemplates`,
		},
		{
			name:  "no analysisTemplates at all",
			files: map[string]repoFile{"runway.yaml": {data: strings.Split(templateSpec, "analysisTemplates:")[0]}},
			want:  `invalid analysis templates: runway.yaml:12: strategy.canary.steps[1].analysis.templates[0].templateName: "maintain-success-rate" is not defined by any file in analysisTemplates`,
		},
		{
			name:  "template field Runway does not support",
			files: map[string]repoFile{"runway.yaml": {data: templateSpec}, "analysis/rate.yaml": {data: strings.Replace(good.data, "        query: up\n", "        query: up\n        timeout: 5\n", 1)}},
			want:  `invalid analysis templates: analysis/rate.yaml:12: spec.metrics[0].provider.prometheus.timeout: not supported by Runway`,
		},
		{
			name:  "template in the second document of a file",
			files: map[string]repoFile{"runway.yaml": {data: templateSpec}, "analysis/rate.yaml": {data: good.data + "---\n" + strings.Replace(rateTemplate("other", ""), "interval", "x", 1) + "    interval: soon\n"}},
			want:  `invalid analysis templates: analysis/rate.yaml:24: spec.metrics[0].interval: "soon" is not a duration like 10s or 1m`,
		},
		{
			name:  "template defined twice",
			files: map[string]repoFile{"runway.yaml": {data: strings.Replace(templateSpec, "- analysis/rate.yaml\n", "- analysis/rate.yaml\n- analysis/copy.yaml\n", 1)}, "analysis/rate.yaml": good, "analysis/copy.yaml": good},
			want:  `invalid analysis templates: analysis/copy.yaml:4: metadata.name: "maintain-success-rate" is also defined in analysis/rate.yaml`,
		},
		{
			name:  "prometheus address not allowed",
			files: map[string]repoFile{"runway.yaml": {data: templateSpec}, "analysis/rate.yaml": {data: rateTemplate("maintain-success-rate", "http://127.0.0.1:1/")}},
			want:  `invalid analysis templates: analysis/rate.yaml:10: spec.metrics[0].provider.prometheus.address: "http://127.0.0.1:1/" is not one of the server's analysis.prometheusAddresses (empty for the embedded engine)`,
		},
		{
			name:  "prometheus address from an argument",
			files: map[string]repoFile{"runway.yaml": {data: templateSpec}, "analysis/rate.yaml": {data: strings.Replace(rateTemplate("maintain-success-rate", "{{args.where}}"), "spec:\n", "spec:\n  args:\n  - name: where\n    value: http://prometheus.example:9090\n", 1)}},
			want:  `invalid analysis templates: analysis/rate.yaml:13: spec.metrics[0].provider.prometheus.address: "{{args.where}}" uses an argument: write the address out so that it can be checked against analysis.prometheusAddresses`,
		},
		{
			name:  "mistyped spec",
			files: map[string]repoFile{"runway.yaml": {data: strings.Replace(templateSpec, "run:\n", "run:\n  replicaCount: 2\n", 1)}},
			want:  `parsing app spec: runway.yaml:5: run.replicaCount: unknown field`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			store, err := NewStore(dir, Options{PrometheusAddresses: []string{"http://prometheus.example:9090"}})
			if err != nil {
				t.Fatal(err)
			}
			url, commit := newRepoWith(t, tt.files)
			var log bytes.Buffer
			_, err = store.Build(ctx, Request{App: "hello", Version: "v1", RepoURL: url, Commit: commit, Kind: App, Log: &log})
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Build error:\n%v\nwant:\n%s", err, tt.want)
			}
			if strings.Contains(err.Error()+log.String(), secret) {
				t.Fatal("the secret outside the checkout leaked into the error or the log")
			}
			if _, err := store.Resolve("hello", "v1", App); !errors.Is(err, ErrNotFound) {
				t.Fatalf("refused build left a tag: %v", err)
			}
			stored, _ := os.ReadDir(filepath.Join(dir, "sha256"))
			if len(stored) != 0 {
				t.Fatalf("refused build stored %d artifacts", len(stored))
			}
			if strings.Contains(log.String(), "$ printf") {
				t.Fatalf("the build script ran before validation:\n%s", log.String())
			}
		})
	}
}

func TestBuildStoresTemplates(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		address string
		allowed []string
	}{
		{"embedded engine", "", nil},
		{"allowed address", "http://prometheus.example:9090", []string{"http://prometheus.example:9090/"}},
		{"allowed address with a trailing slash", "http://prometheus.example:9090/", []string{"http://prometheus.example:9090"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store, err := NewStore(t.TempDir(), Options{PrometheusAddresses: tt.allowed})
			if err != nil {
				t.Fatal(err)
			}
			tmpl := rateTemplate("maintain-success-rate", tt.address)
			url, commit := newRepoWith(t, map[string]repoFile{"runway.yaml": {data: templateSpec}, "analysis/rate.yaml": {data: tmpl}})
			a, err := store.Build(ctx, Request{App: "hello", Version: "v1", RepoURL: url, Commit: commit, Kind: App})
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(a.Dir, "analysis", "rate.yaml"))
			if err != nil || string(got) != tmpl {
				t.Fatalf("stored template = %q, %v", got, err)
			}
			for p, want := range map[string]fs.FileMode{"analysis": 0o755 | fs.ModeDir, "analysis/rate.yaml": 0o644, "runway.yaml": 0o644} {
				fi, err := os.Lstat(filepath.Join(a.Dir, filepath.FromSlash(p)))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode() != want {
					t.Errorf("%s mode %v, want %v", p, fi.Mode(), want)
				}
			}
		})
	}
}

// TestCopyFileNeverFollowsLinks calls copyFile directly, as the last line
// of defence after validation.
func TestCopyFileNeverFollowsLinks(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "shadow"), []byte("root:x:"), 0o600); err != nil {
		t.Fatal(err)
	}
	src, dst := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "ok.yaml"), []byte("ok"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"abs": filepath.Join(outside, "shadow"), "rel": "../../../../../../../../etc/shadow", "inside": "ok.yaml"} {
		if err := os.Symlink(target, filepath.Join(src, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(src, "dir")); err != nil {
		t.Fatal(err)
	}
	// The destination is the build's too: a link planted there must not
	// send the copy elsewhere.
	if err := os.Symlink(outside, filepath.Join(dst, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(src, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "out", "x"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ rel, want string }{
		{"abs", "copying abs into artifact: abs is a symlink"},
		{"rel", "copying rel into artifact: rel is a symlink"},
		{"inside", "copying inside into artifact: inside is a symlink"},
		{"dir/shadow", "copying dir/shadow into artifact: dir is a symlink"},
		{"../x", `copying ../x into artifact: "../x" is outside the repository`},
		{"out/x", "copying out/x into artifact: "},
	}
	for _, tt := range tests {
		t.Run(tt.rel, func(t *testing.T) {
			err := copyFile(src, dst, tt.rel)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("copyFile(%s) = %v, want %q", tt.rel, err, tt.want)
			}
		})
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 1 {
		t.Fatalf("outside dir has %d entries: a copy went through a link", len(entries))
	}
	if err := copyFile(src, dst, "ok.yaml"); err != nil {
		t.Fatalf("copying a regular file: %v", err)
	}
}

// TestBuildNeverDialsTemplateAddresses: a refused address fails the build
// with the same answer whether something listens there or not, and the
// build connects nowhere to find out.
func TestBuildNeverDialsTemplateAddresses(t *testing.T) {
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepts atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	closedLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := closedLn.Addr().String()
	closedLn.Close()
	store, err := NewStore(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"http://" + ln.Addr().String(), "http://" + closed} {
		url, commit := newRepoWith(t, map[string]repoFile{"runway.yaml": {data: templateSpec}, "analysis/rate.yaml": {data: rateTemplate("maintain-success-rate", addr)}})
		_, err := store.Build(ctx, Request{App: "hello", Version: "v1", RepoURL: url, Commit: commit, Kind: App})
		want := `invalid analysis templates: analysis/rate.yaml:10: spec.metrics[0].provider.prometheus.address: "` + addr + `" is not one of the server's analysis.prometheusAddresses (empty for the embedded engine)`
		if err == nil || err.Error() != want {
			t.Fatalf("Build error:\n%v\nwant:\n%s", err, want)
		}
	}
	if n := accepts.Load(); n != 0 {
		t.Fatalf("the build dialled the template's address %d times", n)
	}
}

// TestExampleValidates: the example app users copy passes the build's
// whole validation with the default config (embedded engine only).
func TestExampleValidates(t *testing.T) {
	s, err := NewStore(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := s.loadSpec("../../examples/homelabping")
	if err != nil {
		t.Fatalf("examples/homelabping: %v", err)
	}
	if len(spec.TemplateRefs()) == 0 {
		t.Fatal("the example names no template: the check checked nothing")
	}
}
