package auth

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

const (
	testAdmin = "admin-token-0123456789abcdef"
	testRead  = "read-token-0123456789abcdef"
)

// protected serves Protect around a handler that answers 200 "reached",
// and counts the requests that got through.
func protected(t *testing.T, o Options) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	tokens, err := Load(t.TempDir(), testAdmin, testRead)
	if err != nil {
		t.Fatal(err)
	}
	o.Tokens = tokens
	var reached atomic.Int32
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		reached.Add(1)
		_, _ = io.WriteString(w, "reached")
	})
	srv := httptest.NewServer(Protect(next, o))
	t.Cleanup(srv.Close)
	return srv, &reached
}

func TestProtect(t *testing.T) {
	defaults := Options{
		Listen: "10.1.2.3:7070",
		Hosts:  []string{"runway.example.com", "ci.example:8443"},
		Exempt: []string{"POST /webhooks/github", "GET /healthz"},
		Reads:  []string{"POST /prometheus/api/v1/query"},
		Admin:  []string{"GET /api/v1/expectations/{workflow}/token"},
	}
	jsonCT := "application/json"
	form := "application/x-www-form-urlencoded"
	tests := []struct {
		name        string
		opts        func(*Options)
		method      string
		path        string
		host        string
		headers     map[string]string
		contentType string
		want        int
		// wantAuthenticate is the WWW-Authenticate header's prefix.
		wantAuthenticate string
	}{
		{name: "read without a token", method: "GET", want: 401, wantAuthenticate: `Bearer realm="runway"`},
		{name: "read with the read token", method: "GET", headers: bearerHeader(testRead), want: 200},
		{name: "read with the admin token", method: "GET", headers: bearerHeader(testAdmin), want: 200},
		{name: "head with the read token", method: "HEAD", headers: bearerHeader(testRead), want: 200},
		{name: "read with a wrong token", method: "GET", headers: bearerHeader("wrong-token-0123456789"), want: 401, wantAuthenticate: `Bearer realm="runway", error="invalid_token"`},
		{name: "lower-case scheme", method: "GET", headers: map[string]string{"Authorization": "bearer " + testRead}, want: 200},
		{name: "basic credentials", method: "GET", headers: map[string]string{"Authorization": "Basic " + testAdmin}, want: 401, wantAuthenticate: `Bearer realm="runway"`},
		{name: "scheme without token", method: "GET", headers: map[string]string{"Authorization": "Bearer"}, want: 401},
		{name: "token in a cookie only", method: "POST", contentType: jsonCT, headers: map[string]string{"Cookie": "token=" + testAdmin}, want: 401},
		{name: "token in the query only", method: "GET", path: "/api/v1/rollouts?token=" + testAdmin, want: 401},
		{name: "mutation with the admin token", method: "POST", contentType: jsonCT, headers: bearerHeader(testAdmin), want: 200},
		{name: "mutation with charset", method: "POST", contentType: "application/json; charset=utf-8", headers: bearerHeader(testAdmin), want: 200},
		{name: "delete with the admin token", method: "DELETE", contentType: jsonCT, headers: bearerHeader(testAdmin), want: 200},
		{name: "mutation with the read token", method: "POST", contentType: jsonCT, headers: bearerHeader(testRead), want: 403, wantAuthenticate: `Bearer realm="runway", error="insufficient_scope"`},
		{name: "mutation without a token", method: "POST", contentType: jsonCT, want: 401, wantAuthenticate: `Bearer realm="runway"`},
		{name: "mutation without a content type", method: "POST", headers: bearerHeader(testAdmin), want: 415},
		{name: "mutation as a form", method: "POST", contentType: form, headers: bearerHeader(testAdmin), want: 415},
		{name: "mutation as text", method: "POST", contentType: "text/plain", headers: bearerHeader(testAdmin), want: 415},
		{name: "mutation as multipart", method: "POST", contentType: "multipart/form-data; boundary=x", headers: bearerHeader(testAdmin), want: 415},
		{name: "mutation with a malformed content type", method: "POST", contentType: "application/json; =", headers: bearerHeader(testAdmin), want: 415},
		{name: "preflight", method: "OPTIONS", headers: map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, want: 403},
		{name: "preflight with the admin token", method: "OPTIONS", headers: bearerHeader(testAdmin), want: 403},
		{name: "foreign origin with the admin token", method: "POST", contentType: jsonCT, headers: map[string]string{"Origin": "https://evil.example", "Authorization": "Bearer " + testAdmin}, want: 200},
		{name: "rebound host", method: "GET", host: "evil.example", headers: bearerHeader(testAdmin), want: 421},
		{name: "rebound host with a port", method: "GET", host: "evil.example:7070", headers: bearerHeader(testAdmin), want: 421},
		{name: "localhost", method: "GET", host: "localhost:7070", headers: bearerHeader(testRead), want: 200},
		{name: "localhost in capitals with a dot", method: "GET", host: "LOCALHOST.", headers: bearerHeader(testRead), want: 200},
		{name: "subdomain of localhost", method: "GET", host: "app.localhost", headers: bearerHeader(testRead), want: 421},
		{name: "loopback v4", method: "GET", host: "127.5.6.7:1", headers: bearerHeader(testRead), want: 200},
		{name: "loopback v6", method: "GET", host: "[::1]:7070", headers: bearerHeader(testRead), want: 200},
		{name: "mapped loopback v6", method: "GET", host: "[::ffff:127.0.0.1]:7070", headers: bearerHeader(testRead), want: 200},
		{name: "other address", method: "GET", host: "192.168.1.9:7070", headers: bearerHeader(testRead), want: 421},
		{name: "listen address", method: "GET", host: "10.1.2.3:7070", headers: bearerHeader(testRead), want: 200},
		{name: "configured host, any port", method: "GET", host: "Runway.Example.com:443", headers: bearerHeader(testRead), want: 200},
		{name: "configured host:port", method: "GET", host: "ci.example:8443", headers: bearerHeader(testRead), want: 200},
		{name: "configured host, other port", method: "GET", host: "ci.example:9999", headers: bearerHeader(testRead), want: 421},
		{name: "configured host:port without port", method: "GET", host: "ci.example", headers: bearerHeader(testRead), want: 421},
		{name: "unspecified listen address is no host", opts: func(o *Options) { o.Listen = "0.0.0.0:7070" }, method: "GET", host: "0.0.0.0:7070", headers: bearerHeader(testRead), want: 421},
		{name: "webhook needs no token", method: "POST", path: "/webhooks/github", contentType: "text/plain", want: 200},
		{name: "healthz needs no token", method: "GET", path: "/healthz", want: 200},
		{name: "exempt route still checks the host", method: "POST", path: "/webhooks/github", host: "evil.example", contentType: jsonCT, want: 421},
		{name: "exempt pattern is per method", method: "GET", path: "/webhooks/github", want: 401},
		{name: "unclean exempt path gets the full checks", method: "POST", path: "//webhooks/github", contentType: jsonCT, want: 401},
		{name: "read route takes the read token", method: "POST", path: "/prometheus/api/v1/query", contentType: form, headers: bearerHeader(testRead), want: 200},
		{name: "read route needs a token", method: "POST", path: "/prometheus/api/v1/query", contentType: form, want: 401},
		{name: "admin read with the admin token", method: "GET", path: "/api/v1/expectations/w/token", headers: bearerHeader(testAdmin), want: 200},
		{name: "admin read with the read token", method: "GET", path: "/api/v1/expectations/w/token", headers: bearerHeader(testRead), want: 403, wantAuthenticate: `Bearer realm="runway", error="insufficient_scope"`},
		{name: "admin read without a token", method: "GET", path: "/api/v1/expectations/w/token", want: 401},
		{name: "admin read is not anonymous", opts: func(o *Options) { o.AnonymousRead = true }, method: "GET", path: "/api/v1/expectations/w/token", want: 401},
		{name: "anonymous read", opts: func(o *Options) { o.AnonymousRead = true }, method: "GET", want: 200},
		{name: "anonymous read of a read route", opts: func(o *Options) { o.AnonymousRead = true }, method: "POST", path: "/prometheus/api/v1/query", contentType: form, want: 200},
		{name: "anonymous read still guards mutations", opts: func(o *Options) { o.AnonymousRead = true }, method: "POST", contentType: jsonCT, want: 401},
		{name: "anonymous read still checks the host", opts: func(o *Options) { o.AnonymousRead = true }, method: "GET", host: "evil.example", want: 421},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := defaults
			if tt.opts != nil {
				tt.opts(&o)
			}
			srv, reached := protected(t, o)
			path := tt.path
			if path == "" {
				path = "/api/v1/rollouts/production/web/promote"
			}
			req, err := http.NewRequest(tt.method, srv.URL+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.want {
				t.Fatalf("%s %s (Host %q): %d %s, want %d", tt.method, path, tt.host, resp.StatusCode, body, tt.want)
			}
			if got := reached.Load(); (tt.want == 200) != (got == 1) {
				t.Fatalf("handler reached %d times with answer %d", got, resp.StatusCode)
			}
			if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, tt.wantAuthenticate) || (tt.want != 401 && tt.want != 403 && got != "") {
				t.Fatalf("WWW-Authenticate %q, want %q", got, tt.wantAuthenticate)
			}
			if tt.want == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
			for k := range resp.Header {
				if strings.HasPrefix(strings.ToLower(k), "access-control-") {
					t.Fatalf("CORS header %s sent", k)
				}
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Fatal("no X-Content-Type-Options: nosniff")
			}
			if tt.want != 200 {
				assertJSONError(t, resp, body)
			}
		})
	}
}

func bearerHeader(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

// assertJSONError checks an error answer is {"error": "..."} and repeats
// no token.
func assertJSONError(t *testing.T, resp *http.Response, body []byte) {
	t.Helper()
	if resp.Request.Method == http.MethodHead {
		return
	}
	var e struct{ Error string }
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" || json.Unmarshal(body, &e) != nil || e.Error == "" {
		t.Fatalf("error answer %q (%s), want JSON {\"error\": ...}", body, ct)
	}
	for _, secret := range []string{testAdmin, testRead, "wrong-token"} {
		if strings.Contains(string(body), secret) {
			t.Fatalf("error answer %q repeats a token", body)
		}
	}
}

func TestProtectTwoAuthorizationHeaders(t *testing.T) {
	srv, reached := protected(t, Options{})
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/pipelines", nil)
	req.Header.Add("Authorization", "Bearer wrong-token-0123456789")
	req.Header.Add("Authorization", "Bearer "+testAdmin)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || reached.Load() != 0 {
		t.Fatalf("two Authorization headers: %d, reached %d", resp.StatusCode, reached.Load())
	}
}

// TestProtectNoHost sends an HTTP/1.0 request without a Host header, which
// Go's client cannot.
func TestProtectNoHost(t *testing.T) {
	srv, reached := protected(t, Options{})
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /api/v1/pipelines HTTP/1.0\r\nAuthorization: Bearer "+testAdmin+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest || reached.Load() != 0 {
		t.Fatalf("no Host: %d, reached %d", resp.StatusCode, reached.Load())
	}
}

// TestProtectFollowsRotation rotates the admin token under a running
// server: the next request needs the new one.
func TestProtectFollowsRotation(t *testing.T) {
	dir := t.TempDir()
	tokens, err := Load(dir, "", "")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Protect(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), Options{Tokens: tokens}))
	t.Cleanup(srv.Close)
	status := func(token string) int {
		req, _ := http.NewRequest("POST", srv.URL+"/api/v1/x", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	old, _ := ReadFile(Path(dir, AdminToken))
	if got := status(old); got != 200 {
		t.Fatalf("before rotation: %d", got)
	}
	fresh, err := Rotate(dir, AdminToken)
	if err != nil {
		t.Fatal(err)
	}
	if got := status(old); got != 401 {
		t.Fatalf("old token after rotation: %d, want 401", got)
	}
	if got := status(fresh[AdminToken]); got != 200 {
		t.Fatalf("new token after rotation: %d, want 200", got)
	}
}
