package server

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/webhook"
)

// TestWebhookVerifier checks the glue between the webhook and the build
// verifier: it fetches the configured URL of the app the push names and
// turns the verifier's verdicts into the webhook's.
func TestWebhookVerifier(t *testing.T) {
	ctx := t.Context()
	url := filepath.Join(t.TempDir(), "app.git")
	if err := gitops.InitBare(url, "main"); err != nil {
		t.Fatal(err)
	}
	onMain, err := gitops.CommitDir(ctx, url, "main", fstest.MapFS{"a": {Data: []byte("a")}}, "on main")
	if err != nil {
		t.Fatal(err)
	}
	// A branch of its own history: its commit is in the repository, not
	// on main.
	onOther, err := gitops.CommitDir(ctx, url, "other", fstest.MapFS{"b": {Data: []byte("b")}}, "on other")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Apps: []AppConfig{
		{Name: "hello", Repo: "o/hello", URL: url, Branch: "main"},
		{Name: "gone", Repo: "o/gone", URL: filepath.Join(t.TempDir(), "missing.git"), Branch: "main"},
	}}
	v := verifier{cfg: cfg, v: build.NewVerifier(filepath.Join(t.TempDir(), "verify"), 0)}
	tests := []struct {
		name, repo, commit string
		want               error // nil, a webhook verdict, or errNoVerdict
	}{
		{name: "on the branch", repo: "o/hello", commit: onMain},
		{name: "on another branch", repo: "o/hello", commit: onOther, want: webhook.ErrNotOnBranch},
		{name: "not in the repository", repo: "o/hello", commit: strings.Repeat("1", 40), want: webhook.ErrUnknownCommit},
		{name: "repository unreachable", repo: "o/gone", commit: onMain, want: errNoVerdict},
		{name: "untracked", repo: "o/else", commit: onMain, want: errNoVerdict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := v.Verify(ctx, tt.repo, "main", tt.commit)
			verdict := errors.Is(err, webhook.ErrNotOnBranch) || errors.Is(err, webhook.ErrUnknownCommit)
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("Verify = %v, want nil", err)
			case tt.want == errNoVerdict && (err == nil || verdict):
				t.Fatalf("Verify = %v, want an error that is no verdict (503)", err)
			case tt.want != nil && tt.want != errNoVerdict && !errors.Is(err, tt.want):
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

var errNoVerdict = errors.New("an error that is no verdict")
