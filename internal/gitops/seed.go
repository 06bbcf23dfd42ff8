package gitops

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// InitBare creates an empty bare repository at dir whose HEAD is branch.
// The demo and the tests use it to make state and app repositories.
func InitBare(dir, branch string) error {
	if branch == "" {
		branch = "main"
	}
	repo, err := git.PlainInit(dir, true)
	if err != nil {
		return fmt.Errorf("creating bare repo %s: %w", dir, err)
	}
	head := plumbing.NewSymbolicReference(plumbing.HEAD, plumbing.NewBranchReferenceName(branch))
	if err := repo.Storer.SetReference(head); err != nil {
		return fmt.Errorf("setting HEAD of %s: %w", dir, err)
	}
	return nil
}

// CommitDir copies the files of src over a clone of url's branch (a new
// branch when the repository is empty), commits them with message and
// pushes. It returns the new commit's hash. Files absent from src are kept.
func CommitDir(ctx context.Context, url, branch string, src fs.FS, message string) (string, error) {
	if branch == "" {
		branch = "main"
	}
	work, err := os.MkdirTemp("", "runway-commit-")
	if err != nil {
		return "", fmt.Errorf("creating temp clone dir: %w", err)
	}
	defer os.RemoveAll(work)
	ref := plumbing.NewBranchReferenceName(branch)
	repo, err := git.PlainCloneContext(ctx, work, false, &git.CloneOptions{URL: url, ReferenceName: ref, SingleBranch: true})
	if err != nil {
		// An empty repository has no branch to clone: start one.
		repo, err = git.PlainInit(work, false)
		if err != nil {
			return "", fmt.Errorf("initialising clone of %s: %w", url, err)
		}
		if _, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{url}}); err != nil {
			return "", fmt.Errorf("adding remote %s: %w", url, err)
		}
		if err := repo.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, ref)); err != nil {
			return "", fmt.Errorf("setting HEAD: %w", err)
		}
	}
	wt, err := repo.Worktree()
	if err != nil {
		return "", fmt.Errorf("opening worktree: %w", err)
	}
	root, err := os.OpenRoot(work)
	if err != nil {
		return "", fmt.Errorf("opening clone of %s: %w", url, err)
	}
	defer root.Close()
	// Written through root: a symlink the clone checked out cannot send a
	// file outside it.
	err = fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(src, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		dst := filepath.FromSlash(p)
		if err := root.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := root.WriteFile(dst, data, info.Mode().Perm()|0o600); err != nil {
			return err
		}
		_, err = wt.Add(p)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("copying files into clone of %s: %w", url, err)
	}
	sig := object.Signature{Name: "Runway demo", Email: "demo@localhost", When: time.Now()}
	sha, err := wt.Commit(message, &git.CommitOptions{Author: &sig, Committer: &sig, AllowEmptyCommits: true})
	if err != nil {
		return "", fmt.Errorf("committing to %s: %w", url, err)
	}
	if err := repo.PushContext(ctx, &git.PushOptions{RemoteName: "origin"}); err != nil {
		return "", fmt.Errorf("pushing to %s: %w", url, err)
	}
	return sha.String(), nil
}
