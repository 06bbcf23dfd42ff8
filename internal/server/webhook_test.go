package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

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

// TestWebhookPathFilter checks the glue between the webhook's path filter
// and the app repository: the app a push names brings its filter, and the
// changed paths are read from its configured repository by git, so a push
// touching only docs is acknowledged as ignored and one touching src
// starts a pipeline.
func TestWebhookPathFilter(t *testing.T) {
	ctx := t.Context()
	url := filepath.Join(t.TempDir(), "app.git")
	if err := gitops.InitBare(url, "main"); err != nil {
		t.Fatal(err)
	}
	commit := func(name, msg string) string {
		sha, err := gitops.CommitDir(ctx, url, "main", fstest.MapFS{name: {Data: []byte(msg)}}, msg)
		if err != nil {
			t.Fatal(err)
		}
		return sha
	}
	base := commit("src/main.go", "base")
	docs := commit("docs/notes.md", "docs only")
	src := commit("src/ping.go", "src")
	cfg := &Config{Apps: []AppConfig{
		{Name: "hello", Repo: "o/hello", URL: url, Branch: "main", Paths: []string{"src/**", "go.mod"}},
		{Name: "plain", Repo: "o/plain", URL: url, Branch: "main"},
	}}
	v := build.NewVerifier(filepath.Join(t.TempDir(), "verify"), 0)
	st := &recordingStarter{}
	h, err := webhook.NewHandler(webhook.Options{
		Secret: []byte("0123456789abcdef-webhook"), Tracker: tracker{cfg}, Verifier: verifier{cfg: cfg, v: v},
		Starter: st, Deliveries: &memDeliveries{}, Paths: changes{cfg: cfg, v: v},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, repo, before, after string
		wantStatus                int
		wantBody                  string
	}{
		{"docs only", "o/hello", base, docs, 200, `"reason":"no changed path matches apps[hello].paths (src/**, go.mod)"`},
		{"src", "o/hello", docs, src, 202, `"status":"accepted"`},
		{"two commits, one in src", "o/hello", base, src, 202, `"status":"accepted"`},
		{"app without a filter", "o/plain", base, docs, 202, `"status":"accepted"`},
		{"before unknown to git nor listed", "o/hello", strings.Repeat("1", 40), docs, 202, `"status":"accepted"`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := fmt.Sprintf(`{"ref":"refs/heads/main","before":%q,"after":%q,"repository":{"full_name":%q}}`, tt.before, tt.after, tt.repo)
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("POST", "/webhooks/github", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-GitHub-Event", "push")
			req.Header.Set("X-GitHub-Delivery", fmt.Sprint("d", i))
			mac := hmac.New(sha256.New, []byte("0123456789abcdef-webhook"))
			mac.Write([]byte(body))
			req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus || !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Fatalf("answer %d %s, want %d with %s", rec.Code, rec.Body, tt.wantStatus, tt.wantBody)
			}
		})
	}
	if got := st.count(); got != 4 {
		t.Errorf("%d pipelines started, want 4", got)
	}
	var c changes = changes{cfg: cfg, v: v}
	if _, err := c.ChangedPaths(ctx, "o/hello", "main", strings.Repeat("1", 40), src); !errors.Is(err, webhook.ErrUnknownCommit) {
		t.Errorf("ChangedPaths of an unknown commit = %v, want ErrUnknownCommit", err)
	}
	if app, f := c.PathFilter("o/hello", "other"); app != "" || !f.IsZero() {
		t.Errorf("PathFilter of an untracked branch = %q, %+v", app, f)
	}
}

// recordingStarter counts the pipelines it was asked to start.
type recordingStarter struct {
	mu sync.Mutex
	n  int
}

func (s *recordingStarter) Start(context.Context, webhook.Push) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return fmt.Sprint("p", s.n), nil
}

func (s *recordingStarter) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// memDeliveries is a webhook.Deliveries in a map.
type memDeliveries struct {
	mu sync.Mutex
	m  map[string]string
}

func (d *memDeliveries) LookupDelivery(_ context.Context, delivery string) (string, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	id, ok := d.m[delivery]
	return id, ok, nil
}

func (d *memDeliveries) SaveDelivery(_ context.Context, delivery, id string, _ time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]string{}
	}
	d.m[delivery] = id
	return nil
}
