package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Browser sessions. A browser cannot send an Authorization header from
// an EventSource or a plain link, so the dashboard's pages log in once
// with a token and get a cookie instead. The cookie is not the token: it
// is an HMAC-signed session (role, expiry, a random id and a binding to
// the token it was made from) under a key drawn at random when the
// server starts. So a session ends at the first of: its expiry
// (SessionOptions.TTL), a rotation of the token it was made from, a
// restart of the server, or a logout.
const (
	// SessionCookie is the session cookie's name.
	SessionCookie = "runway_session"
	// CSRFHeader carries a session's CSRF token on a request that changes
	// something (fetch from the dashboard's scripts).
	CSRFHeader = "X-CSRF-Token"
	// CSRFField carries it in an HTML form.
	CSRFField = "csrf"
	// DefaultSessionTTL is how long a session lasts when
	// SessionOptions.TTL is zero.
	DefaultSessionTTL = 12 * time.Hour
	// DefaultPages is the browser pages' prefix when SessionOptions.Pages
	// is empty (the dashboard's).
	DefaultPages = "/ui/"
)

// Bounds on what a browser sends.
const (
	maxCookie    = 512     // bytes of a session cookie
	maxNext      = 512     // bytes of a login's return path
	maxLoginBody = 8 << 10 // bytes of a login form
	maxFormBody  = 64 << 10
	maxRevoked   = 10000 // logged-out sessions remembered until they expire
)

// ErrSession is a session cookie that is forged, expired, logged out or
// made from a token since rotated.
var ErrSession = errors.New("invalid or expired session")

// SessionOptions configure NewSessions.
type SessionOptions struct {
	// Pages is the path prefix of the browser pages ("/ui/"); "" is
	// DefaultPages. Below it, "login" (GET) and "static/" answer anyone,
	// POST "login" and "logout" are Protect's, and a request without
	// credentials is redirected to the login page instead of getting 401.
	Pages string
	// TTL is how long a session lasts; zero is DefaultSessionTTL.
	TTL time.Duration
	// Secure marks every session cookie Secure, also when the request
	// came over plain HTTP (a proxy terminating TLS in front of Runway).
	// Cookies of logins over TLS are always Secure.
	Secure bool
	// Clock tells the time; nil is the real clock.
	Clock clock.PassiveClock
}

// Sessions issues and checks browser sessions for Protect.
type Sessions struct {
	tokens *Tokens
	key    [32]byte
	pages  string
	ttl    time.Duration
	secure bool
	clock  clock.PassiveClock
	cop    *http.CrossOriginProtection

	mu      sync.Mutex
	revoked map[string]time.Time // session id -> its expiry
}

// NewSessions returns sessions made from tokens, signed with a key drawn
// now.
func NewSessions(tokens *Tokens, o SessionOptions) *Sessions {
	s := &Sessions{tokens: tokens, pages: o.Pages, ttl: o.TTL, secure: o.Secure, clock: o.Clock,
		cop: http.NewCrossOriginProtection(), revoked: map[string]time.Time{}}
	if s.pages == "" {
		s.pages = DefaultPages
	}
	if s.ttl <= 0 {
		s.ttl = DefaultSessionTTL
	}
	if s.clock == nil {
		s.clock = clock.RealClock{}
	}
	_, _ = rand.Read(s.key[:]) // never fails (crypto/rand)
	return s
}

// Caller is who sent a request that Protect let through.
type Caller struct {
	// Role is the caller's role: None for an anonymous read.
	Role Role
	// Session marks a browser session (a cookie, not a bearer token).
	Session bool
	// CSRF is the session's CSRF token, which its requests that change
	// something carry in CSRFField or CSRFHeader. Empty without a session.
	CSRF string
}

type callerKey struct{}

// CallerFrom returns the caller Protect attached to ctx (the zero Caller
// when none: an anonymous read, or a handler not behind Protect).
func CallerFrom(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}

// WithCaller returns ctx carrying c, as Protect passes it on (for tests
// of handlers behind Protect).
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

func withCaller(r *http.Request, c Caller) *http.Request {
	return r.WithContext(WithCaller(r.Context(), c))
}

// session is a verified session cookie.
type session struct {
	role    Role
	expires time.Time
	id      string
}

// issue returns a session cookie's value for role.
func (s *Sessions) issue(role Role) (string, session) {
	raw := make([]byte, 16)
	_, _ = rand.Read(raw)
	sess := session{role: role, expires: s.clock.Now().Add(s.ttl).Truncate(time.Second), id: b64(raw)}
	payload := strings.Join([]string{"1", strconv.Itoa(int(role)), strconv.FormatInt(sess.expires.Unix(), 10), sess.id, s.binding(role)}, ".")
	return payload + "." + s.mac("session", payload), sess
}

// verify checks a session cookie's value: signature, expiry, the token it
// was made from, logout.
func (s *Sessions) verify(value string) (session, error) {
	if len(value) > maxCookie {
		return session{}, ErrSession
	}
	payload, sig, ok := cutLast(value, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(s.mac("session", payload))) {
		return session{}, ErrSession
	}
	f := strings.Split(payload, ".")
	if len(f) != 5 || f[0] != "1" {
		return session{}, ErrSession
	}
	r, err := strconv.Atoi(f[1])
	role := Role(r)
	if err != nil || (role != Read && role != Admin) {
		return session{}, ErrSession
	}
	exp, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return session{}, ErrSession
	}
	sess := session{role: role, expires: time.Unix(exp, 0), id: f[3]}
	if !s.clock.Now().Before(sess.expires) {
		return session{}, fmt.Errorf("%w: expired", ErrSession)
	}
	if subtle.ConstantTimeCompare([]byte(f[4]), []byte(s.binding(role))) != 1 {
		return session{}, fmt.Errorf("%w: its token was rotated", ErrSession)
	}
	s.mu.Lock()
	_, out := s.revoked[sess.id]
	s.mu.Unlock()
	if out {
		return session{}, fmt.Errorf("%w: logged out", ErrSession)
	}
	return sess, nil
}

// binding ties a session to the current token of its role, without
// carrying anything from which the token could be learnt.
func (s *Sessions) binding(role Role) string {
	sec := s.tokens.read
	if role == Admin {
		sec = s.tokens.admin
	}
	d := sec.current()
	return s.mac("binding", string(d[:]))[:22]
}

// csrf is the CSRF token of the session with id.
func (s *Sessions) csrf(id string) string { return s.mac("csrf", id) }

func (s *Sessions) mac(purpose, msg string) string {
	m := hmac.New(sha256.New, s.key[:])
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(msg))
	return b64(m.Sum(nil))
}

// current returns the digest of the token now, re-reading its file when
// it changed.
func (sec *secret) current() [sha256.Size]byte {
	sec.mu.Lock()
	defer sec.mu.Unlock()
	if sec.path != "" {
		_ = sec.reloadLocked()
	}
	return sec.digest
}

// revoke remembers a logged-out session until it expires, at most
// maxRevoked of them (past that, the one expiring first is forgotten).
func (s *Sessions) revoke(sess session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	for id, exp := range s.revoked {
		if !now.Before(exp) {
			delete(s.revoked, id)
		}
	}
	if len(s.revoked) >= maxRevoked {
		first, firstExp := "", time.Time{}
		for id, exp := range s.revoked {
			if first == "" || exp.Before(firstExp) {
				first, firstExp = id, exp
			}
		}
		delete(s.revoked, first)
	}
	s.revoked[sess.id] = sess.expires
}

// pageKind is what a request under the pages' prefix is to Protect.
type pageKind int

const (
	notPage    pageKind = iota
	page                // a dashboard page: needs a session or a token
	pagePublic          // the login form and static assets: anyone
	pageLogin           // POST login: Protect logs in
	pageLogout          // POST logout: Protect logs out (with a session)
)

func (s *Sessions) kind(r *http.Request) pageKind {
	p := r.URL.Path
	if !strings.HasPrefix(p, s.pages) {
		return notPage
	}
	clean := path.Clean(p)
	if clean != p && clean+"/" != p {
		return page // the mux redirects it; nothing public about it
	}
	rest := strings.TrimPrefix(p, s.pages)
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case get && (rest == "login" || strings.HasPrefix(rest, "static/")):
		return pagePublic
	case r.Method == http.MethodPost && rest == "login":
		return pageLogin
	case r.Method == http.MethodPost && rest == "logout":
		return pageLogout
	}
	return page
}

// login serves POST <pages>login: the form's token field is checked, and
// a session cookie of its role set; the browser goes on to the form's
// next field (a path below the pages) or back to the form.
func (s *Sessions) login(w http.ResponseWriter, r *http.Request) {
	if err := s.cop.Check(r); err != nil {
		writeError(w, http.StatusForbidden, "cross-origin login refused")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	if !isForm(r.Header.Get("Content-Type")) {
		writeError(w, http.StatusUnsupportedMediaType, "log in with the login form")
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "unreadable login form")
		return
	}
	next := s.safeNext(r.PostForm.Get("next"))
	role := s.tokens.Role(strings.TrimSpace(r.PostForm.Get("token")))
	if role == None {
		http.Redirect(w, r, s.loginURL(next, "failed"), http.StatusSeeOther)
		return
	}
	value, sess := s.issue(role)
	http.SetCookie(w, s.cookie(r, value, sess.expires))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout ends sess and clears its cookie.
func (s *Sessions) logout(w http.ResponseWriter, r *http.Request, sess session) {
	s.revoke(sess)
	s.clear(w, r)
	http.Redirect(w, r, s.loginURL("", "loggedout"), http.StatusSeeOther)
}

func (s *Sessions) cookie(r *http.Request, value string, expires time.Time) *http.Cookie {
	return &http.Cookie{
		Name: SessionCookie, Value: value, Path: "/",
		Expires: expires, MaxAge: int(s.ttl / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.secure || r.TLS != nil,
	}
}

func (s *Sessions) clear(w http.ResponseWriter, r *http.Request) {
	c := s.cookie(r, "", time.Unix(0, 0))
	c.MaxAge = -1
	http.SetCookie(w, c)
}

// redirectToLogin sends a browser without a (valid) session to the login
// form, to come back to the page it asked for.
func (s *Sessions) redirectToLogin(w http.ResponseWriter, r *http.Request, why string) {
	next := ""
	if r.Method == http.MethodGet {
		next = r.URL.RequestURI()
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, s.loginURL(s.safeNext(next), why), http.StatusSeeOther)
}

func (s *Sessions) loginURL(next, why string) string {
	q := url.Values{}
	if next != "" && next != s.pages {
		q.Set("next", next)
	}
	if why != "" {
		q.Set("why", why)
	}
	u := s.pages + "login"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// safeNext returns next when it is a path on this server below the
// pages, else the pages' root: a login never sends a browser elsewhere.
func (s *Sessions) safeNext(next string) string {
	if next == "" || len(next) > maxNext || !strings.HasPrefix(next, s.pages) ||
		strings.Contains(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return s.pages
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Path != path.Clean(u.Path) && u.Path != path.Clean(u.Path)+"/" {
		return s.pages
	}
	return next
}

// serve lets a request with a session cookie through, or not. read is
// Protect's: a request the read role may make.
func (s *Sessions) serve(w http.ResponseWriter, r *http.Request, next http.Handler, value string, safe, read, anonymousRead bool) {
	sess, err := s.verify(value)
	if err != nil {
		s.clear(w, r)
		switch {
		case read && anonymousRead:
			next.ServeHTTP(w, r)
		case s.kind(r) != notPage:
			s.redirectToLogin(w, r, "expired")
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="runway", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "invalid or expired session: log in again at "+s.pages+"login")
		}
		return
	}
	c := Caller{Role: sess.role, Session: true, CSRF: s.csrf(sess.id)}
	if !safe {
		if err := s.cop.Check(r); err != nil {
			writeError(w, http.StatusForbidden, "cross-origin request refused")
			return
		}
		ct := r.Header.Get("Content-Type")
		if !isJSON(ct) && !isForm(ct) {
			writeError(w, http.StatusUnsupportedMediaType, "a request that changes something must be a form or JSON")
			return
		}
		if !s.checkCSRF(w, r, c.CSRF) {
			writeError(w, http.StatusForbidden, "missing or wrong CSRF token: reload the page")
			return
		}
	}
	if s.kind(r) == pageLogout {
		s.logout(w, r, sess)
		return
	}
	if !read && sess.role != Admin {
		writeError(w, http.StatusForbidden, "this request needs the admin role: log in with the admin token")
		return
	}
	next.ServeHTTP(w, withCaller(r, c))
}

// checkCSRF reports whether r carries want in CSRFHeader or, for a form,
// in CSRFField.
func (s *Sessions) checkCSRF(w http.ResponseWriter, r *http.Request, want string) bool {
	got := r.Header.Get(CSRFHeader)
	if got == "" && isForm(r.Header.Get("Content-Type")) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
		if err := r.ParseForm(); err != nil {
			return false
		}
		got = r.PostForm.Get(CSRFField)
	}
	return got != "" && hmac.Equal([]byte(got), []byte(want))
}

func isForm(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/x-www-form-urlencoded"
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// String is the role's token name: "admin", "read", or "none".
func (r Role) String() string {
	switch r {
	case Admin:
		return AdminToken
	case Read:
		return ReadToken
	}
	return "none"
}
