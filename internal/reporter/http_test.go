package reporter_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/runway-cd/runway/internal/reporter"
)

func TestHandler(t *testing.T) {
	type call struct {
		method, path, body string
	}
	tests := []struct {
		name       string
		before     []call // must all answer 200
		call       call
		wantStatus int
		assert     func(t *testing.T, body []byte, r *reporter.Reporter)
	}{
		{
			name:       "submit",
			call:       call{"POST", "/workflow/submit", `{"WorkflowName":"wf-1","Apps":["homelabping","postgres"]}`},
			wantStatus: 200,
			assert: func(t *testing.T, body []byte, _ *reporter.Reporter) {
				exp := decodeExpectation(t, body)
				if exp.Workflow != "wf-1" || exp.Phase != reporter.PhasePending || len(exp.Apps) != 2 {
					t.Errorf("echo = %+v", exp)
				}
			},
		},
		{
			name:       "update completes",
			before:     []call{{"POST", "/workflow/submit", `{"WorkflowName":"wf","Apps":["homelabping"]}`}},
			call:       call{"POST", "/workflow/update", `{"WorkflowName":"wf","App":"homelabping","Success":true}`},
			wantStatus: 200,
			assert: func(t *testing.T, body []byte, _ *reporter.Reporter) {
				if exp := decodeExpectation(t, body); exp.Phase != reporter.PhaseSucceeded {
					t.Errorf("echo = %+v", exp)
				}
			},
		},
		{
			name:       "update with message fails",
			before:     []call{{"POST", "/workflow/submit", `{"WorkflowName":"wf","Apps":["homelabping"]}`}},
			call:       call{"POST", "/workflow/update", `{"WorkflowName":"wf","App":"homelabping","Success":false,"Message":"no pong"}`},
			wantStatus: 200,
			assert: func(t *testing.T, body []byte, _ *reporter.Reporter) {
				exp := decodeExpectation(t, body)
				if exp.Phase != reporter.PhaseFailed || !strings.Contains(exp.Reason, "no pong") {
					t.Errorf("echo = %+v", exp)
				}
			},
		},
		{
			name:       "update before submit",
			call:       call{"POST", "/workflow/update", `{"WorkflowName":"wf","App":"postgres","Success":true}`},
			wantStatus: 200,
			assert: func(t *testing.T, body []byte, _ *reporter.Reporter) {
				exp := decodeExpectation(t, body)
				if exp.Phase != reporter.PhasePending || !exp.Reports["postgres"].Success {
					t.Errorf("echo = %+v", exp)
				}
			},
		},
		{
			name:       "get",
			before:     []call{{"POST", "/workflow/submit", `{"WorkflowName":"wf","Apps":["a"]}`}},
			call:       call{"GET", "/api/v1/expectations/wf", ""},
			wantStatus: 200,
			assert: func(t *testing.T, body []byte, _ *reporter.Reporter) {
				var raw map[string]any
				if err := json.Unmarshal(body, &raw); err != nil {
					t.Fatal(err)
				}
				for _, field := range []string{"workflow", "apps", "reports", "phase", "created"} {
					if _, ok := raw[field]; !ok {
						t.Errorf("field %q missing from %s", field, body)
					}
				}
			},
		},
		{name: "get unknown", call: call{"GET", "/api/v1/expectations/nope", ""}, wantStatus: 404},
		{name: "get hostile", call: call{"GET", "/api/v1/expectations/a%20b", ""}, wantStatus: 400},
		{name: "malformed json", call: call{"POST", "/workflow/submit", `{"WorkflowName":"wf","Apps":[`}, wantStatus: 400},
		{name: "not an object", call: call{"POST", "/workflow/submit", `["wf"]`}, wantStatus: 400},
		{name: "trailing data", call: call{"POST", "/workflow/submit", `{"WorkflowName":"wf","Apps":["a"]} {}`}, wantStatus: 400},
		{name: "empty body", call: call{"POST", "/workflow/update", ``}, wantStatus: 400},
		{name: "unknown field", call: call{"POST", "/workflow/submit", `{"WorkflowName":"wf","Apps":["a"],"Extra":1}`}, wantStatus: 400},
		{name: "missing success", call: call{"POST", "/workflow/update", `{"WorkflowName":"wf","App":"a"}`}, wantStatus: 400},
		{name: "empty workflow", call: call{"POST", "/workflow/submit", `{"WorkflowName":"","Apps":["a"]}`}, wantStatus: 400},
		{name: "no apps", call: call{"POST", "/workflow/submit", `{"WorkflowName":"wf","Apps":[]}`}, wantStatus: 400},
		{name: "hostile workflow", call: call{"POST", "/workflow/submit", `{"WorkflowName":"../../etc/passwd","Apps":["a"]}`}, wantStatus: 400},
		{name: "hostile app", call: call{"POST", "/workflow/update", `{"WorkflowName":"wf","App":"a;rm -rf /","Success":true}`}, wantStatus: 400},
		{name: "newline in app", call: call{"POST", "/workflow/submit", `{"WorkflowName":"wf","Apps":["a\nb"]}`}, wantStatus: 400},
		{name: "long workflow", call: call{"POST", "/workflow/submit", `{"WorkflowName":"` + strings.Repeat("w", 129) + `","Apps":["a"]}`}, wantStatus: 400},
		{name: "too large", call: call{"POST", "/workflow/update", `{"WorkflowName":"wf","App":"a","Success":true,"Message":"` + strings.Repeat("m", 1<<20) + `"}`}, wantStatus: 413},
		{name: "wrong method", call: call{"GET", "/workflow/submit", ""}, wantStatus: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newReporter(t)
			srv := httptest.NewServer(r.Handler())
			t.Cleanup(srv.Close)
			for _, c := range tt.before {
				if status, body := do(t, srv, c.method, c.path, c.body); status != 200 {
					t.Fatalf("%s %s = %d %s", c.method, c.path, status, body)
				}
			}
			status, body := do(t, srv, tt.call.method, tt.call.path, tt.call.body)
			if status != tt.wantStatus {
				t.Fatalf("%s %s = %d %s, want %d", tt.call.method, tt.call.path, status, body, tt.wantStatus)
			}
			if status >= 400 && status != 405 {
				var e struct{ Error string }
				if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
					t.Errorf("error body %q is not {\"error\": ...}", body)
				}
				if len(tt.before) == 0 {
					if _, err := r.Get(t.Context(), "wf"); !errors.Is(err, reporter.ErrNotFound) {
						t.Errorf("rejected request stored something: %v", err)
					}
				}
			}
			if tt.assert != nil {
				tt.assert(t, body, r)
			}
		})
	}
}

func do(t *testing.T, srv *httptest.Server, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func decodeExpectation(t *testing.T, body []byte) reporter.Expectation {
	t.Helper()
	var exp reporter.Expectation
	if err := json.Unmarshal(body, &exp); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	return exp
}
