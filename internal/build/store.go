// Package build turns a pushed commit into artifacts: it checks the commit
// out cleanly, runs the app spec's build scripts and keeps what they write
// in a content-addressed store, tagged by app, version and kind.
//
// The same tree and spec give the same artifact, so that versions (and the
// replicas of every environment running them) share one copy: every build
// of an app runs in the same directory, on a checkout without .git, with
// GOFLAGS=-trimpath -buildvcs=false added for Go, and without the version
// or the commit in its environment. A build whose inputs (the tree, the
// script, its environment, the go command, the platform) are those of a
// stored artifact is not run again: the version is tagged with that
// artifact (Artifact.Reused).
package build

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/sandbox"
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

// ErrNoAppArtifact is returned by Build for the App kind of a service's
// repository (a spec of kind Service): Runway runs the service itself, so
// there is nothing to build; its pipeline artifact is built as an app's.
var ErrNoAppArtifact = errors.New("a service has no app artifact")

// Artifact is a built, immutable directory.
type Artifact struct {
	App     string
	Version string
	Kind    Kind
	Digest  string // sha256:<hex> of the tree
	Dir     string
	Spec    *appspec.Spec // the app spec of the commit it was built from
	// Reused says Build ran no script: the tag existed already, or an
	// artifact built from the same inputs was stored.
	Reused bool
	// InputKey is sha256:<hex> of what the build's output depends on
	// (see Store.Build); Build sets it once it checked the commit out,
	// Resolve does not.
	InputKey string
}

// Store keeps artifacts under a directory:
// sha256/<hex>/ holds the files, tags/<app>/<version>/<kind> the digest
// and inputs/<hex> the digest of the artifact built from the inputs
// whose key is sha256:<hex>.
//
// Artifacts are root's (when Runway is root), directories 0755 and files
// 0644 or 0755: every sandbox uid can read and run the code of every app.
// That is deliberate: it is code from git, which any environment may run,
// not a secret; secrets reach an environment only as its own variables.
// Builds run in tmp/<app>/ (0711) as their app's build uid, which owns
// the checkout and the output directory there; Runway copies the output
// into the store itself, once every process of that uid is gone, so the
// build uid can change nothing stored.
type Store struct {
	dir  string
	opts Options

	mu sync.Mutex
	// building holds one token per app: an app's builds run one at a
	// time, since they share a uid and a cache.
	building map[string]chan struct{}
}

// Options configure how builds run.
type Options struct {
	// Sandbox runs build scripts as their app's build uid
	// (sandbox.BuildKey) with an allow-listed environment. Nil: as
	// Runway's user, still allow-listed.
	Sandbox *sandbox.Sandbox
	// CacheDir holds the Go build and module caches kept across builds:
	// CacheDir/<app>/gocache and gomodcache (GOCACHE, GOMODCACHE), 0700
	// and owned by that app's build uid, so no app's build can write what
	// another's reads. A build can still poison its own app's later
	// builds; removing CacheDir/<app> resets that app's cache. Default:
	// dir/cache.
	CacheDir string
	// PrometheusAddresses are the Prometheus servers an app's
	// AnalysisTemplates may name (config analysis.prometheusAddresses);
	// any other fails the build. Empty: only the embedded engine.
	PrometheusAddresses []string
	// Logger gets what NewStore changes on disk; nil: slog.Default().
	Logger *slog.Logger
}

// NewStore opens (creating) a store in dir.
func NewStore(dir string, opts Options) (*Store, error) {
	if opts.CacheDir == "" {
		opts.CacheDir = filepath.Join(dir, "cache")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	sb := opts.Sandbox
	for _, d := range []struct {
		name string
		perm os.FileMode
	}{{"", 0o755}, {"sha256", 0o755}, {"tags", 0o755}, {"inputs", 0o755}, {"tmp", 0o711}} {
		if err := sb.Dir(filepath.Join(dir, d.name), d.perm, ""); err != nil {
			return nil, fmt.Errorf("creating artifact store: %w", err)
		}
	}
	if err := prepareCacheRoot(sb, opts.CacheDir, opts.Logger); err != nil {
		return nil, err
	}
	if err := sb.Traversable(filepath.Join(dir, "tmp")); err != nil {
		return nil, err
	}
	return &Store{dir: dir, opts: opts, building: map[string]chan struct{}{}}, nil
}

// RemoveInterrupted deletes the work directories of builds that never
// finished (the process building them was killed) and returns their
// names: the app's (<app>-<version>-<random> from earlier Runways). Call
// it before the first build: a running build's directory would go too.
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
	// SpecKind, when set, is the kind the spec must have: appspec.KindService
	// for a repository the server config tracks as a service
	// (apps[].service), appspec.KindApp for an app's. Empty: either; a
	// Service spec's App kind is refused all the same (ErrNoAppArtifact).
	SpecKind string
	// Log receives the build's output. Nil discards it.
	Log io.Writer
}

// Build builds one artifact of a version, or returns the one already built
// for that tag, so a retried build step does no work twice. A version
// whose inputs (see inputKey: the commit's tree, the script, its
// environment) are those of an artifact already stored gets that
// artifact, Reused, without running the script again.
func (s *Store) Build(ctx context.Context, req Request) (Artifact, error) {
	if !appspec.ValidName(req.App) || !appspec.ValidName(req.Version) {
		return Artifact{}, fmt.Errorf("invalid app %q or version %q", req.App, req.Version)
	}
	if a, err := s.Resolve(req.App, req.Version, req.Kind); err == nil {
		a.Reused = true
		return a, nil
	}
	unlock, err := s.lockApp(ctx, req.App)
	if err != nil {
		return Artifact{}, err
	}
	defer unlock()
	// The build this one waited for may have been of the same tag.
	if a, err := s.Resolve(req.App, req.Version, req.Kind); err == nil {
		a.Reused = true
		return a, nil
	}
	log := req.Log
	if log == nil {
		log = io.Discard
	}
	work, err := s.prepareWork(ctx, req.App)
	if err != nil {
		return Artifact{}, err
	}
	defer os.RemoveAll(work)
	src := filepath.Join(work, "src")
	fmt.Fprintf(log, "checking out %s at %s\n", req.RepoURL, req.Commit)
	tree, err := checkout(ctx, req.RepoURL, req.Commit, src)
	if err != nil {
		return Artifact{}, err
	}
	spec, err := s.loadSpec(src) // the spec and its templates, validated whole
	if err != nil {
		return Artifact{}, err
	}
	if spec.Name != req.App {
		return Artifact{}, fmt.Errorf("app spec names %q, pushed repository is tracked as %q", spec.Name, req.App)
	}
	if err := checkKind(spec, req); err != nil {
		return Artifact{}, err
	}
	script := spec.Build.App
	if req.Kind == Pipeline {
		script = spec.Build.Pipeline
	}
	key := inputKey(req.App, req.Kind, tree, script, keyEnv(s.buildEnv("", req.App, tree)))
	fmt.Fprintf(log, "tree %s, build inputs %s\n", tree, key)
	if digest, ok := s.indexed(key); ok {
		return s.reuse(req, key, digest, log)
	}
	digest, err := s.assemble(ctx, work, spec, script, req, tree, log)
	if err != nil {
		return Artifact{}, err
	}
	if err := s.index(key, digest); err != nil {
		// Only a later build of the same inputs misses it.
		s.opts.Logger.Warn("build: artifact stored but not indexed by its inputs", "app", req.App, "version", req.Version, "kind", req.Kind, "err", err)
	}
	if err := s.tag(req.App, req.Version, req.Kind, digest); err != nil {
		return Artifact{}, err
	}
	fmt.Fprintf(log, "artifact %s %s:%s = %s\n", req.Kind, req.App, req.Version, digest)
	a, err := s.Resolve(req.App, req.Version, req.Kind)
	if err != nil {
		return Artifact{}, err
	}
	a.InputKey = key
	return a, nil
}

// checkKind refuses a build that does not fit the spec's kind: the app
// artifact of a service, or a spec of another kind than req.SpecKind.
func checkKind(spec *appspec.Spec, req Request) error {
	kind := cmp.Or(spec.Kind, appspec.KindApp)
	if req.SpecKind != "" && kind != req.SpecKind {
		tracked := "an app"
		if req.SpecKind == appspec.KindService {
			tracked = "a service"
		}
		return fmt.Errorf("app spec %s is of kind %s, but %s is tracked as %s (server config apps[].service): want kind %s",
			appspec.FileName, kind, req.App, tracked, req.SpecKind)
	}
	if spec.IsService() && req.Kind == App {
		return fmt.Errorf("building the app artifact of %s: %w: its spec is of kind %s, which builds only the pipeline artifact (build.pipeline)",
			req.App, ErrNoAppArtifact, appspec.KindService)
	}
	return nil
}

// reuse tags the stored artifact digest, built from the same inputs as
// req, as req's.
func (s *Store) reuse(req Request, key, digest string, log io.Writer) (Artifact, error) {
	if err := s.tag(req.App, req.Version, req.Kind, digest); err != nil {
		return Artifact{}, err
	}
	a, err := s.Resolve(req.App, req.Version, req.Kind)
	if err != nil {
		return Artifact{}, err
	}
	a.Reused, a.InputKey = true, key
	fmt.Fprintf(log, "build reused: inputs %s were built before as %s\n", key, digest)
	s.opts.Logger.Info("build reused", "app", req.App, "version", req.Version, "kind", req.Kind, "inputKey", key, "digest", digest)
	return a, nil
}

// assemble makes the artifact of req from the checkout in work/src and
// stores it; it returns its digest.
func (s *Store) assemble(ctx context.Context, work string, spec *appspec.Spec, script string, req Request, tree string, log io.Writer) (string, error) {
	src := filepath.Join(work, "src")
	// art is the artifact being assembled, Runway's own: the app spec's
	// files are copied before the build script runs (the checkout is
	// still Runway's then, so what was validated is what is stored), the
	// script's output after it.
	art := filepath.Join(work, "artifact")
	if err := os.Mkdir(art, 0o755); err != nil {
		return "", fmt.Errorf("creating artifact dir: %w", err)
	}
	files := append([]string{appspec.FileName}, spec.AnalysisTemplates...)
	for _, f := range files {
		if err := copyFile(src, art, f); err != nil {
			return "", err
		}
	}
	if strings.TrimSpace(script) != "" {
		fmt.Fprintf(log, "$ %s\n", strings.TrimSpace(script))
		if strings.Contains(script, "RUNWAY_VERSION") || strings.Contains(script, "RUNWAY_COMMIT") {
			fmt.Fprintf(log, "note: builds get no RUNWAY_VERSION or RUNWAY_COMMIT: an artifact is reused by every commit of the same tree. RUNWAY_TREE is the tree's id; replicas get RUNWAY_VERSION\n")
		}
		// run returns once no process of the build uid is left, so
		// nothing changes the output while it is imported.
		out, err := s.run(ctx, work, script, req.App, tree, log)
		if err != nil {
			return "", fmt.Errorf("building %s artifact: %w", req.Kind, err)
		}
		if err := importOutput(out, art, files, log); err != nil {
			return "", fmt.Errorf("building %s artifact: %w", req.Kind, err)
		}
	}
	if err := normalizeModes(art); err != nil {
		return "", err
	}
	digest, err := treeDigest(art)
	if err != nil {
		return "", err
	}
	if err := s.store(work, art, digest); err != nil {
		return "", err
	}
	return digest, nil
}

// store moves the assembled artifact art into sha256/, unless an artifact
// with its digest is stored already, the same files. One that no longer
// hashes to its name (altered, or half written before a crash) is
// replaced.
func (s *Store) store(work, art, digest string) error {
	final := filepath.Join(s.dir, "sha256", strings.TrimPrefix(digest, "sha256:"))
	err := os.Rename(art, final)
	if err == nil {
		return nil
	}
	if !errors.Is(err, fs.ErrExist) && !isNotEmpty(err) {
		return fmt.Errorf("storing artifact: %w", err)
	}
	if got, err := treeDigest(final); err == nil && got == digest {
		return nil
	}
	s.opts.Logger.Warn("build: replacing a stored artifact that does not hash to its name", "digest", digest)
	spoilt := filepath.Join(work, "spoilt")
	if err := os.Rename(final, spoilt); err != nil {
		return fmt.Errorf("replacing spoilt artifact %s: %w", digest, err)
	}
	if err := os.Rename(art, final); err != nil {
		return fmt.Errorf("storing artifact: %w", err)
	}
	return nil
}

// prepareWork returns the work directory of app's builds, tmp/<app>,
// empty: every build of an app runs in the same place, so that a path
// a build writes into its output is the same for every build. The
// caller holds the app's lock and removes the directory when done.
func (s *Store) prepareWork(ctx context.Context, app string) (string, error) {
	work := filepath.Join(s.dir, "tmp", app)
	if _, err := os.Lstat(work); err == nil {
		// Left by a Runway that crashed mid-build: what it left running
		// may still write there.
		if err := s.killBuild(ctx, sandbox.BuildKey(app)); err != nil {
			return "", err
		}
		if err := os.RemoveAll(work); err != nil {
			return "", fmt.Errorf("removing an interrupted build of %s: %w", app, err)
		}
	}
	if err := os.Mkdir(work, 0o711); err != nil {
		return "", fmt.Errorf("creating build dir: %w", err)
	}
	if err := os.Chmod(work, 0o711); err != nil { // the build uid passes through to src and out
		return "", fmt.Errorf("creating build dir: %w", err)
	}
	return work, nil
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

// checkout checks commit of url out into dir and returns the id of its
// tree. The checkout holds the tree alone: no .git, so a build sees
// nothing of the commit (its id, its history) that another commit of
// the same tree would not show it.
func checkout(ctx context.Context, url, commit, dir string) (string, error) {
	repo, err := git.PlainCloneContext(ctx, dir, false, &git.CloneOptions{URL: url, NoCheckout: true})
	if err != nil {
		return "", fmt.Errorf("cloning %s: %w", url, err)
	}
	c, err := repo.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return "", fmt.Errorf("checking out %s: %w", commit, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return "", fmt.Errorf("opening worktree: %w", err)
	}
	if err := wt.Checkout(&git.CheckoutOptions{Hash: c.Hash, Force: true}); err != nil {
		return "", fmt.Errorf("checking out %s: %w", commit, err)
	}
	if err := os.RemoveAll(filepath.Join(dir, git.GitDirName)); err != nil {
		return "", fmt.Errorf("checking out %s: %w", commit, err)
	}
	return c.TreeHash.String(), nil
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
