package gateway

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// backend is a replica on loopback that answers with its name and counts
// the requests it served.
type backend struct {
	name string
	addr string
	hits atomic.Int64
}

func startBackend(t testing.TB, name string, status int) *backend {
	t.Helper()
	b := &backend{name: name}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Seen-Forwarded-Host", r.Header.Get("X-Forwarded-Host"))
		w.Header().Set("X-Seen-Forwarded-For", r.Header.Get("X-Forwarded-For"))
		w.Header().Set(HeaderVersion, "spoofed")
		w.WriteHeader(status)
		io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	b.addr = srv.Listener.Addr().String()
	return b
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// front serves g on loopback and returns a function that sends a GET with
// the given Host through it.
func front(t testing.TB, g *Gateway) func(host, path string) *http.Response {
	t.Helper()
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	client := srv.Client()
	return func(host, path string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		return resp
	}
}

func backends(bs ...*backend) []Backend {
	var out []Backend
	for _, b := range bs {
		out = append(out, Backend{Addr: b.addr})
	}
	return out
}

func readBody(t testing.TB, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCanaryWeightSplit(t *testing.T) {
	const requests = 1000
	stable := startBackend(t, "stable", http.StatusOK)
	canary := startBackend(t, "canary", http.StatusOK)
	tests := []struct {
		name   string
		weight int
	}{
		{name: "weight 0", weight: 0},
		{name: "weight 20", weight: 20},
		{name: "weight 50", weight: 50},
		{name: "weight 80", weight: 80},
		{name: "weight 100", weight: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New(Options{})
			mustSetRoute(t, g, Route{
				Env: "production", App: "web",
				StableVersion: "v1", Stable: backends(stable),
				CanaryVersion: "v2", Canary: backends(canary),
				CanaryWeight: tt.weight,
			})
			get := front(t, g)
			stableBefore, canaryBefore := stable.hits.Load(), canary.hits.Load()
			versions := map[string]int{}
			for range requests {
				resp := get(g.Host("production", "web"), "/")
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d", resp.StatusCode)
				}
				versions[resp.Header.Get(HeaderVersion)]++
			}
			want := requests * tt.weight / 100
			if d := versions["v2"] - want; d < -1 || d > 1 {
				t.Errorf("canary got %d of %d requests, want %d±1", versions["v2"], requests, want)
			}
			if versions["v1"]+versions["v2"] != requests {
				t.Errorf("versions seen = %v, want only v1 and v2", versions)
			}
			if got := int(canary.hits.Load() - canaryBefore); got != versions["v2"] {
				t.Errorf("canary backend served %d, header said %d", got, versions["v2"])
			}
			if got := int(stable.hits.Load() - stableBefore); got != versions["v1"] {
				t.Errorf("stable backend served %d, header said %d", got, versions["v1"])
			}
			if total, _ := g.Counts("production", "web", "v2"); int(total) != versions["v2"] {
				t.Errorf("Counts(v2) total = %d, want %d", total, versions["v2"])
			}
		})
	}
}

func TestReplicaRoundRobin(t *testing.T) {
	tests := []struct {
		name     string
		replicas int
		rounds   int
	}{
		{name: "one replica", replicas: 1, rounds: 3},
		{name: "three replicas", replicas: 3, rounds: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var bs []*backend
			for i := range tt.replicas {
				bs = append(bs, startBackend(t, fmt.Sprintf("r%d", i), http.StatusOK))
			}
			g := New(Options{})
			mustSetRoute(t, g, Route{Env: "v7", App: "web", StableVersion: "v7", Stable: backends(bs...)})
			get := front(t, g)
			var order []string
			for range tt.replicas * tt.rounds {
				order = append(order, readBody(t, get(g.Host("v7", "web"), "/")))
			}
			for i, name := range order {
				if want := order[i%tt.replicas]; name != want {
					t.Fatalf("request %d went to %s, want %s (order %v)", i, name, want, order)
				}
			}
			for _, b := range bs {
				if got := b.hits.Load(); got != int64(tt.rounds) {
					t.Errorf("%s served %d requests, want %d", b.name, got, tt.rounds)
				}
			}
		})
	}
}

func TestServeErrors(t *testing.T) {
	up := startBackend(t, "up", http.StatusOK)
	failing := startBackend(t, "failing", http.StatusInternalServerError)
	down := closedAddr(t)
	tests := []struct {
		name        string
		route       Route
		host        string
		wantStatus  int
		wantBody    string
		wantVersion string
		wantErrors  uint64
	}{
		{
			name:       "unknown host",
			route:      Route{Env: "production", App: "web", StableVersion: "v1", Stable: backends(up)},
			host:       "nope.localhost",
			wantStatus: http.StatusNotFound,
			wantBody:   `"nope.localhost"`,
		},
		{
			name:       "hostile host",
			route:      Route{Env: "production", App: "web", StableVersion: "v1", Stable: backends(up)},
			host:       "..localhost",
			wantStatus: http.StatusNotFound,
			wantBody:   `"..localhost"`,
		},
		{
			name:       "unknown env",
			route:      Route{Env: "production", App: "web", StableVersion: "v1", Stable: backends(up)},
			host:       "web.v9.localhost",
			wantStatus: http.StatusNotFound,
			wantBody:   `"web.v9.localhost"`,
		},
		{
			name:        "no backends",
			route:       Route{Env: "production", App: "web", StableVersion: "v1"},
			host:        "web.localhost",
			wantStatus:  http.StatusServiceUnavailable,
			wantVersion: "v1",
			wantErrors:  1,
		},
		{
			name:        "no canary backends",
			route:       Route{Env: "production", App: "web", StableVersion: "v1", Stable: backends(up), CanaryVersion: "v2", CanaryWeight: 100},
			host:        "web.localhost",
			wantStatus:  http.StatusServiceUnavailable,
			wantVersion: "v2",
			wantErrors:  1,
		},
		{
			name:        "backend down",
			route:       Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: down}}},
			host:        "web.localhost",
			wantStatus:  http.StatusBadGateway,
			wantVersion: "v1",
			wantErrors:  1,
		},
		{
			name:        "backend error passes through",
			route:       Route{Env: "production", App: "web", StableVersion: "v1", Stable: backends(failing)},
			host:        "web.localhost",
			wantStatus:  http.StatusInternalServerError,
			wantBody:    "failing",
			wantVersion: "v1",
			wantErrors:  1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New(Options{})
			mustSetRoute(t, g, tt.route)
			resp := front(t, g)(tt.host, "/")
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if body := readBody(t, resp); !strings.Contains(body, tt.wantBody) {
				t.Errorf("body = %q, want it to contain %q", body, tt.wantBody)
			}
			if got := resp.Header.Get(HeaderVersion); got != tt.wantVersion {
				t.Errorf("%s = %q, want %q", HeaderVersion, got, tt.wantVersion)
			}
			if tt.wantVersion == "" {
				return
			}
			total, serverErrors := g.Counts("production", "web", tt.wantVersion)
			if total != 1 || serverErrors != tt.wantErrors {
				t.Errorf("Counts = %d, %d; want 1, %d", total, serverErrors, tt.wantErrors)
			}
			series := fmt.Sprintf(`runway_gateway_requests_total{app="web",code="%d",env="production",version="%s"} 1`,
				tt.wantStatus, tt.wantVersion)
			if text := scrape(t, g); !strings.Contains(text, series) {
				t.Errorf("metrics lack %s:\n%s", series, text)
			}
		})
	}
}

func TestForwardedHeaders(t *testing.T) {
	b := startBackend(t, "web", http.StatusOK)
	g := New(Options{})
	mustSetRoute(t, g, Route{Env: "pr-3", App: "web", StableVersion: "v3", Stable: backends(b)})
	host := "WEB.pr-3.localhost:8443"
	resp := front(t, g)(host, "/ping?x=1")
	tests := []struct {
		name, header, want string
	}{
		{name: "original host forwarded", header: "X-Seen-Forwarded-Host", want: host},
		{name: "client address forwarded", header: "X-Seen-Forwarded-For", want: "127.0.0.1"},
		{name: "env", header: HeaderEnv, want: "pr-3"},
		{name: "version not spoofable", header: HeaderVersion, want: "v3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := resp.Header.Values(tt.header); len(got) != 1 || got[0] != tt.want {
				t.Errorf("%s = %q, want [%q]", tt.header, got, tt.want)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	ok := startBackend(t, "ok", http.StatusOK)
	failing := startBackend(t, "failing", http.StatusInternalServerError)
	g := New(Options{})
	mustSetRoute(t, g, Route{
		Env: "production", App: "web",
		StableVersion: "v1", Stable: backends(ok),
		CanaryVersion: "v2", Canary: backends(failing), CanaryWeight: 50,
	})
	mustSetRoute(t, g, Route{Env: "v2", App: "web", StableVersion: "v2", Stable: backends(ok)})
	get := front(t, g)
	for range 10 {
		get("web.localhost", "/")
	}
	for range 3 {
		get("web.v2.localhost", "/")
	}
	g.RemoveEnv("v2")

	tests := []struct {
		name                 string
		env, version         string
		wantTotal, wantError uint64
		wantSeries           []string
	}{
		{
			name: "stable", env: "production", version: "v1", wantTotal: 5,
			wantSeries: []string{
				`runway_gateway_requests_total{app="web",code="200",env="production",version="v1"} 5`,
				`runway_gateway_request_duration_seconds_count{app="web",env="production",version="v1"} 5`,
			},
		},
		{
			name: "canary", env: "production", version: "v2", wantTotal: 5, wantError: 5,
			wantSeries: []string{
				`runway_gateway_requests_total{app="web",code="500",env="production",version="v2"} 5`,
				`runway_gateway_request_duration_seconds_count{app="web",env="production",version="v2"} 5`,
			},
		},
		{
			name: "removed env stays exported", env: "v2", version: "v2", wantTotal: 3,
			wantSeries: []string{
				`runway_gateway_requests_total{app="web",code="200",env="v2",version="v2"} 3`,
				`runway_gateway_request_duration_seconds_count{app="web",env="v2",version="v2"} 3`,
			},
		},
		{name: "unknown version", env: "production", version: "v9"},
	}
	text := scrape(t, g)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			total, serverErrors := g.Counts(tt.env, "web", tt.version)
			if total != tt.wantTotal || serverErrors != tt.wantError {
				t.Errorf("Counts = %d, %d; want %d, %d", total, serverErrors, tt.wantTotal, tt.wantError)
			}
			for _, s := range tt.wantSeries {
				if !strings.Contains(text, s+"\n") {
					t.Errorf("metrics lack %s", s)
				}
			}
		})
	}
	if strings.Contains(text, `version=""`) {
		t.Errorf("metrics have a series without a version:\n%s", text)
	}
}

// TestConcurrentWeightChanges is for the race detector: weights change
// while requests are served, and every request still reaches a version.
func TestConcurrentWeightChanges(t *testing.T) {
	stable := startBackend(t, "stable", http.StatusOK)
	canary := startBackend(t, "canary", http.StatusOK)
	g := New(Options{})
	mustSetRoute(t, g, Route{
		Env: "production", App: "web",
		StableVersion: "v1", Stable: backends(stable),
		CanaryVersion: "v2", Canary: backends(canary),
	})
	get := front(t, g)
	const workers, perWorker = 4, 50
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		for w := 0; ; w = (w + 7) % 101 {
			select {
			case <-done:
				return
			default:
			}
			if err := g.SetCanaryWeight("production", "web", w); err != nil {
				t.Error(err)
				return
			}
			_ = g.Routes()
		}
	})
	var served sync.WaitGroup
	for range workers {
		served.Go(func() {
			for range perWorker {
				resp := get("web.localhost", "/")
				if v := resp.Header.Get(HeaderVersion); resp.StatusCode != http.StatusOK || (v != "v1" && v != "v2") {
					t.Errorf("status %d version %q", resp.StatusCode, v)
				}
			}
		})
	}
	served.Wait()
	close(done)
	wg.Wait()
	v1, _ := g.Counts("production", "web", "v1")
	v2, _ := g.Counts("production", "web", "v2")
	if v1+v2 != workers*perWorker {
		t.Errorf("counted %d requests, want %d", v1+v2, workers*perWorker)
	}
}

func scrape(t testing.TB, g *Gateway) string {
	t.Helper()
	rec := httptest.NewRecorder()
	g.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("metrics status %d", rec.Code)
	}
	return rec.Body.String()
}

func BenchmarkGatewayProxy(b *testing.B) {
	be := startBackend(b, "web", http.StatusOK)
	g := New(Options{})
	mustSetRoute(b, g, Route{
		Env: "production", App: "web",
		StableVersion: "v1", Stable: backends(be),
		CanaryVersion: "v2", Canary: backends(be), CanaryWeight: 20,
	})
	srv := httptest.NewServer(g)
	b.Cleanup(srv.Close)
	transport := &http.Transport{MaxIdleConnsPerHost: 64}
	b.Cleanup(transport.CloseIdleConnections)
	client := &http.Client{Transport: transport}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
			req.Host = "web.localhost"
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
