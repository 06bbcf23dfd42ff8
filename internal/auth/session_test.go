package auth

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// sessionServer serves Protect with sessions around a handler that
// answers "reached <role> <csrf-set>".
type sessionServer struct {
	srv      *httptest.Server
	sessions *Sessions
	clock    *clocktesting.FakeClock
	dir      string
	reached  atomic.Int32
}

func newSessionServer(t *testing.T, anonymousRead bool) *sessionServer {
	t.Helper()
	ss := &sessionServer{dir: t.TempDir(), clock: clocktesting.NewFakeClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))}
	tokens, err := Load(ss.dir, "", "")
	if err != nil {
		t.Fatal(err)
	}
	ss.sessions = NewSessions(tokens, SessionOptions{Clock: ss.clock, TTL: time.Hour})
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ss.reached.Add(1)
		c := CallerFrom(r.Context())
		_, _ = io.WriteString(w, "reached "+c.Role.String())
	})
	ss.srv = httptest.NewServer(Protect(next, Options{Tokens: tokens, Sessions: ss.sessions, AnonymousRead: anonymousRead}))
	t.Cleanup(ss.srv.Close)
	return ss
}

func (ss *sessionServer) token(t *testing.T, which string) string {
	t.Helper()
	tok, err := ReadFile(Path(ss.dir, which))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// noRedirect is a client that shows redirects instead of following them.
func noRedirect(srv *httptest.Server) *http.Client {
	c := *srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// login posts the login form with token and returns the session cookie
// (nil if none was set) and the redirect.
func (ss *sessionServer) login(t *testing.T, token string) (*http.Cookie, string) {
	t.Helper()
	form := url.Values{"token": {token}, "next": {"/ui/pipelines/p1"}}
	req, _ := http.NewRequest("POST", ss.srv.URL+"/ui/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", ss.srv.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := noRedirect(ss.srv).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d, want 303", resp.StatusCode)
	}
	for _, c := range resp.Cookies() {
		if c.Name == SessionCookie {
			return c, resp.Header.Get("Location")
		}
	}
	return nil, resp.Header.Get("Location")
}

// csrfOf returns the CSRF token the handler would see for cookie.
func (ss *sessionServer) csrfOf(t *testing.T, c *http.Cookie) string {
	t.Helper()
	sess, err := ss.sessions.verify(c.Value)
	if err != nil {
		t.Fatal(err)
	}
	return ss.sessions.csrf(sess.id)
}

func TestLoginCookie(t *testing.T) {
	ss := newSessionServer(t, false)
	admin := ss.token(t, AdminToken)
	c, loc := ss.login(t, admin)
	if c == nil {
		t.Fatal("no session cookie")
	}
	if loc != "/ui/pipelines/p1" {
		t.Fatalf("redirected to %q, want the next page", loc)
	}
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure {
		t.Fatalf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/, not Secure over plain HTTP", c)
	}
	if strings.Contains(c.Value, admin) {
		t.Fatal("the cookie carries the token")
	}
	if c2, loc := ss.login(t, "wrong-token-0123456789"); c2 != nil || !strings.Contains(loc, "why=failed") {
		t.Fatalf("wrong token: cookie %v, redirect %q", c2, loc)
	}
}

func TestLoginRefusesForeignNext(t *testing.T) {
	ss := newSessionServer(t, false)
	for _, next := range []string{"https://evil.example/ui/", "//evil.example/ui/", "/ui/\\evil", "/api/v1/pipelines", "/ui/../api/v1/x", strings.Repeat("/ui/a", 200)} {
		if got := ss.sessions.safeNext(next); got != "/ui/" {
			t.Errorf("safeNext(%q) = %q, want /ui/", next, got)
		}
	}
	if got := ss.sessions.safeNext("/ui/rollouts/production/web?x=1"); got != "/ui/rollouts/production/web?x=1" {
		t.Errorf("a page of the dashboard: %q", got)
	}
}

func TestSessionRequests(t *testing.T) {
	ss := newSessionServer(t, false)
	adminCookie, _ := ss.login(t, ss.token(t, AdminToken))
	readCookie, _ := ss.login(t, ss.token(t, ReadToken))
	adminCSRF := ss.csrfOf(t, adminCookie)
	readCSRF := ss.csrfOf(t, readCookie)
	origin := ss.srv.URL
	form := "application/x-www-form-urlencoded"
	forged := *adminCookie
	forged.Value = strings.Replace(forged.Value, "1.2.", "1.1.", 1) // the role changed under the signature
	if forged.Value == adminCookie.Value {
		t.Fatal("the admin cookie does not start with version 1, role 2")
	}
	tests := []struct {
		name        string
		method      string
		path        string
		cookie      *http.Cookie
		contentType string
		body        string
		headers     map[string]string
		before      func()
		want        int
		// wantLocation is a redirect's prefix.
		wantLocation string
	}{
		{name: "api read with a session", method: "GET", path: "/api/v1/events", cookie: readCookie, want: 200},
		{name: "page with a session", method: "GET", path: "/ui/", cookie: readCookie, want: 200},
		{name: "api without anything", method: "GET", path: "/api/v1/events", want: 401},
		{name: "page without anything", method: "GET", path: "/ui/pipelines/p1", want: 303, wantLocation: "/ui/login?next=%2Fui%2Fpipelines%2Fp1"},
		{name: "login form is public", method: "GET", path: "/ui/login", want: 200},
		{name: "static assets are public", method: "GET", path: "/ui/static/style.css", want: 200},
		{name: "unclean static path is not public", method: "GET", path: "/ui/static/../../api/v1/events", want: 303},
		{name: "forged cookie", method: "GET", path: "/api/v1/events", cookie: &forged, want: 401},
		{name: "forged cookie on a page", method: "GET", path: "/ui/", cookie: &forged, want: 303, wantLocation: "/ui/login?why=expired"},
		{name: "garbage cookie", method: "GET", path: "/api/v1/events", cookie: &http.Cookie{Name: SessionCookie, Value: "x.y"}, want: 401},
		{name: "oversized cookie", method: "GET", path: "/api/v1/events", cookie: &http.Cookie{Name: SessionCookie, Value: strings.Repeat("a", 600)}, want: 401},
		{name: "raw token as the cookie", method: "GET", path: "/api/v1/events", cookie: &http.Cookie{Name: SessionCookie, Value: ss.token(t, AdminToken)}, want: 401},
		{name: "admin post with form CSRF", method: "POST", path: "/ui/rollouts/production/web/promote", cookie: adminCookie, contentType: form, body: "csrf=" + url.QueryEscape(adminCSRF), headers: map[string]string{"Origin": origin}, want: 200},
		{name: "admin post with header CSRF", method: "POST", path: "/api/v1/rollouts/production/web/promote", cookie: adminCookie, contentType: "application/json", headers: map[string]string{"Origin": origin, CSRFHeader: adminCSRF}, want: 200},
		{name: "same-site fetch metadata", method: "POST", path: "/ui/x", cookie: adminCookie, contentType: form, body: "csrf=" + url.QueryEscape(adminCSRF), headers: map[string]string{"Sec-Fetch-Site": "same-origin"}, want: 200},
		{name: "missing CSRF", method: "POST", path: "/ui/rollouts/production/web/promote", cookie: adminCookie, contentType: form, body: "x=1", headers: map[string]string{"Origin": origin}, want: 403},
		{name: "wrong CSRF", method: "POST", path: "/ui/rollouts/production/web/promote", cookie: adminCookie, contentType: form, body: "csrf=" + url.QueryEscape(readCSRF), headers: map[string]string{"Origin": origin}, want: 403},
		{name: "cross-origin post", method: "POST", path: "/ui/rollouts/production/web/promote", cookie: adminCookie, contentType: form, body: "csrf=" + url.QueryEscape(adminCSRF), headers: map[string]string{"Origin": "https://evil.example"}, want: 403},
		{name: "cross-site fetch metadata", method: "POST", path: "/ui/rollouts/production/web/promote", cookie: adminCookie, contentType: form, body: "csrf=" + url.QueryEscape(adminCSRF), headers: map[string]string{"Sec-Fetch-Site": "cross-site"}, want: 403},
		{name: "text body", method: "POST", path: "/ui/x", cookie: adminCookie, contentType: "text/plain", body: "csrf=" + url.QueryEscape(adminCSRF), want: 415},
		{name: "read role post", method: "POST", path: "/ui/rollouts/production/web/promote", cookie: readCookie, contentType: form, body: "csrf=" + url.QueryEscape(readCSRF), headers: map[string]string{"Origin": origin}, want: 403},
		{name: "post without anything on a page", method: "POST", path: "/ui/rollouts/production/web/promote", contentType: form, want: 303},
		{name: "post without anything on the api", method: "POST", path: "/api/v1/rollouts/production/web/promote", contentType: "application/json", want: 401},
		{name: "bearer wins over a cookie", method: "GET", path: "/api/v1/events", cookie: adminCookie, headers: map[string]string{"Authorization": "Bearer wrong-token-0123456789"}, want: 401},
		{name: "cross-origin login", method: "POST", path: "/ui/login", contentType: form, body: "token=" + ss.token(t, AdminToken), headers: map[string]string{"Origin": "https://evil.example"}, want: 403},
		{name: "expired", method: "GET", path: "/api/v1/events", cookie: adminCookie, before: func() { ss.clock.Step(2 * time.Hour) }, want: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.before != nil {
				tt.before()
			}
			ss.reached.Store(0)
			req, err := http.NewRequest(tt.method, ss.srv.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.cookie != nil {
				req.AddCookie(&http.Cookie{Name: tt.cookie.Name, Value: tt.cookie.Value})
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			resp, err := noRedirect(ss.srv).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("%s %s: %d %s, want %d", tt.method, tt.path, resp.StatusCode, body, tt.want)
			}
			if got := ss.reached.Load(); (tt.want == 200) != (got == 1) {
				t.Fatalf("handler reached %d times with answer %d", got, resp.StatusCode)
			}
			if tt.wantLocation != "" && !strings.HasPrefix(resp.Header.Get("Location"), tt.wantLocation) {
				t.Fatalf("Location %q, want %q", resp.Header.Get("Location"), tt.wantLocation)
			}
			if tt.want == 401 || tt.want == 403 || tt.want == 415 {
				assertJSONError(t, resp, body)
			}
		})
	}
}

// TestSessionCallerRole checks the handler sees the session's role and
// its CSRF token.
func TestSessionCallerRole(t *testing.T) {
	ss := newSessionServer(t, false)
	for _, which := range []string{AdminToken, ReadToken} {
		c, _ := ss.login(t, ss.token(t, which))
		req, _ := http.NewRequest("GET", ss.srv.URL+"/ui/", nil)
		req.AddCookie(c)
		resp, err := ss.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "reached " + which; string(body) != want {
			t.Errorf("%s session: %q, want %q", which, body, want)
		}
	}
}

// TestSessionEndsWithRotation rotates the token a session was made from:
// the session is refused, a session of the other token stays valid.
func TestSessionEndsWithRotation(t *testing.T) {
	ss := newSessionServer(t, false)
	admin, _ := ss.login(t, ss.token(t, AdminToken))
	read, _ := ss.login(t, ss.token(t, ReadToken))
	if _, err := Rotate(ss.dir, AdminToken); err != nil {
		t.Fatal(err)
	}
	if _, err := ss.sessions.verify(admin.Value); err == nil {
		t.Fatal("an admin session outlived the admin token's rotation")
	}
	if _, err := ss.sessions.verify(read.Value); err != nil {
		t.Fatalf("the read session after the admin token's rotation: %v", err)
	}
}

// TestLogout ends a session: its cookie is cleared and refused after.
func TestLogout(t *testing.T) {
	ss := newSessionServer(t, false)
	c, _ := ss.login(t, ss.token(t, ReadToken))
	form := url.Values{CSRFField: {ss.csrfOf(t, c)}}
	req, _ := http.NewRequest("POST", ss.srv.URL+"/ui/logout", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", ss.srv.URL)
	req.AddCookie(c)
	resp, err := noRedirect(ss.srv).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/ui/login") {
		t.Fatalf("logout: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	cleared := false
	for _, rc := range resp.Cookies() {
		cleared = cleared || rc.Name == SessionCookie && rc.MaxAge < 0
	}
	if !cleared {
		t.Fatal("logout did not clear the cookie")
	}
	if _, err := ss.sessions.verify(c.Value); err == nil {
		t.Fatal("a logged-out session is still valid")
	}
}

// TestSessionAnonymousRead: with anonymous reads a bad cookie does not
// block a read.
func TestSessionAnonymousRead(t *testing.T) {
	ss := newSessionServer(t, true)
	req, _ := http.NewRequest("GET", ss.srv.URL+"/api/v1/events", nil)
	req.AddCookie(&http.Cookie{Name: SessionCookie, Value: "forged.value"})
	resp, err := ss.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("anonymous read with a bad cookie: %d", resp.StatusCode)
	}
}

// TestRevokedBounded fills the logout list past its bound.
func TestRevokedBounded(t *testing.T) {
	ss := newSessionServer(t, false)
	for i := range maxRevoked + 10 {
		ss.sessions.revoke(session{id: "s" + string(rune('a'+i%26)) + time.Duration(i).String(), expires: ss.clock.Now().Add(time.Duration(i+1) * time.Second)})
	}
	if n := len(ss.sessions.revoked); n > maxRevoked {
		t.Fatalf("%d revoked sessions kept, want at most %d", n, maxRevoked)
	}
}
