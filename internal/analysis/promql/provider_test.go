package promql

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/analysis/providertest"
)

// exporter is an httptest server exposing whatever its body func returns,
// in Prometheus text format.
type exporter struct {
	srv      *httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	body     func(n int64) string // n counts requests from 1
	status   int
}

func newExporter(t *testing.T, body func(n int64) string) *exporter {
	t.Helper()
	e := &exporter{body: body, status: http.StatusOK}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := e.requests.Add(1)
		e.mu.Lock()
		status, body := e.status, e.body
		e.mu.Unlock()
		if status != http.StatusOK {
			http.Error(w, "down", status)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		fmt.Fprint(w, body(n))
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *exporter) set(status int, body func(n int64) string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.status = status
	if body != nil {
		e.body = body
	}
}

// stepNow is a scrape clock advancing by step on each call.
type stepNow struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (s *stepNow) now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.t = s.t.Add(s.step)
	return s.t
}

func (s *stepNow) last() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.t
}

func newProvider(t *testing.T, opts Options) *Provider {
	t.Helper()
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func scrape(t *testing.T, p *Provider, times int) {
	t.Helper()
	for range times {
		if err := p.ScrapeNow(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

const requestsExposition = `# HELP runway_gateway_requests_total Requests.
# TYPE runway_gateway_requests_total counter
runway_gateway_requests_total{env="production",app="ping",version="v2",code="200"} %d
runway_gateway_requests_total{env="production",app="ping",version="v2",code="500"} %d
`

func TestRateEndToEnd(t *testing.T) {
	// Each scrape is 5s after the previous one; between two scrapes the
	// canary served 50 requests, 10 of them 500s: 10 req/s, 20% errors.
	e := newExporter(t, func(n int64) string {
		return fmt.Sprintf(requestsExposition, 1000+40*n, 100+10*n)
	})
	clock := &stepNow{t: time.Now().Add(-time.Hour), step: 5 * time.Second}
	p := newProvider(t, Options{
		Now:     clock.now,
		Targets: func() []Target { return []Target{{URL: e.srv.URL, Labels: map[string]string{"job": "gateway"}}} },
	})
	scrape(t, p, 14) // 65s of samples: the 1m windows below are full
	at := clock.last()
	tests := []struct {
		name  string
		query string
		want  []float64
	}{
		{name: "rate of all requests", query: `sum(rate(runway_gateway_requests_total{app="ping"}[30s]))`, want: []float64{10}},
		{name: "error ratio", query: `sum(rate(runway_gateway_requests_total{app="ping",code=~"5.."}[30s])) / sum(rate(runway_gateway_requests_total{app="ping"}[30s]))`, want: []float64{0.2}},
		{name: "one value per series, sorted by labels", query: `rate(runway_gateway_requests_total[1m])`, want: []float64{8, 2}},
		{name: "scalar is one value", query: `scalar(sum(up))`, want: []float64{1}},
		{name: "target labels and instance are added", query: `up{job="gateway",instance="` + strings.TrimPrefix(e.srv.URL, "http://") + `"}`, want: []float64{1}},
		{name: "no series is empty", query: `runway_gateway_requests_total{app="other"}`, want: []float64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.Query(context.Background(), tt.query, at)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if math.Abs(got[i]-tt.want[i]) > 1e-9*math.Max(1, tt.want[i]) {
					t.Errorf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestQueryErrors(t *testing.T) {
	p := newProvider(t, Options{})
	tests := []struct {
		name    string
		query   string
		wantErr string
	}{
		{name: "syntax error", query: `sum(rate(x[1m])`, wantErr: "unclosed"},
		{name: "range vector", query: `x[1m]`, wantErr: "matrix"},
		{name: "string", query: `"text"`, wantErr: "string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.Query(context.Background(), tt.query, time.Now())
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), tt.wantErr) {
				t.Errorf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestScrapeLabelsAndStaleness(t *testing.T) {
	e := newExporter(t, func(int64) string {
		return "a{job=\"inner\"} 1\nb 2\n"
	})
	targets := []Target{{URL: e.srv.URL, Labels: map[string]string{"job": "outer", "instance": "gw"}}}
	var mu sync.Mutex
	clock := &stepNow{t: time.Now().Add(-time.Hour), step: time.Second}
	p := newProvider(t, Options{
		Now: clock.now,
		Targets: func() []Target {
			mu.Lock()
			defer mu.Unlock()
			return targets
		},
	})
	query := func(q string) []float64 {
		t.Helper()
		got, err := p.Query(context.Background(), q, clock.last())
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	scrape(t, p, 1)
	tests := []struct {
		name  string
		query string
		want  string
	}{
		{name: "clashing label kept as exported_", query: `a{job="outer",exported_job="inner",instance="gw"}`, want: "[1]"},
		{name: "plain series gets target labels", query: `b{job="outer"}`, want: "[2]"},
		{name: "up", query: `up{job="outer"}`, want: "[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fmt.Sprint(query(tt.query)); got != tt.want {
				t.Errorf("%s = %s, want %s", tt.query, got, tt.want)
			}
		})
	}

	t.Run("series no longer exposed is stale at once", func(t *testing.T) {
		e.set(http.StatusOK, func(int64) string { return "b 3\n" })
		scrape(t, p, 1)
		if got := query(`a`); len(got) != 0 {
			t.Errorf("a = %v, want no series", got)
		}
		if got := fmt.Sprint(query(`b`)); got != "[3]" {
			t.Errorf("b = %s", got)
		}
	})
	t.Run("failing target: up 0, series stale, error names it", func(t *testing.T) {
		e.set(http.StatusInternalServerError, nil)
		err := p.ScrapeNow(context.Background())
		if err == nil || !strings.Contains(err.Error(), e.srv.URL) {
			t.Errorf("err = %v, want it to name %s", err, e.srv.URL)
		}
		if got := fmt.Sprint(query(`up`)); got != "[0]" {
			t.Errorf("up = %s, want [0]", got)
		}
		if got := query(`b`); len(got) != 0 {
			t.Errorf("b = %v, want no series", got)
		}
	})
	t.Run("removed target: its series and up are stale", func(t *testing.T) {
		e.set(http.StatusOK, nil)
		scrape(t, p, 1)
		mu.Lock()
		targets = nil
		mu.Unlock()
		scrape(t, p, 1)
		if got := query(`{__name__=~".+"}`); len(got) != 0 {
			t.Errorf("series = %v, want none", got)
		}
	})
}

func TestRunScrapesPeriodically(t *testing.T) {
	e := newExporter(t, func(n int64) string { return fmt.Sprintf("c_total %d\n", n) })
	p := newProvider(t, Options{
		Interval: MinInterval,
		Targets:  func() []Target { return []Target{{URL: e.srv.URL}} },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	deadline := time.Now().Add(30 * time.Second)
	for e.requests.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("Run did not scrape three times in 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	got, err := p.Query(context.Background(), `count_over_time(c_total[1h])`, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] < 2 {
		t.Errorf("samples = %v, want at least 2", got)
	}
}

func TestNewOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "interval too short", opts: Options{Interval: 100 * time.Millisecond}, wantErr: "below 500ms"},
		{name: "dir is a file", opts: Options{Dir: "/dev/null"}, wantErr: "tsdb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.opts)
			if err == nil {
				p.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestCloseReleasesEverything(t *testing.T) {
	p, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := p.tempDir
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp dir %s still there: %v", dir, err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := p.Query(context.Background(), "up", time.Now()); !errors.Is(err, ErrClosed) {
		t.Errorf("Query after Close: %v", err)
	}
	if err := p.ScrapeNow(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("ScrapeNow after Close: %v", err)
	}
}

func TestSamplesSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, func(n int64) string { return fmt.Sprintf("c_total %d\n", 10*n) })
	clock := &stepNow{t: time.Now().Add(-time.Hour), step: 5 * time.Second}
	opts := Options{Dir: dir, Now: clock.now, Targets: func() []Target { return []Target{{URL: e.srv.URL}} }}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	scrape(t, p, 3)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p = newProvider(t, opts)
	got, err := p.Query(context.Background(), `c_total`, clock.last())
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[30]" {
		t.Errorf("after reopen c_total = %v, want [30]", got)
	}
}

func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) (analysis.Provider, time.Time) {
		e := newExporter(t, func(int64) string { return providertest.Exposition })
		p := newProvider(t, Options{Targets: func() []Target { return []Target{{URL: e.srv.URL}} }})
		scrape(t, p, 1)
		return p, time.Now()
	})
}
