package api

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestOneLine(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "too many errors", "too many errors"},
		{"newlines and a forged trailer", "bad canary\n\nSigned-off-by: Mallory <m@example.com>", "bad canary  Signed-off-by: Mallory <m@example.com>"},
		{"carriage return and tab", "a\r\nb\tc", "a  b c"},
		{"other controls", "a\x00b\x1bc\u0085d", "a b c d"},
		{"line separators", "a\u2028b\u2029c", "a b c"},
		{"bidi controls", "a\u202eb\u2066c", "a b c"},
		{"invalid utf-8", "a\xffb", "a\uFFFDb"},
		{"surrounding space", "  \n reason \n ", "reason"},
		{"only newlines", "\n\n", ""},
		{"cut at the limit", strings.Repeat("x", 250), strings.Repeat("x", 200)},
		// 66 three-byte runes are 198 bytes; the 67th would pass 200.
		{"cut at a rune boundary", strings.Repeat("€", 100), strings.Repeat("€", 66)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := OneLine(tt.in, MaxReason)
			if got != tt.want {
				t.Fatalf("OneLine(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if len(got) > MaxReason || !utf8.ValidString(got) || strings.ContainsAny(got, "\r\n") {
				t.Fatalf("OneLine(%q) = %q: not one valid line within %d bytes", tt.in, got, MaxReason)
			}
		})
	}
}

// TestAbortReason sends abort reasons in the query and in the body: every
// one is accepted, made one line and cut, never an error; only a body that
// is not the route's JSON, or too large, is refused, and then nothing is
// aborted.
func TestAbortReason(t *testing.T) {
	long := strings.Repeat("r", 70<<10)
	tests := []struct {
		name       string
		query      string
		body       string
		wantStatus int
		want       string // the reason passed to Abort; "" when none may be
	}{
		{name: "query reason with newlines", query: "reason=" + url.QueryEscape("x\nSigned-off-by: M <m@x>"), wantStatus: 202, want: "x Signed-off-by: M <m@x>"},
		{name: "70 KB query reason is cut", query: "reason=" + strings.Repeat("q", 30<<10), wantStatus: 202, want: strings.Repeat("q", MaxReason)},
		{name: "body reason", body: `{"reason": "too slow\nreally"}`, wantStatus: 202, want: "too slow really"},
		{name: "body reason wins over the query", query: "reason=query", body: `{"reason": "body"}`, wantStatus: 202, want: "body"},
		{name: "empty body object takes the query", query: "reason=query", body: `{}`, wantStatus: 202, want: "query"},
		{name: "reason of only newlines gets the default", body: `{"reason": "\n\n"}`, wantStatus: 202, want: "aborted through the API"},
		{name: "malformed body", body: `{"reason": `, wantStatus: 400},
		{name: "unknown field", body: `{"reason": "x", "force": true}`, wantStatus: 400},
		{name: "body over the limit", body: `{"reason": "` + long + `"}`, wantStatus: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := defaultFakes()
			srv := newServer(t, f)
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/rollouts/production/web/abort?"+tt.query, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, body, tt.wantStatus)
			}
			aborted := f.rollouts.calls().aborted
			if tt.want == "" {
				if len(aborted) != 0 {
					t.Fatalf("a refused request aborted: %v", aborted)
				}
				if strings.Contains(string(body), long[:100]) {
					t.Fatal("the error repeats the body")
				}
				return
			}
			if len(aborted) != 1 || aborted[0] != "production/web: "+tt.want {
				t.Fatalf("aborted = %q, want reason %q", aborted, tt.want)
			}
		})
	}
}
