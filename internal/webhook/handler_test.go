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
	"maps"
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

// verifier answers each Verify with the next of its errors (nil once they
// run out) and records the commits it was asked about.
type verifier struct {
	mu    sync.Mutex
	errs  []error
	calls []string
}

func (v *verifier) Verify(_ context.Context, repo, branch, commit string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls = append(v.calls, repo+"@"+branch+":"+commit)
	if len(v.errs) == 0 {
		return nil
	}
	err := v.errs[0]
	v.errs = v.errs[1:]
	return err
}

func (v *verifier) called() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.calls...)
}

// delivery is one webhook request.
type delivery struct {
	event   string
	id      string
	body    string
	sign    func(body string) string // nil: correct signature
	ctype   string                   // "" means application/json
	noSign  bool
	chunked bool // send without a Content-Length
}

// answer is what the handler replied.
type answer struct {
	status int
	body   map[string]string
	header http.Header
}

func sign(key []byte, body string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func send(t *testing.T, srv *httptest.Server, d delivery) answer {
	t.Helper()
	var body io.Reader = strings.NewReader(d.body)
	if d.chunked {
		body = io.MultiReader(body) // hides the length
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/webhooks/github", body)
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
	a := answer{status: resp.StatusCode, header: resp.Header}
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatalf("response %q is not a JSON object: %v", raw, err)
	}
	a.body = map[string]string{}
	for k, v := range fields {
		switch v := v.(type) {
		case string:
			a.body[k] = v
		case bool:
			a.body[k] = fmt.Sprint(v)
		default:
			t.Fatalf("response %q: field %s is %T, want a string or a bool", raw, k, v)
		}
	}
	return a
}

func openDB(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "runway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newHandler(t *testing.T, opts webhook.Options) *webhook.Handler {
	t.Helper()
	if opts.Secret == nil {
		opts.Secret = secret
	}
	if opts.Tracker == nil {
		opts.Tracker = tracker{"chestercodes/homelabping@main": true}
	}
	if opts.Verifier == nil {
		opts.Verifier = &verifier{}
	}
	if opts.Starter == nil {
		opts.Starter = &starter{}
	}
	if opts.Deliveries == nil {
		opts.Deliveries = openDB(t)
	}
	h, err := webhook.NewHandler(opts)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

var errUnreachable = errors.New("dial tcp: connection refused")

func TestHandler(t *testing.T) {
	push := pushPayload("chestercodes/homelabping", "refs/heads/main", sha)
	invalidSignature := map[string]string{"error": "invalid signature"}
	malformed := map[string]string{"error": "malformed X-Hub-Signature-256 header: want sha256=<64 hex digits>"}
	tests := []struct {
		name        string
		starterErr  error
		verifyErrs  []error
		before      []delivery // sent first; each must answer 2xx
		send        delivery
		wantStatus  int
		wantBody    map[string]string
		wantStarts  int  // total Start calls
		wantVerify  int  // total Verify calls
		wantSaved   bool // the sent delivery is recorded
		wantRetry   bool // Retry-After is set
		wantErrPart string
	}{
		{
			name:       "tracked push",
			send:       delivery{event: "push", id: "d1", body: push},
			wantStatus: 202,
			wantBody:   map[string]string{"status": "accepted", "pipeline": "pipeline-1"},
			wantStarts: 1, wantVerify: 1, wantSaved: true,
		},
		{
			name:       "tracked push, chunked",
			send:       delivery{event: "push", id: "d1", body: push, chunked: true},
			wantStatus: 202,
			wantBody:   map[string]string{"status": "accepted", "pipeline": "pipeline-1"},
			wantStarts: 1, wantVerify: 1, wantSaved: true,
		},
		{
			name:       "bad signature",
			send:       delivery{event: "push", id: "d1", body: push, sign: func(b string) string { return sign([]byte("wrong"), b) }},
			wantStatus: 401,
			wantBody:   invalidSignature,
		},
		{
			name:       "signature of another body",
			send:       delivery{event: "push", id: "d1", body: push, sign: func(string) string { return sign(secret, "{}") }},
			wantStatus: 401,
			wantBody:   invalidSignature,
		},
		{
			name:       "bad signature, chunked",
			send:       delivery{event: "push", id: "d1", body: push, chunked: true, sign: func(b string) string { return sign([]byte("wrong"), b) }},
			wantStatus: 401,
			wantBody:   invalidSignature,
		},
		{
			name:       "missing signature",
			send:       delivery{event: "push", id: "d1", body: push, noSign: true},
			wantStatus: 401,
			wantBody:   map[string]string{"error": "missing X-Hub-Signature-256 header"},
		},
		{
			name:       "garbage signature",
			send:       delivery{event: "push", id: "d1", body: push, sign: func(string) string { return "sha256=zz" }},
			wantStatus: 401,
			wantBody:   malformed,
		},
		{
			name:       "short signature",
			send:       delivery{event: "push", id: "d1", body: push, sign: func(b string) string { return sign(secret, b)[:70] }},
			wantStatus: 401,
			wantBody:   malformed,
		},
		{
			name:       "sha1 signature",
			send:       delivery{event: "push", id: "d1", body: push, sign: func(b string) string { return "sha1=" + strings.TrimPrefix(sign(secret, b), "sha256=")[:40] }},
			wantStatus: 401,
			wantBody:   malformed,
		},
		{
			name:       "signature with the right bytes, wrong prefix",
			send:       delivery{event: "push", id: "d1", body: push, sign: func(b string) string { return "SHA256=" + strings.TrimPrefix(sign(secret, b), "sha256=") }},
			wantStatus: 401,
			wantBody:   malformed,
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
			name:        "after in uppercase",
			send:        delivery{event: "push", id: "d1", body: pushPayload("chestercodes/homelabping", "refs/heads/main", strings.ToUpper(sha))},
			wantStatus:  400,
			wantErrPart: "is not a commit id (40 lowercase hex digits)",
		},
		{
			name:        "after too short",
			send:        delivery{event: "push", id: "d1", body: pushPayload("chestercodes/homelabping", "refs/heads/main", sha[:39])},
			wantStatus:  400,
			wantErrPart: "is not a commit id",
		},
		{
			name:        "after sha-256 length",
			send:        delivery{event: "push", id: "d1", body: pushPayload("chestercodes/homelabping", "refs/heads/main", sha+sha[:24])},
			wantStatus:  400,
			wantErrPart: "is not a commit id",
		},
		{
			name:        "after a branch name",
			send:        delivery{event: "push", id: "d1", body: pushPayload("chestercodes/homelabping", "refs/heads/main", "main")},
			wantStatus:  400,
			wantErrPart: `after "main" is not a commit id`,
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
			name:       "missing event",
			send:       delivery{id: "d1", body: push},
			wantStatus: 400,
			wantBody:   map[string]string{"error": "missing X-GitHub-Event header"},
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
			name:       "commit not in the repository",
			verifyErrs: []error{fmt.Errorf("looking: %w", webhook.ErrUnknownCommit)},
			send:       delivery{event: "push", id: "d1", body: push},
			wantStatus: 422,
			wantBody:   map[string]string{"error": "commit " + sha + " is not in chestercodes/homelabping"},
			wantVerify: 1,
		},
		{
			name:       "commit not on the tracked branch",
			verifyErrs: []error{fmt.Errorf("looking: %w", webhook.ErrNotOnBranch)},
			send:       delivery{event: "push", id: "d1", body: push},
			wantStatus: 422,
			wantBody:   map[string]string{"error": "commit " + sha + " is not on branch main of chestercodes/homelabping"},
			wantVerify: 1,
		},
		{
			name:       "repository unreachable",
			verifyErrs: []error{errUnreachable},
			send:       delivery{event: "push", id: "d1", body: push},
			wantStatus: 503,
			wantBody:   map[string]string{"error": "cannot fetch chestercodes/homelabping to check commit " + sha + "; try again later"},
			wantVerify: 1, wantRetry: true,
		},
		{
			name:       "duplicate delivery",
			before:     []delivery{{event: "push", id: "d1", body: push}},
			send:       delivery{event: "push", id: "d1", body: push},
			wantStatus: 200,
			wantBody:   map[string]string{"status": "duplicate", "pipeline": "pipeline-1"},
			wantStarts: 1, wantVerify: 1, wantSaved: true,
		},
		{
			// A captured delivery sent again under a new id is a replay:
			// the signed body is the same to the byte.
			name:       "replayed body under a new delivery id",
			before:     []delivery{{event: "push", id: "d1", body: push}},
			send:       delivery{event: "push", id: "d2", body: push},
			wantStatus: 200,
			wantBody:   map[string]string{"status": "duplicate", "pipeline": "pipeline-1"},
			wantStarts: 1, wantVerify: 1, wantSaved: false,
		},
		{
			name:       "new delivery of same commit",
			before:     []delivery{{event: "push", id: "d1", body: push}},
			send:       delivery{event: "push", id: "d2", body: push + "\n"},
			wantStatus: 202,
			wantBody:   map[string]string{"status": "accepted", "pipeline": "pipeline-2"},
			wantStarts: 2, wantVerify: 2, wantSaved: true,
		},
		{
			name:       "form encoded",
			send:       delivery{event: "push", id: "d1", body: "payload=" + url.QueryEscape(push), ctype: "application/x-www-form-urlencoded"},
			wantStatus: 202,
			wantBody:   map[string]string{"status": "accepted", "pipeline": "pipeline-1"},
			wantStarts: 1, wantVerify: 1, wantSaved: true,
		},
		{
			name:       "form encoded without payload",
			send:       delivery{event: "push", id: "d1", body: "other=1", ctype: "application/x-www-form-urlencoded"},
			wantStatus: 400,
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
			wantVerify: 1,
		},
		{
			name:        "body over GitHub's limit",
			send:        delivery{event: "push", id: "d1", body: `{"pad":"` + strings.Repeat("x", webhook.MaxBody) + `"}`},
			wantStatus:  413,
			wantErrPart: "26214400 bytes",
		},
		{
			name:        "body over GitHub's limit, chunked",
			send:        delivery{event: "push", id: "d1", body: `{"pad":"` + strings.Repeat("x", webhook.MaxBody) + `"}`, chunked: true},
			wantStatus:  413,
			wantErrPart: "26214400 bytes",
		},
		{
			name:       "body just under GitHub's limit",
			send:       delivery{event: "push", id: "d1", body: strings.Replace(push, `"ref"`, `"pad":"`+strings.Repeat("x", webhook.MaxBody-len(push)-10)+`","ref"`, 1)},
			wantStatus: 202,
			wantStarts: 1, wantVerify: 1, wantSaved: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openDB(t)
			st := &starter{err: tt.starterErr}
			v := &verifier{errs: tt.verifyErrs}
			h := newHandler(t, webhook.Options{Starter: st, Verifier: v, Deliveries: db})
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)

			for _, d := range tt.before {
				if a := send(t, srv, d); a.status >= 300 {
					t.Fatalf("before: %d %v", a.status, a.body)
				}
			}
			a := send(t, srv, tt.send)
			if a.status != tt.wantStatus {
				t.Fatalf("status %d %v, want %d", a.status, a.body, tt.wantStatus)
			}
			if tt.wantBody != nil && !equalMaps(a.body, tt.wantBody) {
				t.Errorf("body %v, want %v", a.body, tt.wantBody)
			}
			if a.status >= 400 && a.body["error"] == "" {
				t.Errorf("error answer without error field: %v", a.body)
			}
			if !strings.Contains(a.body["error"], tt.wantErrPart) {
				t.Errorf("error %q does not say %q", a.body["error"], tt.wantErrPart)
			}
			if got := a.header.Get("Retry-After") != ""; got != tt.wantRetry {
				t.Errorf("Retry-After %q, want set: %v", a.header.Get("Retry-After"), tt.wantRetry)
			}
			started := st.started()
			if len(started) != tt.wantStarts {
				t.Fatalf("Start called %d times, want %d", len(started), tt.wantStarts)
			}
			if len(started) > 0 && tt.wantSaved { // the sent delivery started the last pipeline
				last := started[len(started)-1]
				if last.Delivery != tt.send.id || last.Branch != "main" || last.After != sha || last.Repo != "chestercodes/homelabping" {
					t.Errorf("started %+v", last)
				}
			}
			if calls := v.called(); len(calls) != tt.wantVerify {
				t.Errorf("Verify called %d times (%v), want %d", len(calls), calls, tt.wantVerify)
			} else if len(calls) > 0 && calls[0] != "chestercodes/homelabping@main:"+sha {
				t.Errorf("Verify asked about %s", calls[0])
			}
			if tt.send.id != "" {
				_, saved, err := db.LookupDelivery(t.Context(), tt.send.id)
				if err != nil {
					t.Fatal(err)
				}
				if saved != tt.wantSaved {
					t.Errorf("delivery %s recorded: %v, want %v", tt.send.id, saved, tt.wantSaved)
				}
			}
		})
	}
}

// TestHandlerRedeliveryAfterUnreachable: a delivery refused because the
// repository could not be fetched starts its pipeline when sent again.
func TestHandlerRedeliveryAfterUnreachable(t *testing.T) {
	st := &starter{}
	v := &verifier{errs: []error{errUnreachable}}
	srv := httptest.NewServer(newHandler(t, webhook.Options{Starter: st, Verifier: v}))
	t.Cleanup(srv.Close)
	d := delivery{event: "push", id: "d1", body: pushPayload("chestercodes/homelabping", "refs/heads/main", sha)}
	if a := send(t, srv, d); a.status != 503 {
		t.Fatalf("first delivery: %d %v, want 503", a.status, a.body)
	}
	if a := send(t, srv, d); a.status != 202 || a.body["pipeline"] != "pipeline-1" {
		t.Fatalf("redelivery: %d %v, want 202 with pipeline-1", a.status, a.body)
	}
	if n := len(st.started()); n != 1 {
		t.Fatalf("Start called %d times, want 1", n)
	}
}

func TestNewHandler(t *testing.T) {
	db := openDB(t)
	full := webhook.Options{Secret: secret, Tracker: tracker{}, Verifier: &verifier{}, Starter: &starter{}, Deliveries: db}
	tests := []struct {
		name    string
		change  func(o *webhook.Options)
		wantErr string
	}{
		{name: "complete", change: func(*webhook.Options) {}},
		{name: "empty secret", change: func(o *webhook.Options) { o.Secret = nil }, wantErr: "webhook secret is 0 bytes, want at least 16"},
		{name: "short secret", change: func(o *webhook.Options) { o.Secret = []byte("fifteen-chars!!") }, wantErr: "webhook secret is 15 bytes, want at least 16"},
		{name: "no verifier", change: func(o *webhook.Options) { o.Verifier = nil }, wantErr: "needs a tracker, a verifier"},
		{name: "no starter", change: func(o *webhook.Options) { o.Starter = nil }, wantErr: "needs a tracker, a verifier"},
		{name: "negative slots", change: func(o *webhook.Options) { o.LargeBodies = -1 }, wantErr: "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := full
			tt.change(&o)
			h, err := webhook.NewHandler(o)
			if tt.wantErr == "" {
				if err != nil || h == nil {
					t.Fatalf("NewHandler = %v, %v", h, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewHandler error %v, want one saying %q", err, tt.wantErr)
			}
		})
	}
}

func TestHandlerConcurrentDuplicates(t *testing.T) {
	st := &starter{}
	srv := httptest.NewServer(newHandler(t, webhook.Options{Tracker: tracker{"o/r@main": true}, Starter: st}))
	t.Cleanup(srv.Close)

	d := delivery{event: "push", id: "same", body: pushPayload("o/r", "refs/heads/main", sha)}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if a := send(t, srv, d); a.status != 202 && a.status != 200 {
				t.Errorf("status %d %v", a.status, a.body)
			}
		})
	}
	wg.Wait()
	if n := len(st.started()); n != 1 {
		t.Errorf("Start called %d times for one delivery, want 1", n)
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

// queue says every pipeline waits, with a fixed reason.
type queue struct{ reason string }

func (q queue) Queued(context.Context, string) (string, bool) { return q.reason, q.reason != "" }

func TestHandlerAnswersQueued(t *testing.T) {
	for _, tt := range []struct {
		name, reason string
		want         map[string]string
	}{
		{"queued", "queued: 4 pipelines running (limits.pipelines)",
			map[string]string{"status": "queued", "reason": "queued: 4 pipelines running (limits.pipelines)", "pipeline": "pipeline-1"}},
		{"running", "", map[string]string{"status": "accepted", "pipeline": "pipeline-1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(newHandler(t, webhook.Options{Queue: queue{tt.reason}}))
			t.Cleanup(srv.Close)
			got := send(t, srv, delivery{event: "push", id: "q1", body: pushPayload("chestercodes/homelabping", "refs/heads/main", sha)})
			if got.status != http.StatusAccepted {
				t.Fatalf("status %d, want 202", got.status)
			}
			if !maps.Equal(got.body, tt.want) {
				t.Fatalf("body %v, want %v", got.body, tt.want)
			}
		})
	}
}
