package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/utils/merkletrie"

	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
)

// CommitState makes a commit to the state repository by hand, as a person
// would from a clone of their own: edit computes the changes from the
// files at the head (and again on a new head if Runway pushed first).
// It returns the new head. Runway hears of it at its next poll, or at once
// after PushState.
func (h *Harness) CommitState(ctx context.Context, message string, edit gitops.Edit) (string, error) {
	dir, err := os.MkdirTemp(h.Dir, "hand-clone-")
	if err != nil {
		return "", fmt.Errorf("making a directory for a clone: %w", err)
	}
	repo, err := gitops.Open(ctx, h.StateURL, dir, "main", nil)
	if err != nil {
		return "", fmt.Errorf("cloning the state repo by hand: %w", err)
	}
	sha, err := repo.Update(ctx, message, edit)
	if err != nil {
		return "", fmt.Errorf("committing %q to the state repo by hand: %w", message, err)
	}
	return sha, nil
}

// StateFile reads a file at the state repository's head; found is false
// when it is not there.
func (h *Harness) StateFile(path string) (data []byte, found bool, err error) {
	repo, err := git.PlainOpen(h.StateURL)
	if err != nil {
		return nil, false, fmt.Errorf("opening the state repo: %w", err)
	}
	ref, err := repo.Reference(plumbing.NewBranchReferenceName("main"), true)
	if err != nil {
		return nil, false, fmt.Errorf("reading the state repo's main: %w", err)
	}
	c, err := repo.CommitObject(ref.Hash())
	if err != nil {
		return nil, false, err
	}
	data, err = fileAt(c, path)
	if errors.Is(err, object.ErrFileNotFound) {
		return nil, false, nil
	}
	return data, err == nil, err
}

// StagingManifests lists the staging environments the state repository's
// head declares (the names of apps/staging/manifests/*.json).
func (h *Harness) StagingManifests() ([]string, error) {
	repo, err := git.PlainOpen(h.StateURL)
	if err != nil {
		return nil, fmt.Errorf("opening the state repo: %w", err)
	}
	ref, err := repo.Reference(plumbing.NewBranchReferenceName("main"), true)
	if err != nil {
		return nil, err
	}
	c, err := repo.CommitObject(ref.Hash())
	if err != nil {
		return nil, err
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, err
	}
	dir, err := tree.Tree(manifest.StagingDir)
	if errors.Is(err, object.ErrDirectoryNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var envs []string
	for _, e := range dir.Entries {
		if env, ok := strings.CutSuffix(e.Name, ".json"); ok {
			envs = append(envs, env)
		}
	}
	slices.Sort(envs)
	return envs, nil
}

// ManifestAt is the production manifest as one commit of the state
// repository left it.
type ManifestAt struct {
	Commit  string
	Message string
	// When is the commit's committer time.
	When time.Time
	// Data is the file; Manifest is it parsed (nil if it does not parse:
	// Err says why).
	Data     []byte
	Manifest *manifest.Manifest
	Err      error
}

// ProductionHistory walks the state repository's main branch, oldest
// first, and returns the production manifest after every commit that
// changed it (following first parents: the branch's own history).
func (h *Harness) ProductionHistory() ([]ManifestAt, error) {
	repo, err := git.PlainOpen(h.StateURL)
	if err != nil {
		return nil, fmt.Errorf("opening the state repo: %w", err)
	}
	ref, err := repo.Reference(plumbing.NewBranchReferenceName("main"), true)
	if err != nil {
		return nil, err
	}
	var chain []*object.Commit
	c, err := repo.CommitObject(ref.Hash())
	for i := 0; err == nil && i < 100000; i++ {
		chain = append(chain, c)
		if c.NumParents() == 0 {
			break
		}
		c, err = c.Parent(0)
	}
	if err != nil {
		return nil, fmt.Errorf("walking the state repo's history: %w", err)
	}
	slices.Reverse(chain)
	var out []ManifestAt
	var prev []byte
	for _, c := range chain {
		data, err := fileAt(c, manifest.ProductionPath)
		if errors.Is(err, object.ErrFileNotFound) {
			prev = nil
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s at %s: %w", manifest.ProductionPath, c.Hash, err)
		}
		if prev != nil && string(prev) == string(data) {
			continue
		}
		prev = data
		m, perr := manifest.Parse(data)
		out = append(out, ManifestAt{Commit: c.Hash.String(), Message: c.Message, When: c.Committer.When, Data: data, Manifest: m, Err: perr})
	}
	return out, nil
}

func fileAt(c *object.Commit, path string) ([]byte, error) {
	f, err := c.File(path)
	if err != nil {
		return nil, err
	}
	r, err := f.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// commitFiles is a commit's parent and the files it changed.
type commitFiles struct {
	parent                   string
	added, modified, removed []string
}

// describeCommit reads a commit of the repository at url: its first
// parent and what it changed against it.
func describeCommit(url, sha string) (commitFiles, error) {
	var out commitFiles
	repo, err := git.PlainOpen(url)
	if err != nil {
		return out, err
	}
	c, err := repo.CommitObject(plumbing.NewHash(sha))
	if err != nil {
		return out, err
	}
	tree, err := c.Tree()
	if err != nil {
		return out, err
	}
	var parentTree *object.Tree
	if c.NumParents() > 0 {
		p, err := c.Parent(0)
		if err != nil {
			return out, err
		}
		out.parent = p.Hash.String()
		if parentTree, err = p.Tree(); err != nil {
			return out, err
		}
	}
	changes, err := object.DiffTree(parentTree, tree)
	if err != nil {
		return out, err
	}
	out.added, out.modified, out.removed = []string{}, []string{}, []string{}
	for _, ch := range changes {
		action, err := ch.Action()
		if err != nil {
			return out, err
		}
		switch action {
		case merkletrie.Insert:
			out.added = append(out.added, ch.To.Name)
		case merkletrie.Delete:
			out.removed = append(out.removed, ch.From.Name)
		default:
			out.modified = append(out.modified, ch.To.Name)
		}
	}
	return out, nil
}

// headOf is the commit branch of the repository at url points at.
func headOf(url, branch string) (string, error) {
	repo, err := git.PlainOpen(url)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", url, err)
	}
	ref, err := repo.Reference(plumbing.NewBranchReferenceName(branch), true)
	if err != nil {
		return "", fmt.Errorf("reading %s of %s: %w", branch, url, err)
	}
	return ref.Hash().String(), nil
}
