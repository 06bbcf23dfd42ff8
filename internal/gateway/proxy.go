package gateway

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
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

// targetKey is the request context key of the backend chosen for a request.
type targetKey struct{}

// ServeHTTP proxies r to a replica of the app its Host names: 404 when no
// route matches, 503 when the chosen version has no replicas, 502 when the
// replica cannot be reached.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	env, app, ok := g.parseHost(r.Host)
	if !ok {
		http.Error(w, "runway: no route for host "+quoteHost(r.Host), http.StatusNotFound)
		return
	}
	e, ok := (*g.routes.Load())[routeKey{env, app}]
	if !ok {
		http.Error(w, "runway: no route for host "+quoteHost(r.Host), http.StatusNotFound)
		return
	}
	p := e.choose()
	sw := &statusWriter{ResponseWriter: w, env: env, version: p.version}
	target, ok := p.pick()
	if !ok {
		http.Error(sw, "runway: no backend for "+app+" in "+env, http.StatusServiceUnavailable)
		g.record(p, http.StatusServiceUnavailable, start)
		return
	}
	g.proxy.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), targetKey{}, target)))
	// Trailers are sent from the header map once the handler returns:
	// drop any the backend named X-Runway-*, declared or not.
	stripRunwayHeaders(w.Header(), true)
	g.record(p, sw.status(), start)
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
// ignores proxy environment variables: backends are reached directly.
func newTransport() *http.Transport {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
	}
}

func newProxy(log *slog.Logger) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(pr.In.Context().Value(targetKey{}).(*url.URL))
			// X-Forwarded-Host keeps the Host the client asked for; the
			// backend itself sees its own address as Host.
			pr.SetXForwarded()
		},
		Transport: newTransport(),
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
			log.LogAttrs(r.Context(), slog.LevelWarn, "proxying request",
				slog.String("host", r.Host),
				slog.String("backend", r.Context().Value(targetKey{}).(*url.URL).Host),
				slog.Any("err", err))
			http.Error(w, "runway: backend unavailable", http.StatusBadGateway)
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// statusWriter remembers the status code of a response and owns its
// X-Runway-* headers: it removes whatever a backend set under that prefix
// from every response it writes, 1xx included, and sets the gateway's own on
// the final one. Unwrap lets http.ResponseController reach the underlying
// writer for flushing and protocol upgrades.
type statusWriter struct {
	http.ResponseWriter
	env, version string
	code         int
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
	stripRunwayHeaders(h, false)
	h.Set(HeaderEnv, w.env)
	if w.version != "" {
		h.Set(HeaderVersion, w.version)
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
