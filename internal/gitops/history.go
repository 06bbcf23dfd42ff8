package gitops

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// IsNotExist reports whether err says a file is not in the repository (at
// the commit read), as opposed to the repository not being readable.
func IsNotExist(err error) bool { return errors.Is(err, object.ErrFileNotFound) }

// Added returns when path was last added to the branch: the committer time
// of the oldest commit of the unbroken run of first-parent commits, ending
// at revision (a Snapshot's Revision), that all have the file. A manifest
// deleted and written again counts from its second addition. It fails when
// path is not in revision (IsNotExist) or the history cannot be read; a
// caller must then not guess an age.
func (r *Repo) Added(ctx context.Context, revision, path string) (time.Time, error) {
	c, err := r.addedBy(ctx, revision, path)
	if err != nil {
		return time.Time{}, err
	}
	return c.Committer.When, nil
}

// addedBy returns the commit Added takes the time of.
func (r *Repo) addedBy(ctx context.Context, revision, path string) (*object.Commit, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.repo.CommitObject(plumbing.NewHash(revision))
	if err != nil {
		return nil, fmt.Errorf("reading commit %s: %w", revision, err)
	}
	if _, err := c.File(path); err != nil {
		return nil, fmt.Errorf("reading %s at %s: %w", path, revision, err)
	}
	for c.NumParents() > 0 {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("reading the history of %s: %w", path, err)
		}
		parent, err := c.Parent(0)
		if err != nil {
			return nil, fmt.Errorf("reading the parent of %s: %w", c.Hash, err)
		}
		if _, err := parent.File(path); err != nil {
			if IsNotExist(err) {
				break
			}
			return nil, fmt.Errorf("reading %s at %s: %w", path, parent.Hash, err)
		}
		c = parent
	}
	return c, nil
}
