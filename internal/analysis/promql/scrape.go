package promql

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
)

// errNoMetrics is a target answering 404: a replica of an app that
// exports no metrics.
var errNoMetrics = errors.New("no metrics endpoint")

// maxBody bounds what one scrape reads.
const maxBody = 16 << 20

// acceptHeader asks for the classic text format, as Prometheus does when
// it prefers it.
const acceptHeader = "text/plain;version=0.0.4;q=1,*/*;q=0.1"

// targetState remembers the series a target exposed in its last scrape, so
// those that disappear get a staleness marker, and how its last scrape
// went, so that a target failing the same way at every scrape is logged
// once and then only when that changes.
type targetState struct {
	series map[uint64]labels.Labels
	// scrapeErr and appendErr are the texts of the last scrape's error
	// and of its first error storing a sample; "" is none.
	scrapeErr, appendErr string
}

// sample is one scraped float.
type sample struct {
	lset labels.Labels
	v    float64
}

// scraped is the outcome of fetching and parsing one target.
type scraped struct {
	samples []sample
	err     error
}

// ScrapeNow scrapes every target once, now, and stores the samples. A
// target that fails is recorded as up 0 and its series marked stale; the
// error names each failed target. Tests and the rollout call it to make a
// query see the latest counts.
//
// A target's failure is logged when it starts or changes (Info for a
// target without /metrics, which is common and harmless: it only gets up
// 0; Warn for any other error), its recovery at Info, and the same failure
// again at Debug only.
func (p *Provider) ScrapeNow(ctx context.Context) error {
	targetErrs, err := p.scrape(ctx)
	if err != nil {
		return err
	}
	return errors.Join(targetErrs...)
}

// scrape is ScrapeNow; it returns the targets' failures apart from an
// error that stopped the scrape itself.
func (p *Provider) scrape(ctx context.Context) (targetErrs []error, err error) {
	p.scrapeMu.Lock()
	defer p.scrapeMu.Unlock()
	p.life.RLock()
	defer p.life.RUnlock()
	if p.closed {
		return nil, ErrClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-p.done: // Close is waiting for this scrape: cut it short.
			cancel()
		case <-stop:
		}
	}()

	targets := p.opts.Targets()
	ts := max(p.opts.Now().UnixMilli(), p.lastTS+1)
	p.lastTS = ts
	results := make([]scraped, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() { results[i] = p.scrapeTarget(ctx, t) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		// Stopped, not failed: record nothing rather than up 0.
		return nil, fmt.Errorf("scraping: %w", err)
	}

	app := p.db.AppenderV2(ctx)
	seen := map[string]bool{}
	for i, t := range targets {
		key := targetKey(t)
		if seen[key] {
			continue // the same target listed twice is scraped once
		}
		seen[key] = true
		if err := p.store(app, key, t, results[i], ts); err != nil {
			targetErrs = append(targetErrs, err)
		}
	}
	for key, st := range p.targets {
		if !seen[key] {
			markStale(app, st.series, ts)
			delete(p.targets, key)
		}
	}
	if err := app.Commit(); err != nil {
		return targetErrs, fmt.Errorf("storing scraped samples: %w", err)
	}
	return targetErrs, nil
}

// store appends one target's samples and its up series, and marks stale
// the series it no longer exposes. It returns the target's scrape error.
func (p *Provider) store(app storage.AppenderV2, key string, t Target, res scraped, ts int64) error {
	st := p.targets[key]
	if st == nil {
		st = &targetState{}
		p.targets[key] = st
	}
	base := targetLabels(t)
	current := map[uint64]labels.Labels{}
	var appendErr error
	add := func(lset labels.Labels, v float64) {
		if _, err := app.Append(0, lset, 0, ts, v, nil, nil, storage.AppendV2Options{}); err != nil {
			if appendErr == nil {
				appendErr = fmt.Errorf("storing %s: %w", lset, err)
			}
			return
		}
		current[lset.Hash()] = lset
	}
	up := 0.0
	if res.err == nil {
		up = 1
		for _, s := range res.samples {
			add(s.lset, s.v)
		}
	}
	b := labels.NewBuilder(base)
	b.Set(model.MetricNameLabel, "up")
	add(b.Labels(), up)
	stale := map[uint64]labels.Labels{}
	for h, l := range st.series {
		if _, ok := current[h]; !ok {
			stale[h] = l
		}
	}
	markStale(app, stale, ts)
	st.series = current
	p.logScrape(st, t, res.err)
	if res.err != nil {
		return fmt.Errorf("scraping %s: %w", t.URL, res.err)
	}
	p.logAppend(st, t, appendErr)
	return nil
}

// logScrape logs how a target's scrape went if that differs from the
// previous scrape, and at Debug otherwise.
func (p *Provider) logScrape(st *targetState, t Target, err error) {
	text := ""
	if err != nil {
		text = err.Error()
	}
	prev := st.scrapeErr
	st.scrapeErr = text
	attrs := []any{"target", t.URL}
	for _, k := range slices.Sorted(maps.Keys(t.Labels)) {
		attrs = append(attrs, k, t.Labels[k])
	}
	switch {
	case text == "" && prev == "":
	case text == "":
		p.logger.Info("scrape target recovered", append(attrs, "was", prev)...)
	case text == prev:
		p.logger.Debug("scrape target still failing", append(attrs, "err", text)...)
	case errors.Is(err, errNoMetrics):
		p.logger.Info("scrape target has no /metrics; it gets only up 0, logged again when that changes", append(attrs, "err", text)...)
	default:
		p.logger.Warn("scrape target failing; logged again when that changes", append(attrs, "err", text)...)
	}
}

// logAppend logs a target's first error storing a sample once per change.
func (p *Provider) logAppend(st *targetState, t Target, err error) {
	text := ""
	if err != nil {
		text = err.Error()
	}
	prev := st.appendErr
	st.appendErr = text
	switch {
	case text == "":
	case text == prev:
		p.logger.Debug("storing scraped sample", "target", t.URL, "err", text)
	default:
		p.logger.Warn("storing scraped sample; logged again when that changes", "target", t.URL, "err", text)
	}
}

func markStale(app storage.AppenderV2, series map[uint64]labels.Labels, ts int64) {
	staleNaN := math.Float64frombits(value.StaleNaN)
	for _, l := range series {
		// A failure here only means the series ends at the lookback
		// delta instead of now.
		_, _ = app.Append(0, l, 0, ts, staleNaN, nil, nil, storage.AppendV2Options{})
	}
}

// scrapeTarget fetches and parses one target.
func (p *Provider) scrapeTarget(ctx context.Context, t Target) scraped {
	ctx, cancel := context.WithTimeout(ctx, min(p.opts.Interval, maxScrapeTimeout))
	defer cancel()
	body, contentType, err := p.fetch(ctx, t.URL)
	if err != nil {
		return scraped{err: err}
	}
	samples, err := parse(body, contentType, targetLabels(t))
	if err != nil {
		return scraped{err: err}
	}
	return scraped{samples: samples}
}

func (p *Provider) fetch(ctx context.Context, target string) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, "", fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Accept", acceptHeader)
	resp, err := p.opts.Client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, "", fmt.Errorf("status %s: %w", resp.Status, errNoMetrics)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, "", fmt.Errorf("reading body: %w", err)
	}
	if len(body) > maxBody {
		return nil, "", fmt.Errorf("body larger than %d bytes", maxBody)
	}
	return body, resp.Header.Get("Content-Type"), nil
}

// parse reads an exposition with Prometheus' own parser and returns its
// float samples with the target's labels applied. Native histograms are
// skipped: the text format has none.
func parse(body []byte, contentType string, target labels.Labels) ([]sample, error) {
	parser, err := textparse.New(body, contentType, nil, textparse.ParserOptions{FallbackContentType: "text/plain"})
	if parser == nil {
		return nil, fmt.Errorf("choosing a parser for content type %q: %w", contentType, err)
	}
	var out []sample
	var lset labels.Labels
	for {
		entry, err := parser.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("parsing metrics: %w", err)
		}
		if entry != textparse.EntrySeries {
			continue
		}
		_, _, v := parser.Series()
		parser.Labels(&lset)
		out = append(out, sample{lset: withTarget(lset, target), v: v})
	}
}

// withTarget adds the target's labels to a scraped series; a scraped label
// that clashes is kept as exported_NAME, as Prometheus does.
func withTarget(scrapedLabels, target labels.Labels) labels.Labels {
	b := labels.NewBuilder(scrapedLabels)
	target.Range(func(l labels.Label) {
		if v := scrapedLabels.Get(l.Name); v != "" && v != l.Value {
			b.Set("exported_"+l.Name, v)
		}
		b.Set(l.Name, l.Value)
	})
	return b.Labels()
}

// targetLabels are the labels of a target: its own, plus instance.
func targetLabels(t Target) labels.Labels {
	m := maps.Clone(t.Labels)
	if m == nil {
		m = map[string]string{}
	}
	if _, ok := m["instance"]; !ok {
		if u, err := url.Parse(t.URL); err == nil && u.Host != "" {
			m["instance"] = u.Host
		}
	}
	return labels.FromMap(m)
}

func targetKey(t Target) string {
	keys := slices.Sorted(maps.Keys(t.Labels))
	var b strings.Builder
	b.WriteString(t.URL)
	for _, k := range keys {
		fmt.Fprintf(&b, "\x00%s=%s", k, t.Labels[k])
	}
	return b.String()
}
