package build

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestIsAncestor(t *testing.T) {
	r := newGitRepo(t)
	first := r.commit("first")
	second := r.commit("second")
	r.git(r.work, "push", "-q", "origin", "main")
	r.git(r.work, "checkout", "-q", "-b", "feature", first)
	feature := r.commit("on feature")
	r.git(r.work, "push", "-q", "origin", "feature")
	r.git(r.work, "checkout", "-q", "main")

	v := NewVerifier(filepath.Join(t.TempDir(), "verify"), 0)
	ctx := t.Context()
	steps := []struct {
		name                 string
		before               func() // changes the repository first
		ancestor, descendant string
		want                 bool
		wantErr              error // a sentinel, or errAnyOther for any other error
	}{
		{name: "parent of its child", ancestor: first, descendant: second, want: true},
		{name: "child of its parent", ancestor: second, descendant: first, want: false},
		{name: "a commit is its own ancestor", ancestor: second, descendant: second, want: true},
		{name: "across branches from the fork point", ancestor: first, descendant: feature, want: true},
		{name: "unrelated branches", ancestor: second, descendant: feature, want: false},
		{name: "the other way round", ancestor: feature, descendant: second, want: false},
		{
			// The mirror has every commit so far: a new one is fetched.
			name:     "a commit pushed after the mirror was made",
			before:   func() { r.git(r.work, "push", "-q", "origin", "main") },
			ancestor: second, descendant: "", want: true,
		},
		{name: "unknown commit", ancestor: strings.Repeat("1", 40), descendant: second, wantErr: ErrCommitNotFound},
		{name: "not a commit id", ancestor: "main", descendant: second, wantErr: errAnyOther},
	}
	third := r.commit("third") // pushed by the step that needs it
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.before != nil {
				s.before()
			}
			descendant := s.descendant
			if descendant == "" {
				descendant = third
			}
			got, err := v.IsAncestor(ctx, r.url, s.ancestor, descendant)
			switch {
			case s.wantErr == errAnyOther && err != nil && !errors.Is(err, ErrCommitNotFound):
			case s.wantErr == errAnyOther:
				t.Fatalf("IsAncestor: %v, want an error other than ErrCommitNotFound", err)
			case s.wantErr != nil && !errors.Is(err, s.wantErr):
				t.Fatalf("IsAncestor: %v, want %v", err, s.wantErr)
			case s.wantErr == nil && err != nil:
				t.Fatalf("IsAncestor: %v", err)
			case s.wantErr == nil && got != s.want:
				t.Fatalf("IsAncestor(%.7s, %.7s) = %v, want %v", s.ancestor, descendant, got, s.want)
			}
		})
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	fourth := r.commit("fourth")
	r.git(r.work, "push", "-q", "origin", "main")
	if _, err := v.IsAncestor(cancelled, r.url, third, fourth); err == nil {
		t.Fatal("IsAncestor with a cancelled context and a commit to fetch: no error")
	}
}

// errAnyOther in a test's want stands for any error that is no sentinel.
var errAnyOther = errors.New("any other error")
