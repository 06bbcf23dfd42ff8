// Package build turns a pushed commit into artifacts: it checks the commit
// out cleanly, runs the app spec's build scripts and keeps what they write
// in a content-addressed store, tagged by app, version and kind.
package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/runway-cd/runway/internal/appspec"
)

// Kind is what an artifact is for.
type Kind string

// The two artifacts of a version.
const (
	App      Kind = "app"      // what runs
	Pipeline Kind = "pipeline" // migrations and functional tests
)

// ErrNotFound is returned by Resolve for an unknown tag.
var ErrNotFound = errors.New("artifact not found")

// Artifact is a built, immutable directory.
type Artifact struct {
	App     string
	Version string
	Kind    Kind
	Digest  string // sha256:<hex> of the tree
	Dir     string
	Spec    *appspec.Spec // the app spec of the commit it was built from
}

// Store keeps artifacts under a directory:
// sha256/<hex>/ holds the files and tags/<app>/<version>/<kind> the digest.
type Store struct {
	dir string
}

// NewStore opens (creating) a store in dir.
func NewStore(dir string) (*Store, error) {
	for _, d := range []string{"sha256", "tags", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("creating artifact store: %w", err)
		}
	}
	return &Store{dir: dir}, nil
}

// RemoveInterrupted deletes the work directories of builds that never
// finished (the process building them was killed) and returns their
// names. Call it before the first build: a running build's directory
// would go too.
func (s *Store) RemoveInterrupted() ([]string, error) {
	tmp := filepath.Join(s.dir, "tmp")
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return nil, fmt.Errorf("listing interrupted builds: %w", err)
	}
	var removed []string
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(tmp, e.Name())); err != nil {
			return removed, fmt.Errorf("removing interrupted build %s: %w", e.Name(), err)
		}
		removed = append(removed, e.Name())
	}
	return removed, nil
}

// Request says what to build.
type Request struct {
	App     string // must match the spec's name
	Version string
	RepoURL string
	Commit  string // full hash
	Kind    Kind
	// Log receives the build's output. Nil discards it.
	Log io.Writer
}

// Build builds one artifact of a version, or returns the one already built
// for that tag, so a retried build step does no work twice.
func (s *Store) Build(ctx context.Context, req Request) (Artifact, error) {
	if !appspec.ValidName(req.App) || !appspec.ValidName(req.Version) {
		return Artifact{}, fmt.Errorf("invalid app %q or version %q", req.App, req.Version)
	}
	if a, err := s.Resolve(req.App, req.Version, req.Kind); err == nil {
		return a, nil
	}
	log := req.Log
	if log == nil {
		log = io.Discard
	}
	work, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), req.App+"-"+req.Version+"-")
	if err != nil {
		return Artifact{}, fmt.Errorf("creating build dir: %w", err)
	}
	defer os.RemoveAll(work)
	src := filepath.Join(work, "src")
	fmt.Fprintf(log, "checking out %s at %s\n", req.RepoURL, req.Commit)
	if err := checkout(ctx, req.RepoURL, req.Commit, src); err != nil {
		return Artifact{}, err
	}
	spec, err := appspec.Load(src)
	if err != nil {
		return Artifact{}, err
	}
	if spec.Name != req.App {
		return Artifact{}, fmt.Errorf("app spec names %q, pushed repository is tracked as %q", spec.Name, req.App)
	}
	script := spec.Build.App
	if req.Kind == Pipeline {
		script = spec.Build.Pipeline
	}
	out := filepath.Join(work, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return Artifact{}, fmt.Errorf("creating output dir: %w", err)
	}
	if strings.TrimSpace(script) != "" {
		fmt.Fprintf(log, "$ %s\n", strings.TrimSpace(script))
		if err := run(ctx, src, script, out, req, log); err != nil {
			return Artifact{}, fmt.Errorf("building %s artifact: %w", req.Kind, err)
		}
	}
	files := append([]string{appspec.FileName}, spec.AnalysisTemplates...)
	for _, f := range files {
		if err := copyFile(src, out, f); err != nil {
			return Artifact{}, err
		}
	}
	digest, err := treeDigest(out)
	if err != nil {
		return Artifact{}, err
	}
	final := filepath.Join(s.dir, "sha256", strings.TrimPrefix(digest, "sha256:"))
	if err := os.Rename(out, final); err != nil && !errors.Is(err, fs.ErrExist) && !isNotEmpty(err) {
		return Artifact{}, fmt.Errorf("storing artifact: %w", err)
	}
	if err := s.tag(req.App, req.Version, req.Kind, digest); err != nil {
		return Artifact{}, err
	}
	fmt.Fprintf(log, "artifact %s %s:%s = %s\n", req.Kind, req.App, req.Version, digest)
	return s.Resolve(req.App, req.Version, req.Kind)
}

func isNotEmpty(err error) bool {
	var le *os.LinkError
	return errors.As(err, &le) && (errors.Is(le.Err, syscall.ENOTEMPTY) || errors.Is(le.Err, syscall.EEXIST))
}

// Resolve returns the artifact tagged app:version of kind.
func (s *Store) Resolve(app, version string, kind Kind) (Artifact, error) {
	if !appspec.ValidName(app) || !appspec.ValidName(version) || (kind != App && kind != Pipeline) {
		return Artifact{}, fmt.Errorf("resolving %s:%s %s: %w", app, version, kind, ErrNotFound)
	}
	b, err := os.ReadFile(filepath.Join(s.dir, "tags", app, version, string(kind)))
	if errors.Is(err, fs.ErrNotExist) {
		return Artifact{}, fmt.Errorf("resolving %s:%s %s: %w", app, version, kind, ErrNotFound)
	} else if err != nil {
		return Artifact{}, fmt.Errorf("resolving %s:%s %s: %w", app, version, kind, err)
	}
	digest := strings.TrimSpace(string(b))
	dir := filepath.Join(s.dir, "sha256", strings.TrimPrefix(digest, "sha256:"))
	spec, err := appspec.Load(dir)
	if err != nil {
		return Artifact{}, fmt.Errorf("artifact %s: %w", digest, err)
	}
	return Artifact{App: app, Version: version, Kind: kind, Digest: digest, Dir: dir, Spec: spec}, nil
}

func (s *Store) tag(app, version string, kind Kind, digest string) error {
	dir := filepath.Join(s.dir, "tags", app, version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("tagging artifact: %w", err)
	}
	tmp := filepath.Join(dir, "."+string(kind)+".tmp")
	if err := os.WriteFile(tmp, []byte(digest+"\n"), 0o644); err != nil {
		return fmt.Errorf("tagging artifact: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, string(kind))); err != nil {
		return fmt.Errorf("tagging artifact: %w", err)
	}
	return nil
}

func checkout(ctx context.Context, url, commit, dir string) error {
	repo, err := git.PlainCloneContext(ctx, dir, false, &git.CloneOptions{URL: url, NoCheckout: true})
	if err != nil {
		return fmt.Errorf("cloning %s: %w", url, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return fmt.Errorf("opening worktree: %w", err)
	}
	if err := wt.Checkout(&git.CheckoutOptions{Hash: plumbing.NewHash(commit), Force: true}); err != nil {
		return fmt.Errorf("checking out %s: %w", commit, err)
	}
	return nil
}

func run(ctx context.Context, dir, script, out string, req Request, log io.Writer) error {
	cmd := exec.CommandContext(ctx, "sh", "-ec", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"RUNWAY_OUT="+out, "RUNWAY_APP="+req.App, "RUNWAY_VERSION="+req.Version, "RUNWAY_COMMIT="+req.Commit)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd.Run()
}

// copyFile copies rel (a path inside src that must not leave it) to dst.
func copyFile(src, dst, rel string) error {
	clean := filepath.Clean(filepath.FromSlash(rel))
	if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return fmt.Errorf("app spec file %q is outside the repository", rel)
	}
	data, err := os.ReadFile(filepath.Join(src, clean))
	if err != nil {
		return fmt.Errorf("copying %s into artifact: %w", rel, err)
	}
	target := filepath.Join(dst, clean)
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fmt.Errorf("copying %s into artifact: %w", rel, err)
	}
	if err := os.WriteFile(target, data, 0o644); err != nil {
		return fmt.Errorf("copying %s into artifact: %w", rel, err)
	}
	return nil
}

// treeDigest hashes every regular file's path, mode and content, in path
// order, so equal trees get equal digests.
func treeDigest(dir string) (string, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hashing artifact: %w", err)
	}
	sort.Strings(paths)
	h := sha256.New()
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		info, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("hashing artifact: %w", err)
		}
		fmt.Fprintf(h, "%s\x00%o\x00", filepath.ToSlash(rel), info.Mode().Perm())
		f, err := os.Open(p)
		if err != nil {
			return "", fmt.Errorf("hashing artifact: %w", err)
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("hashing artifact: %w", err)
		}
		h.Write([]byte{0})
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
