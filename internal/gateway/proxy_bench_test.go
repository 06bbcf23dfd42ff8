package gateway

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
)

// benchBackend is a trivial loopback replica, as in the measure.
func benchBackend(b *testing.B) string {
	b.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	}))
	b.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// benchGateway routes web.localhost 80/20 over two loopback backends.
func benchGateway(b *testing.B) *Gateway {
	b.Helper()
	g := New(Options{})
	if err := g.SetRoute(Route{
		Env: "production", App: "web",
		StableVersion: "v1", Stable: []Backend{{Addr: benchBackend(b)}},
		CanaryVersion: "v2", Canary: []Backend{{Addr: benchBackend(b)}}, CanaryWeight: 20,
	}); err != nil {
		b.Fatal(err)
	}
	return g
}

// discardWriter is a ResponseWriter that keeps nothing, so that
// BenchmarkProxyServeHTTP counts the gateway's allocations (and its
// transport's), not a server's.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkProxyServeHTTP is the gateway's own cost per request: ServeHTTP
// called directly, the backend on loopback.
func BenchmarkProxyServeHTTP(b *testing.B) {
	g := benchGateway(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodGet, "http://web.localhost/", nil)
		req.RemoteAddr = "127.0.0.1:50000"
		w := &discardWriter{h: make(http.Header)}
		for pb.Next() {
			clear(w.h)
			g.ServeHTTP(w, req)
		}
	})
}

// BenchmarkProxyKeepAlive64 is the measure in-process: 64 clients
// on keep-alive connections through TrafficServer, split 80/20.
func BenchmarkProxyKeepAlive64(b *testing.B) {
	g := benchGateway(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := TrafficServer(g, nil)
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	transport := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	b.Cleanup(transport.CloseIdleConnections)
	client := &http.Client{Transport: transport}
	url := "http://" + ln.Addr().String() + "/"
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0))) // 64 clients
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Host = "web.localhost"
		for pb.Next() {
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
