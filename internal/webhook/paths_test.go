package webhook_test

import (
	"errors"
	"path"
	"strings"
	"testing"

	"github.com/runway-cd/runway/internal/webhook"
)

func TestMatchGlob(t *testing.T) {
	tests := []struct {
		pattern string
		match   []string
		noMatch []string
	}{
		{"go.mod", []string{"go.mod"}, []string{"sub/go.mod", "go.modx", "go.sum"}},
		{"*.go", []string{"main.go", ".x.go"}, []string{"cmd/main.go", "main.go.txt"}},
		{"src/**", []string{"src", "src/a", "src/a/b/c.go"}, []string{"srcx/a", "lib/src/a", "a/src"}},
		{"**/*.md", []string{"README.md", "docs/x.md", "a/b/c/d.md"}, []string{"README.mdx", "docs/x.txt"}},
		{"docs/**/*.png", []string{"docs/a.png", "docs/x/y/a.png"}, []string{"docs/a.jpg", "img/docs/a.png"}},
		{"**", []string{"a", "a/b/c"}, nil},
		{"a/**/b/**/c", []string{"a/b/c", "a/x/b/y/c", "a/b/b/c", "a/x/y/b/c"}, []string{"a/c", "a/b", "b/c", "a/b/c/d"}},
		{"cmd/?/main.go", []string{"cmd/a/main.go"}, []string{"cmd/ab/main.go", "cmd/main.go"}},
		{"migrations/[0-9]*.sql", []string{"migrations/001_init.sql"}, []string{"migrations/init.sql"}},
		{`lit\*.txt`, []string{"lit*.txt"}, []string{"litx.txt"}},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			if err := webhook.ValidGlob(tt.pattern); err != nil {
				t.Fatalf("ValidGlob: %v", err)
			}
			for _, name := range tt.match {
				if !webhook.MatchGlob(tt.pattern, name) {
					t.Errorf("%q does not match %q", tt.pattern, name)
				}
			}
			for _, name := range tt.noMatch {
				if webhook.MatchGlob(tt.pattern, name) {
					t.Errorf("%q matches %q", tt.pattern, name)
				}
			}
		})
	}
}

func TestValidGlob(t *testing.T) {
	for _, tt := range []struct{ name, pattern, want string }{
		{"empty", "", "empty"},
		{"absolute", "/src/**", "relative to the repository's root"},
		{"trailing slash", "docs/", "write dir/**"},
		{"empty segment", "a//b", "empty, '.' or '..'"},
		{"dot dot", "../x", "empty, '.' or '..'"},
		{"star star in a segment", "src/a**", "whole segment"},
		{"bad class", "[a-", "syntax error"},
		{"too long", strings.Repeat("a", webhook.MaxPatternLen+1), "longer than"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := webhook.ValidGlob(tt.pattern)
			if !errors.Is(err, webhook.ErrBadGlob) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ValidGlob(%q) = %v, want ErrBadGlob saying %q", tt.pattern, err, tt.want)
			}
			if webhook.MatchGlob(tt.pattern, "a/b") {
				t.Fatalf("invalid pattern %q matched", tt.pattern)
			}
		})
	}
}

func TestPathFilter(t *testing.T) {
	tests := []struct {
		name    string
		f       webhook.PathFilter
		trigger []string
		skip    []string
	}{
		{"zero filters nothing", webhook.PathFilter{}, []string{"a", "docs/x.md"}, nil},
		{"paths", webhook.PathFilter{Paths: []string{"src/**", "go.mod"}}, []string{"src/a.go", "go.mod"}, []string{"README.md"}},
		{"ignore only", webhook.PathFilter{IgnorePaths: []string{"docs/**", "**/*.md"}}, []string{"src/a.go"}, []string{"docs/a.png", "src/README.md"}},
		{"paths minus ignore", webhook.PathFilter{Paths: []string{"src/**"}, IgnorePaths: []string{"src/**/*_test.go"}},
			[]string{"src/a.go"}, []string{"src/a_test.go", "src/x/a_test.go", "other.go"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.f.Validate(); err != nil {
				t.Fatal(err)
			}
			for _, p := range tt.trigger {
				if !tt.f.Triggers(p) {
					t.Errorf("%s does not trigger", p)
				}
			}
			for _, p := range tt.skip {
				if tt.f.Triggers(p) {
					t.Errorf("%s triggers", p)
				}
			}
		})
	}
	err := webhook.PathFilter{Paths: []string{"ok/**", "bad/"}, IgnorePaths: []string{""}}.Validate()
	if err == nil || !strings.Contains(err.Error(), `paths[1] "bad/"`) || !strings.Contains(err.Error(), `ignorePaths[0] ""`) {
		t.Fatalf("Validate = %v, want both bad patterns named", err)
	}
	if err := (webhook.PathFilter{Paths: make([]string, webhook.MaxPatterns+1)}).Validate(); err == nil {
		t.Fatal("Validate accepted more than MaxPatterns patterns")
	}
}

// FuzzMatchGlob: no pattern or path panics or matches when invalid; a
// pattern without "**" or a class matches as path.Match does, and "**/"
// in front matches the same path under any directory.
func FuzzMatchGlob(f *testing.F) {
	f.Add("src/**", "src/a/b.go")
	f.Add("**/*.md", "docs/x.md")
	f.Add("a/*/c", "a/b/c")
	f.Add("[a-", "a")
	f.Add("a/**/b/**/c", "a/x/b/y/c")
	f.Fuzz(func(t *testing.T, pattern, name string) {
		got := webhook.MatchGlob(pattern, name)
		if webhook.ValidGlob(pattern) != nil {
			if got {
				t.Fatalf("invalid pattern %q matched %q", pattern, name)
			}
			return
		}
		if strings.Contains(pattern, "**") || strings.Contains(pattern, "[") {
			return
		}
		want, err := path.Match(pattern, name)
		if err == nil && got != want {
			t.Fatalf("MatchGlob(%q, %q) = %v, path.Match says %v", pattern, name, got, want)
		}
		if got && !webhook.MatchGlob("**/"+pattern, "x/y/"+name) {
			t.Fatalf("%q matches %q but **/%s does not match x/y/%s", pattern, name, pattern, name)
		}
	})
}
