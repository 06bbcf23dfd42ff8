package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// startHandler serves h on loopback and returns its address.
func startHandler(t testing.TB, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// echoBackend answers with the request's method and body.
func echoBackend(t testing.TB) string {
	return startHandler(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+string(b))
	})
}

// resettingBackend accepts connections, reads a request's first bytes and
// resets the connection without answering; it counts the connections.
func resettingBackend(t testing.TB) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepts atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			buf := make([]byte, 4096)
			c.Read(buf)
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	})
	return ln.Addr().String(), &accepts
}

// send sends method with body through g's front with Host web.localhost.
func send(t testing.TB, url, method, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "web.localhost"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func serveFront(t testing.TB, g *Gateway) string {
	t.Helper()
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestRetry(t *testing.T) {
	type down struct {
		addr    string
		accepts *atomic.Int64 // nil: connections refused
	}
	refused := func(t *testing.T) down { return down{addr: closedAddr(t)} }
	reset := func(t *testing.T) down {
		a, n := resettingBackend(t)
		return down{a, n}
	}
	tests := []struct {
		name       string
		down       func(*testing.T) down
		method     string
		body       string
		wantStatus int
		wantBody   string
	}{
		{name: "refused GET retried", down: refused, method: http.MethodGet, wantStatus: 200, wantBody: "GET "},
		{name: "refused POST retried with its body", down: refused, method: http.MethodPost, body: "payload",
			wantStatus: 200, wantBody: "POST payload"},
		{name: "reset GET retried", down: reset, method: http.MethodGet, wantStatus: 200, wantBody: "GET "},
		{name: "reset HEAD retried", down: reset, method: http.MethodHead, wantStatus: 200},
		{name: "reset POST not retried", down: reset, method: http.MethodPost, body: "payload", wantStatus: 502,
			wantBody: "backend unavailable"},
		{name: "reset bodiless DELETE not retried", down: reset, method: http.MethodDelete, wantStatus: 502,
			wantBody: "backend unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := echoBackend(t) // first: a closed port is free to be reused
			d := tt.down(t)
			g := New(Options{})
			clock := newFakeClock()
			g.now = clock.Now
			// Round robin starts with the down backend.
			mustSetRoute(t, g, Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: d.addr}, {Addr: up}}})
			url := serveFront(t, g)
			code, body := send(t, url, tt.method, tt.body)
			if code != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
				t.Fatalf("first request: %d %q, want %d %q", code, body, tt.wantStatus, tt.wantBody)
			}
			// The down backend is ejected: the clock stands still, so every
			// further request goes to the other one.
			for range 4 {
				if code, body := send(t, url, http.MethodGet, ""); code != 200 || body != "GET " {
					t.Fatalf("request after the ejection: %d %q", code, body)
				}
			}
			if d.accepts != nil && d.accepts.Load() != 1 {
				t.Errorf("down backend got %d connections, want 1 (ejected after the first)", d.accepts.Load())
			}
			if n := g.states[d.addr].consecutive.Load(); n != 1 {
				t.Errorf("down backend ejected %d times, want 1", n)
			}
			clock.Advance(ejectBase)
			if code, _ := send(t, url, http.MethodGet, ""); code != 200 {
				t.Errorf("request once the ejection ended: %d", code)
			}
		})
	}
}

// TestRetryBounded: a request goes to at most four backends, and never to
// one twice.
func TestRetryBounded(t *testing.T) {
	for _, n := range []int{1, 2, 6} {
		t.Run(strings.Repeat("x", n), func(t *testing.T) {
			var bs []Backend
			var counts []*atomic.Int64
			for range n {
				a, c := resettingBackend(t)
				bs = append(bs, Backend{Addr: a})
				counts = append(counts, c)
			}
			g := New(Options{})
			mustSetRoute(t, g, Route{Env: "production", App: "web", StableVersion: "v1", Stable: bs})
			if code, _ := send(t, serveFront(t, g), http.MethodGet, ""); code != http.StatusBadGateway {
				t.Errorf("status %d, want 502", code)
			}
			var total int64
			for i, c := range counts {
				if c.Load() > 1 {
					t.Errorf("backend %d got %d connections, want at most 1", i, c.Load())
				}
				total += c.Load()
			}
			if want := int64(min(n, maxAttempts)); total != want {
				t.Errorf("backends got %d connections in all, want %d", total, want)
			}
		})
	}
}

// records is a slog.Handler that keeps what it is given.
type records struct {
	mu  sync.Mutex
	all []slog.Record
}

func (h *records) Enabled(context.Context, slog.Level) bool { return true }
func (h *records) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.all = append(h.all, r.Clone())
	return nil
}
func (h *records) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *records) WithGroup(string) slog.Handler      { return h }

func (h *records) find(msg string) (slog.Record, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.all {
		if r.Message == msg {
			return r, true
		}
	}
	return slog.Record{}, false
}

func attrs(r slog.Record) map[string]string {
	m := map[string]string{}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	return m
}

func TestProxyLogs(t *testing.T) {
	t.Run("retried dial failure is debug", func(t *testing.T) {
		logs := &records{}
		g := New(Options{Logger: slog.New(logs)})
		up := echoBackend(t)
		down := closedAddr(t)
		mustSetRoute(t, g, Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: down}, {Addr: up}}})
		if code, _ := send(t, serveFront(t, g), http.MethodGet, ""); code != 200 {
			t.Fatalf("status %d", code)
		}
		for _, r := range logs.all {
			if r.Level >= slog.LevelWarn {
				t.Errorf("logged %v %q for a request that was retried successfully", r.Level, r.Message)
			}
		}
		r, ok := logs.find("retrying request on another backend")
		if !ok || r.Level != slog.LevelDebug {
			t.Fatalf("retry not logged at debug: %+v", logs.all)
		}
		if a := attrs(r); a["backend"] != down || a["next"] != up || a["host"] != "web.localhost" {
			t.Errorf("retry log attributes = %v", a)
		}
	})
	t.Run("failure names host and route", func(t *testing.T) {
		logs := &records{}
		g := New(Options{Logger: slog.New(logs)})
		down := closedAddr(t)
		mustSetRoute(t, g, Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: down}}})
		if code, _ := send(t, serveFront(t, g), http.MethodGet, ""); code != http.StatusBadGateway {
			t.Fatalf("status %d", code)
		}
		r, ok := logs.find("proxying request")
		if !ok {
			t.Fatalf("proxy error not logged: %+v", logs.all)
		}
		want := map[string]string{"host": "web.localhost", "env": "production", "app": "web", "version": "v1", "backend": down}
		got := attrs(r)
		for k, v := range want {
			if got[k] != v {
				t.Errorf("proxy error log %s = %q, want %q", k, got[k], v)
			}
		}
	})
}
