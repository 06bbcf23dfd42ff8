package auth

import (
	"encoding/json"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Verifier tells what a bearer token allows (*Tokens is one).
type Verifier interface {
	Role(token string) Role
}

// Options configure Protect.
type Options struct {
	// Tokens checks bearer tokens. Required.
	Tokens Verifier
	// Listen is the listener's configured address (host:port); its host
	// is an accepted Host header besides loopback addresses and
	// localhost. An unspecified address (0.0.0.0, ::) adds nothing.
	Listen string
	// Hosts are further accepted Host headers: "name" accepts it on any
	// port, "name:port" on that port only.
	Hosts []string
	// AnonymousRead lets GET and HEAD requests (and Reads) through
	// without a token.
	AnonymousRead bool
	// Exempt are ServeMux patterns ("POST /webhooks/github") of routes
	// that check their callers themselves (an HMAC, a per-expectation
	// token) or answer anyone (/healthz): no token and no content type is
	// required of them. The Host check still applies.
	Exempt []string
	// Reads are patterns of routes that only read although their method
	// is not GET (PromQL's POST /api/v1/query): the read token suffices
	// and any content type is accepted, as for GET.
	Reads []string
	// Admin are patterns of GET routes that need the admin token all the
	// same (one that hands out a secret), AnonymousRead or not.
	Admin []string
	// Sessions, when set, lets browsers in with a session cookie besides
	// bearer tokens, and serves the login and logout of its pages (see
	// Sessions). Nil: bearer tokens only.
	Sessions *Sessions
}

// Protect wraps next with the API's protections, in this order:
//
//   - Host: a Host header that is not a loopback address, localhost, the
//     listen address or one of Options.Hosts is refused with 421, so a
//     page on a rebound DNS name cannot talk to the API from a browser.
//   - OPTIONS is refused with 403 and no response ever carries CORS
//     headers, so browsers refuse cross-origin reads and non-simple
//     requests.
//   - Exempt routes go straight to next.
//   - GET, HEAD and Reads need the read or the admin token (none with
//     AnonymousRead); every other method needs the admin token, sent as
//     "Authorization: Bearer <token>" (a cookie counts only as a session,
//     below). 401 carries WWW-Authenticate; a read token on a mutating
//     request gets 403.
//   - Admin routes need the admin token even for GET.
//   - A mutating request must say Content-Type: application/json (an
//     empty body is fine), which an HTML form cannot: else 415.
//
// With Options.Sessions, a request that sends no Authorization header
// but a session cookie is judged by its session instead: the session's
// role stands for the token's, a request that changes something must
// come from the same origin (Sec-Fetch-Site, Origin) and carry the
// session's CSRF token (CSRFField of a form, or CSRFHeader), and may be a
// form. An invalid session gets 401, or a redirect to the login page for
// the browser pages; so does a page request without any credentials.
//
// The handler finds the Caller in the request's context (CallerFrom).
// Errors are JSON {"error": "..."} and never repeat what was sent.
func Protect(next http.Handler, o Options) http.Handler {
	hosts := newHostSet(o.Listen, o.Hosts)
	routes := newRouteSet(o.Exempt, o.Reads, o.Admin)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if !hosts.allows(r.Host) {
			writeError(w, http.StatusMisdirectedRequest, "this API does not answer to that host name: add it to api.hosts in the server config")
			return
		}
		if r.Method == http.MethodOptions {
			writeError(w, http.StatusForbidden, "cross-origin requests are not allowed")
			return
		}
		kind := routes.kind(r)
		if kind == routeExempt {
			next.ServeHTTP(w, r)
			return
		}
		pk := notPage
		if o.Sessions != nil {
			pk = o.Sessions.kind(r)
		}
		switch pk {
		case pagePublic:
			next.ServeHTTP(w, r)
			return
		case pageLogin:
			o.Sessions.login(w, r)
			return
		}
		safe := r.Method == http.MethodGet || r.Method == http.MethodHead || kind == routeRead
		read := safe && kind != routeAdmin
		token, sent := bearer(r)
		if !sent && o.Sessions != nil {
			if c, err := r.Cookie(SessionCookie); err == nil {
				o.Sessions.serve(w, r, next, c.Value, safe, read, o.AnonymousRead)
				return
			}
		}
		if read && o.AnonymousRead {
			next.ServeHTTP(w, r)
			return
		}
		role := o.Tokens.Role(token)
		switch {
		case role == None && !sent && pk != notPage:
			o.Sessions.redirectToLogin(w, r, "")
			return
		case role == None && !sent:
			w.Header().Set("WWW-Authenticate", `Bearer realm="runway"`)
			writeError(w, http.StatusUnauthorized, "missing token: send Authorization: Bearer <token>")
			return
		case role == None:
			w.Header().Set("WWW-Authenticate", `Bearer realm="runway", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "invalid token")
			return
		case !read && role != Admin:
			w.Header().Set("WWW-Authenticate", `Bearer realm="runway", error="insufficient_scope"`)
			writeError(w, http.StatusForbidden, "this request needs the admin token")
			return
		}
		if !safe && !isJSON(r.Header.Get("Content-Type")) {
			writeError(w, http.StatusUnsupportedMediaType, "a request that changes something must have Content-Type: application/json")
			return
		}
		next.ServeHTTP(w, withCaller(r, Caller{Role: role}))
	})
}

// bearer returns the token of an "Authorization: Bearer" header, and
// whether an Authorization header was sent at all.
func bearer(r *http.Request) (string, bool) {
	v := r.Header.Values("Authorization")
	if len(v) == 0 {
		return "", false
	}
	if len(v) > 1 {
		return "", true
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(v[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true
	}
	return strings.TrimSpace(token), true
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// hostSet is the Host headers the API answers to.
type hostSet struct {
	anyPort  map[string]bool // host names and addresses, any port
	withPort map[string]bool // "host:port"
}

func newHostSet(listen string, hosts []string) hostSet {
	s := hostSet{anyPort: map[string]bool{"localhost": true}, withPort: map[string]bool{}}
	if h, _ := splitHost(listen); h != "" {
		if a, err := netip.ParseAddr(h); err != nil || !a.IsUnspecified() {
			s.anyPort[h] = true
		}
	}
	for _, entry := range hosts {
		h, port := splitHost(entry)
		switch {
		case h == "":
		case port == "":
			s.anyPort[h] = true
		default:
			s.withPort[net.JoinHostPort(h, port)] = true
		}
	}
	return s
}

func (s hostSet) allows(hostHeader string) bool {
	h, port := splitHost(hostHeader)
	if h == "" {
		return false
	}
	if a, err := netip.ParseAddr(h); err == nil && a.Unmap().IsLoopback() {
		return true
	}
	return s.anyPort[h] || port != "" && s.withPort[net.JoinHostPort(h, port)]
}

// splitHost returns the lower-case host (without brackets or a trailing
// dot) and the port of a host[:port].
func splitHost(hostport string) (host, port string) {
	host = hostport
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
	}
	host = strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), ".")
	return strings.ToLower(host), port
}

// routeKind is how Protect treats a route.
type routeKind int

const (
	routeProtected routeKind = iota
	routeExempt
	routeRead
	routeAdmin
)

// routeSet matches requests against the exempt and read patterns with a
// ServeMux, so patterns mean what they mean to the mux serving the routes.
type routeSet struct{ mux *http.ServeMux }

type marker routeKind

func (marker) ServeHTTP(http.ResponseWriter, *http.Request) {}

func newRouteSet(exempt, reads, admin []string) routeSet {
	mux := http.NewServeMux()
	for _, p := range exempt {
		mux.Handle(p, marker(routeExempt))
	}
	for _, p := range reads {
		mux.Handle(p, marker(routeRead))
	}
	for _, p := range admin {
		mux.Handle(p, marker(routeAdmin))
	}
	return routeSet{mux: mux}
}

func (s routeSet) kind(r *http.Request) routeKind {
	// A redirect the mux would make (an unclean path) is no marker: it
	// gets the full checks.
	h, pattern := s.mux.Handler(r)
	k, ok := h.(marker)
	if pattern == "" || !ok {
		return routeProtected
	}
	return routeKind(k)
}
