package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/runway-cd/runway/internal/store/sqlite"
	"github.com/runway-cd/runway/internal/webhook"
)

var secret = []byte("s3cret-for-tests")

// starter records the pushes it was asked to start.
type starter struct {
	mu     sync.Mutex
	pushes []webhook.Push
	err    error
}

func (s *starter) Start(_ context.Context, p webhook.Push) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return "", s.err
	}
	s.pushes = append(s.pushes, p)
	return fmt.Sprintf("pipeline-%d", len(s.pushes)), nil
}

func (s *starter) started() []webhook.Push {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]webhook.Push(nil), s.pushes...)
}

// tracker tracks the listed repo@branch pairs.
type tracker map[string]bool

func (tr tracker) Tracks(repo, branch string) bool { return tr[repo+"@"+branch] }

// delivery is one webhook request.
type delivery struct {
	event  string
	id     string
	body   string
	sign   func(body string) string // nil: correct signature
	ctype  string                   // "" means application/json
	noSign bool
}

func sign(key []byte, body string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func send(t *testing.T, srv *httptest.Server, d delivery) (int, map[string]string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/webhooks/github", strings.NewReader(d.body))
	if err != nil {
		t.Fatal(err)
	}
	ct := d.ctype
	if ct == "" {
		ct = "application/json"
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("X-GitHub-Event", d.event)
	req.Header.Set("X-GitHub-Delivery", d.id)
	switch {
	case d.noSign:
	case d.sign != nil:
		req.Header.Set("X-Hub-Signature-256", d.sign(d.body))
	default:
		req.Header.Set("X-Hub-Signature-256", sign(secret, d.body))
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]string
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("response %q is not a JSON object of strings: %v", raw, err)
	}
	return resp.StatusCode, body
}

func TestHandler(t *testing.T) {
	push := pushPayload("chestercodes/homelabping", "refs/heads/main", sha)
	tests := []struct {
		name       string
		secret     []byte // nil: secret
		starterErr error
		before     []delivery // sent first
		send       delivery
		wantStatus int
		wantBody   map[string]string
		wantStarts int // total Start calls
	}{
		{
			name:       "tracked push",
			send:       delivery{event: "push", id: "d1", body: push},
			wantStatus: 202,
			wantBody:   map[string]string{"status": "accepted", "pipeline": "pipeline-1"},
			wantStarts: 1,
		},
		{
			name:       "bad signature",
			send:       delivery{event: "push", id: "d1", body: push, sign: func(b string) string { return sign([]byte("wrong"), b) }},
			wantStatus: 401,
			wantBody:   map[string]string{"error": "invalid signature"},
		},
		{
			name:       "signature of another body",
			send:       delivery{event: "push", id: "d1", body: push, sign: func(string) string { return sign(secret, "{}") }},
			wantStatus: 401,
			wantBody:   map[string]string{"error": "invalid signature"},
		},
		{
			name:       "missing signature",
			send:       delivery{event: "push", id: "d1", body: push, noSign: true},
			wantStatus: 401,
			wantBody:   map[string]string{"error": "invalid signature"},
		},
		{
			name:       "garbage signature",
			send:       delivery{event: "push", id: "d1", body: push, sign: func(string) string { return "sha256=zz" }},
			wantStatus: 401,
			wantBody:   map[string]string{"error": "invalid signature"},
		},
		{
			name:       "empty secret refuses everything",
			secret:     []byte{},
			send:       delivery{event: "push", id: "d1", body: push, sign: func(b string) string { return sign(nil, b) }},
			wantStatus: 401,
			wantBody:   map[string]string{"error": "invalid signature"},
		},
		{
			name:       "malformed json",
			send:       delivery{event: "push", id: "d1", body: `{"ref": "refs/heads/main",`},
			wantStatus: 400,
		},
		{
			name:       "missing after",
			send:       delivery{event: "push", id: "d1", body: `{"ref":"refs/heads/main","repository":{"full_name":"chestercodes/homelabping"}}`},
			wantStatus: 400,
		},
		{
			name:       "missing delivery id",
			send:       delivery{event: "push", body: push},
			wantStatus: 400,
		},
		{
			name:       "ping",
			send:       delivery{event: "ping", id: "d1", body: `{"zen":"Keep it logically awesome.","hook_id":1}`},
			wantStatus: 200,
			wantBody:   map[string]string{"status": "pong"},
		},
		{
			name:       "other event",
			send:       delivery{event: "issues", id: "d1", body: `{"action":"opened"}`},
			wantStatus: 202,
			wantBody:   map[string]string{"status": "ignored", "reason": "event issues is not handled"},
		},
		{
			name:       "untracked branch",
			send:       delivery{event: "push", id: "d1", body: pushPayload("chestercodes/homelabping", "refs/heads/experiment", sha)},
			wantStatus: 202,
			wantBody:   map[string]string{"status": "ignored", "reason": "branch experiment of chestercodes/homelabping is not tracked"},
		},
		{
			name:       "untracked repo",
			send:       delivery{event: "push", id: "d1", body: pushPayload("someone/else", "refs/heads/main", sha)},
			wantStatus: 202,
			wantBody:   map[string]string{"status": "ignored", "reason": "branch main of someone/else is not tracked"},
		},
		{
			name:       "deleted branch",
			send:       delivery{event: "push", id: "d1", body: pushPayload("chestercodes/homelabping", "refs/heads/main", strings.Repeat("0", 40))},
			wantStatus: 202,
			wantBody:   map[string]string{"status": "ignored", "reason": "ref refs/heads/main was deleted"},
		},
		{
			name:       "tag",
			send:       delivery{event: "push", id: "d1", body: pushPayload("chestercodes/homelabping", "refs/tags/v1", sha)},
			wantStatus: 202,
			wantBody:   map[string]string{"status": "ignored", "reason": "ref refs/tags/v1 is not a branch"},
		},
		{
			name:       "duplicate delivery",
			before:     []delivery{{event: "push", id: "d1", body: push}},
			send:       delivery{event: "push", id: "d1", body: push},
			wantStatus: 200,
			wantBody:   map[string]string{"status": "duplicate", "pipeline": "pipeline-1"},
			wantStarts: 1,
		},
		{
			name:       "new delivery of same commit",
			before:     []delivery{{event: "push", id: "d1", body: push}},
			send:       delivery{event: "push", id: "d2", body: push},
			wantStatus: 202,
			wantBody:   map[string]string{"status": "accepted", "pipeline": "pipeline-2"},
			wantStarts: 2,
		},
		{
			name:       "form encoded",
			send:       delivery{event: "push", id: "d1", body: "payload=" + url.QueryEscape(push), ctype: "application/x-www-form-urlencoded"},
			wantStatus: 202,
			wantBody:   map[string]string{"status": "accepted", "pipeline": "pipeline-1"},
			wantStarts: 1,
		},
		{
			name:       "unsupported content type",
			send:       delivery{event: "push", id: "d1", body: push, ctype: "text/plain"},
			wantStatus: 415,
		},
		{
			name:       "starter fails",
			starterErr: errors.New("disk full"),
			send:       delivery{event: "push", id: "d1", body: push},
			wantStatus: 500,
			wantBody:   map[string]string{"error": "starting pipeline failed"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "runway.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			st := &starter{err: tt.starterErr}
			key := secret
			if tt.secret != nil {
				key = tt.secret
			}
			h := webhook.NewHandler(key, tracker{"chestercodes/homelabping@main": true}, st, db, nil)
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)

			for _, d := range tt.before {
				if status, body := send(t, srv, d); status >= 300 {
					t.Fatalf("before: %d %v", status, body)
				}
			}
			status, body := send(t, srv, tt.send)
			if status != tt.wantStatus {
				t.Fatalf("status %d %v, want %d", status, body, tt.wantStatus)
			}
			if tt.wantBody != nil && !equalMaps(body, tt.wantBody) {
				t.Errorf("body %v, want %v", body, tt.wantBody)
			}
			if status >= 400 && body["error"] == "" {
				t.Errorf("error answer without error field: %v", body)
			}
			started := st.started()
			if len(started) != tt.wantStarts {
				t.Fatalf("Start called %d times, want %d", len(started), tt.wantStarts)
			}
			if len(started) > 0 {
				last := started[len(started)-1]
				if last.Delivery != tt.send.id || last.Branch != "main" || last.After != sha || last.Repo != "chestercodes/homelabping" {
					t.Errorf("started %+v", last)
				}
			}
		})
	}
}

func TestHandlerConcurrentDuplicates(t *testing.T) {
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "runway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st := &starter{}
	srv := httptest.NewServer(webhook.NewHandler(secret, tracker{"o/r@main": true}, st, db, nil))
	t.Cleanup(srv.Close)

	d := delivery{event: "push", id: "same", body: pushPayload("o/r", "refs/heads/main", sha)}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if status, body := send(t, srv, d); status != 202 && status != 200 {
				t.Errorf("status %d %v", status, body)
			}
		})
	}
	wg.Wait()
	if n := len(st.started()); n != 1 {
		t.Errorf("Start called %d times for one delivery, want 1", n)
	}
}

func TestHandlerBodyLimit(t *testing.T) {
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "runway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st := &starter{}
	srv := httptest.NewServer(webhook.NewHandler(secret, tracker{}, st, db, nil))
	t.Cleanup(srv.Close)
	body := `{"pad":"` + strings.Repeat("x", 25<<20) + `"}`
	status, _ := send(t, srv, delivery{event: "push", id: "big", body: body})
	if status != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want 413", status)
	}
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
