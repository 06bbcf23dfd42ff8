// Package promql is Runway's embedded PromQL analysis provider. It scrapes
// targets that expose Prometheus' text format into a local Prometheus TSDB
// and evaluates instant queries with Prometheus' own engine, so an
// AnalysisTemplate's query means exactly what it means on a Prometheus
// server, with nothing to install.
//
// Like a Prometheus scrape, every sample gets the target's labels and an
// instance label (host:port of the URL) unless the target sets one, a
// scraped label that clashes with a target label is kept as exported_NAME,
// each target gets an up series (1 scraped, 0 failed), and series that
// disappear (a target gone, or a series no longer exposed) get a staleness
// marker so queries stop seeing them at once rather than after the 5m
// lookback.
//
// A target that fails is logged when its failure starts or changes, and
// when it recovers; the same failure at every later scrape only at Debug.
// A target answering 404 (a replica of an app without /metrics) is logged
// at Info, any other failure at Warn.
package promql

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	prompromql "github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/runway-cd/runway/internal/analysis"
)

var _ analysis.Provider = (*Provider)(nil)

// ErrClosed is returned by calls on a closed Provider.
var ErrClosed = errors.New("embedded promql provider is closed")

// Defaults and bounds of Options.
const (
	DefaultInterval  = 5 * time.Second
	MinInterval      = 500 * time.Millisecond
	DefaultRetention = 6 * time.Hour
	maxScrapeTimeout = 10 * time.Second
	queryTimeout     = 30 * time.Second
	maxQuerySamples  = 50_000_000
)

// Target is an HTTP URL exposing metrics in Prometheus text format, and the
// labels added to every series scraped from it.
type Target struct {
	URL    string
	Labels map[string]string
}

// Options configure a Provider.
type Options struct {
	// Dir holds the TSDB. "" means a temporary directory removed by Close;
	// a real directory keeps the samples across restarts (within Retention).
	Dir string
	// Retention is how long samples are kept; 0 means DefaultRetention.
	Retention time.Duration
	// Interval between scrapes in Run; 0 means DefaultInterval. Less than
	// MinInterval is an error.
	Interval time.Duration
	// Targets is called before each scrape; nil means no target.
	Targets func() []Target
	// Client fetches targets; nil means a plain client (each scrape is
	// bounded by min(Interval, 10s)).
	Client *http.Client
	// Logger receives scrape failures and TSDB messages; nil discards them.
	Logger *slog.Logger
	// Now stamps scrapes; nil means time.Now. Tests set it to control time.
	Now func() time.Time
}

// Provider scrapes, stores and queries. It is safe for concurrent use.
type Provider struct {
	opts    Options
	logger  *slog.Logger
	tempDir string
	db      *tsdb.DB
	engine  *prompromql.Engine
	done    chan struct{}

	closeOnce sync.Once
	// life guards db and engine against Close; queries and scrapes hold it
	// for reading.
	life   sync.RWMutex
	closed bool

	// scrapeMu serializes scrapes, so samples reach each series in order.
	scrapeMu sync.Mutex
	lastTS   int64
	targets  map[string]*targetState
}

// New opens the TSDB and the query engine. Call Run to scrape periodically
// and Close to release everything.
func New(opts Options) (*Provider, error) {
	if opts.Interval == 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Interval < MinInterval {
		return nil, fmt.Errorf("opening embedded promql: interval %s is below %s", opts.Interval, MinInterval)
	}
	if opts.Retention == 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	if opts.Targets == nil {
		opts.Targets = func() []Target { return nil }
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Provider{opts: opts, logger: logger, done: make(chan struct{}), targets: map[string]*targetState{}}
	dir := opts.Dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "runway-promql-")
		if err != nil {
			return nil, fmt.Errorf("opening embedded promql: %w", err)
		}
		dir, p.tempDir = tmp, tmp
	}
	tsdbOpts := tsdb.DefaultOptions()
	tsdbOpts.RetentionDuration = opts.Retention.Milliseconds()
	db, err := tsdb.Open(dir, logger, nil, tsdbOpts, nil)
	if err != nil {
		p.removeTemp()
		return nil, fmt.Errorf("opening embedded promql tsdb in %s: %w", dir, err)
	}
	p.db = db
	p.engine = prompromql.NewEngine(prompromql.EngineOpts{
		Logger:     logger,
		MaxSamples: maxQuerySamples,
		Timeout:    queryTimeout,
	})
	return p, nil
}

// Run scrapes every Interval until ctx is done or the Provider is closed.
// A failing target is retried at the next tick; it is logged as ScrapeNow
// says, not at every tick.
func (p *Provider) Run(ctx context.Context) error {
	ticker := time.NewTicker(p.opts.Interval)
	defer ticker.Stop()
	for {
		if _, err := p.scrape(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, ErrClosed) {
			p.logger.Warn("scraping metrics", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-p.done:
			return nil
		case <-ticker.C:
		}
	}
}

// Query evaluates an instant PromQL query at time at: one value per series
// of an instant vector, sorted by labels, or the value of a scalar. A
// vector with no series is an empty result, not an error.
func (p *Provider) Query(ctx context.Context, query string, at time.Time) ([]float64, error) {
	var out []float64
	err := p.instant(ctx, query, at, func(v parser.Value) error {
		switch v := v.(type) {
		case prompromql.Vector:
			out = make([]float64, 0, len(v))
			for _, s := range v {
				if s.H != nil {
					return fmt.Errorf("series %s is a native histogram; want float values", s.Metric)
				}
				out = append(out, s.F)
			}
			return nil
		case prompromql.Scalar:
			out = []float64{v.V}
			return nil
		default:
			return fmt.Errorf("result is a %s; want an instant vector or a scalar", v.Type())
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// instant evaluates query at at and passes the result to use, which must
// not keep it: the engine reuses its memory once the query is closed.
// Vectors are sorted by labels so that result[0] is stable.
func (p *Provider) instant(ctx context.Context, query string, at time.Time, use func(parser.Value) error) error {
	p.life.RLock()
	defer p.life.RUnlock()
	if p.closed {
		return ErrClosed
	}
	q, err := p.engine.NewInstantQuery(ctx, p.db, nil, query, at)
	if err != nil {
		var perrs parser.ParseErrors
		var perr *parser.ParseErr
		bad := errors.As(err, &perrs) || errors.As(err, &perr)
		return &QueryError{Query: query, Err: err, BadQuery: bad}
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return &QueryError{Query: query, Err: res.Err}
	}
	if v, ok := res.Value.(prompromql.Vector); ok {
		slices.SortFunc(v, func(a, b prompromql.Sample) int { return labels.Compare(a.Metric, b.Metric) })
	}
	if err := use(res.Value); err != nil {
		return &QueryError{Query: query, Err: err}
	}
	return nil
}

// QueryError is a query that could not be parsed (BadQuery) or evaluated.
type QueryError struct {
	Query    string
	Err      error
	BadQuery bool
}

func (e *QueryError) Error() string {
	if e.BadQuery {
		return fmt.Sprintf("parsing query %q: %v", e.Query, e.Err)
	}
	return fmt.Sprintf("evaluating %q: %v", e.Query, e.Err)
}

func (e *QueryError) Unwrap() error { return e.Err }

// Close stops Run, waits for a scrape in progress, and releases the engine,
// the TSDB and its temporary directory.
func (p *Provider) Close() error {
	var err error
	p.closeOnce.Do(func() {
		close(p.done)
		p.life.Lock()
		defer p.life.Unlock()
		p.closed = true
		err = errors.Join(p.engine.Close(), p.db.Close())
		p.removeTemp()
	})
	if err != nil {
		return fmt.Errorf("closing embedded promql: %w", err)
	}
	return nil
}

func (p *Provider) removeTemp() {
	if p.tempDir == "" {
		return
	}
	if err := os.RemoveAll(p.tempDir); err != nil {
		p.logger.Warn("removing embedded promql directory", "dir", p.tempDir, "err", err)
	}
}
