package gitops

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/runway-cd/runway/internal/manifest"
)

// planted is a tree entry a person commits to the state repository by hand.
type planted struct {
	path string
	mode filemode.FileMode
	data string // content, or the symlink's target
}

// plant commits entries on top of bare's main with go-git's object API, as
// a person's git client could, whatever the local filesystem allows.
func plant(t *testing.T, bare string, entries ...planted) {
	t.Helper()
	repo, err := git.PlainOpen(bare)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := repo.Reference(plumbing.NewBranchReferenceName("main"), true)
	if err != nil {
		t.Fatal(err)
	}
	head, err := repo.CommitObject(ref.Hash())
	if err != nil {
		t.Fatal(err)
	}
	root, err := head.Tree()
	if err != nil {
		t.Fatal(err)
	}
	s := repo.Storer
	for _, e := range entries {
		blob, err := storeBlob(s, []byte(e.data))
		if err != nil {
			t.Fatal(err)
		}
		h, _, err := editTreeMode(s, root, e.path, &blob, e.mode)
		if err != nil {
			t.Fatalf("planting %q: %v", e.path, err)
		}
		if root, err = object.GetTree(s, h); err != nil {
			t.Fatal(err)
		}
	}
	sig := object.Signature{Name: "A person", Email: "person@localhost", When: time.Now()}
	c := &object.Commit{Author: sig, Committer: sig, Message: "by hand", TreeHash: root.Hash, ParentHashes: []plumbing.Hash{head.Hash}}
	obj := s.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		t.Fatal(err)
	}
	sha, err := s.SetEncodedObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetReference(plumbing.NewHashReference(ref.Name(), sha)); err != nil {
		t.Fatal(err)
	}
}

// remoteHead is the state repository's main.
func remoteHead(t *testing.T, bare string) string {
	t.Helper()
	repo, err := git.PlainOpen(bare)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := repo.Reference(plumbing.NewBranchReferenceName("main"), true)
	if err != nil {
		t.Fatal(err)
	}
	return ref.Hash().String()
}

// listTree lists a directory's files and their contents, following
// nothing, so a write through a symlink into it shows.
func listTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "symlink -> " + target
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// gitFsck checks with the real git that the repository is sound, so the
// trees Runway writes are ones every git client reads.
func gitFsck(t *testing.T, bare string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Log("git not installed: fsck skipped")
		return
	}
	out, err := exec.Command("git", "--git-dir", bare, "fsck", "--strict", "--no-dangling").CombinedOutput()
	if err != nil {
		t.Fatalf("git fsck: %v\n%s", err, out)
	}
}

func stagingManifest(env string) string { return strings.Replace(prod, "production", env, 1) }

func TestSymlinkedManifestDirIsRefused(t *testing.T) {
	ctx := context.Background()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "keep.json"), []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		target string
	}{
		{"absolute, outside the repo", outside},
		{"relative, outside the repo", "../../../../../../../../../../.." + outside},
		{"relative, inside the repo", "../production/manifests"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := newStateRepo(t)
			plant(t, url, planted{manifest.StagingDir, filemode.Symlink, tt.target})
			before := listTree(t, outside)
			headBefore := remoteHead(t, url)
			dir := filepath.Join(t.TempDir(), "clone")
			r, err := Open(ctx, url, dir, "main", nil)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			_, err = r.Snapshot(ctx)
			if err == nil || !strings.Contains(err.Error(), "apps/staging/manifests is a symlink") {
				t.Fatalf("Snapshot: err = %v, want a refusal naming apps/staging/manifests as a symlink", err)
			}
			_, err = r.Commit(ctx, "stage", Change{Path: manifest.StagingPath("v1"), Data: []byte(stagingManifest("v1"))})
			want := "refusing to change apps/staging/manifests/v1.json: apps/staging/manifests is a symlink"
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Commit: err = %v, want it to contain %q", err, want)
			}
			_, err = r.Commit(ctx, "unstage", Change{Path: manifest.StagingPath("keep"), Delete: true})
			if err == nil || !strings.Contains(err.Error(), "is a symlink") {
				t.Fatalf("Commit delete: err = %v, want a symlink refusal", err)
			}
			if got := listTree(t, outside); !equalMaps(got, before) {
				t.Fatalf("outside dir changed: %v, was %v", got, before)
			}
			if got := remoteHead(t, url); got != headBefore {
				t.Fatalf("state repo moved to %s after refused commits", got)
			}
			for p, what := range listTree(t, dir) {
				if strings.HasPrefix(what, "symlink") {
					t.Fatalf("clone holds %s (%s): the state repo must never be checked out", p, what)
				}
			}
		})
	}
}

func TestSymlinkedManifestFileIsInvalid(t *testing.T) {
	ctx := context.Background()
	url := newStateRepo(t)
	plant(t, url, planted{manifest.StagingPath("v1"), filemode.Symlink, "/etc/passwd"})
	r, err := Open(ctx, url, filepath.Join(t.TempDir(), "clone"), "main", nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Invalid["v1"]; err == nil || !strings.Contains(err.Error(), "is a symlink, not a file") {
		t.Fatalf("Invalid[v1] = %v, want a symlink error", err)
	}
	_, err = r.Commit(ctx, "overwrite", Change{Path: manifest.StagingPath("v1"), Data: []byte(stagingManifest("v1"))})
	if err == nil || !strings.Contains(err.Error(), "v1.json is a symlink, not a file: refusing to replace it") {
		t.Fatalf("Commit over a symlink: err = %v", err)
	}
	if _, err := r.Commit(ctx, "other", Change{Path: manifest.StagingPath("v2"), Data: []byte(stagingManifest("v2"))}); err != nil {
		t.Fatalf("Commit of another file: %v", err)
	}
	gitFsck(t, url)
}

// TestRefusedNamesDoNotBlockCommits plants files go-git's checkout or
// common filesystems refuse; Runway must keep reading the others and
// committing, and carry the planted entries over untouched.
func TestRefusedNamesDoNotBlockCommits(t *testing.T) {
	ctx := context.Background()
	url := newStateRepo(t)
	odd := []string{
		"nul", "con", "aux", "com1", "lpt1", "NUL",
		"a:b", `a\b`, "a\x01b", "tab\there", "Upper",
		strings.Repeat("x", 300), // longer than a file name may be on ext4
	}
	var entries []planted
	for _, env := range odd {
		entries = append(entries, planted{manifest.StagingDir + "/" + env + ".json", filemode.Regular, stagingManifest(env)})
	}
	entries = append(entries,
		planted{manifest.StagingPath("vok"), filemode.Regular, stagingManifest("vok")},
		planted{manifest.StagingDir + "/sub\x02dir/x.json", filemode.Regular, "{}"},
	)
	plant(t, url, entries...)
	r, err := Open(ctx, url, filepath.Join(t.TempDir(), "clone"), "main", nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	s, err := r.Snapshot(ctx)
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if got := strings.Join(s.EnvNames(), ","); got != "production,vok" {
		t.Fatalf("envs = %s, want production,vok", got)
	}
	for _, env := range odd {
		err := s.Invalid[env]
		if err == nil || !strings.Contains(err.Error(), "skipped") {
			t.Errorf("Invalid[%q] = %v, want it skipped", env, err)
		}
	}
	sha, err := r.Commit(ctx, "stage v2", Change{Path: manifest.StagingPath("v2"), Data: []byte(stagingManifest("v2"))})
	if err != nil {
		t.Fatalf("Commit beside refused names: %v", err)
	}
	if got := remoteHead(t, url); got != sha {
		t.Fatalf("remote at %s, commit returned %s", got, sha)
	}
	s, err = r.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.EnvNames(), ","); got != "production,v2,vok" {
		t.Fatalf("envs after commit = %s", got)
	}
	repo, err := git.PlainOpen(url)
	if err != nil {
		t.Fatal(err)
	}
	c, err := repo.CommitObject(plumbing.NewHash(sha))
	if err != nil {
		t.Fatal(err)
	}
	root, err := c.Tree()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := subtree(repo.Storer, root, manifest.StagingDir)
	if err != nil || dir == nil {
		t.Fatalf("staging dir after commit: %v", err)
	}
	for _, env := range odd {
		if entry(dir, env+".json") == nil {
			t.Errorf("planted %q.json was dropped by Runway's commit", env)
		}
	}
	if entry(dir, "sub\x02dir") == nil {
		t.Error("planted directory was dropped by Runway's commit")
	}

	for _, env := range []string{"nul", "con", "a:b", strings.Repeat("y", 41)} {
		_, err := r.Commit(ctx, "new "+env, Change{Path: manifest.StagingDir + "/" + env + ".json", Data: []byte(stagingManifest(env))})
		if err == nil || !strings.Contains(err.Error(), "refusing to write") {
			t.Errorf("Commit of a new %q: err = %v, want a refusal", env, err)
		}
	}
	if _, err := r.Commit(ctx, "remove nul", Change{Path: manifest.StagingDir + "/nul.json", Delete: true}); err != nil {
		t.Fatalf("deleting a planted nul.json: %v", err)
	}
	if s, err = r.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Invalid["nul"]; ok {
		t.Fatal("nul.json still there after its deletion")
	}
}

func TestLastStagingFileDeletedDropsTheDir(t *testing.T) {
	ctx := context.Background()
	url := newStateRepo(t)
	r, err := Open(ctx, url, filepath.Join(t.TempDir(), "clone"), "main", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Commit(ctx, "add", Change{Path: manifest.StagingPath("v1"), Data: []byte(stagingManifest("v1"))}); err != nil {
		t.Fatal(err)
	}
	sha, err := r.Commit(ctx, "remove", Change{Path: manifest.StagingPath("v1"), Delete: true})
	if err != nil {
		t.Fatal(err)
	}
	repo, _ := git.PlainOpen(url)
	c, err := repo.CommitObject(plumbing.NewHash(sha))
	if err != nil {
		t.Fatal(err)
	}
	root, _ := c.Tree()
	if e := entry(root, "apps"); e == nil {
		t.Fatal("apps/ vanished with the last staging file")
	}
	if d, err := subtree(repo.Storer, root, "apps/staging"); err != nil || d != nil {
		t.Fatalf("apps/staging = %v, %v: an empty directory must not stay in the tree", d, err)
	}
	if _, err := c.File(manifest.ProductionPath); err != nil {
		t.Fatalf("production manifest lost: %v", err)
	}
	gitFsck(t, url)
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
