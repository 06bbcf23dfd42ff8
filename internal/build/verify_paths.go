package build

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// ErrTooManyChanges: more paths differ between two commits than the
// caller's limit.
var ErrTooManyChanges = errors.New("more changed paths than the limit")

// ChangedPaths returns the paths (slash-separated, sorted) of files that
// differ between the trees of commits before and after of url: added,
// removed, modified, or changed mode; a file replaced by a directory (or
// the other way round) counts with every file under it. It reads url's
// mirror (see Verify), fetching first only when a commit is not there. It
// returns an error wrapping ErrCommitNotFound when either commit is not in
// the repository, one wrapping ErrTooManyChanges as soon as more than limit
// paths differ (limit <= 0: no limit), and any other error when it could
// not find out.
func (v *Verifier) ChangedPaths(ctx context.Context, url, before, after string, limit int) ([]string, error) {
	for _, c := range []string{before, after} {
		if !plumbing.IsHash(c) {
			return nil, fmt.Errorf("diffing %s: %q is not a commit id", url, c)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	dir := v.mirrorDir(url)
	unlock := v.lock(dir)
	defer unlock()

	repo, err := git.PlainOpen(dir)
	if err != nil || !hasCommits(repo, before, after) {
		if repo, err = v.fetch(ctx, dir, url); err != nil {
			return nil, err
		}
	}
	var trees [2]*object.Tree
	for i, c := range []string{before, after} {
		commit, err := repo.CommitObject(plumbing.NewHash(c))
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			return nil, fmt.Errorf("%s in %s: %w", c, url, ErrCommitNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("reading commit %s of %s: %w", c, url, err)
		}
		if trees[i], err = commit.Tree(); err != nil {
			return nil, fmt.Errorf("reading the tree of %s in %s: %w", c, url, err)
		}
	}
	d := &treeDiff{ctx: ctx, repo: repo, limit: limit}
	if err := d.diff(trees[0], trees[1], ""); err != nil {
		return nil, fmt.Errorf("diffing %s..%s of %s: %w", before, after, url, err)
	}
	sort.Strings(d.paths)
	return d.paths, nil
}

// hasCommits reports whether every commit is in repo.
func hasCommits(repo *git.Repository, commits ...string) bool {
	for _, c := range commits {
		if _, err := repo.CommitObject(plumbing.NewHash(c)); err != nil {
			return false
		}
	}
	return true
}

// treeDiff collects the paths that differ between two trees, descending
// only into subtrees whose hashes differ, and stops past limit.
type treeDiff struct {
	ctx   context.Context
	repo  *git.Repository
	limit int
	paths []string
}

// diff adds the paths under prefix that differ between a and b (either may
// be nil: a directory on one side only).
func (d *treeDiff) diff(a, b *object.Tree, prefix string) error {
	if err := d.ctx.Err(); err != nil {
		return err
	}
	entries := map[string][2]*object.TreeEntry{}
	for i, t := range []*object.Tree{a, b} {
		if t == nil {
			continue
		}
		for j := range t.Entries {
			e := &t.Entries[j]
			pair := entries[e.Name]
			pair[i] = e
			entries[e.Name] = pair
		}
	}
	for name, pair := range entries {
		was, now := pair[0], pair[1]
		if was != nil && now != nil && was.Hash == now.Hash && was.Mode == now.Mode {
			continue
		}
		p := prefix + name
		var oldTree, newTree *object.Tree
		var err error
		if oldTree, err = d.subtree(was, p); err != nil {
			return err
		}
		if newTree, err = d.subtree(now, p); err != nil {
			return err
		}
		// A file (or a submodule) on either side is a changed path; a
		// directory on either side has its files compared with nothing or
		// with the other side's directory.
		if (was != nil && oldTree == nil) || (now != nil && newTree == nil) {
			if err := d.add(p); err != nil {
				return err
			}
		}
		if oldTree != nil || newTree != nil {
			if err := d.diff(oldTree, newTree, p+"/"); err != nil {
				return err
			}
		}
	}
	return nil
}

// subtree returns the tree of a directory entry, nil for any other entry.
func (d *treeDiff) subtree(e *object.TreeEntry, p string) (*object.Tree, error) {
	if e == nil || e.Mode != filemode.Dir {
		return nil, nil
	}
	t, err := d.repo.TreeObject(e.Hash)
	if err != nil {
		return nil, fmt.Errorf("reading tree %s: %w", p, err)
	}
	return t, nil
}

func (d *treeDiff) add(p string) error {
	if d.limit > 0 && len(d.paths) == d.limit {
		return fmt.Errorf("%w (%d)", ErrTooManyChanges, d.limit)
	}
	d.paths = append(d.paths, p)
	return nil
}
