package nodeagent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

// maxLogRead bounds what one logs request reads of a run's log before
// tailLines and limitBytes apply (the end is kept).
const maxLogRead = 16 << 20

// logPoll is how often a followed log is checked for new output.
const logPoll = 100 * time.Millisecond

// serveKubeletAPI starts the kubelet API's HTTPS server on a free
// loopback port with a certificate made now (the API server does not
// verify the kubelet's unless told to).
func (a *Agent) serveKubeletAPI() error {
	cert, err := selfSigned(a.node)
	if err != nil {
		return fmt.Errorf("making the kubelet API's certificate: %w", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(hostIP, "0"))
	if err != nil {
		return fmt.Errorf("listening for the kubelet API: %w", err)
	}
	a.port = ln.Addr().(*net.TCPAddr).Port
	mux := http.NewServeMux()
	mux.Handle("GET /containerLogs/{namespace}/{pod}/{container}", handler(a.log, a.containerLogs))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	a.srv = &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return a.ctx },
		ErrorLog:          log.New(io.Discard, "", 0), // TLS probes of the port are noise
	}
	a.wg.Go(func() {
		if err := a.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("kubelet API server", "err", err)
		}
	})
	return nil
}

func selfSigned(host string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host, "localhost"},
		IPAddresses:  []net.IP{net.ParseIP(hostIP)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// httpError is an error with the status to answer.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

// handler maps a handler's error to a status and logs unexpected ones.
func handler(log interface {
	Warn(string, ...any)
}, f func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := f(w, r)
		if err == nil {
			return
		}
		var he *httpError
		if errors.As(err, &he) {
			http.Error(w, he.msg, he.code)
			return
		}
		log.Warn("kubelet API", "path", r.URL.Path, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
	})
}

// logQuery is what a containerLogs request asks for.
type logQuery struct {
	follow, previous      bool
	tailLines, limitBytes int64 // < 0: all
}

func parseLogQuery(r *http.Request) (logQuery, error) {
	q := logQuery{tailLines: -1, limitBytes: -1}
	v := r.URL.Query()
	var err error
	boolean := func(name string) bool {
		s := v.Get(name)
		if s == "" || err != nil {
			return false
		}
		b, e := strconv.ParseBool(s)
		if e != nil {
			err = &httpError{http.StatusBadRequest, fmt.Sprintf("invalid %s %q", name, s)}
		}
		return b
	}
	number := func(name string) int64 {
		s := v.Get(name)
		if s == "" || err != nil {
			return -1
		}
		n, e := strconv.ParseInt(s, 10, 64)
		if e != nil || n < 0 {
			err = &httpError{http.StatusBadRequest, fmt.Sprintf("invalid %s %q", name, s)}
		}
		return n
	}
	q.follow, q.previous = boolean("follow"), boolean("previous")
	q.tailLines, q.limitBytes = number("tailLines"), number("limitBytes")
	return q, err
}

// containerLogs serves a container's log: its current run's output (or
// the previous run's), the last tailLines lines, at most limitBytes, and
// with follow what it writes until it exits.
func (a *Agent) containerLogs(w http.ResponseWriter, r *http.Request) error {
	ns, name, container := r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("container")
	q, err := parseLogQuery(r)
	if err != nil {
		return err
	}
	pw := a.findPod(ns, name)
	if pw == nil {
		return &httpError{http.StatusNotFound, fmt.Sprintf("pod %s/%s not found on node %s", ns, name, a.node)}
	}
	pw.mu.Lock()
	var st *containerStatus
	for _, c := range append(pw.inits[:len(pw.inits):len(pw.inits)], pw.mains...) {
		if c.name == container {
			st = c
		}
	}
	var starts []int64
	var exited chan struct{}
	var path, waiting string
	if st != nil {
		starts, exited, path = append([]int64(nil), st.runStarts...), st.exited, st.logPath
		if st.state.Waiting != nil {
			waiting = st.state.Waiting.Reason
		}
	}
	pw.mu.Unlock()
	if st == nil {
		return &httpError{http.StatusNotFound, fmt.Sprintf("container %s is not valid for pod %s", container, name)}
	}
	from, to := int64(0), int64(-1)
	switch n := len(starts); {
	case q.previous && n < 2:
		return &httpError{http.StatusBadRequest, fmt.Sprintf("previous terminated container %q in pod %q not found", container, name)}
	case q.previous:
		from, to = starts[n-2], starts[n-1]
		q.follow = false
	case n == 0:
		return &httpError{http.StatusBadRequest, fmt.Sprintf("container %q in pod %q is waiting to start: %s", container, name, waiting)}
	default:
		from = starts[n-1]
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening the log of %s/%s/%s: %w", ns, name, container, err)
	}
	defer f.Close()
	w.Header().Set("Content-Type", "text/plain")
	out := &limitWriter{w: w, n: q.limitBytes}
	end, err := writeTail(out, f, from, to, q.tailLines)
	if err != nil || !q.follow || out.full() {
		return err
	}
	return follow(r.Context(), out, f, end, exited)
}

// writeTail writes the log's bytes [from, to) (to < 0: to the end), only
// the last tailLines lines when tailLines >= 0, and returns where it
// stopped reading.
func writeTail(w io.Writer, f *os.File, from, to, tailLines int64) (int64, error) {
	info, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("reading a log: %w", err)
	}
	if to < 0 || to > info.Size() {
		to = info.Size()
	}
	if to-from > maxLogRead {
		from = to - maxLogRead
	}
	buf := make([]byte, max(to-from, 0))
	if _, err := f.ReadAt(buf, from); err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("reading a log: %w", err)
	}
	if tailLines >= 0 {
		buf = lastLines(buf, tailLines)
	}
	_, err = w.Write(buf)
	return to, err
}

// lastLines is the last n lines of b (a last line without a newline
// counts).
func lastLines(b []byte, n int64) []byte {
	if n == 0 {
		return nil
	}
	end := len(b)
	if end > 0 && b[end-1] == '\n' {
		end--
	}
	for i := end - 1; i >= 0; i-- {
		if b[i] == '\n' {
			n--
			if n == 0 {
				return b[i+1:]
			}
		}
	}
	return b
}

// follow streams what is appended to f after off until the run exits
// (then what is left), ctx ends or the writer is full.
func follow(ctx context.Context, w *limitWriter, f *os.File, off int64, exited <-chan struct{}) error {
	flush := func() {
		if fl, ok := w.w.(http.Flusher); ok {
			fl.Flush()
		}
	}
	copyNew := func() error {
		n, err := io.Copy(w, io.NewSectionReader(f, off, maxLogRead))
		off += n
		flush()
		return err
	}
	t := time.NewTicker(logPoll)
	defer t.Stop()
	for {
		if err := copyNew(); err != nil || w.full() {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-exited:
			return copyNew() // the process is gone: what it wrote is all there is
		case <-t.C:
		}
	}
}

// limitWriter writes at most n bytes (n < 0: no limit) and discards
// the rest.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) full() bool { return l.n == 0 }

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n < 0 {
		return l.w.Write(p)
	}
	q := p
	if int64(len(q)) > l.n {
		q = q[:l.n]
	}
	n, err := l.w.Write(q)
	l.n -= int64(n)
	if err != nil {
		return n, err
	}
	return len(p), nil
}
