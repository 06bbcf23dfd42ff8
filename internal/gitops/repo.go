// Package gitops keeps Runway's clone of the state repository: it reads
// the environments the repository declares and commits and pushes changes
// to their manifests, retrying when someone else pushed first. The clone is
// never checked out (see tree.go): what a person commits, symlinks and
// file names the filesystem refuses included, is never written to disk.
package gitops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/runway-cd/runway/internal/manifest"
)

// Author is who Runway's commits are from.
var defaultAuthor = object.Signature{Name: "Runway", Email: "runway@localhost"}

// Repo is a clone of the state repository, never checked out (see
// tree.go). It is safe for concurrent use; commits are serialised.
type Repo struct {
	url    string
	dir    string
	branch string
	log    *slog.Logger

	mu   sync.Mutex
	repo *git.Repository

	warnMu sync.Mutex
	warned map[string]bool // skipped files already logged
}

// Open clones url into dir afresh. branch is the branch Runway reads and
// writes; "" means main.
//
// The clone is only a cache of the remote, and one left by a killed
// process cannot be trusted: go-git writes refs, the index and the work
// tree in place (a ref file is truncated, then written), so a kill leaves
// files half-written ("ref file is empty", "EOF"). So Open clones into a
// new directory and swaps it in. When the remote cannot be reached, the
// clone already there is used if every ref and its commit read back;
// reads then fail until the remote is back, which callers treat as
// "nothing confirmed".
func Open(ctx context.Context, url, dir, branch string, logger *slog.Logger) (*Repo, error) {
	if branch == "" {
		branch = "main"
	}
	if logger == nil {
		logger = slog.Default()
	}
	r := &Repo{url: url, dir: dir, branch: branch, log: logger}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("creating state repo dir: %w", err)
	}
	fresh, old := dir+".new", dir+".old"
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		_ = os.Rename(old, dir) // a swap a kill interrupted: take the old clone back
	}
	_ = os.RemoveAll(fresh)
	_, err := git.PlainCloneContext(ctx, fresh, false, &git.CloneOptions{
		URL:           url,
		ReferenceName: plumbing.NewBranchReferenceName(branch),
		SingleBranch:  true,
		// Never checked out (see tree.go): a committed symlink or a name
		// the filesystem refuses cannot make Open fail or write anywhere.
		NoCheckout: true,
	})
	if err == nil {
		// Swapped so that a kill at any point leaves a clone at dir or old.
		_ = os.RemoveAll(old)
		if err := os.Rename(dir, old); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("replacing state repo clone %s: %w", dir, err)
		}
		if err := os.Rename(fresh, dir); err != nil {
			return nil, fmt.Errorf("replacing state repo clone %s: %w", dir, err)
		}
		_ = os.RemoveAll(old)
		repo, err := git.PlainOpen(dir)
		if err != nil {
			return nil, fmt.Errorf("opening state repo clone %s: %w", dir, err)
		}
		r.repo = repo
		return r, nil
	}
	_ = os.RemoveAll(fresh)
	cloneErr := fmt.Errorf("cloning state repo %s: %w", url, err)
	repo, err := git.PlainOpen(dir)
	if err != nil {
		return nil, cloneErr
	}
	if err := checkClone(repo); err != nil {
		return nil, fmt.Errorf("%w; the clone there is damaged: %v", cloneErr, err)
	}
	logger.Warn("state repo unreachable; using the clone already there until it is back", "dir", dir, "err", cloneErr)
	r.repo = repo
	return r, nil
}

// checkClone reads every reference of a clone and the commit each points
// to: an error means the clone cannot be trusted.
func checkClone(repo *git.Repository) error {
	refs, err := repo.References()
	if err != nil {
		return fmt.Errorf("listing references: %w", err)
	}
	defer refs.Close()
	return refs.ForEach(func(ref *plumbing.Reference) error {
		if ref.Type() != plumbing.HashReference {
			if _, err := repo.Reference(ref.Name(), true); err != nil {
				return fmt.Errorf("resolving %s: %w", ref.Name(), err)
			}
			return nil
		}
		if _, err := repo.CommitObject(ref.Hash()); err != nil {
			return fmt.Errorf("reading commit %s of %s: %w", ref.Hash(), ref.Name(), err)
		}
		return nil
	})
}

// URL is the state repository's address.
func (r *Repo) URL() string { return r.url }

// Snapshot is what the state repository declares at one commit.
type Snapshot struct {
	Revision string
	// Envs are the environments whose manifest parsed, by name.
	Envs map[string]*manifest.Manifest
	// Invalid are manifest files that did not parse, are not regular
	// files (a symlink) or have a name Runway refuses for an environment
	// (nul.json, a name with a colon, a backslash or a control character,
	// too long: see manifest.ValidEnvName), by environment name. Their
	// environments must be left as they are: neither created nor deleted.
	Invalid map[string]error
}

// EnvNames returns the valid environments' names, sorted.
func (s *Snapshot) EnvNames() []string {
	names := make([]string, 0, len(s.Envs))
	for n := range s.Envs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Snapshot fetches the remote and reads every manifest at the head of the
// branch. An error means nothing could be confirmed: callers must not act
// on absence then.
func (r *Repo) Snapshot(ctx context.Context) (*Snapshot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	head, err := r.fetch(ctx)
	if err != nil {
		return nil, err
	}
	commit, err := r.repo.CommitObject(head)
	if err != nil {
		return nil, fmt.Errorf("reading commit %s: %w", head, err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return nil, fmt.Errorf("reading tree of %s: %w", head, err)
	}
	s := &Snapshot{Revision: head.String(), Envs: map[string]*manifest.Manifest{}, Invalid: map[string]error{}}
	if err := r.readManifests(tree, s); err != nil {
		return nil, fmt.Errorf("reading manifests at %s: %w", head, err)
	}
	return s, nil
}

// readManifests reads the production manifest and every staging one from
// tree into s. It walks the tree entries as stored, never through go-git's
// path-validating iterators, so one file with a name go-git refuses cannot
// hide the others. A manifest directory that is a symlink (or a file) is
// an error: the snapshot cannot say which environments exist.
func (r *Repo) readManifests(tree *object.Tree, s *Snapshot) error {
	prodDir, prodFile := path.Split(manifest.ProductionPath)
	dir, err := subtree(r.repo.Storer, tree, strings.TrimSuffix(prodDir, "/"))
	if err != nil {
		return fmt.Errorf("state repo layout: %w; Runway reads only real directories", err)
	}
	if e := entry(dir, prodFile); e != nil {
		if err := r.readManifest(manifest.ProductionPath, manifest.ProductionEnv, e, s); err != nil {
			return err
		}
	}
	if dir, err = subtree(r.repo.Storer, tree, manifest.StagingDir); err != nil {
		return fmt.Errorf("state repo layout: %w; Runway reads only real directories", err)
	}
	if dir == nil {
		return nil
	}
	for i := range dir.Entries {
		e := &dir.Entries[i]
		p := manifest.StagingDir + "/" + e.Name
		env := manifest.EnvNameFromPath(p)
		if env == "" || e.Mode == filemode.Dir {
			continue // not a manifest
		}
		if err := manifest.ValidEnvName(env); err != nil {
			// Left as it is, never created nor deleted; the commits of
			// other files carry its entry over unchanged.
			r.warnOnce(p, "state repo file skipped: its name is not one Runway accepts", err)
			s.Invalid[env] = fmt.Errorf("%q skipped: %w", p, err)
			continue
		}
		if err := r.readManifest(p, env, e, s); err != nil {
			return err
		}
	}
	return nil
}

// readManifest parses the manifest of env at entry e (path p) into s. An
// error means the repository could not be read (nothing is confirmed); a
// manifest that is not one goes to s.Invalid.
func (r *Repo) readManifest(p, env string, e *object.TreeEntry, s *Snapshot) error {
	if !isFile(e.Mode) {
		s.Invalid[env] = fmt.Errorf("%s is %s, not a file", p, describeMode(e.Mode))
		return nil
	}
	blob, err := r.repo.BlobObject(e.Hash)
	if err != nil {
		return fmt.Errorf("reading %s: %w", p, err)
	}
	if blob.Size > maxManifestBytes {
		s.Invalid[env] = fmt.Errorf("%s is %d bytes, more than %d", p, blob.Size, maxManifestBytes)
		return nil
	}
	content, err := readBlob(blob)
	if err != nil {
		return fmt.Errorf("reading %s: %w", p, err)
	}
	m, err := manifest.Parse(content)
	switch {
	case err != nil:
		s.Invalid[env] = fmt.Errorf("%s: %w", p, err)
	case m.EnvName != env:
		s.Invalid[env] = fmt.Errorf("%s: envname %q does not match the file name", p, m.EnvName)
	default:
		s.Envs[env] = m
	}
	return nil
}

// maxManifestBytes bounds what is read of one manifest: a few apps' names
// and tags fit in a few KiB.
const maxManifestBytes = 1 << 20

func readBlob(b *object.Blob) ([]byte, error) {
	rd, err := b.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return io.ReadAll(io.LimitReader(rd, maxManifestBytes))
}

// warnOnce logs a skipped file once per process, not on every poll.
func (r *Repo) warnOnce(p, msg string, err error) {
	r.warnMu.Lock()
	defer r.warnMu.Unlock()
	if r.warned[p] {
		return
	}
	if r.warned == nil {
		r.warned = map[string]bool{}
	}
	r.warned[p] = true
	r.log.Warn(msg, "path", p, "err", err)
}

// fetch updates the remote-tracking branch and returns its head.
func (r *Repo) fetch(ctx context.Context) (plumbing.Hash, error) {
	refspec := config.RefSpec(fmt.Sprintf("+refs/heads/%s:refs/remotes/origin/%s", r.branch, r.branch))
	err := r.repo.FetchContext(ctx, &git.FetchOptions{RemoteName: "origin", RefSpecs: []config.RefSpec{refspec}, Force: true})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return plumbing.ZeroHash, fmt.Errorf("fetching state repo %s: %w", r.url, err)
	}
	ref, err := r.repo.Reference(plumbing.NewRemoteReferenceName("origin", r.branch), true)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("resolving origin/%s: %w", r.branch, err)
	}
	return ref.Hash(), nil
}

// Change is one file change: Data written to Path, or Path removed when
// Delete is set.
type Change struct {
	Path   string
	Data   []byte
	Delete bool
}

// Commit applies changes on top of the remote branch, commits them with
// message and pushes. When the changes are already there it returns the
// current head and pushes nothing, so retrying a commit is harmless. A push
// that loses a race is retried on the new head. The changes are whole
// files: an edit that depends on what a file holds (a manifest of which one
// app changes) must use Update, so that it is made again on the new head.
func (r *Repo) Commit(ctx context.Context, message string, changes ...Change) (string, error) {
	return r.Update(ctx, message, func(func(string) ([]byte, error)) ([]Change, error) { return changes, nil })
}

// Edit computes the changes of a commit from the files at the head it is
// made on; read returns a file's content there, or an error for which
// IsNotExist holds. Returning no changes commits nothing.
type Edit func(read func(path string) ([]byte, error)) ([]Change, error)

// maxPushAttempts bounds Update's pushes: each attempt that loses a race to
// another writer fetches the new head and makes the edit again there.
const maxPushAttempts = 8

// ErrRemoteMoved is wrapped by Update's error when its pushes kept losing
// the race: every one of maxPushAttempts attempts found that another writer
// had moved the branch between Update's fetch and its push.
var ErrRemoteMoved = errors.New("the state repository's branch moved while pushing")

// Update makes a commit whose changes edit computes from the remote head,
// and pushes it. A push rejected because the branch moved (someone else
// pushed first: another pipeline, or a person) is retried on top of the new
// head with edit called again, so their change is kept and this one made on
// top of it, at most maxPushAttempts times; then the error wraps
// ErrRemoteMoved. An error of edit ends Update at once, with nothing
// pushed. Update returns the new head, or the current one when the edit
// changes nothing.
func (r *Repo) Update(ctx context.Context, message string, edit Edit) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var lastErr error
	for attempt := 0; attempt < maxPushAttempts; attempt++ {
		sha, err := r.commitOnce(ctx, message, edit)
		if err == nil {
			return sha, nil
		}
		if !errors.Is(err, ErrRemoteMoved) {
			return "", err
		}
		lastErr = err
		r.log.Info("state repo moved while pushing; making the change again on the new head", "attempt", attempt+1, "err", err)
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("pushing to state repo %s: %w", r.url, ctx.Err())
		case <-time.After(time.Duration(attempt*25) * time.Millisecond):
		}
	}
	return "", fmt.Errorf("pushing to state repo %s: gave up after %d attempts, each made on a head another writer replaced before the push landed; last: %w",
		r.url, maxPushAttempts, lastErr)
}

func (r *Repo) commitOnce(ctx context.Context, message string, edit Edit) (string, error) {
	head, err := r.fetch(ctx)
	if err != nil {
		return "", err
	}
	commit, err := r.repo.CommitObject(head)
	if err != nil {
		return "", fmt.Errorf("reading commit %s: %w", head, err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return "", fmt.Errorf("reading tree of %s: %w", head, err)
	}
	changes, err := edit(func(path string) ([]byte, error) { return readTreeFile(tree, path) })
	if err != nil {
		return "", err
	}
	root := tree
	for _, c := range changes {
		if root, err = r.apply(root, c); err != nil {
			return "", err
		}
	}
	if root.Hash == tree.Hash {
		return head.String(), nil
	}
	sig := defaultAuthor
	sig.When = time.Now()
	c := &object.Commit{Author: sig, Committer: sig, Message: message, TreeHash: root.Hash, ParentHashes: []plumbing.Hash{head}}
	obj := r.repo.Storer.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return "", fmt.Errorf("encoding commit: %w", err)
	}
	sha, err := r.repo.Storer.SetEncodedObject(obj)
	if err != nil {
		return "", fmt.Errorf("committing: %w", err)
	}
	local := plumbing.NewBranchReferenceName(r.branch)
	if err := r.repo.Storer.SetReference(plumbing.NewHashReference(local, sha)); err != nil {
		return "", fmt.Errorf("moving %s to %s: %w", r.branch, sha, err)
	}
	err = r.repo.PushContext(ctx, &git.PushOptions{
		RemoteName: "origin",
		RefSpecs:   []config.RefSpec{config.RefSpec(fmt.Sprintf("%s:%s", local, local))},
	})
	if err != nil {
		return r.pushFailed(ctx, head, sha, err)
	}
	return sha.String(), nil
}

// pushFailed tells why the push of sha, a commit on base, failed, by
// reading the remote branch again rather than the error's text: go-git
// (v5.19) has no typed error for a rejected update on any transport.
// Its own check before sending (remote.go, checkFastForwardUpdate: the
// advertised head is not an ancestor) returns fmt.Errorf("non-fast-forward
// update: %s"); a refusal the server reports in report-status ("ng <ref>
// <reason>": git receive-pack's "failed to update ref" when another push
// landed after the advertisement, "fetch first", a hook's message) becomes
// packp.CommandStatus.Error's fmt.Errorf("command error on %s: %s").
// git.ErrNonFastForwardUpdate is returned only by Worktree.Pull. The
// file transport (file:// URLs and plain paths) runs git-receive-pack;
// ssh:// and http(s):// report the same way. So: the branch no longer at
// base means another writer pushed first (ErrRemoteMoved, retried); at sha
// means this push landed although its answer was lost; still at base means
// the push was refused for another reason (a hook, a lock another push held
// past git's core.filesRefLockTimeout, permissions), which is returned.
func (r *Repo) pushFailed(ctx context.Context, base, sha plumbing.Hash, pushErr error) (string, error) {
	now, err := r.fetch(ctx)
	switch {
	case err != nil:
		return "", fmt.Errorf("pushing %s: %w (and reading the branch again to tell why failed: %v)", sha, pushErr, err)
	case now == sha || r.descends(now, sha):
		// Landed, and maybe another writer pushed on top since: making
		// the edit again would make it twice.
		r.log.Info("state repo push reported an error but landed", "commit", sha, "head", now, "err", pushErr)
		return sha.String(), nil
	case now != base:
		return "", fmt.Errorf("pushing %s: %w: %s moved from %s to %s: %w", sha, ErrRemoteMoved, r.branch, base, now, pushErr)
	default:
		return "", fmt.Errorf("pushing %s: %w", sha, pushErr)
	}
}

// descends reports whether commit head has ancestor among its ancestors
// (following every parent, at most maxAncestorWalk commits).
func (r *Repo) descends(head, ancestor plumbing.Hash) bool {
	seen := map[plumbing.Hash]bool{}
	queue := []plumbing.Hash{head}
	for len(queue) > 0 && len(seen) < maxAncestorWalk {
		h := queue[0]
		queue = queue[1:]
		if seen[h] {
			continue
		}
		seen[h] = true
		c, err := r.repo.CommitObject(h)
		if err != nil {
			return false
		}
		for _, p := range c.ParentHashes {
			if p == ancestor {
				return true
			}
			queue = append(queue, p)
		}
	}
	return false
}

// maxAncestorWalk bounds descends: far more commits than other writers
// push between a lost answer and the fetch after it.
const maxAncestorWalk = 10000

// apply returns root with change c made. Only manifest paths may change, a
// new file only for a valid environment name, and never through or over a
// symlink (see editTree).
func (r *Repo) apply(root *object.Tree, c Change) (*object.Tree, error) {
	env := manifest.EnvNameFromPath(c.Path)
	if env == "" {
		return nil, fmt.Errorf("refusing to change %q: not a manifest path", c.Path)
	}
	var blob *plumbing.Hash
	if !c.Delete {
		if err := manifest.ValidEnvName(env); err != nil {
			return nil, fmt.Errorf("refusing to write %q: %w", c.Path, err)
		}
		h, err := storeBlob(r.repo.Storer, c.Data)
		if err != nil {
			return nil, fmt.Errorf("writing %s: %w", c.Path, err)
		}
		blob = &h
	}
	h, empty, err := editTree(r.repo.Storer, root, c.Path, blob)
	if errors.Is(err, errNotDir) {
		return nil, fmt.Errorf("refusing to change %s: %w; Runway writes only into real directories of the state repo", c.Path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("changing %s: %w", c.Path, err)
	}
	if empty {
		if h, err = storeTree(r.repo.Storer, nil); err != nil {
			return nil, err
		}
	}
	t, err := object.GetTree(r.repo.Storer, h)
	if err != nil {
		return nil, fmt.Errorf("reading new tree: %w", err)
	}
	return t, nil
}

// ReadFile returns a file's content at the remote head, for rollbacks that
// need the previous manifest.
func (r *Repo) ReadFile(ctx context.Context, path string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	head, err := r.fetch(ctx)
	if err != nil {
		return nil, err
	}
	commit, err := r.repo.CommitObject(head)
	if err != nil {
		return nil, fmt.Errorf("reading commit %s: %w", head, err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return nil, fmt.Errorf("reading tree of %s: %w", head, err)
	}
	data, err := readTreeFile(tree, path)
	if err != nil {
		return nil, fmt.Errorf("reading %s at %s: %w", path, head, err)
	}
	return data, nil
}

// readTreeFile returns the content of the file at path in tree.
func readTreeFile(tree *object.Tree, path string) ([]byte, error) {
	f, err := tree.File(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	rd, err := f.Reader()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	defer rd.Close()
	return io.ReadAll(rd)
}
