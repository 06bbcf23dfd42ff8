package reporter_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/runway-cd/runway/internal/reporter"
	"github.com/runway-cd/runway/internal/store/sqlite"
)

// newReporterDB returns a Reporter on a fresh SQLite file and the store.
func newReporterDB(t testing.TB, logger *slog.Logger) (*reporter.Reporter, *sqlite.DB) {
	t.Helper()
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "runway.db"))
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return reporter.New(db, logger), db
}

// submitted are the "before" steps of most cases: wf expects homelabping
// and postgres, other expects a.
var submitted = []call{
	{method: "POST", path: "/workflow/submit", body: `{"WorkflowName":"wf","Apps":["homelabping","postgres"]}`},
	{method: "POST", path: "/workflow/submit", body: `{"WorkflowName":"other","Apps":["a"]}`},
}

// call is one request. In auth, "{wf}" and "{other}" stand for the
// tokens of those workflows; each entry is one Authorization header.
type call struct {
	method, path, body string
	auth               []string
}

// wfToken is the Authorization header with wf's token.
var wfToken = []string{"Bearer {wf}"}

func TestHandler(t *testing.T) {
	ok := `{"WorkflowName":"wf","App":"homelabping","Success":true}`
	tests := []struct {
		name       string
		compat     bool
		before     []call // must all answer 200
		call       call
		wantStatus int
		assert     func(t *testing.T, resp *http.Response, body []byte, r *reporter.Reporter)
	}{
		{
			name:       "submit",
			call:       call{method: "POST", path: "/workflow/submit", body: `{"WorkflowName":"wf-1","Apps":["homelabping","postgres"]}`},
			wantStatus: 200,
			assert: func(t *testing.T, _ *http.Response, body []byte, r *reporter.Reporter) {
				exp := decodeExpectation(t, body)
				if exp.Workflow != "wf-1" || exp.Phase != reporter.PhasePending || len(exp.Apps) != 2 {
					t.Errorf("echo = %+v", exp)
				}
				token, err := r.Token(t.Context(), "wf-1")
				if err != nil || bytes.Contains(body, []byte(token)) {
					t.Errorf("submit answered the token (or has none: %v): %s", err, body)
				}
			},
		},
		{
			name:       "update completes",
			before:     []call{{method: "POST", path: "/workflow/submit", body: `{"WorkflowName":"wf","Apps":["homelabping"]}`}},
			call:       call{method: "POST", path: "/workflow/update", body: ok, auth: wfToken},
			wantStatus: 200,
			assert: func(t *testing.T, _ *http.Response, body []byte, _ *reporter.Reporter) {
				if exp := decodeExpectation(t, body); exp.Phase != reporter.PhaseSucceeded {
					t.Errorf("echo = %+v", exp)
				}
			},
		},
		{
			name:       "update with message fails",
			before:     submitted,
			call:       call{method: "POST", path: "/workflow/update", body: `{"WorkflowName":"wf","App":"homelabping","Success":false,"Message":"no pong"}`, auth: wfToken},
			wantStatus: 200,
			assert: func(t *testing.T, _ *http.Response, body []byte, _ *reporter.Reporter) {
				exp := decodeExpectation(t, body)
				if exp.Phase != reporter.PhaseFailed || !strings.Contains(exp.Reason, "no pong") {
					t.Errorf("echo = %+v", exp)
				}
			},
		},
		{
			name:   "message with newlines is one line",
			before: submitted,
			call: call{method: "POST", path: "/workflow/update", auth: wfToken,
				body: `{"WorkflowName":"wf","App":"homelabping","Success":false,"Message":"boom\n\nSigned-off-by: Mallory <m@example.com>\r\u2028x\u0000"}`},
			wantStatus: 200,
			assert: func(t *testing.T, _ *http.Response, body []byte, _ *reporter.Reporter) {
				exp := decodeExpectation(t, body)
				want := "boom Signed-off-by: Mallory <m@example.com> x"
				if got := exp.Reports["homelabping"].Message; got != want {
					t.Errorf("message = %q, want %q", got, want)
				}
				if strings.ContainsAny(exp.Reason, "\r\n\x00\u2028") {
					t.Errorf("reason %q is not one line", exp.Reason)
				}
			},
		},
		{
			name:   "long message is cut, not refused",
			before: submitted,
			call: call{method: "POST", path: "/workflow/update", auth: wfToken,
				body: `{"WorkflowName":"wf","App":"homelabping","Success":false,"Message":"` + strings.Repeat("é", 100<<10) + `"}`},
			wantStatus: 200,
			assert: func(t *testing.T, _ *http.Response, body []byte, _ *reporter.Reporter) {
				exp := decodeExpectation(t, body)
				msg := exp.Reports["homelabping"].Message
				if len(msg) > reporter.MaxMessage || len(msg) < reporter.MaxMessage-1 || !utf8.ValidString(msg) {
					t.Errorf("message of %d bytes (valid UTF-8 %v), want %d at most", len(msg), utf8.ValidString(msg), reporter.MaxMessage)
				}
				if exp.Phase != reporter.PhaseFailed {
					t.Errorf("phase = %s, want Failed", exp.Phase)
				}
			},
		},
		{
			name:       "scheme is case-insensitive",
			before:     submitted,
			call:       call{method: "POST", path: "/workflow/update", body: ok, auth: []string{"bearer {wf}"}},
			wantStatus: 200,
		},
		{
			name:       "no token",
			before:     submitted,
			call:       call{method: "POST", path: "/workflow/update", body: ok},
			wantStatus: 401,
			assert: func(t *testing.T, resp *http.Response, _ []byte, _ *reporter.Reporter) {
				if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
					t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", got)
				}
			},
		},
		{name: "wrong token", before: submitted, call: call{method: "POST", path: "/workflow/update", body: ok, auth: []string{"Bearer " + strings.Repeat("0", 64)}}, wantStatus: 403},
		{name: "token with a suffix", before: submitted, call: call{method: "POST", path: "/workflow/update", body: ok, auth: []string{"Bearer {wf}0"}}, wantStatus: 403},
		{name: "token of another workflow", before: submitted, call: call{method: "POST", path: "/workflow/update", body: ok, auth: []string{"Bearer {other}"}}, wantStatus: 403},
		{name: "basic auth", before: submitted, call: call{method: "POST", path: "/workflow/update", body: ok, auth: []string{"Basic {wf}"}}, wantStatus: 401},
		{name: "token without scheme", before: submitted, call: call{method: "POST", path: "/workflow/update", body: ok, auth: []string{"{wf}"}}, wantStatus: 401},
		{name: "empty bearer", before: submitted, call: call{method: "POST", path: "/workflow/update", body: ok, auth: []string{"Bearer "}}, wantStatus: 401},
		{name: "two headers", before: submitted, call: call{method: "POST", path: "/workflow/update", body: ok, auth: []string{"Bearer {wf}", "Bearer x"}}, wantStatus: 401},
		{name: "unknown workflow", before: submitted, call: call{method: "POST", path: "/workflow/update", body: `{"WorkflowName":"nope","App":"a","Success":true}`, auth: wfToken}, wantStatus: 404},
		{name: "update before submit", call: call{method: "POST", path: "/workflow/update", body: `{"WorkflowName":"wf","App":"postgres","Success":true}`, auth: []string{"Bearer " + strings.Repeat("a", 64)}}, wantStatus: 404},
		{
			name: "a hook cannot send an outcome", before: submitted,
			call:       call{method: "POST", path: "/workflow/update", body: `{"WorkflowName":"wf","App":"homelabping","Success":false,"Outcome":"Superseded"}`, auth: wfToken},
			wantStatus: 400,
			assert: func(t *testing.T, _ *http.Response, _ []byte, r *reporter.Reporter) {
				exp, err := r.Get(t.Context(), "wf")
				if err != nil {
					t.Fatal(err)
				}
				if rep, ok := exp.Reports["homelabping"]; ok {
					t.Errorf("report recorded from a body with an outcome: %+v", rep)
				}
			},
		},
		{name: "app not expected", before: submitted, call: call{method: "POST", path: "/workflow/update", body: `{"WorkflowName":"wf","App":"intruder","Success":false}`, auth: wfToken}, wantStatus: 409},
		{name: "app of another workflow", before: submitted, call: call{method: "POST", path: "/workflow/update", body: `{"WorkflowName":"wf","App":"a","Success":false}`, auth: wfToken}, wantStatus: 409},
		{
			name: "compatibility: no token accepted", compat: true, before: submitted,
			call: call{method: "POST", path: "/workflow/update", body: ok}, wantStatus: 200,
			assert: func(t *testing.T, _ *http.Response, body []byte, _ *reporter.Reporter) {
				if exp := decodeExpectation(t, body); !exp.Reports["homelabping"].Success {
					t.Errorf("report not recorded: %+v", exp)
				}
			},
		},
		{name: "compatibility: token still checked", compat: true, before: submitted, call: call{method: "POST", path: "/workflow/update", body: ok, auth: wfToken}, wantStatus: 200},
		{name: "compatibility: wrong token refused", compat: true, before: submitted, call: call{method: "POST", path: "/workflow/update", body: ok, auth: []string{"Bearer {other}"}}, wantStatus: 403},
		{name: "compatibility: malformed header refused", compat: true, before: submitted, call: call{method: "POST", path: "/workflow/update", body: ok, auth: []string{"Basic x"}}, wantStatus: 401},
		{name: "compatibility: unknown workflow", compat: true, before: submitted, call: call{method: "POST", path: "/workflow/update", body: `{"WorkflowName":"nope","App":"a","Success":true}`}, wantStatus: 404},
		{name: "compatibility: app not expected", compat: true, before: submitted, call: call{method: "POST", path: "/workflow/update", body: `{"WorkflowName":"wf","App":"a","Success":true}`}, wantStatus: 409},
		{
			name:       "get",
			before:     submitted,
			call:       call{method: "GET", path: "/api/v1/expectations/wf"},
			wantStatus: 200,
			assert: func(t *testing.T, _ *http.Response, body []byte, r *reporter.Reporter) {
				var raw map[string]any
				if err := json.Unmarshal(body, &raw); err != nil {
					t.Fatal(err)
				}
				for _, field := range []string{"workflow", "apps", "reports", "phase", "created"} {
					if _, ok := raw[field]; !ok {
						t.Errorf("field %q missing from %s", field, body)
					}
				}
				token, _ := r.Token(t.Context(), "wf")
				if _, ok := raw["token"]; ok || token == "" || bytes.Contains(body, []byte(token)) {
					t.Errorf("the expectation answers its token: %s", body)
				}
			},
		},
		{
			name:       "get token",
			before:     submitted,
			call:       call{method: "GET", path: "/api/v1/expectations/wf/token"},
			wantStatus: 200,
			assert: func(t *testing.T, resp *http.Response, body []byte, r *reporter.Reporter) {
				var got struct{ Workflow, Token string }
				if err := json.Unmarshal(body, &got); err != nil {
					t.Fatal(err)
				}
				want, err := r.Token(t.Context(), "wf")
				if err != nil || got.Workflow != "wf" || got.Token != want {
					t.Errorf("token answer %s, want workflow wf and token %q (%v)", body, want, err)
				}
				if resp.Header.Get("Cache-Control") != "no-store" {
					t.Errorf("Cache-Control = %q, want no-store", resp.Header.Get("Cache-Control"))
				}
			},
		},
		{name: "get token unknown", call: call{method: "GET", path: "/api/v1/expectations/nope/token"}, wantStatus: 404},
		{name: "get token hostile", call: call{method: "GET", path: "/api/v1/expectations/a%20b/token"}, wantStatus: 400},
		{name: "get unknown", call: call{method: "GET", path: "/api/v1/expectations/nope"}, wantStatus: 404},
		{name: "get hostile", call: call{method: "GET", path: "/api/v1/expectations/a%20b"}, wantStatus: 400},
		{name: "malformed json", call: call{method: "POST", path: "/workflow/submit", body: `{"WorkflowName":"wf","Apps":[`}, wantStatus: 400},
		{name: "not an object", call: call{method: "POST", path: "/workflow/submit", body: `["wf"]`}, wantStatus: 400},
		{name: "trailing data", call: call{method: "POST", path: "/workflow/submit", body: `{"WorkflowName":"wf","Apps":["a"]} {}`}, wantStatus: 400},
		{name: "empty body", before: submitted, call: call{method: "POST", path: "/workflow/update", auth: wfToken}, wantStatus: 400},
		{name: "unknown field", call: call{method: "POST", path: "/workflow/submit", body: `{"WorkflowName":"wf","Apps":["a"],"Extra":1}`}, wantStatus: 400},
		{name: "unknown update field", before: submitted, call: call{method: "POST", path: "/workflow/update", body: `{"WorkflowName":"wf","App":"homelabping","Success":true,"Token":"x"}`, auth: wfToken}, wantStatus: 400},
		{name: "missing success", before: submitted, call: call{method: "POST", path: "/workflow/update", body: `{"WorkflowName":"wf","App":"homelabping"}`, auth: wfToken}, wantStatus: 400},
		{name: "null success", before: submitted, call: call{method: "POST", path: "/workflow/update", body: `{"WorkflowName":"wf","App":"homelabping","Success":null}`, auth: wfToken}, wantStatus: 400},
		{name: "empty workflow", call: call{method: "POST", path: "/workflow/submit", body: `{"WorkflowName":"","Apps":["a"]}`}, wantStatus: 400},
		{name: "no apps", call: call{method: "POST", path: "/workflow/submit", body: `{"WorkflowName":"wf","Apps":[]}`}, wantStatus: 400},
		{name: "hostile workflow", call: call{method: "POST", path: "/workflow/submit", body: `{"WorkflowName":"../../etc/passwd","Apps":["a"]}`}, wantStatus: 400},
		{name: "hostile app", before: submitted, call: call{method: "POST", path: "/workflow/update", body: `{"WorkflowName":"wf","App":"a;rm -rf /","Success":true}`, auth: wfToken}, wantStatus: 400},
		{name: "hostile update workflow", before: submitted, call: call{method: "POST", path: "/workflow/update", body: `{"WorkflowName":"wf/../other","App":"a","Success":true}`, auth: wfToken}, wantStatus: 400},
		{name: "newline in app", call: call{method: "POST", path: "/workflow/submit", body: `{"WorkflowName":"wf","Apps":["a\nb"]}`}, wantStatus: 400},
		{name: "long workflow", call: call{method: "POST", path: "/workflow/submit", body: `{"WorkflowName":"` + strings.Repeat("w", 129) + `","Apps":["a"]}`}, wantStatus: 400},
		{name: "too large", before: submitted, call: call{method: "POST", path: "/workflow/update", body: `{"WorkflowName":"wf","App":"homelabping","Success":true,"Message":"` + strings.Repeat("m", 1<<20) + `"}`, auth: wfToken}, wantStatus: 413},
		{name: "too large without token", before: submitted, call: call{method: "POST", path: "/workflow/update", body: `{"WorkflowName":"wf","App":"homelabping","Success":true,"Message":"` + strings.Repeat("m", 1<<20) + `"}`}, wantStatus: 401},
		{name: "wrong method", call: call{method: "GET", path: "/workflow/submit"}, wantStatus: 405},
		{name: "wrong method update", call: call{method: "PUT", path: "/workflow/update", body: ok}, wantStatus: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, db := newReporterDB(t, nil)
			srv := httptest.NewServer(r.HandlerWith(reporter.HandlerOptions{Compatibility: tt.compat}))
			t.Cleanup(srv.Close)
			for _, c := range tt.before {
				if resp, body := do(t, srv, r, c); resp.StatusCode != 200 {
					t.Fatalf("%s %s = %d %s", c.method, c.path, resp.StatusCode, body)
				}
			}
			before := snapshot(t, db)
			resp, body := do(t, srv, r, tt.call)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("%s %s = %d %s, want %d", tt.call.method, tt.call.path, resp.StatusCode, body, tt.wantStatus)
			}
			if resp.StatusCode >= 400 {
				if resp.StatusCode != 405 {
					var e struct{ Error string }
					if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
						t.Errorf("error body %q is not {\"error\": ...}", body)
					}
				}
				if after := snapshot(t, db); after != before {
					t.Errorf("rejected request changed the store:\nbefore %s\nafter  %s", before, after)
				}
			}
			if tt.assert != nil {
				tt.assert(t, resp, body, r)
			}
		})
	}
}

// In compatibility mode a report without a token is accepted, with one
// warning however many come.
func TestCompatibilityWarnsOnce(t *testing.T) {
	var logs bytes.Buffer
	r, _ := newReporterDB(t, slog.New(slog.NewTextHandler(&logs, nil)))
	srv := httptest.NewServer(r.HandlerWith(reporter.HandlerOptions{Compatibility: true}))
	t.Cleanup(srv.Close)
	for _, c := range submitted {
		do(t, srv, r, c)
	}
	for _, app := range []string{"homelabping", "postgres"} {
		c := call{method: "POST", path: "/workflow/update", body: `{"WorkflowName":"wf","App":"` + app + `","Success":true}`}
		if resp, body := do(t, srv, r, c); resp.StatusCode != 200 {
			t.Fatalf("update %s = %d %s", app, resp.StatusCode, body)
		}
	}
	if n := strings.Count(logs.String(), "compatibility mode"); n != 1 {
		t.Errorf("%d compatibility warnings, want 1:\n%s", n, logs.String())
	}
	if exp, err := r.Get(t.Context(), "wf"); err != nil || exp.Phase != reporter.PhaseSucceeded {
		t.Errorf("expectation after tokenless reports: %+v, %v", exp, err)
	}
}

// do sends c to srv, with the tokens of c.auth resolved through r.
func do(t *testing.T, srv *httptest.Server, r *reporter.Reporter, c call) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), c.method, srv.URL+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for _, a := range c.auth {
		for _, wf := range []string{"wf", "other"} {
			if strings.Contains(a, "{"+wf+"}") {
				token, err := r.Token(t.Context(), wf)
				if err != nil {
					t.Fatalf("token of %s: %v", wf, err)
				}
				a = strings.ReplaceAll(a, "{"+wf+"}", token)
			}
		}
		req.Header.Add("Authorization", a)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// snapshot is everything the store holds about the reporter, as text.
func snapshot(t testing.TB, db *sqlite.DB) string {
	t.Helper()
	var out strings.Builder
	for _, q := range []string{
		`SELECT workflow, apps, created_ns, token FROM reporter_expectations ORDER BY workflow`,
		`SELECT workflow, app, success, message, reported_ns FROM reporter_reports ORDER BY workflow, app`,
	} {
		rows, err := db.SQL().QueryContext(t.Context(), q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(vals)
			out.Write(b)
			out.WriteByte('\n')
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	return out.String()
}

func decodeExpectation(t *testing.T, body []byte) reporter.Expectation {
	t.Helper()
	var exp reporter.Expectation
	if err := json.Unmarshal(body, &exp); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	return exp
}
