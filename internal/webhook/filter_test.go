package webhook_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/runway-cd/runway/internal/webhook"
)

// paths is an app "web" with a path filter, and the changed paths git
// would find (or err).
type paths struct {
	filter  webhook.PathFilter
	changed []string
	err     error

	mu    sync.Mutex
	calls []string
}

func (p *paths) PathFilter(repo, branch string) (string, webhook.PathFilter) {
	return "web", p.filter
}

func (p *paths) ChangedPaths(_ context.Context, repo, branch, before, after string) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, repo+"@"+branch+":"+before+".."+after)
	return p.changed, p.err
}

func (p *paths) called() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.calls)
}

// pushChanging is a push payload whose one commit lists changed paths, or
// lists no commits when listed is nil.
func pushChanging(repo, ref, base string, listed []string) string {
	body := pushPayload(repo, ref, sha)
	body = strings.Replace(body, `"before": "`+before+`"`, `"before": "`+base+`"`, 1)
	if listed != nil {
		quoted := make([]string, len(listed))
		for i, p := range listed {
			quoted[i] = fmt.Sprintf("%q", p)
		}
		commits := `"commits": [{"id": "` + sha + `", "message": "m", "added": [], "modified": [` + strings.Join(quoted, ",") + `], "removed": []}],`
		body = strings.Replace(body, `"pusher":`, commits+"\n  \"pusher\":", 1)
	}
	return body
}

func TestHandlerPathFilter(t *testing.T) {
	const repo = "chestercodes/homelabping"
	srcOnly := webhook.PathFilter{Paths: []string{"src/**", "go.mod"}}
	ignored := map[string]string{"status": "ignored", "ignored": "true", "reason": "no changed path matches apps[web].paths (src/**, go.mod)"}
	zeros := strings.Repeat("0", 40)
	tests := []struct {
		name       string
		paths      *paths
		body       string
		wantStatus int
		wantBody   map[string]string
		wantStarts int
		wantDiff   int // ChangedPaths calls
		wantSaved  bool
	}{
		{
			name:       "no filter",
			paths:      &paths{},
			body:       pushChanging(repo, "refs/heads/main", before, nil),
			wantStatus: 202, wantStarts: 1, wantSaved: true,
		},
		{
			name:       "a changed path matches",
			paths:      &paths{filter: srcOnly, changed: []string{"README.md", "src/ping/ping.go"}},
			body:       pushChanging(repo, "refs/heads/main", before, nil),
			wantStatus: 202, wantStarts: 1, wantDiff: 1, wantSaved: true,
		},
		{
			name:       "no changed path matches",
			paths:      &paths{filter: srcOnly, changed: []string{"README.md", "docs/a.md"}},
			body:       pushChanging(repo, "refs/heads/main", before, []string{"src/listed-but-git-knows-better.go"}),
			wantStatus: 200, wantBody: ignored, wantDiff: 1, wantSaved: true,
		},
		{
			name:       "every changed path ignored",
			paths:      &paths{filter: webhook.PathFilter{IgnorePaths: []string{"docs/**"}}, changed: []string{"docs/a.md"}},
			body:       pushChanging(repo, "refs/heads/main", before, nil),
			wantStatus: 200, wantDiff: 1, wantSaved: true,
			wantBody: map[string]string{"status": "ignored", "ignored": "true", "reason": "every changed path matches apps[web].ignorePaths (docs/**)"},
		},
		{
			name:       "new branch is not filtered",
			paths:      &paths{filter: srcOnly, changed: []string{"README.md"}},
			body:       pushChanging(repo, "refs/heads/main", zeros, []string{"README.md"}),
			wantStatus: 202, wantStarts: 1, wantSaved: true,
		},
		{
			name:       "git cannot tell: the payload's list decides (no match)",
			paths:      &paths{filter: srcOnly, err: fmt.Errorf("diff: %w", webhook.ErrUnknownCommit)},
			body:       pushChanging(repo, "refs/heads/main", before, []string{"README.md"}),
			wantStatus: 200, wantBody: ignored, wantDiff: 1, wantSaved: true,
		},
		{
			name:       "git cannot tell: the payload's list decides (match)",
			paths:      &paths{filter: srcOnly, err: fmt.Errorf("diff: %w", webhook.ErrUnknownCommit)},
			body:       pushChanging(repo, "refs/heads/main", before, []string{"go.mod"}),
			wantStatus: 202, wantStarts: 1, wantDiff: 1, wantSaved: true,
		},
		{
			name:       "nobody can tell: the pipeline runs",
			paths:      &paths{filter: srcOnly, err: fmt.Errorf("diff: %w", webhook.ErrUnknownCommit)},
			body:       pushChanging(repo, "refs/heads/main", before, nil),
			wantStatus: 202, wantStarts: 1, wantDiff: 1, wantSaved: true,
		},
		{
			name:       "too many changed paths: the pipeline runs",
			paths:      &paths{filter: srcOnly, err: fmt.Errorf("diff: %w", webhook.ErrTooManyPaths)},
			body:       pushChanging(repo, "refs/heads/main", before, []string{"README.md"}),
			wantStatus: 202, wantStarts: 1, wantDiff: 1, wantSaved: true,
		},
		{
			name:       "changes unreadable",
			paths:      &paths{filter: srcOnly, err: errUnreachable},
			body:       pushChanging(repo, "refs/heads/main", before, []string{"README.md"}),
			wantStatus: 503, wantDiff: 1,
			wantBody: map[string]string{"error": "cannot read the changes of chestercodes/homelabping to apply the path filter of app web; try again later"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openDB(t)
			st := &starter{}
			srv := httptest.NewServer(newHandler(t, webhook.Options{Starter: st, Deliveries: db, Paths: tt.paths}))
			t.Cleanup(srv.Close)
			a := send(t, srv, delivery{event: "push", id: "d1", body: tt.body})
			if a.status != tt.wantStatus {
				t.Fatalf("status %d %v, want %d", a.status, a.body, tt.wantStatus)
			}
			if tt.wantBody != nil && !equalMaps(a.body, tt.wantBody) {
				t.Errorf("body %v, want %v", a.body, tt.wantBody)
			}
			if n := len(st.started()); n != tt.wantStarts {
				t.Errorf("Start called %d times, want %d", n, tt.wantStarts)
			}
			if n := tt.paths.called(); n != tt.wantDiff {
				t.Errorf("ChangedPaths called %d times, want %d", n, tt.wantDiff)
			}
			if _, saved, err := db.LookupDelivery(t.Context(), "d1"); err != nil || saved != tt.wantSaved {
				t.Errorf("delivery recorded: %v (%v), want %v", saved, err, tt.wantSaved)
			}
		})
	}
}

// TestHandlerPathFilterRedelivery: a push ignored by its path filter is a
// handled delivery: sent again it is a duplicate and still starts nothing.
func TestHandlerPathFilterRedelivery(t *testing.T) {
	st := &starter{}
	p := &paths{filter: webhook.PathFilter{Paths: []string{"src/**"}}, changed: []string{"README.md"}}
	srv := httptest.NewServer(newHandler(t, webhook.Options{Starter: st, Paths: p}))
	t.Cleanup(srv.Close)
	d := delivery{event: "push", id: "d1", body: pushChanging("chestercodes/homelabping", "refs/heads/main", before, nil)}
	if a := send(t, srv, d); a.status != 200 || a.body["ignored"] != "true" {
		t.Fatalf("first delivery: %d %v, want 200 ignored", a.status, a.body)
	}
	if a := send(t, srv, d); a.status != 200 || a.body["status"] != "duplicate" {
		t.Fatalf("redelivery: %d %v, want 200 duplicate", a.status, a.body)
	}
	if n := len(st.started()); n != 0 {
		t.Fatalf("Start called %d times, want 0", n)
	}
	if n := p.called(); n != 1 {
		t.Fatalf("ChangedPaths called %d times, want 1 (the redelivery is a duplicate before any work)", n)
	}
}

// reconciler counts the passes it was asked for.
type reconciler struct {
	mu sync.Mutex
	n  int
}

func (r *reconciler) Reconcile() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
}

func (r *reconciler) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// TestHandlerStateRepo: a push to the state repository's branch asks for
// a reconcile at once, once per delivery, after the same signature check;
// its other branches are acknowledged and ignored.
func TestHandlerStateRepo(t *testing.T) {
	const state = "chestercodes/state"
	stateMain := pushPayload(state, "refs/heads/main", sha)
	reconciling := map[string]string{"status": "reconciling", "reason": "push to the state repository chestercodes/state (branch main): reconciling environments now"}
	tests := []struct {
		name       string
		before     []delivery
		send       delivery
		wantStatus int
		wantBody   map[string]string
		wantPasses int
		wantSaved  bool
	}{
		{
			name:       "push to the tracked branch",
			send:       delivery{event: "push", id: "s1", body: stateMain},
			wantStatus: 202, wantBody: reconciling, wantPasses: 1, wantSaved: true,
		},
		{
			name:       "redelivery",
			before:     []delivery{{event: "push", id: "s1", body: stateMain}},
			send:       delivery{event: "push", id: "s1", body: stateMain},
			wantStatus: 200, wantBody: map[string]string{"status": "duplicate"}, wantPasses: 1, wantSaved: true,
		},
		{
			name:       "replayed body",
			before:     []delivery{{event: "push", id: "s1", body: stateMain}},
			send:       delivery{event: "push", id: "s2", body: stateMain},
			wantStatus: 200, wantBody: map[string]string{"status": "duplicate"}, wantPasses: 1,
		},
		{
			name:       "another branch",
			send:       delivery{event: "push", id: "s1", body: pushPayload(state, "refs/heads/experiment", sha)},
			wantStatus: 202, wantBody: map[string]string{"status": "ignored", "reason": "branch experiment of chestercodes/state is not tracked"},
		},
		{
			name:       "branch deleted",
			send:       delivery{event: "push", id: "s1", body: pushPayload(state, "refs/heads/main", strings.Repeat("0", 40))},
			wantStatus: 202, wantBody: map[string]string{"status": "ignored", "reason": "ref refs/heads/main was deleted"},
		},
		{
			name:       "bad signature",
			send:       delivery{event: "push", id: "s1", body: stateMain, sign: func(b string) string { return sign([]byte("wrong"), b) }},
			wantStatus: 401, wantBody: map[string]string{"error": "invalid signature"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openDB(t)
			st, v, rec := &starter{}, &verifier{}, &reconciler{}
			srv := httptest.NewServer(newHandler(t, webhook.Options{Starter: st, Verifier: v, Deliveries: db,
				State: webhook.StateRepo{Repo: state, Branch: "main", Reconciler: rec}}))
			t.Cleanup(srv.Close)
			for _, d := range tt.before {
				if a := send(t, srv, d); a.status >= 300 {
					t.Fatalf("before: %d %v", a.status, a.body)
				}
			}
			a := send(t, srv, tt.send)
			if a.status != tt.wantStatus || !equalMaps(a.body, tt.wantBody) {
				t.Fatalf("answer %d %v, want %d %v", a.status, a.body, tt.wantStatus, tt.wantBody)
			}
			if n := rec.count(); n != tt.wantPasses {
				t.Errorf("Reconcile called %d times, want %d", n, tt.wantPasses)
			}
			if n, calls := len(st.started()), v.called(); n != 0 || len(calls) != 0 {
				t.Errorf("a state repository push started %d pipelines and verified %v", n, calls)
			}
			if _, saved, err := db.LookupDelivery(t.Context(), tt.send.id); err != nil || saved != tt.wantSaved {
				t.Errorf("delivery recorded: %v (%v), want %v", saved, err, tt.wantSaved)
			}
		})
	}
}

func TestNewHandlerStateRepo(t *testing.T) {
	base := webhook.Options{Secret: secret, Tracker: tracker{}, Verifier: &verifier{}, Starter: &starter{}, Deliveries: &memDeliveries{}}
	for _, tt := range []struct {
		name  string
		state webhook.StateRepo
		want  string
	}{
		{"no reconciler", webhook.StateRepo{Repo: "o/state"}, "needs a reconciler"},
		{"not owner/name", webhook.StateRepo{Repo: "state", Reconciler: &reconciler{}}, "is not a GitHub full name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			o.State = tt.state
			if _, err := webhook.NewHandler(o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewHandler = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}
