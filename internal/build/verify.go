package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// Verdicts of Verifier.Verify.
var (
	// ErrCommitNotFound: the repository has no such commit.
	ErrCommitNotFound = errors.New("commit not found in the repository")
	// ErrNotOnBranch: the commit exists but the branch's head does not
	// reach it.
	ErrNotOnBranch = errors.New("commit not reachable from the branch")
)

// DefaultVerifyTimeout bounds one Verify (fetch and walk) when
// NewVerifier is given zero.
const DefaultVerifyTimeout = 30 * time.Second

// Verifier tells whether a commit is on a branch of a repository as the
// repository is now: it fetches the repository's branches and tags into a
// bare mirror (one per URL, under its directory) and walks the branch's
// history from its head.
type Verifier struct {
	dir     string
	timeout time.Duration

	mu    sync.Mutex
	locks map[string]*sync.Mutex // per mirror: one fetch at a time
}

// NewVerifier returns a verifier keeping its mirrors in dir, which it
// creates (0700) on first use; timeout bounds each Verify (zero:
// DefaultVerifyTimeout).
func NewVerifier(dir string, timeout time.Duration) *Verifier {
	if timeout <= 0 {
		timeout = DefaultVerifyTimeout
	}
	return &Verifier{dir: dir, timeout: timeout, locks: map[string]*sync.Mutex{}}
}

// Verify fetches url and returns nil if commit (40 hex digits) is the head
// of refs/heads/<branch> or reachable from it; an error wrapping
// ErrNotOnBranch if the commit is in the repository but not on the branch
// (or the branch does not exist); one wrapping ErrCommitNotFound if the
// repository has no such commit; any other error if it could not find out
// (the repository cannot be fetched, the time ran out).
func (v *Verifier) Verify(ctx context.Context, url, branch, commit string) error {
	if !plumbing.IsHash(commit) {
		return fmt.Errorf("verifying commit %q: not a commit id", commit)
	}
	ref := plumbing.NewBranchReferenceName(branch)
	if branch == "" || ref.Validate() != nil {
		return fmt.Errorf("verifying commit %s: %q is not a branch name", commit, branch)
	}
	ctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()

	dir := v.mirrorDir(url)
	unlock := v.lock(dir)
	defer unlock()
	repo, err := v.fetch(ctx, dir, url)
	if err != nil {
		return err
	}
	want := plumbing.NewHash(commit)
	if _, err := repo.CommitObject(want); err != nil {
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			return fmt.Errorf("%s in %s: %w", commit, url, ErrCommitNotFound)
		}
		return fmt.Errorf("reading commit %s of %s: %w", commit, url, err)
	}
	head, err := repo.Reference(ref, true)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return fmt.Errorf("%s in %s: branch %s does not exist: %w", commit, url, branch, ErrNotOnBranch)
	}
	if err != nil {
		return fmt.Errorf("resolving branch %s of %s: %w", branch, url, err)
	}
	found, err := reaches(ctx, repo, head.Hash(), want)
	if err != nil {
		return fmt.Errorf("walking branch %s of %s: %w", branch, url, err)
	}
	if !found {
		return fmt.Errorf("%s in %s, branch %s at %s: %w", commit, url, branch, head.Hash(), ErrNotOnBranch)
	}
	return nil
}

// mirrorDir is where url's mirror lives: named by a hash of the URL, so no
// URL can name a path.
func (v *Verifier) mirrorDir(url string) string {
	sum := sha256.Sum256([]byte(url))
	return filepath.Join(v.dir, hex.EncodeToString(sum[:16])+".git")
}

func (v *Verifier) lock(dir string) func() {
	v.mu.Lock()
	l, ok := v.locks[dir]
	if !ok {
		l = &sync.Mutex{}
		v.locks[dir] = l
	}
	v.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// fetch brings the mirror in dir up to date with url's branches and tags,
// creating it (or recreating it, if it does not open) first.
func (v *Verifier) fetch(ctx context.Context, dir, url string) (*git.Repository, error) {
	if err := os.MkdirAll(v.dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating verify cache: %w", err)
	}
	repo, err := git.PlainOpen(dir)
	if err != nil {
		if !errors.Is(err, git.ErrRepositoryNotExists) {
			// A mirror left broken (an interrupted fetch, a full disk) is
			// only a cache.
			if err := os.RemoveAll(dir); err != nil {
				return nil, fmt.Errorf("removing broken mirror %s: %w", dir, err)
			}
		}
		if repo, err = git.PlainInit(dir, true); err != nil {
			return nil, fmt.Errorf("creating mirror of %s: %w", url, err)
		}
	}
	if _, err := repo.Remote(git.DefaultRemoteName); errors.Is(err, git.ErrRemoteNotFound) {
		if _, err := repo.CreateRemote(&config.RemoteConfig{Name: git.DefaultRemoteName, URLs: []string{url}}); err != nil {
			return nil, fmt.Errorf("configuring mirror of %s: %w", url, err)
		}
	}
	err = repo.FetchContext(ctx, &git.FetchOptions{
		RemoteURL: url, // always the caller's URL, whatever the mirror's config says
		RefSpecs:  []config.RefSpec{"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"},
		Tags:      git.NoTags, // the refspec above already takes them
		Prune:     true,
		Force:     true,
	})
	switch {
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate), errors.Is(err, transport.ErrEmptyRemoteRepository):
		return repo, nil
	default:
		return nil, fmt.Errorf("fetching %s: %w", url, err)
	}
}

// reaches walks the history from head and tells whether it meets want,
// stopping when ctx is done.
func reaches(ctx context.Context, repo *git.Repository, head, want plumbing.Hash) (bool, error) {
	seen := map[plumbing.Hash]bool{head: true}
	queue := []plumbing.Hash{head}
	for n := 0; len(queue) > 0; n++ {
		h := queue[0]
		queue = queue[1:]
		if h == want {
			return true, nil
		}
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return false, err
			}
		}
		c, err := repo.CommitObject(h)
		if err != nil {
			return false, fmt.Errorf("reading commit %s: %w", h, err)
		}
		for _, p := range c.ParentHashes {
			if !seen[p] {
				seen[p] = true
				queue = append(queue, p)
			}
		}
	}
	return false, nil
}
