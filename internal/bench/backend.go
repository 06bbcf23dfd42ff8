package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// countPath answers "REQUESTS CONNECTIONS": the number of requests a
// backend served, not counting requests to countPath itself, and of
// connections it accepted. The benchmark reads it to report the split a
// proxy actually made and whether it kept its connections to the backends
// alive.
const countPath = "/_bench/count"

// backendHandler is the trivial app behind every target: a short fixed
// body, as a health check or a small API answer would be.
func backendHandler(name string, conns *atomic.Int64) http.Handler {
	var served atomic.Int64
	body := []byte("hello from backend " + name + "\n")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == countPath {
			fmt.Fprintln(w, served.Load(), conns.Load())
			return
		}
		served.Add(1)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
}

// ServeBackend serves the benchmark's backend, named name, on the loopback
// address addr until ctx ends.
func ServeBackend(ctx context.Context, addr, name string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("backend address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("backend address %q: want a loopback IP", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening as backend %s: %w", name, err)
	}
	var conns atomic.Int64
	srv := &http.Server{Handler: backendHandler(name, &conns), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err = srv.Shutdown(shut)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// BackendMain runs "bench backend --listen ADDR --name NAME" and returns
// the exit code; the benchmark starts its backends this way, as processes
// of their own, so their CPU is not the proxy's.
func BackendMain(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench backend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("listen", "127.0.0.1:0", "loopback address")
	name := fs.String("name", "a", "name in the response body")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := ServeBackend(ctx, *addr, *name); err != nil {
		fmt.Fprintln(stderr, "bench backend:", err)
		return 1
	}
	return 0
}

// backendCount is what a backend's countPath answers.
type backendCount struct{ requests, conns int64 }

// readCount returns how many requests the backend at addr has served and
// how many connections it has accepted.
func readCount(ctx context.Context, client *http.Client, addr string) (backendCount, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+countPath, nil)
	if err != nil {
		return backendCount{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return backendCount{}, fmt.Errorf("reading request count of backend %s: %w", addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64))
	if err != nil {
		return backendCount{}, fmt.Errorf("reading request count of backend %s: %w", addr, err)
	}
	var c backendCount
	if _, err := fmt.Sscan(string(b), &c.requests, &c.conns); err != nil {
		return backendCount{}, fmt.Errorf("reading request count of backend %s: %q: %w", addr, b, err)
	}
	return c, nil
}
