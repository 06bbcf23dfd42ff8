package build

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// IsAncestor reports whether commit ancestor is descendant or one of its
// ancestors in url's history: whether descendant's change already holds
// ancestor's. A commit is its own ancestor. It reads url's mirror (see
// Verify), fetching first only when a commit is not there, and is bounded
// by the verifier's timeout. It returns an error wrapping
// ErrCommitNotFound when either commit is not in the repository, and any
// other error when it could not find out; two commits on unrelated
// branches are no error (false).
func (v *Verifier) IsAncestor(ctx context.Context, url, ancestor, descendant string) (bool, error) {
	for _, c := range []string{ancestor, descendant} {
		if !plumbing.IsHash(c) {
			return false, fmt.Errorf("ordering commits of %s: %q is not a commit id", url, c)
		}
	}
	if ancestor == descendant {
		return true, nil
	}
	ctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	dir := v.mirrorDir(url)
	unlock := v.lock(dir)
	defer unlock()

	repo, err := git.PlainOpen(dir)
	if err != nil || !hasCommits(repo, ancestor, descendant) {
		if repo, err = v.fetch(ctx, dir, url); err != nil {
			return false, err
		}
	}
	for _, c := range []string{ancestor, descendant} {
		if _, err := repo.CommitObject(plumbing.NewHash(c)); err != nil {
			if errors.Is(err, plumbing.ErrObjectNotFound) {
				return false, fmt.Errorf("%s in %s: %w", c, url, ErrCommitNotFound)
			}
			return false, fmt.Errorf("reading commit %s of %s: %w", c, url, err)
		}
	}
	found, err := reaches(ctx, repo, plumbing.NewHash(descendant), plumbing.NewHash(ancestor))
	if err != nil {
		return false, fmt.Errorf("walking the history of %s in %s: %w", descendant, url, err)
	}
	return found, nil
}
