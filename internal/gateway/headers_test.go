package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// forgingBackend is a replica that tries to set X-Runway-* headers every way
// HTTP/1.1 lets it: in a 103 Early Hints response, in the final headers,
// in declared trailers and in undeclared ones. It also sends headers and
// trailers the gateway must pass through, so the test can tell stripping
// from losing everything.
func forgingBackend(t *testing.T) Backend {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Link", "</style.css>; rel=preload; as=style")
		h.Set(HeaderVersion, "forged-in-103")
		h.Set("X-Runway-Admin", "forged-in-103")
		w.WriteHeader(http.StatusEarlyHints)
		clear(h)

		h.Set("Trailer", "X-Runway-Version, X-Checksum, X-Runway-Env")
		h.Set(HeaderEnv, "forged-env")
		h.Set("X-Runway-Other", "forged-header")
		h.Set("X-App", "kept")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "body")
		h.Set(HeaderVersion, "forged-trailer")
		h.Set(HeaderEnv, "forged-trailer")
		h.Set("X-Checksum", "abc123")
		h.Set(http.TrailerPrefix+"X-Runway-Late", "forged-undeclared")
		h.Set(http.TrailerPrefix+"X-Late", "kept-undeclared")
	}))
	t.Cleanup(srv.Close)
	return Backend{Addr: srv.Listener.Addr().String()}
}

func TestStripsBackendRunwayHeaders(t *testing.T) {
	g := New(Options{})
	mustSetRoute(t, g, Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{forgingBackend(t)}})
	front := httptest.NewServer(g)
	t.Cleanup(front.Close)

	var mu sync.Mutex
	var informational []int
	var hints []textproto.MIMEHeader
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		mu.Lock()
		defer mu.Unlock()
		informational = append(informational, code)
		c := make(textproto.MIMEHeader, len(h))
		for k, v := range h {
			c[k] = append([]string(nil), v...)
		}
		hints = append(hints, c)
		return nil
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodGet, front.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "web.localhost"
	resp, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body) // trailers arrive after the body
	resp.Body.Close()
	if err != nil || string(body) != "body" {
		t.Fatalf("body = %q (%v)", body, err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(informational) != 1 || informational[0] != http.StatusEarlyHints {
		t.Fatalf("1xx responses = %v, want one 103 forwarded", informational)
	}
	if hints[0].Get("Link") == "" {
		t.Errorf("103 lost its Link header: %v", hints[0])
	}
	for k := range hints[0] {
		if hasRunwayPrefix(k) {
			t.Errorf("103 carries %s: %v", k, hints[0][k])
		}
	}

	if resp.Header.Get(HeaderEnv) != "production" || resp.Header.Get(HeaderVersion) != "v1" {
		t.Errorf("final headers %s=%q %s=%q, want production and v1 set by the gateway",
			HeaderEnv, resp.Header.Get(HeaderEnv), HeaderVersion, resp.Header.Get(HeaderVersion))
	}
	if v := resp.Header.Values(HeaderEnv); len(v) != 1 {
		t.Errorf("%s has values %q, want only the gateway's", HeaderEnv, v)
	}
	if v := resp.Header.Get("X-Runway-Other"); v != "" {
		t.Errorf("backend's X-Runway-Other reached the client: %q", v)
	}
	if resp.Header.Get("X-App") != "kept" {
		t.Errorf("backend's own header X-App lost: %v", resp.Header)
	}
	if resp.Trailer.Get("X-Checksum") != "abc123" || resp.Trailer.Get("X-Late") != "kept-undeclared" {
		t.Errorf("trailers = %v, want X-Checksum and X-Late passed through", resp.Trailer)
	}
	for k, v := range resp.Trailer {
		if hasRunwayPrefix(k) {
			t.Errorf("trailer %s = %q reached the client", k, v)
		}
	}
}

// TestStripsRunwayHeadersOnUpgrade: a backend's 101 Switching Protocols
// cannot set X-Runway-* either, and carries the gateway's own.
func TestStripsRunwayHeadersOnUpgrade(t *testing.T) {
	backend := upgradingBackend(t, HeaderVersion+": forged\r\nX-Runway-Other: forged\r\n", false)
	g := New(Options{})
	mustSetRoute(t, g, Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: backend.Listener.Addr().String()}}})
	front := httptest.NewServer(g)
	t.Cleanup(front.Close)

	conn, err := net.Dial("tcp", front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: web.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status = %d, want 101", resp.StatusCode)
	}
	if got := resp.Header.Values(HeaderVersion); len(got) != 1 || got[0] != "v1" {
		t.Errorf("%s = %q, want only the gateway's v1", HeaderVersion, got)
	}
	for k := range resp.Header {
		if hasRunwayPrefix(k) && k != HeaderVersion && k != HeaderEnv {
			t.Errorf("101 carries backend header %s", k)
		}
	}
}

func TestStripRunwayHeaders(t *testing.T) {
	h := http.Header{
		"X-Runway-Version":              {"a"},
		"X-Runway-":                     {"b"},
		"X-Runwayish":                   {"kept"},
		"Trailer:X-Runway-Env":          {"c"},
		"Trailer:X-Ok":                  {"kept"},
		"Trailer":                       {"X-Runway-Version, X-Ok", "x-runway-env"},
		"Content-Type":                  {"text/plain"},
		strings.ToLower("X-Runway-Raw"): {"d"}, // a key set without canonicalization
	}
	stripRunwayHeaders(h, true)
	want := http.Header{"X-Runwayish": {"kept"}, "Trailer:X-Ok": {"kept"}, "Trailer": {"X-Ok"}, "Content-Type": {"text/plain"}}
	if len(h) != len(want) {
		t.Fatalf("after stripping: %v, want %v", h, want)
	}
	for k, v := range want {
		if strings.Join(h[k], ",") != strings.Join(v, ",") {
			t.Errorf("%s = %q, want %q", k, h[k], v)
		}
	}
}

// TestUpgradeOutlivesServerTimeouts: a WebSocket-style upgraded connection
// keeps working after the traffic server's read and write timeouts, which
// bound ordinary requests, have passed (net/http clears a hijacked
// connection's deadlines; this guards that the gateway's timeouts do not
// cut upgraded connections).
func TestUpgradeOutlivesServerTimeouts(t *testing.T) {
	backend := upgradingBackend(t, "", true)
	g := New(Options{})
	mustSetRoute(t, g, Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: backend.Listener.Addr().String()}}})
	front := httptest.NewUnstartedServer(g)
	front.Config.ReadTimeout, front.Config.WriteTimeout = 100*time.Millisecond, 100*time.Millisecond
	front.Start()
	t.Cleanup(front.Close)

	conn, err := net.Dial("tcp", front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: web.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	time.Sleep(300 * time.Millisecond) // past both server timeouts
	if _, err := io.WriteString(conn, "ping\n"); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // hang guard
	line, err := br.ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("echo through the upgraded connection after the server timeouts = %q, %v; want ping", line, err)
	}
}

// upgradingBackend answers every request with 101 Switching Protocols and
// the extra header lines given, then echoes what the client sends when
// echo is set.
func upgradingBackend(t *testing.T, extra string, echo bool) *httptest.Server {
	t.Helper()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n" + extra + "\r\n")
		brw.Flush()
		if echo {
			io.Copy(conn, brw) // until the client closes
		}
	}))
	t.Cleanup(backend.Close)
	return backend
}
