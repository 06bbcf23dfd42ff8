package reporter_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/runway-cd/runway/internal/reporter"
	"github.com/runway-cd/runway/internal/store/sqlite"
)

// fuzzFixture is a reporter on a real store with wf (apps a and b) and
// other (app c) submitted.
func fuzzFixture(f *testing.F) (*reporter.Reporter, *sqlite.DB, string) {
	r, db := newReporterDB(f, nil)
	for wf, apps := range map[string][]string{"wf": {"a", "b"}, "other": {"c"}} {
		if err := r.Submit(f.Context(), wf, apps); err != nil {
			f.Fatal(err)
		}
	}
	token, err := r.Token(f.Context(), "wf")
	if err != nil {
		f.Fatal(err)
	}
	return r, db, token
}

// serve runs one request through h and returns its status.
func serve(t *testing.T, h http.Handler, path, body string, auth []string) int {
	req := httptest.NewRequestWithContext(t.Context(), "POST", path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for _, a := range auth {
		req.Header.Add("Authorization", a)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

// FuzzUpdateBody sends arbitrary bodies and Authorization headers to POST
// /workflow/update, strict and in compatibility mode. Nothing panics, the
// answer is 2xx or 4xx, and a request without wf's token never changes
// the store (in compatibility mode: a request with a token that is not
// wf's).
func FuzzUpdateBody(f *testing.F) {
	r, db, token := fuzzFixture(f)
	strict := r.HandlerWith(reporter.HandlerOptions{})
	compat := r.HandlerWith(reporter.HandlerOptions{Compatibility: true})
	for _, body := range []string{
		`{"WorkflowName":"wf","App":"a","Success":true}`,
		`{"WorkflowName":"wf","App":"b","Success":false,"Message":"initdb failed"}`,
		`{"WorkflowName":"wf","App":"a","Success":false,"Message":"x\nSigned-off-by: m <m@x>\r\n\u2028\u0000"}`,
		`{"WorkflowName":"wf","App":"a","Success":true,"Message":"` + strings.Repeat("é", 4000) + `"}`,
		`{"WorkflowName":"other","App":"c","Success":false}`,
		`{"WorkflowName":"nope","App":"a","Success":true}`,
		`{"WorkflowName":"wf","App":"intruder","Success":false}`,
		`{"WorkflowName":"wf","App":"c","Success":false}`,
		`{"WorkflowName":"wf","WorkflowName":"other","App":"c","Success":false}`,
		`{"workflowname":"wf","app":"a","success":false}`,
		`{"WorkflowName":"wf","App":"a","Success":null}`,
		`{"WorkflowName":"wf","App":"a","Success":"true"}`,
		`{"WorkflowName":"../wf","App":"a","Success":true}`,
		`{"WorkflowName":"wf","App":"a;rm -rf /","Success":true}`,
		`{"WorkflowName":"wf","App":"a","Success":true,"Token":"x"}`,
		`{"WorkflowName":"wf","App":"a","Success":true} {"WorkflowName":"wf","App":"b","Success":true}`,
		`{"WorkflowName":["wf"],"App":{"a":1},"Success":1}`,
		`[{"WorkflowName":"wf"}]`,
		"{\"WorkflowName\":\"wf\xff\",\"App\":\"a\",\"Success\":true}",
		`{"WorkflowName":"` + strings.Repeat("w", 200) + `","App":"a","Success":true}`,
		``, `null`, `{}`, `{"a":` + strings.Repeat("[", 10000),
	} {
		for _, auth := range []string{"", "Bearer " + strings.Repeat("0", 64), "Basic d2Y6eA==", "Bearer", "bearer  ", "Bearer wf"} {
			f.Add(body, auth, false, false)
			f.Add(body, auth, false, true)
		}
		f.Add(body, "", true, false)
	}
	f.Fuzz(func(t *testing.T, body, auth string, withToken, compatibility bool) {
		var headers []string
		switch {
		case withToken:
			headers = []string{"Bearer " + token}
		case auth != "":
			headers = strings.Split(auth, "\n")
		}
		h := strict
		if compatibility {
			h = compat
		}
		before := snapshot(t, db)
		status := serve(t, h, "/workflow/update", body, headers)
		if status >= 500 || status < 200 || (status >= 300 && status < 400) {
			t.Fatalf("status %d for body %q, auth %q", status, body, headers)
		}
		mayChange := withToken || (compatibility && len(headers) == 0)
		if after := snapshot(t, db); !mayChange && after != before {
			t.Fatalf("a request without the token (auth %q) changed the store (status %d):\nbefore %s\nafter  %s", headers, status, before, after)
		}
		if status >= 400 {
			if after := snapshot(t, db); after != before {
				t.Fatalf("a rejected request (%d) changed the store", status)
			}
		}
	})
}

// FuzzSubmitBody sends arbitrary bodies to POST /workflow/submit (which the
// API middleware reserves to admins). Nothing panics, the answer is 2xx or
// 4xx, a rejected body changes nothing, and no submission changes a token
// already handed out.
func FuzzSubmitBody(f *testing.F) {
	r, db, token := fuzzFixture(f)
	h := r.Handler()
	for _, body := range []string{
		`{"WorkflowName":"wf","Apps":["a","b"]}`,
		`{"WorkflowName":"wf","Apps":["a"]}`,
		`{"WorkflowName":"new","Apps":["homelabping","postgres"]}`,
		`{"WorkflowName":"wf","Apps":[]}`,
		`{"WorkflowName":"wf","Apps":null}`,
		`{"WorkflowName":"wf","Apps":["a","a"]}`,
		`{"WorkflowName":"wf","Apps":["a\nb"]}`,
		`{"WorkflowName":"..","Apps":["a"]}`,
		`{"WorkflowName":"wf","Apps":["a"],"Token":"0000"}`,
		`{"WorkflowName":"wf","Apps":["` + strings.Repeat("a", 129) + `"]}`,
		`{"WorkflowName":"wf","Apps":"a"}`,
		`{"WorkflowName":"wf","Apps":["a"]}{}`,
		``, `null`, `{}`, `{"Apps":` + strings.Repeat("[", 10000),
	} {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body string) {
		before := snapshot(t, db)
		status := serve(t, h, "/workflow/submit", body, nil)
		if status >= 500 || status < 200 || (status >= 300 && status < 400) {
			t.Fatalf("status %d for body %q", status, body)
		}
		if after := snapshot(t, db); status >= 400 && after != before {
			t.Fatalf("a rejected submission (%d) changed the store", status)
		}
		if got, err := r.Token(t.Context(), "wf"); err != nil || got != token {
			t.Fatalf("the token of wf changed to %q (%v)", got, err)
		}
	})
}
