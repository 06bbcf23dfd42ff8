package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawExchange sends request, raw HTTP/1.1, to addr and returns the
// response with its body read.
func rawExchange(t *testing.T, addr, request string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second)) // hang guard
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	method := strings.Fields(request)[0]
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TestFastPathMatchesReverseProxy sends the same requests through the fast
// path and through ReverseProxy, and wants the backend to see the same
// request and the client the same response.
func TestFastPathMatchesReverseProxy(t *testing.T) {
	seen := make(chan string, 1)
	backend := startHandler(t, func(w http.ResponseWriter, r *http.Request) {
		var lines []string
		for k, vv := range r.Header {
			lines = append(lines, k+": "+strings.Join(vv, " | "))
		}
		sort.Strings(lines)
		seen <- r.Method + " " + r.RequestURI + " " + r.Proto + " host=" + r.Host + "\n" + strings.Join(lines, "\n")
		h := w.Header()
		h.Set("Connection", "X-Hop")
		h.Set("X-Hop", "removed")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("X-Kept", "yes")
		h.Add("Set-Cookie", "a=1")
		h.Add("Set-Cookie", "b=2")
		io.WriteString(w, "body")
	})
	requests := []struct {
		name, raw string
	}{
		{name: "plain", raw: "GET /p/a%20b?x=1&y=%2F HTTP/1.1\r\nHost: web.localhost\r\n\r\n"},
		{name: "head", raw: "HEAD / HTTP/1.1\r\nHost: web.localhost\r\nUser-Agent: probe\r\n\r\n"},
		{name: "forwarding and hop headers", raw: "GET /x HTTP/1.1\r\nHost: web.localhost\r\nX-Forwarded-For: 10.0.0.9\r\n" +
			"X-Forwarded-Host: evil\r\nForwarded: for=1.2.3.4\r\nProxy-Authorization: Basic eA==\r\nKeep-Alive: 5\r\n" +
			"Connection: keep-alive\r\nTe: trailers, deflate\r\nAccept: a\r\nAccept: b\r\n\r\n"},
		{name: "http/1.0", raw: "GET / HTTP/1.0\r\nHost: web.localhost\r\n\r\n"},
		{name: "empty query", raw: "GET /?#frag HTTP/1.1\r\nHost: web.localhost\r\n\r\n"},
	}
	type result struct {
		backendSaw string
		status     int
		header     http.Header
		body       string
	}
	run := func(t *testing.T, fast bool, raw string) result {
		g := New(Options{})
		g.fast = fast
		mustSetRoute(t, g, Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: backend}}})
		front := httptest.NewServer(g)
		t.Cleanup(front.Close)
		resp, body := rawExchange(t, front.Listener.Addr().String(), raw)
		resp.Header.Del("Date")
		return result{backendSaw: <-seen, status: resp.StatusCode, header: resp.Header, body: body}
	}
	for _, tt := range requests {
		t.Run(tt.name, func(t *testing.T) {
			slow := run(t, false, tt.raw)
			fast := run(t, true, tt.raw)
			if !reflect.DeepEqual(fast, slow) {
				t.Errorf("fast path differs from ReverseProxy:\nfast: %+v\nslow: %+v", fast, slow)
			}
			if fast.header.Get("X-Hop") != "" || fast.header.Get("X-Kept") != "yes" {
				t.Errorf("response headers = %v, want X-Hop removed and X-Kept kept", fast.header)
			}
		})
	}
}

// TestFastPathEligible: requests the fast path leaves to ReverseProxy.
func TestFastPathEligible(t *testing.T) {
	tests := []struct {
		name  string
		raw   string
		wantF bool
	}{
		{name: "get", raw: "GET / HTTP/1.1\r\nHost: h\r\n\r\n", wantF: true},
		{name: "head", raw: "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", wantF: true},
		{name: "post", raw: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx"},
		{name: "get with body", raw: "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx"},
		{name: "chunked get", raw: "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{name: "upgrade", raw: "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"},
		{name: "connection names a header", raw: "GET / HTTP/1.1\r\nHost: h\r\nConnection: X-Secret\r\n\r\n"},
		{name: "expect", raw: "GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n"},
		{name: "semicolon query", raw: "GET /?a=1;b=2 HTTP/1.1\r\nHost: h\r\n\r\n"},
		{name: "bad escape in query", raw: "GET /?a=%zz HTTP/1.1\r\nHost: h\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(tt.raw)))
			if err != nil {
				t.Fatal(err)
			}
			if got := fastEligible(r); got != tt.wantF {
				t.Errorf("fastEligible = %v, want %v", got, tt.wantF)
			}
		})
	}
}

// TestFastPathConnections: one keep-alive connection serves sequential
// requests, and one the backend closed meanwhile is replaced unseen.
func TestFastPathConnections(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	g := New(Options{})
	mustSetRoute(t, g, Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: srv.Listener.Addr().String()}}})
	url := serveFront(t, g)
	for range 5 {
		if code, body := send(t, url, http.MethodGet, ""); code != 200 || body != "ok" {
			t.Fatalf("%d %q", code, body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("backend saw %d connections for 5 sequential requests, want 1", n)
	}
	srv.CloseClientConnections()
	for range 3 {
		if code, body := send(t, url, http.MethodGet, ""); code != 200 || body != "ok" {
			t.Fatalf("after the backend closed its connections: %d %q", code, body)
		}
	}
	if n := g.states[srv.Listener.Addr().String()].consecutive.Load(); n != 0 {
		t.Errorf("a closed keep-alive connection ejected the backend (%d)", n)
	}
}

// TestFastPathClientGone: a client that goes away while the backend thinks
// is counted as 499, and the backend's connection is not reused.
func TestFastPathClientGone(t *testing.T) {
	arrived := make(chan struct{})
	gone := make(chan struct{})
	backend := startHandler(t, func(_ http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done() // the gateway closed the connection
		close(gone)
	})
	g := New(Options{})
	mustSetRoute(t, g, Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: backend}}})
	front := httptest.NewServer(g)
	t.Cleanup(front.Close)
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, front.URL+"/", nil)
	req.Host = "web.localhost"
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-arrived
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("client error = %v, want canceled", err)
	}
	<-gone
	front.Close() // waits for the handler, and so for the count
	if text := scrape(t, g); !strings.Contains(text, `code="499"`) {
		t.Errorf("metrics lack the 499 of a client that went away:\n%s", text)
	}
	if err := g.Drain(t.Context(), backend); err != nil {
		t.Errorf("Drain after the request = %v", err)
	}
}

// TestFastPathStreams: a response of unknown length reaches the client as
// the backend flushes it, not when it ends.
func TestFastPathStreams(t *testing.T) {
	next := make(chan struct{})
	backend := startHandler(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		http.NewResponseController(w).Flush()
		<-next // until the client has the first event
		io.WriteString(w, "data: two\n\n")
	})
	g := New(Options{})
	mustSetRoute(t, g, Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: backend}}})
	front := httptest.NewServer(g)
	t.Cleanup(front.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // hang guard
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, front.URL+"/", nil)
	req.Host = "web.localhost"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		close(next)
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	close(next)
	if err != nil || line != "data: one\n" {
		t.Fatalf("first event = %q, %v; want it before the response ends", line, err)
	}
	rest, _ := io.ReadAll(br)
	if string(rest) != "\ndata: two\n\n" {
		t.Errorf("rest = %q", rest)
	}
}
