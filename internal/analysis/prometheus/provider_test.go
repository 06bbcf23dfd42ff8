package prometheus

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/analysis/promql"
	"github.com/runway-cd/runway/internal/analysis/providertest"
)

// apiServer answers /api/v1/query with a fixed status and body, and
// records the last query parameters.
func apiServer(t *testing.T, status int, body string, got *http.Request) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		if got != nil {
			*got = *r.Clone(context.Background())
		}
		if r.URL.Path != "/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestQueryAPIShapes(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		want    string
		wantErr string
	}{
		{
			name:   "vector, sorted by labels",
			status: 200,
			body:   `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"code":"500"},"value":[1700000000,"0.25"]},{"metric":{"code":"200"},"value":[1700000000,"1"]}]}}`,
			want:   "[1 0.25]",
		},
		{
			name:   "scalar",
			status: 200,
			body:   `{"status":"success","data":{"resultType":"scalar","result":[1700000000,"0.05"]}}`,
			want:   "[0.05]",
		},
		{
			name:   "NaN",
			status: 200,
			body:   `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"NaN"]}]}}`,
			want:   "[NaN]",
		},
		{
			name:   "empty vector",
			status: 200,
			body:   `{"status":"success","data":{"resultType":"vector","result":[]}}`,
			want:   "[]",
		},
		{
			name:    "matrix",
			status:  200,
			body:    `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1700000000,"1"]]}]}}`,
			wantErr: "want an instant vector or a scalar",
		},
		{
			name:    "bad query",
			status:  400,
			body:    `{"status":"error","errorType":"bad_data","error":"1:5: parse error: unclosed left parenthesis"}`,
			wantErr: "unclosed left parenthesis",
		},
		{
			name:    "server error",
			status:  503,
			body:    `overloaded`,
			wantErr: "querying prometheus at",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req http.Request
			srv := apiServer(t, tt.status, tt.body, &req)
			p, err := New(srv.URL, srv.Client())
			if err != nil {
				t.Fatal(err)
			}
			at := time.Unix(1700000000, 500_000_000)
			got, err := p.Query(context.Background(), `sum(rate(x[1m]))`, at)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != tt.want {
				t.Errorf("got %v, want %s", got, tt.want)
			}
			if q := req.Form.Get("query"); q != `sum(rate(x[1m]))` {
				t.Errorf("query param = %q", q)
			}
			if ts := req.Form.Get("time"); ts != "1700000000.5" {
				t.Errorf("time param = %q", ts)
			}
		})
	}
}

func TestNewAndUnreachable(t *testing.T) {
	for _, addr := range []string{"", "prometheus:9090", "ftp://x", "http://"} {
		if _, err := New(addr, nil); err == nil {
			t.Errorf("New(%q): want error", addr)
		}
	}
	// A server that is gone: the error says where.
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	p, err := New(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Query(context.Background(), "up", time.Now()); err == nil || !strings.Contains(err.Error(), srv.URL) {
		t.Errorf("err = %v, want it to name %s", err, srv.URL)
	}
}

// TestConformanceEmbeddedAPI runs the provider suite through the real
// client against Runway's embedded PromQL behind its Prometheus-compatible
// HTTP API.
func TestConformanceEmbeddedAPI(t *testing.T) {
	providertest.Run(t, func(t *testing.T) (analysis.Provider, time.Time) {
		exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, providertest.Exposition)
		}))
		t.Cleanup(exporter.Close)
		embedded, err := promql.New(promql.Options{Targets: func() []promql.Target { return []promql.Target{{URL: exporter.URL}} }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { embedded.Close() })
		if err := embedded.ScrapeNow(context.Background()); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(embedded.Handler())
		t.Cleanup(srv.Close)
		p, err := New(srv.URL, srv.Client())
		if err != nil {
			t.Fatal(err)
		}
		return p, time.Now()
	})
}

// TestConformanceRealPrometheus runs the provider suite against a real
// Prometheus server scraping an exporter on loopback.
func TestConformanceRealPrometheus(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus binary not installed (Debian package prometheus); skipping the real-server test")
	}
	providertest.Run(t, func(t *testing.T) (analysis.Provider, time.Time) {
		exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			fmt.Fprint(w, providertest.Exposition)
		}))
		t.Cleanup(exporter.Close)
		address := startPrometheus(t, bin, strings.TrimPrefix(exporter.URL, "http://"))
		p, err := New(address, nil)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			got, err := p.Query(context.Background(), `count(runway_test_gauge)`, time.Now())
			if err == nil && len(got) == 1 && got[0] == 3 {
				return p, time.Now()
			}
			if time.Now().After(deadline) {
				t.Fatalf("prometheus did not scrape the exporter within 60s: %v %v", got, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

// startPrometheus runs a Prometheus server scraping target every second on
// a free loopback port, stopped at cleanup, and returns its URL.
func startPrometheus(t *testing.T, bin, target string) string {
	t.Helper()
	dir := t.TempDir()
	config := fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: conformance\n  static_configs:\n  - targets: [%q]\n", target)
	configPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin,
		"--config.file="+configPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen,
	)
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
		if t.Failed() {
			if out, err := os.ReadFile(logFile.Name()); err == nil {
				t.Logf("prometheus log:\n%s", out)
			}
		}
	})
	return "http://" + listen
}
