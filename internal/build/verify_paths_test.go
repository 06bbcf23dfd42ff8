package build

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// change edits the work clone of r: files to write (content) and paths to
// remove, then commits and pushes main, returning the commit.
func (r *gitRepo) change(msg string, write map[string]string, remove ...string) string {
	r.t.Helper()
	for _, p := range remove {
		r.git(r.work, "rm", "-r", "-q", p)
	}
	for p, data := range write {
		full := filepath.Join(r.work, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			r.t.Fatal(err)
		}
		r.git(r.work, "add", p)
	}
	r.git(r.work, "commit", "-q", "--allow-empty", "-m", msg)
	r.git(r.work, "push", "-q", "origin", "main")
	return r.git(r.work, "rev-parse", "HEAD")
}

func TestChangedPaths(t *testing.T) {
	ctx := t.Context()
	r := newGitRepo(t)
	base := r.change("base", map[string]string{
		"README.md": "x", "go.mod": "module x", "src/a.go": "a", "src/deep/b.go": "b", "docs/guide.md": "g", "tool": "file",
	})
	modified := r.change("modify", map[string]string{"src/deep/b.go": "b2"})
	added := r.change("add", map[string]string{"src/deep/new/c.go": "c"})
	removed := r.change("remove docs", nil, "docs")
	replaced := r.change("file to dir", map[string]string{"tool/main.go": "m"}, "tool")
	r.git(r.work, "update-index", "--chmod=+x", "go.mod")
	chmod := r.change("chmod", nil)
	empty := r.change("empty", nil)
	v := NewVerifier(filepath.Join(t.TempDir(), "verify"), 0)
	tests := []struct {
		name          string
		before, after string
		limit         int
		want          []string
		wantErr       error
	}{
		{name: "modified deep file", before: base, after: modified, want: []string{"src/deep/b.go"}},
		{name: "added in a new directory", before: modified, after: added, want: []string{"src/deep/new/c.go"}},
		{name: "directory removed", before: added, after: removed, want: []string{"docs/guide.md"}},
		{name: "file replaced by a directory", before: removed, after: replaced, want: []string{"tool", "tool/main.go"}},
		{name: "mode changed", before: replaced, after: chmod, want: []string{"go.mod"}},
		{name: "nothing changed", before: chmod, after: empty, want: nil},
		{name: "several commits at once", before: base, after: empty,
			want: []string{"docs/guide.md", "go.mod", "src/deep/b.go", "src/deep/new/c.go", "tool", "tool/main.go"}},
		{name: "backwards", before: replaced, after: removed, want: []string{"tool", "tool/main.go"}},
		{name: "over the limit", before: base, after: empty, limit: 5, wantErr: ErrTooManyChanges},
		{name: "at the limit", before: base, after: chmod, limit: 6,
			want: []string{"docs/guide.md", "go.mod", "src/deep/b.go", "src/deep/new/c.go", "tool", "tool/main.go"}},
		{name: "before unknown", before: strings.Repeat("1", 40), after: empty, wantErr: ErrCommitNotFound},
		{name: "after unknown", before: base, after: strings.Repeat("2", 40), wantErr: ErrCommitNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.ChangedPaths(ctx, r.url, tt.before, tt.after, tt.limit)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ChangedPaths = %v, %v; want %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("ChangedPaths = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestChangedPathsFetches: commits pushed after the mirror was made are
// fetched; an unreachable repository is no verdict.
func TestChangedPathsFetches(t *testing.T) {
	ctx := t.Context()
	r := newGitRepo(t)
	first := r.change("first", map[string]string{"a": "1"})
	v := NewVerifier(filepath.Join(t.TempDir(), "verify"), 0)
	if err := v.Verify(ctx, r.url, "main", first); err != nil {
		t.Fatal(err)
	}
	second := r.change("second", map[string]string{"b/c": "2"})
	got, err := v.ChangedPaths(ctx, r.url, first, second, 0)
	if err != nil || fmt.Sprint(got) != "[b/c]" {
		t.Fatalf("ChangedPaths = %q, %v; want [b/c]", got, err)
	}
	_, err = v.ChangedPaths(ctx, filepath.Join(t.TempDir(), "missing.git"), first, second, 0)
	if err == nil || errors.Is(err, ErrCommitNotFound) {
		t.Fatalf("ChangedPaths of a missing repository = %v, want an error that is no verdict", err)
	}
	if _, err := v.ChangedPaths(ctx, r.url, "main", second, 0); err == nil {
		t.Fatal("ChangedPaths accepted a branch name for a commit id")
	}
}
