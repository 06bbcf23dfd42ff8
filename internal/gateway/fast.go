package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The fast path proxies the common request, a GET or HEAD without a body,
// without httputil.ReverseProxy and http.Transport: the request is written
// to a pooled keep-alive connection and the response read from it by the
// handler's own goroutine, where the transport hands every request to a
// writer goroutine and every response back from a reader goroutine. It
// does what ReverseProxy with the gateway's Rewrite does for such a request
// (hop-by-hop headers, X-Forwarded-*, 1xx responses, trailers, flushing of
// streamed responses, the retry and ejection rules of retrier). Anything
// else (bodies, upgrades, Expect, unusual Connection headers or queries)
// goes through ReverseProxy. The usual response to a GET, headers in one
// read and a Content-Length, is parsed by parseSimple straight into the
// client's header map, and its body copied from the connection's buffer;
// any other is read by http.ReadResponse.

// Bounds of the fast path's backend connections, as newTransport's.
const (
	fastDialTimeout    = 5 * time.Second
	fastHeaderTimeout  = 60 * time.Second
	fastIdleTimeout    = 90 * time.Second
	fastMaxIdlePerHost = 256
	max1xxResponses    = 5 // as http.Transport
)

// aLongTimeAgo is a deadline that makes blocked reads and writes return.
var aLongTimeAgo = time.Unix(1, 0)

// bconn is a connection to a backend.
type bconn struct {
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	usedAt time.Time // when the latest request on it started
	// rdl is the read deadline set on c, zero for none. A request's
	// header deadline is only moved forward once it is fastDeadlineSlack
	// short of fastHeaderTimeout, sparing two timer changes a request.
	rdl   time.Time
	abort func() // makes blocked I/O on c return; made once per connection
}

// fastDeadlineSlack is how much shorter than fastHeaderTimeout a kept
// connection's header deadline may be.
const fastDeadlineSlack = 5 * time.Second

// clearReadDeadline lifts bc's read deadline, before a body of unknown
// duration is read for the request of ctx; the abort of a request that
// ended meanwhile holds.
func (bc *bconn) clearReadDeadline(ctx context.Context) {
	if !bc.rdl.IsZero() {
		bc.c.SetReadDeadline(time.Time{})
		bc.rdl = time.Time{}
		if ctx.Err() != nil {
			bc.abort()
		}
	}
}

// conns are a backend's idle connections, most recently used last.
type conns struct {
	mu        sync.Mutex
	idle      []*bconn
	forgotten atomic.Bool // the state left the gateway: keep nothing
}

func (cs *conns) get(now time.Time) *bconn {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for len(cs.idle) > 0 {
		bc := cs.idle[len(cs.idle)-1]
		cs.idle = cs.idle[:len(cs.idle)-1]
		if now.Sub(bc.idleAt) < fastIdleTimeout {
			return bc
		}
		bc.c.Close()
	}
	return nil
}

func (cs *conns) put(bc *bconn, now time.Time) {
	if cs.forgotten.Load() {
		bc.c.Close()
		return
	}
	bc.idleAt = now
	cs.mu.Lock()
	// Drop what idled too long, oldest first, so an unused pool shrinks.
	n := 0
	for n < len(cs.idle) && now.Sub(cs.idle[n].idleAt) >= fastIdleTimeout {
		cs.idle[n].c.Close()
		n++
	}
	if n > 0 {
		cs.idle = append(cs.idle[:0], cs.idle[n:]...)
	}
	if len(cs.idle) >= fastMaxIdlePerHost {
		cs.mu.Unlock()
		bc.c.Close()
		return
	}
	cs.idle = append(cs.idle, bc)
	cs.mu.Unlock()
}

// closeIdle closes every idle connection.
func (cs *conns) closeIdle() {
	cs.mu.Lock()
	idle := cs.idle
	cs.idle = nil
	cs.mu.Unlock()
	for _, bc := range idle {
		bc.c.Close()
	}
}

// fastEligible tells whether r can take the fast path.
func fastEligible(r *http.Request) bool {
	if r.ProtoMajor != 1 || (r.Method != http.MethodGet && r.Method != http.MethodHead) ||
		r.ContentLength != 0 || len(r.TransferEncoding) > 0 || r.URL.Opaque != "" || !cleanQuery(r.URL.RawQuery) {
		return false
	}
	h := r.Header
	if _, ok := h["Upgrade"]; ok {
		return false
	}
	if _, ok := h["Expect"]; ok {
		return false
	}
	if _, ok := h["Trailer"]; ok {
		return false
	}
	if _, ok := h["Transfer-Encoding"]; ok {
		return false
	}
	// Connection may name headers to remove; only the usual tokens are
	// handled here.
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			tok = strings.TrimSpace(tok)
			if tok != "" && !strings.EqualFold(tok, "keep-alive") && !strings.EqualFold(tok, "close") {
				return false
			}
		}
	}
	return true
}

// cleanQuery reports whether ReverseProxy would send q as it is (see its
// cleanQueryParams): no ';', no malformed escape, not too many parameters.
func cleanQuery(q string) bool {
	if q == "" {
		return true
	}
	if strings.Count(q, "&") >= 10000 {
		return false
	}
	for i := 0; i < len(q); {
		switch q[i] {
		case ';':
			return false
		case '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return false
			}
			i += 3
		default:
			i++
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// requestHopHeaders are not forwarded (ReverseProxy's hop-by-hop headers,
// and the forwarding headers the gateway sets itself).
func skipRequestHeader(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
		return true
	}
	return false
}

// fastProxy proxies r, which fastEligible accepted, to px.last and on.
func (g *Gateway) fastProxy(px *proxied, r *http.Request) {
	ctx := r.Context()
	for {
		t := px.last
		resp, sh, bc, err := g.fastRoundTrip(ctx, px, t, r)
		if err == nil {
			if resp == nil {
				g.fastCopySimple(px, r, t, sh, bc)
			} else {
				g.fastCopy(px, r, t, resp, bc)
			}
			return
		}
		if ctx.Err() != nil {
			px.sw.WriteHeader(statusClientClosed)
			return
		}
		retry, eject := classify(r.Method, t.host, err, nil)
		if eject {
			g.eject(ctx, px, t, r.Method, err)
		}
		var next *target
		ok := retry && px.ntried < min(maxAttempts, len(px.pool.targets))
		if ok {
			next, ok = px.pool.pick(g.now().UnixNano(), px.tried[:px.ntried])
		}
		if !ok {
			g.log.LogAttrs(ctx, slog.LevelWarn, "proxying request",
				px.attrs(t, r.Method, slog.Int("attempts", px.ntried), slog.Any("err", err))...)
			http.Error(&px.sw, "runway: backend unavailable", http.StatusBadGateway)
			return
		}
		g.log.LogAttrs(ctx, slog.LevelDebug, "retrying request on another backend",
			px.attrs(t, r.Method, slog.String("next", next.host), slog.Any("err", err))...)
		px.try(next)
	}
}

// errSwitchedProtocols is a 101 to a request that asked for no upgrade.
var errSwitchedProtocols = errors.New("backend switched protocols unasked")

// fastRoundTrip sends r to t and reads the response headers, forwarding
// 1xx responses. On success the request counts as in flight to t until
// ServeHTTP ends (px.sent), and bc is the connection the body is on. The
// response is resp or, when resp is nil, the simple one sh, whose headers
// are in px.sw.Header() already (see parseSimple).
func (g *Gateway) fastRoundTrip(ctx context.Context, px *proxied, t *target, r *http.Request) (*http.Response, simpleHead, *bconn, error) {
	t.state.start()
	now := time.Now() // not g.now: deadlines are real
	for attempt := 0; ; attempt++ {
		var bc *bconn
		if attempt == 0 {
			bc = t.state.conns.get(now)
		}
		reused := bc != nil
		if !reused {
			var err error
			if bc, err = g.dial(ctx, t.host); err != nil {
				t.state.done()
				return nil, simpleHead{}, nil, err
			}
		}
		bc.usedAt = now
		// The header deadline goes first: set after the watch below, it
		// could undo an abort.
		if d := now.Add(fastHeaderTimeout); bc.rdl.IsZero() || bc.rdl.Before(d.Add(-fastDeadlineSlack)) {
			bc.c.SetReadDeadline(d)
			bc.rdl = d
		}
		stop := context.AfterFunc(ctx, bc.abort)
		resp, sh, err := g.exchange(px, bc, r)
		if err == nil {
			if resp != nil {
				bc.clearReadDeadline(ctx)
			}
			px.stop = stop
			t.state.answered()
			px.sent = t
			return resp, sh, bc, nil
		}
		stop()
		bc.c.Close()
		if reused && ctx.Err() == nil && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
			errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF)) {
			// A kept-alive connection the backend had closed: once
			// more on a new one, as http.Transport does.
			continue
		}
		t.state.done()
		return nil, simpleHead{}, nil, err
	}
}

func (g *Gateway) dial(ctx context.Context, host string) (*bconn, error) {
	d := net.Dialer{Timeout: fastDialTimeout, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	bc := &bconn{c: c, br: bufio.NewReaderSize(c, 8<<10), bw: bufio.NewWriterSize(c, 8<<10)}
	bc.abort = func() { c.SetDeadline(aLongTimeAgo) }
	return bc, nil
}

// exchange writes r to bc and reads the final response's headers: a
// simple response (resp nil, see parseSimple) or resp.
func (g *Gateway) exchange(px *proxied, bc *bconn, r *http.Request) (*http.Response, simpleHead, error) {
	writeRequest(bc.bw, r, px.last.host)
	if err := bc.bw.Flush(); err != nil {
		return nil, simpleHead{}, err
	}
	for n := 0; ; n++ {
		if r.Method == http.MethodGet {
			sh, err := parseSimple(bc.br, px.sw.Header())
			if err != nil {
				return nil, simpleHead{}, err
			}
			if sh.code != 0 {
				return nil, sh, nil
			}
		}
		resp, err := http.ReadResponse(bc.br, r)
		if err != nil {
			return nil, simpleHead{}, err
		}
		code := resp.StatusCode
		if code == http.StatusSwitchingProtocols {
			return nil, simpleHead{}, errSwitchedProtocols
		}
		if code >= 200 {
			return resp, simpleHead{}, nil
		}
		if n >= max1xxResponses {
			return nil, simpleHead{}, errors.New("net/http: too many 1xx informational responses")
		}
		// As ReverseProxy's Got1xxResponse hook: statusWriter strips
		// X-Runway-* from it.
		h := px.sw.Header()
		for k, vv := range resp.Header {
			h[k] = append(h[k], vv...)
		}
		px.sw.WriteHeader(code)
		clear(h)
	}
}

// writeRequest writes r as sent to the backend at host: the headers the
// client sent but hop-by-hop and forwarding ones, then X-Forwarded-For,
// -Host and -Proto as ProxyRequest.SetXForwarded sets them.
func writeRequest(bw *bufio.Writer, r *http.Request, host string) {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	if p := r.URL.EscapedPath(); p == "" {
		bw.WriteByte('/')
	} else {
		bw.WriteString(p)
	}
	if r.URL.ForceQuery || r.URL.RawQuery != "" {
		bw.WriteByte('?')
		bw.WriteString(r.URL.RawQuery)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	for k, vv := range r.Header {
		if skipRequestHeader(k) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	for _, v := range r.Header["Te"] {
		if headerHasToken(v, "trailers") {
			bw.WriteString("Te: trailers\r\n")
			break
		}
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		bw.WriteString("X-Forwarded-For: ")
		bw.WriteString(ip)
		bw.WriteString("\r\n")
	}
	bw.WriteString("X-Forwarded-Host: ")
	bw.WriteString(r.Host)
	if r.TLS == nil {
		bw.WriteString("\r\nX-Forwarded-Proto: http\r\n\r\n")
	} else {
		bw.WriteString("\r\nX-Forwarded-Proto: https\r\n\r\n")
	}
}

func headerHasToken(v, token string) bool {
	for tok := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.TrimSpace(tok), token) {
			return true
		}
	}
	return false
}

// responseHopHeaders are removed from backend responses, as ReverseProxy
// does.
var responseHopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				h.Del(tok)
			}
		}
	}
	for _, k := range responseHopHeaders {
		delete(h, k)
	}
}

// fastCopy sends resp to the client as ReverseProxy would, then returns bc
// to t's pool or closes it.
func (g *Gateway) fastCopy(px *proxied, r *http.Request, t *target, resp *http.Response, bc *bconn) {
	reusable := false
	defer func() {
		if !px.stop() {
			reusable = false // the client went away: the deadline is spoiled
		}
		if reusable {
			t.state.conns.put(bc, time.Now())
		} else {
			bc.c.Close()
		}
	}()
	removeHopByHop(resp.Header)
	stripRunwayHeaders(resp.Header, false)
	stripRunwayHeaders(resp.Trailer, false)
	h := px.sw.Header()
	for k, vv := range resp.Header {
		if cur, ok := h[k]; ok {
			h[k] = append(cur, vv...)
		} else {
			h[k] = vv
		}
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	px.sw.WriteHeader(resp.StatusCode)

	err := copyBody(&px.sw, resp.Body, g.buffers, streamed(resp))
	if err != nil {
		if r.Context().Value(http.ServerContextKey) == nil {
			return // not under a server (a benchmark): nothing to abort
		}
		// As ReverseProxy: all that can be done mid-response is abort it.
		panic(http.ErrAbortHandler)
	}
	resp.Body.Close() // at EOF already; fills resp.Trailer
	// Bytes after the response would be read as the next one's.
	reusable = !resp.Close && bc.br.Buffered() == 0
	if len(resp.Trailer) > 0 {
		// Force chunking, so that the trailers can follow.
		http.NewResponseController(&px.sw).Flush()
	}
	if len(resp.Trailer) == announced {
		for k, vv := range resp.Trailer {
			for _, v := range vv {
				h.Add(k, v)
			}
		}
		return
	}
	for k, vv := range resp.Trailer {
		k = http.TrailerPrefix + k
		for _, v := range vv {
			h.Add(k, v)
		}
	}
}

// fastCopySimple sends the simple response sh (its headers in px.sw's map
// already) to the client, then returns bc to t's pool or closes it.
func (g *Gateway) fastCopySimple(px *proxied, r *http.Request, t *target, sh simpleHead, bc *bconn) {
	reusable := false
	defer func() {
		if !px.stop() {
			reusable = false // the client went away: the deadline is spoiled
		}
		if reusable {
			t.state.conns.put(bc, bc.usedAt)
		} else {
			bc.c.Close()
		}
	}()
	px.sw.clean = true
	px.sw.WriteHeader(sh.code)
	if err := copyLength(r.Context(), &px.sw, bc, sh.length, g.buffers); err != nil {
		if r.Context().Value(http.ServerContextKey) == nil {
			return // not under a server (a benchmark): nothing to abort
		}
		panic(http.ErrAbortHandler)
	}
	// Bytes after the response would be read as the next one's.
	reusable = bc.br.Buffered() == 0
}

// copyLength copies the n bytes of a body from bc to w: what bc has
// buffered straight from its buffer, the rest with a pooled buffer and no
// read deadline.
func copyLength(ctx context.Context, w *statusWriter, bc *bconn, n int64, buffers *bufferPool) error {
	if k := int64(bc.br.Buffered()); k > 0 {
		k = min(k, n)
		p, _ := bc.br.Peek(int(k))
		if _, err := w.Write(p); err != nil {
			return fmt.Errorf("writing response: %w", err)
		}
		bc.br.Discard(int(k))
		n -= k
	}
	if n == 0 {
		return nil
	}
	bc.clearReadDeadline(ctx)
	buf := buffers.Get()
	defer buffers.Put(buf)
	for n > 0 {
		m, rerr := bc.br.Read(buf[:min(int64(len(buf)), n)])
		if m > 0 {
			n -= int64(m)
			if _, err := w.Write(buf[:m]); err != nil {
				return fmt.Errorf("writing response: %w", err)
			}
		}
		if n > 0 && rerr != nil {
			if rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("reading response: %w", rerr)
		}
	}
	return nil
}

// simpleHead is the status and body length of a simple response, one
// parseSimple took.
type simpleHead struct {
	code   int // 0: not simple
	length int64
}

// maxSimpleHeaders bounds the header lines of a simple response.
const maxSimpleHeaders = 32

// parseSimple reads the headers of the response to a GET at the start of
// br into h, which must be empty, when they make a simple response: all of
// them buffered already, HTTP/1.1, status 200 to 599 but 204 and 304, one
// Content-Length, no hop-by-hop header (Connection, Keep-Alive,
// Transfer-Encoding, Trailer, Upgrade, Te, Proxy-*), not an event stream,
// every line well-formed. Such a response is copied as it is but its
// X-Runway-* headers, which are dropped, without http.ReadResponse's
// allocations. Anything else reports code 0, reading and changing nothing,
// and is left to http.ReadResponse to read (and judge). The error is that
// of waiting for the response's first byte.
func parseSimple(br *bufio.Reader, h http.Header) (simpleHead, error) {
	if _, err := br.Peek(1); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // as http.ReadResponse
		}
		return simpleHead{}, err
	}
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, crlfcrlf)
	if end < 0 {
		return simpleHead{}, nil
	}
	head := buf[:end+2] // every line with its CRLF
	// The status line: "HTTP/1.1 NNN" and an optional reason.
	i := bytes.IndexByte(head, '\n')
	if i < 1 || head[i-1] != '\r' {
		return simpleHead{}, nil
	}
	line := head[:i-1]
	if len(line) < 12 || string(line[:9]) != "HTTP/1.1 " || len(line) > 12 && line[12] != ' ' {
		return simpleHead{}, nil
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return simpleHead{}, nil
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 || code > 599 || code == http.StatusNoContent || code == http.StatusNotModified {
		return simpleHead{}, nil
	}
	for _, c := range line[12:] {
		if c < ' ' && c != '\t' || c == 0x7f {
			return simpleHead{}, nil
		}
	}
	// The header lines, checked before anything goes into h.
	type field struct{ k0, k1, v0, v1 int } // offsets in head
	var fields [maxSimpleHeaders]field
	nf := 0
	length := int64(-1)
	for off := i + 1; off < len(head); {
		j := bytes.IndexByte(head[off:], '\n') + off
		if j-1 < off || head[j-1] != '\r' || nf == maxSimpleHeaders {
			return simpleHead{}, nil
		}
		line := head[off : j-1]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return simpleHead{}, nil
		}
		key := line[:colon]
		for _, c := range key {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return simpleHead{}, nil
			}
		}
		v0, v1 := colon+1, len(line)
		for v0 < v1 && (line[v0] == ' ' || line[v0] == '\t') {
			v0++
		}
		for v1 > v0 && (line[v1-1] == ' ' || line[v1-1] == '\t') {
			v1--
		}
		value := line[v0:v1]
		for _, c := range value {
			if c < ' ' && c != '\t' || c == 0x7f {
				return simpleHead{}, nil
			}
		}
		switch {
		case bytes.EqualFold(key, []byte("Content-Length")):
			if length >= 0 || len(value) == 0 || len(value) > 18 {
				return simpleHead{}, nil
			}
			length = 0
			for _, c := range value {
				if c < '0' || c > '9' {
					return simpleHead{}, nil
				}
				length = length*10 + int64(c-'0')
			}
		case bytes.EqualFold(key, []byte("Content-Type")):
			const sse = "text/event-stream"
			if len(value) >= len(sse) && bytes.EqualFold(value[:len(sse)], []byte(sse)) {
				return simpleHead{}, nil // streamed: flushed as it comes
			}
		default:
			if hopHeader(key) {
				return simpleHead{}, nil
			}
		}
		fields[nf] = field{off, off + colon, off + v0, off + v1}
		nf++
		off = j + 1
	}
	if length < 0 {
		return simpleHead{}, nil
	}
	// One string holds every key, canonical, and value.
	var sb strings.Builder
	sb.Grow(len(head))
	sb.Write(head)
	s := sb.String()
	vals := make([]string, nf)
	for n, f := range fields[:nf] {
		k := canonicalKey(s[f.k0:f.k1])
		if hasRunwayPrefix(k) {
			continue
		}
		vals[n] = s[f.v0:f.v1]
		if cur, ok := h[k]; ok {
			h[k] = append(cur, vals[n])
		} else {
			h[k] = vals[n : n+1 : n+1]
		}
	}
	br.Discard(end + 4)
	return simpleHead{code: code, length: length}, nil
}

var crlfcrlf = []byte("\r\n\r\n")

// hopHeader tells whether key names a hop-by-hop response header, or one
// only ReverseProxy's path handles (Connection's tokens, trailers).
func hopHeader(key []byte) bool {
	switch len(key) {
	case 2, 7, 10, 16, 17, 18, 19:
	default:
		return false
	}
	for _, k := range responseHopHeaders {
		if bytes.EqualFold(key, []byte(k)) {
			return true
		}
	}
	return false
}

// canonicalKey returns k, of letters, digits and '-', in canonical form,
// itself when it is already.
func canonicalKey(k string) string {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return textproto.CanonicalMIMEHeaderKey(k)
		}
		upper = c == '-'
	}
	return k
}

// streamed tells whether a response is flushed after every write, as
// ReverseProxy decides: server-sent events, and bodies of unknown length.
func streamed(resp *http.Response) bool {
	if resp.ContentLength == -1 {
		return true
	}
	ct := resp.Header.Get("Content-Type")
	const sse = "text/event-stream"
	if len(ct) < len(sse) || !strings.EqualFold(ct[:len(sse)], sse) {
		return false
	}
	rest := strings.TrimLeft(ct[len(sse):], " \t")
	return rest == "" || rest[0] == ';'
}

// copyBody copies body to w with a pooled buffer, flushing after every
// write when flush is set.
func copyBody(w *statusWriter, body io.Reader, buffers *bufferPool, flush bool) error {
	buf := buffers.Get()
	defer buffers.Put(buf)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return fmt.Errorf("writing response: %w", err)
			}
			if flush {
				if err := http.NewResponseController(w).Flush(); err != nil {
					return fmt.Errorf("flushing response: %w", err)
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("reading response: %w", rerr)
		}
	}
}
