package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
)

// maxAttempts bounds the backends one request is sent to: the first and at
// most three retries, and never more than the pool has.
const maxAttempts = 4

// proxied is the state of one request on its way to a backend, shared by
// ServeHTTP, the ReverseProxy hooks and the retrier through the request's
// context. It is recycled once ServeHTTP returns.
type proxied struct {
	sw    statusWriter
	entry *entry
	pool  *pool
	host  string      // the Host the client asked for
	stop  func() bool // ends the fast path's watch of the request's context

	// tried are the backends the request was sent to, in order; last is
	// the latest; sent is the one that answered, whose in-flight count
	// ServeHTTP ends once the response is copied.
	tried  [maxAttempts]*backendState
	ntried int
	last   *target
	sent   *target
}

var proxiedPool = sync.Pool{New: func() any { return new(proxied) }}

func newProxied(w http.ResponseWriter, r *http.Request, e *entry, p *pool) *proxied {
	px := proxiedPool.Get().(*proxied)
	px.sw = statusWriter{ResponseWriter: w, pool: p}
	px.entry, px.pool, px.host = e, p, r.Host
	return px
}

func (px *proxied) try(t *target) {
	px.tried[px.ntried] = t.state
	px.ntried++
	px.last = t
}

// done ends the in-flight count of the backend that answered.
func (px *proxied) done() {
	if px.sent != nil {
		px.sent.state.done()
		px.sent = nil
	}
}

func (px *proxied) free() {
	*px = proxied{}
	proxiedPool.Put(px)
}

// retrier is the ReverseProxy's transport: it sends a request to the
// backend ServeHTTP picked and, when that fails in a way that is safe to
// repeat, to another backend of the same pool (nginx's proxy_next_upstream
// error, Envoy's retry on connect-failure and reset as models):
//
//   - any request whose connection could not be made: nothing was sent;
//   - a GET, HEAD or OPTIONS request whose connection was reset or closed
//     before a response arrived.
//
// A request body that may have been read is never sent again. A backend
// that fails either way is ejected (see backendState.eject).
type retrier struct {
	g    *Gateway
	next http.RoundTripper
}

func (rt *retrier) RoundTrip(req *http.Request) (*http.Response, error) {
	px := req.Context().Value(proxiedKey{}).(*proxied)
	var body *bodyGuard
	if req.Body != nil && req.Body != http.NoBody {
		body = &bodyGuard{rc: req.Body}
		req = req.WithContext(req.Context()) // a copy, to change Body
		req.Body = body
	}
	for {
		t := px.last
		t.state.start()
		resp, err := rt.next.RoundTrip(req)
		if err == nil {
			t.state.answered()
			px.sent = t
			return resp, nil
		}
		t.state.done()
		if req.Context().Err() != nil {
			return nil, err
		}
		retry, eject := classify(req.Method, t.host, err, body)
		if eject {
			rt.g.eject(req.Context(), px, t, req.Method, err)
		}
		if !retry || px.ntried >= min(maxAttempts, len(px.pool.targets)) {
			return nil, err
		}
		next, ok := px.pool.pick(rt.g.now().UnixNano(), px.tried[:px.ntried])
		if !ok {
			return nil, err
		}
		rt.g.log.LogAttrs(req.Context(), slog.LevelDebug, "retrying request on another backend",
			px.attrs(t, req.Method, slog.String("next", next.host), slog.Any("err", err))...)
		px.try(next)
		u := *req.URL
		u.Host = next.host
		req = req.WithContext(req.Context())
		req.URL = &u
	}
}

// eject ejects t after the failure err of a request and logs it.
func (g *Gateway) eject(ctx context.Context, px *proxied, t *target, method string, err error) {
	if d := t.state.eject(g.now()); d > 0 {
		t.state.conns.closeIdle() // they are to a replica that failed
		g.log.LogAttrs(ctx, slog.LevelInfo, "ejecting backend",
			px.attrs(t, method, slog.Duration("for", d), slog.Any("err", err))...)
	}
}

// attrs are the log attributes naming a request and its backend t.
func (px *proxied) attrs(t *target, method string, more ...slog.Attr) []slog.Attr {
	return append([]slog.Attr{
		slog.String("host", px.host),
		slog.String("env", px.entry.route.Env),
		slog.String("app", px.entry.route.App),
		slog.String("version", px.pool.version),
		slog.String("backend", t.host),
		slog.String("method", method),
	}, more...)
}

// classify tells whether a request to the backend at host that failed with
// err may be sent to another backend and whether the backend should be
// ejected.
func classify(method, host string, err error, body *bodyGuard) (retry, eject bool) {
	unread := body == nil || !body.read.Load()
	var op *net.OpError
	isOp := errors.As(err, &op)
	if isOp && op.Op == "dial" {
		// Nothing was sent: safe to repeat whatever the method.
		return unread, true
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, net.ErrClosed) &&
		!errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return false, false
	}
	// Reset or closed (net.ErrClosed: by the transport, on seeing the
	// reset while it wrote). Once the client's body was read, the error
	// may be the client's, unless it names the backend's connection.
	backend := unread || isOp && op.Addr != nil && op.Addr.String() == host
	idempotent := method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
	return idempotent && unread, backend
}

// bodyGuard is a request body that remembers being read and, until it is,
// ignores Close: the transport closes a body when its dial fails, and a
// retry must still be able to send it.
type bodyGuard struct {
	rc   io.ReadCloser
	read atomic.Bool
}

func (b *bodyGuard) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.rc.Read(p)
}

// Close closes the body once read; ReverseProxy closes the original body
// itself when the request ends.
func (b *bodyGuard) Close() error {
	if b.read.Load() {
		return b.rc.Close()
	}
	return nil
}
