package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestParseSimpleMatchesReadResponse: what parseSimple takes it reads as
// http.ReadResponse does, hop-by-hop and X-Runway-* headers aside, and what
// it leaves it leaves untouched.
func TestParseSimpleMatchesReadResponse(t *testing.T) {
	const body = "hello"
	tests := []struct {
		name   string
		head   string
		simple bool
	}{
		{"go backend", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Tue, 01 Dec 2026 13:00:00 GMT\r\n\r\n", true},
		{"no reason", "HTTP/1.1 200\r\nContent-Length: 5\r\n\r\n", true},
		{"server error", "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n\r\n", true},
		{"empty body", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true},
		{"lower-case keys", "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-app-id: 7\r\netag: \"x\"\r\n\r\n", true},
		{"repeated header", "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nContent-Length: 5\r\nSet-Cookie: b=2\r\n\r\n", true},
		{"spaces and empty value", "HTTP/1.1 200 OK\r\nContent-Length:5\r\nX-A:   padded \t\r\nX-Empty:\r\n\r\n", true},
		{"forged runway headers", "HTTP/1.1 200 OK\r\nX-Runway-Env: forged\r\nx-runway-version: forged\r\nContent-Length: 5\r\nX-Kept: yes\r\n\r\n", true},
		{"utf-8 value", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Name: caf\xc3\xa9\r\n\r\n", true},

		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"no length", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", false},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", false},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\n", false},
		{"connection names a header", "HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nContent-Length: 5\r\n\r\n", false},
		{"keep-alive", "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 5\r\n\r\n", false},
		{"trailer", "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nContent-Length: 5\r\n\r\n", false},
		{"upgrade header", "HTTP/1.1 200 OK\r\nupgrade: h2c\r\nContent-Length: 5\r\n\r\n", false},
		{"no content", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false},
		{"not modified", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", false},
		{"early hints", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", false},
		{"event stream", "HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream; charset=utf-8\r\nContent-Length: 5\r\n\r\n", false},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", false},
		{"signed length", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", false},
		{"folded line", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: a\r\n b\r\n\r\n", false},
		{"bare LF", "HTTP/1.1 200 OK\r\nContent-Length: 5\nX-A: a\r\n\r\n", false},
		{"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n", false},
		{"control in value", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: a\x01b\r\n\r\n", false},
		{"glued reason", "HTTP/1.1 200OK\r\nContent-Length: 5\r\n\r\n", false},
		{"leading LF", "\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false},
		{"too many headers", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n" + strings.Repeat("X-A: a\r\n", maxSimpleHeaders) + "\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := tt.head + body + "NEXT"
			br := bufio.NewReaderSize(strings.NewReader(raw), 8<<10)
			h := make(http.Header)
			sh, err := parseSimple(br, h)
			if err != nil {
				t.Fatal(err)
			}
			if (sh.code != 0) != tt.simple {
				t.Fatalf("parseSimple took it: %v, want %v", sh.code != 0, tt.simple)
			}
			rest, _ := io.ReadAll(br)
			if !tt.simple {
				if len(h) != 0 || string(rest) != raw {
					t.Errorf("left alone it changed: header %v, rest %q", h, rest)
				}
				return
			}
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), &http.Request{Method: http.MethodGet})
			if err != nil {
				t.Fatal(err)
			}
			removeHopByHop(resp.Header)
			stripRunwayHeaders(resp.Header, false)
			if sh.code != resp.StatusCode || sh.length != resp.ContentLength {
				t.Errorf("code, length = %d, %d; ReadResponse: %d, %d", sh.code, sh.length, resp.StatusCode, resp.ContentLength)
			}
			if !reflect.DeepEqual(h, resp.Header) {
				t.Errorf("header = %q\nReadResponse's: %q", h, resp.Header)
			}
			if want := raw[len(tt.head):]; string(rest) != want {
				t.Errorf("left %q, want %q", rest, want)
			}
		})
	}
}

// TestParseSimpleWaits: a head not all buffered yet is left to
// http.ReadResponse, and a connection closed before any byte reads as
// http.ReadResponse reports it.
func TestParseSimpleWaits(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	go func() {
		io.WriteString(c2, "HTTP/1.1 200 OK\r\nContent-")
		time.Sleep(10 * time.Millisecond)
		io.WriteString(c2, "Length: 2\r\n\r\nok")
		c2.Close()
	}()
	br := bufio.NewReader(c1)
	h := make(http.Header)
	if sh, err := parseSimple(br, h); err != nil || sh.code != 0 || len(h) != 0 {
		t.Fatalf("partial head: %v, %v, %v; want it left", sh, err, h)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.ContentLength != 2 {
		t.Fatalf("ReadResponse after it: %v, %v", resp, err)
	}
	if _, err := parseSimple(bufio.NewReader(strings.NewReader("")), h); err != io.ErrUnexpectedEOF {
		t.Errorf("closed before a byte: %v, want io.ErrUnexpectedEOF", err)
	}
}

// rawBackend answers every request on a connection with the response
// reply returns for it (by count, from 1), written as it is, and closes the
// connection after it when reply says so.
func rawBackend(t *testing.T, reply func(n int64) (string, bool)) (addr string, conns *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns = new(atomic.Int64)
	var requests atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					req.Body.Close()
					resp, end := reply(requests.Add(1))
					if _, err := io.WriteString(c, resp); err != nil || end {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), conns
}

// TestFastPathSimpleResponses: simple responses through a real server:
// X-Runway-* forgeries dropped, keys canonical, a body larger than the
// connection's buffer complete, the connection kept; a body cut short
// aborts the response and the connection is not reused.
func TestFastPathSimpleResponses(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 10<<10) // 160 KiB
	addr, conns := rawBackend(t, func(n int64) (string, bool) {
		b := "small"
		if n%2 == 0 {
			b = big
		}
		if n == 5 {
			return "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", true
		}
		return "HTTP/1.1 201 Created\r\nx-runway-env: forged\r\nX-Runway-Version: forged\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\n" +
			"Content-Length: " + itoa(len(b)) + "\r\n\r\n" + b, false
	})
	g := New(Options{})
	mustSetRoute(t, g, Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: addr}}})
	url := serveFront(t, g)
	client := &http.Client{Timeout: 10 * time.Second}
	for n := 1; n <= 4; n++ {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Host = "web.localhost"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := "small"
		if n%2 == 0 {
			want = big
		}
		if err != nil || string(b) != want {
			t.Fatalf("request %d: body of %d bytes, %v; want %d bytes", n, len(b), err, len(want))
		}
		h := resp.Header
		if resp.StatusCode != http.StatusCreated || h.Get(HeaderEnv) != "production" || h.Get(HeaderVersion) != "v1" ||
			!reflect.DeepEqual(h["Set-Cookie"], []string{"a=1", "b=2"}) {
			t.Errorf("request %d: %d %q", n, resp.StatusCode, h)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("backend saw %d connections for 4 sequential requests, want 1", n)
	}
	// A new connection, which the client does not retry on.
	once := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Host = "web.localhost"
	if resp, err := once.Do(req); err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("a body cut short reached the client whole")
		}
	}
	req, _ = http.NewRequest(http.MethodGet, url, nil)
	req.Host = "web.localhost"
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n := conns.Load(); n != 2 {
		t.Errorf("backend saw %d connections, want a second one after the cut body", n)
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
