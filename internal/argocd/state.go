package argocd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
)

// LoadState reads the state repository's environments: from src's files
// when src is a directory (a clone's work tree, uncommitted changes
// included), else by cloning src (a git URL) into a directory under tmp
// with go-git. Every manifest must parse and be named as Runway names
// environments; the first that does not is an error.
func LoadState(ctx context.Context, src, tmp, branch string) (map[string]*manifest.Manifest, error) {
	if fi, err := os.Stat(src); err == nil && fi.IsDir() {
		return loadStateDir(src)
	}
	if !isGitURL(src) {
		return nil, fmt.Errorf("reading state repo %s: not a directory nor a git URL", src)
	}
	dir, err := os.MkdirTemp(tmp, "runway-state-")
	if err != nil {
		return nil, fmt.Errorf("reading state repo %s: %w", src, err)
	}
	defer os.RemoveAll(dir)
	repo, err := gitops.Open(ctx, src, filepath.Join(dir, "clone"), branch, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, fmt.Errorf("reading state repo: %w", err)
	}
	snap, err := repo.Snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading state repo %s: %w", src, err)
	}
	for _, env := range sortedKeys(snap.Invalid) {
		return nil, fmt.Errorf("state repo %s: %s: %w", src, manifestPath(env), snap.Invalid[env])
	}
	return snap.Envs, nil
}

// loadStateDir reads the manifests of a state repository's files.
func loadStateDir(dir string) (map[string]*manifest.Manifest, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("reading state repo: %w", err)
	}
	defer root.Close()
	envs := map[string]*manifest.Manifest{}
	read := func(p, env string) error {
		data, err := root.ReadFile(p)
		if err != nil {
			return fmt.Errorf("reading state repo %s: %w", dir, err)
		}
		m, err := manifest.Parse(data)
		if err != nil {
			return fmt.Errorf("state repo %s: %s: %w", dir, p, err)
		}
		envs[env] = m
		return nil
	}
	if err := read(manifest.ProductionPath, manifest.ProductionEnv); err != nil {
		return nil, err
	}
	entries, err := fs.ReadDir(root.FS(), manifest.StagingDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading state repo %s: %w", dir, err)
	}
	for _, e := range entries {
		p := path.Join(manifest.StagingDir, e.Name())
		env := manifest.EnvNameFromPath(p)
		if env == "" {
			continue // not a manifest (.gitkeep), or one Runway never reads
		}
		if err := manifest.ValidEnvName(env); err != nil {
			return nil, fmt.Errorf("state repo %s: %s: %w", dir, p, err)
		}
		if !e.Type().IsRegular() {
			return nil, fmt.Errorf("state repo %s: %s is not a regular file", dir, p)
		}
		if err := read(p, env); err != nil {
			return nil, err
		}
	}
	return envs, nil
}

// LoadAppSource reads an app repository's spec and templates from src:
// a directory (LoadApp), or a git URL whose default branch is cloned
// into a directory under tmp with go-git.
func LoadAppSource(ctx context.Context, src, tmp string) (App, error) {
	if !isGitURL(src) {
		return LoadApp(src)
	}
	dir, err := os.MkdirTemp(tmp, "runway-app-")
	if err != nil {
		return App{}, fmt.Errorf("reading app repo %s: %w", src, err)
	}
	defer os.RemoveAll(dir)
	if _, err := git.PlainCloneContext(ctx, dir, false, &git.CloneOptions{URL: src, Depth: 1, SingleBranch: true}); err != nil {
		return App{}, fmt.Errorf("cloning app repo %s: %w", src, err)
	}
	a, err := LoadApp(dir)
	if err != nil {
		return App{}, fmt.Errorf("app repo %s: %w", src, err)
	}
	return a, nil
}

// isGitURL reports whether src names a remote repository rather than a
// directory.
func isGitURL(src string) bool {
	return strings.Contains(src, "://") || strings.HasPrefix(src, "git@")
}

// LoadApp reads an app repository's spec and the AnalysisTemplate files
// it names, from dir (a checkout), never following a symlink out of it.
func LoadApp(dir string) (App, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return App{}, fmt.Errorf("reading app repo: %w", err)
	}
	defer root.Close()
	data, err := readBounded(root, appspec.FileName, appspec.MaxBytes)
	if err != nil {
		return App{}, fmt.Errorf("reading app repo %s: %w", dir, err)
	}
	spec, err := appspec.Parse(data)
	if err != nil {
		return App{}, fmt.Errorf("app repo %s: %w", dir, err)
	}
	a := App{Spec: spec, Templates: map[string][]byte{}}
	for _, p := range spec.AnalysisTemplates {
		data, err := readBounded(root, p, 1<<20)
		if err != nil {
			return App{}, fmt.Errorf("app repo %s: analysisTemplates: %w", dir, err)
		}
		a.Templates[p] = data
	}
	return a, nil
}

// readBounded reads name from root, refusing more than limit bytes.
func readBounded(root *os.Root, name string, limit int64) ([]byte, error) {
	fi, err := root.Stat(name)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s is %d bytes, more than %d", name, fi.Size(), limit)
	}
	return root.ReadFile(name)
}
