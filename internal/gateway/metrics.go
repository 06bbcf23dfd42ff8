package gateway

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// durationBuckets are finer at the low end than prometheus.DefBuckets, since
// most proxied requests on one machine take around a millisecond.
var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// versionKey identifies the metric series of one app version in one
// environment.
type versionKey struct{ env, app, version string }

// versionStats holds the counters of one app version in one environment.
type versionStats struct {
	total        atomic.Uint64
	serverErrors atomic.Uint64
	codes        sync.Map // int status code -> *atomic.Uint64
	duration     prometheus.Observer
}

func (s *versionStats) record(code int, d time.Duration) {
	c, ok := s.codes.Load(code)
	if !ok {
		c, _ = s.codes.LoadOrStore(code, new(atomic.Uint64))
	}
	c.(*atomic.Uint64).Add(1)
	s.total.Add(1)
	if code >= 500 && code <= 599 {
		s.serverErrors.Add(1)
	}
	s.duration.Observe(d.Seconds())
}

// metrics owns the gateway's registry and series. Request counters are kept
// by the gateway itself and exported by Collect, so Counts reads the same
// numbers a scrape does.
type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.Desc
	duration *prometheus.HistogramVec

	mu       sync.RWMutex
	versions map[versionKey]*versionStats
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewDesc(
			"runway_gateway_requests_total",
			"Requests proxied by the gateway, by environment, app, version and HTTP status code.",
			[]string{"env", "app", "version", "code"}, nil),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "runway_gateway_request_duration_seconds",
			Help:    "Time from receiving a request to finishing its response, by environment, app and version.",
			Buckets: durationBuckets,
		}, []string{"env", "app", "version"}),
		versions: make(map[versionKey]*versionStats),
	}
	m.registry.MustRegister(m.duration, (*requestCollector)(m))
	return m
}

// stats returns the counters of a version, creating them on first use.
func (m *metrics) stats(k versionKey) *versionStats {
	m.mu.RLock()
	s, ok := m.versions[k]
	m.mu.RUnlock()
	if ok {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.versions[k]; ok {
		return s
	}
	s = &versionStats{duration: m.duration.WithLabelValues(k.env, k.app, k.version)}
	m.versions[k] = s
	return s
}

// lookup returns the counters of a version without creating them.
func (m *metrics) lookup(k versionKey) (*versionStats, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s, ok := m.versions[k]
	return s, ok
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// requestCollector exports the request counters of metrics.
type requestCollector metrics

var _ prometheus.Collector = (*requestCollector)(nil)

func (c *requestCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.requests
}

func (c *requestCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.RLock()
	versions := make(map[versionKey]*versionStats, len(c.versions))
	for k, s := range c.versions {
		versions[k] = s
	}
	c.mu.RUnlock()
	for k, s := range versions {
		s.codes.Range(func(code, n any) bool {
			ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue,
				float64(n.(*atomic.Uint64).Load()), k.env, k.app, k.version, strconv.Itoa(code.(int)))
			return true
		})
	}
}
