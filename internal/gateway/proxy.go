package gateway

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Response headers the gateway sets on every routed response, naming the
// environment and version that answered. Backends cannot set them, nor any
// other header starting with HeaderPrefix: the gateway removes those from
// backend responses, their trailers and their 1xx (e.g. 103 Early Hints)
// responses.
const (
	HeaderVersion = "X-Runway-Version"
	HeaderEnv     = "X-Runway-Env"
	HeaderPrefix  = "X-Runway-"
)

// statusClientClosed is recorded, as nginx does, for requests whose client
// went away before the backend answered: neither the backend's fault nor a
// response anyone saw, so it must not count as a server error.
const statusClientClosed = 499

// proxiedKey is the request context key of a request's *proxied.
type proxiedKey struct{}

// ServeHTTP proxies r to a replica of the app its Host names: 404 when no
// route matches, 503 when the chosen version has no replicas, 502 when no
// replica could be reached (see retrier for which failures are retried on
// another replica first).
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := g.now()
	env, app, ok := g.parseHost(r.Host)
	if !ok {
		http.Error(w, "runway: no route for host "+quoteHost(r.Host), http.StatusNotFound)
		return
	}
	g.serve(w, r, env, app, start)
}

// serve proxies r, which arrived at start, to the route of app in env.
func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, env, app string, start time.Time) {
	e, ok := (*g.routes.Load())[routeKey{env, app}]
	if !ok {
		http.Error(w, "runway: no route for host "+quoteHost(r.Host), http.StatusNotFound)
		return
	}
	p := e.choose()
	px := newProxied(w, r, e, p)
	defer px.free()
	t, ok := p.pick(start.UnixNano(), nil)
	if !ok {
		http.Error(&px.sw, "runway: no backend for "+app+" in "+env, http.StatusServiceUnavailable)
		g.record(p, http.StatusServiceUnavailable, start)
		return
	}
	px.try(t)
	defer px.done() // also when a response is aborted with a panic
	if g.fast && fastEligible(r) {
		g.fastProxy(px, r)
	} else {
		g.proxy.ServeHTTP(&px.sw, r.WithContext(context.WithValue(r.Context(), proxiedKey{}, px)))
	}
	// Trailers are sent from the header map once the handler returns:
	// drop any the backend named X-Runway-*, declared or not.
	if !px.sw.clean {
		stripRunwayHeaders(w.Header(), true)
	}
	g.record(p, px.sw.status(), start)
}

// stripRunwayHeaders deletes every X-Runway-* header from h and, with
// trailers, every "Trailer:X-Runway-*" key (the way a handler sets a trailer
// it did not declare) and X-Runway-* names in the Trailer header.
func stripRunwayHeaders(h http.Header, trailers bool) {
	for k := range h {
		name := k
		if trailers {
			name = strings.TrimPrefix(k, http.TrailerPrefix)
		}
		if hasRunwayPrefix(name) {
			delete(h, k)
		}
	}
	if vs, ok := h["Trailer"]; ok {
		var keep []string
		for _, v := range vs {
			for _, name := range strings.Split(v, ",") {
				if name = strings.TrimSpace(name); name != "" && !hasRunwayPrefix(name) {
					keep = append(keep, name)
				}
			}
		}
		if len(keep) == 0 {
			delete(h, "Trailer")
		} else {
			h["Trailer"] = []string{strings.Join(keep, ", ")}
		}
	}
}

func hasRunwayPrefix(name string) bool {
	return len(name) >= len(HeaderPrefix) && strings.EqualFold(name[:len(HeaderPrefix)], HeaderPrefix)
}

func (g *Gateway) record(p *pool, code int, start time.Time) {
	s := p.stats
	if s == nil {
		s = g.metrics.stats(p.key)
	}
	s.record(code, time.Since(start))
}

// quoteHost quotes a client-supplied host for an error body, cut short so a
// hostile header cannot fill the response.
func quoteHost(host string) string {
	const max = 255
	if len(host) > max {
		host = host[:max] + "..."
	}
	return strconv.Quote(host)
}

// newTransport returns the transport shared by all proxied requests. It
// ignores proxy environment variables: backends are reached directly. It
// keeps many idle connections per backend, so that a busy gateway reuses
// them instead of dialing (nginx's upstream keepalive), speaks HTTP/1.1
// only, and leaves compression to the client and the backend: asking for
// gzip itself would make it decompress what it forwards.
func newTransport() *http.Transport {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     false,
		DisableCompression:    true,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		WriteBufferSize:       8 << 10,
		ReadBufferSize:        8 << 10,
	}
}

func (g *Gateway) newProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			px := pr.In.Context().Value(proxiedKey{}).(*proxied)
			// What pr.SetURL does for a target with no path or query.
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = px.last.host
			pr.Out.Host = ""
			// X-Forwarded-Host keeps the Host the client asked for; the
			// backend itself sees its own address as Host.
			pr.SetXForwarded()
		},
		Transport:  &retrier{g: g, next: newTransport()},
		BufferPool: g.buffers,
		// The first line of defence; statusWriter is the second, and the
		// one that also covers 1xx responses, which ReverseProxy forwards
		// from its own ClientTrace.Got1xxResponse hook straight to the
		// ResponseWriter, before ModifyResponse ever runs.
		ModifyResponse: func(resp *http.Response) error {
			stripRunwayHeaders(resp.Header, false)
			stripRunwayHeaders(resp.Trailer, false)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
				w.WriteHeader(statusClientClosed)
				return
			}
			px := r.Context().Value(proxiedKey{}).(*proxied)
			g.log.LogAttrs(r.Context(), slog.LevelWarn, "proxying request",
				px.attrs(px.last, r.Method, slog.Int("attempts", px.ntried), slog.Any("err", err))...)
			http.Error(w, "runway: backend unavailable", http.StatusBadGateway)
		},
		ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
}

// bufferPool holds ReverseProxy's buffers for copying response bodies: one
// per response in flight instead of a new 32 KiB one per response.
type bufferPool struct{ p sync.Pool }

const copyBufferSize = 32 << 10

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[copyBufferSize]byte); ok {
		return v[:]
	}
	return make([]byte, copyBufferSize)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) < copyBufferSize {
		return
	}
	b.p.Put((*[copyBufferSize]byte)(buf[:copyBufferSize]))
}

// statusWriter remembers the status code of a response and owns its
// X-Runway-* headers: it removes whatever a backend set under that prefix
// from every response it writes, 1xx included, and sets the gateway's own on
// the final one. Unwrap lets http.ResponseController reach the underlying
// writer for flushing and protocol upgrades.
type statusWriter struct {
	http.ResponseWriter
	pool *pool // its header values
	code int
	// clean says the header map holds no X-Runway-* header and will have
	// no trailers: the fast path's simple responses (see parseSimple),
	// whose headers are filtered as they are parsed.
	clean bool
}

func (w *statusWriter) WriteHeader(code int) {
	if code < 200 {
		// ReverseProxy copies a backend's 1xx headers into the header map,
		// writes them and clears the map again.
		stripRunwayHeaders(w.Header(), false)
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if w.code == 0 {
		w.code = code
		w.setHeaders()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
		w.setHeaders()
	}
	return w.ResponseWriter.Write(b)
}

// setHeaders makes the gateway's headers the only X-Runway-* ones of the
// final response.
func (w *statusWriter) setHeaders() {
	h := w.Header()
	if !w.clean {
		stripRunwayHeaders(h, false)
	}
	// The pool's values, shared by every response: the server only reads
	// them, and their capacity makes an append copy.
	h[HeaderEnv] = w.pool.envHeader
	if w.pool.version != "" {
		h[HeaderVersion] = w.pool.versionHeader
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack is how ReverseProxy takes over the connection of a protocol
// upgrade, without calling WriteHeader; it counts as a 101.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	// ReverseProxy writes the header map as the 101 response after this.
	w.setHeaders()
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.code == 0 {
		w.code = http.StatusSwitchingProtocols
	}
	return conn, brw, err
}

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
