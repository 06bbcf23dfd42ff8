package build

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gitRepo is a bare repository with a work clone to commit and push from.
type gitRepo struct {
	t    *testing.T
	url  string // the bare repository
	work string
}

func newGitRepo(t *testing.T) *gitRepo {
	t.Helper()
	dir := t.TempDir()
	r := &gitRepo{t: t, url: filepath.Join(dir, "app.git"), work: filepath.Join(dir, "work")}
	r.git(dir, "init", "--bare", "--initial-branch=main", r.url)
	r.git(dir, "clone", r.url, r.work)
	r.git(r.work, "checkout", "-b", "main")
	return r
}

func (r *gitRepo) git(dir string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit commits a change in the work clone and returns its id.
func (r *gitRepo) commit(msg string) string {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.work, "file"), []byte(msg), 0o644); err != nil {
		r.t.Fatal(err)
	}
	r.git(r.work, "add", "file")
	r.git(r.work, "commit", "-q", "-m", msg)
	return r.git(r.work, "rev-parse", "HEAD")
}

func TestVerify(t *testing.T) {
	r := newGitRepo(t)
	first := r.commit("first")
	head := r.commit("second")
	r.git(r.work, "push", "-q", "origin", "main")
	r.git(r.work, "checkout", "-q", "-b", "feature")
	feature := r.commit("on feature")
	r.git(r.work, "push", "-q", "origin", "feature")
	r.git(r.work, "checkout", "-q", "main")
	unpushed := r.commit("never pushed")
	r.git(r.work, "reset", "-q", "--hard", head)

	v := NewVerifier(filepath.Join(t.TempDir(), "verify"), 0)
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()

	// The steps share the verifier, so later ones run against the mirror
	// the earlier ones fetched.
	steps := []struct {
		name    string
		before  func() // changes the repository first
		ctx     context.Context
		url     string // "": r.url
		branch  string // "": main
		commit  string
		wantErr error // a sentinel, or errOther for any error that is neither
	}{
		{name: "head of the branch", commit: head},
		{name: "ancestor of the head", commit: first},
		{name: "commit on another branch", commit: feature, wantErr: ErrNotOnBranch},
		{name: "commit pushed nowhere", commit: unpushed, wantErr: ErrCommitNotFound},
		{name: "commit that never existed", commit: strings.Repeat("ab", 20), wantErr: ErrCommitNotFound},
		{name: "the other branch is tracked", branch: "feature", commit: feature},
		{name: "fork point, from the other branch", branch: "feature", commit: head},
		{name: "branch that does not exist", branch: "release", commit: head, wantErr: ErrNotOnBranch},
		{name: "new commit pushed since the last fetch", commit: "", before: func() {
			r.git(r.work, "checkout", "-q", "main")
		}},
		{name: "commit force-pushed away", commit: head, before: func() {
			r.git(r.work, "push", "-q", "--force", "origin", first+":refs/heads/main")
		}, wantErr: ErrNotOnBranch},
		{name: "branch deleted", branch: "feature", commit: feature, before: func() {
			r.git(r.work, "push", "-q", "origin", ":refs/heads/feature")
		}, wantErr: ErrNotOnBranch},
		{name: "repository that does not exist", url: filepath.Join(t.TempDir(), "missing.git"), commit: head, wantErr: errOther},
		{name: "unreachable server", url: "http://127.0.0.1:1/app.git", commit: head, wantErr: errOther},
		{name: "cancelled", ctx: cancelled, commit: head, wantErr: errOther},
		{name: "not a commit id", commit: "main", wantErr: errOther},
		{name: "option as a commit", commit: "--upload-pack=touch /tmp/x", wantErr: errOther},
		{name: "bad branch name", branch: "a..b", commit: first, wantErr: errOther},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		if s.commit == "" { // a fresh commit on main
			s.commit = r.commit("third")
			r.git(r.work, "push", "-q", "origin", "main")
		}
		ctx, url, branch := s.ctx, s.url, s.branch
		if ctx == nil {
			ctx = t.Context()
		}
		if url == "" {
			url = r.url
		}
		if branch == "" {
			branch = "main"
		}
		err := v.Verify(ctx, url, branch, s.commit)
		switch {
		case s.wantErr == nil && err != nil:
			t.Errorf("%s: Verify = %v, want nil", s.name, err)
		case s.wantErr == errOther && (err == nil || errors.Is(err, ErrNotOnBranch) || errors.Is(err, ErrCommitNotFound)):
			t.Errorf("%s: Verify = %v, want an error that is no verdict", s.name, err)
		case s.wantErr != nil && s.wantErr != errOther && !errors.Is(err, s.wantErr):
			t.Errorf("%s: Verify = %v, want %v", s.name, err, s.wantErr)
		}
	}
}

// errOther stands for an error that is neither verdict.
var errOther = errors.New("other error")

func TestVerifyRecreatesBrokenMirror(t *testing.T) {
	r := newGitRepo(t)
	head := r.commit("first")
	r.git(r.work, "push", "-q", "origin", "main")
	dir := filepath.Join(t.TempDir(), "verify")
	v := NewVerifier(dir, 0)
	if err := v.Verify(t.Context(), r.url, "main", head); err != nil {
		t.Fatal(err)
	}
	mirror := v.mirrorDir(r.url)
	if err := os.RemoveAll(filepath.Join(mirror, "objects")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mirror, "config"), []byte("[broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(t.Context(), r.url, "main", head); err != nil {
		t.Fatalf("Verify with a broken mirror = %v, want it rebuilt", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("verify cache mode %v, want 0700", fi.Mode().Perm())
	}
}
