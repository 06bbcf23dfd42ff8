package promql

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// capture is a slog.Handler keeping every record, Debug included.
type capture struct {
	mu      sync.Mutex
	records []slog.Record
}

func (c *capture) Enabled(context.Context, slog.Level) bool { return true }
func (c *capture) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records = append(c.records, r.Clone())
	return nil
}
func (c *capture) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *capture) WithGroup(string) slog.Handler      { return c }

// take returns the records about a scrape target since the last take at
// or above Info, and how many Debug ones there were. Records without a
// target attribute (the TSDB's own) are left out.
func (c *capture) take() (logged []string, debug int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.records {
		aboutTarget := false
		r.Attrs(func(a slog.Attr) bool {
			aboutTarget = aboutTarget || a.Key == "target"
			return !aboutTarget
		})
		if !aboutTarget {
			continue
		}
		if r.Level < slog.LevelInfo {
			debug++
			continue
		}
		s := r.Level.String() + " " + r.Message
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" || a.Key == "was" {
				s += " " + a.Key + "=" + a.Value.String()
			}
			return true
		})
		logged = append(logged, s)
	}
	c.records = nil
	return logged, debug
}

// TestScrapeFailuresLoggedOnce: a target failing the same way at every
// scrape is one record, then one per change (recovered, another error).
func TestScrapeFailuresLoggedOnce(t *testing.T) {
	e := newExporter(t, func(int64) string { return "a 1\n" })
	e.set(http.StatusNotFound, nil)
	// A port nothing listens on: connection refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + l.Addr().String() + "/metrics"
	l.Close()

	logs := &capture{}
	targets := []Target{{URL: e.srv.URL, Labels: map[string]string{"job": "app", "version": "v1"}}}
	var mu sync.Mutex
	p := newProvider(t, Options{Logger: slog.New(logs), Targets: func() []Target {
		mu.Lock()
		defer mu.Unlock()
		return targets
	}})
	scrapeN := func(n int) {
		for range n {
			// Each failing scrape still returns its error to the caller.
			_ = p.ScrapeNow(context.Background())
		}
	}

	steps := []struct {
		name      string
		change    func()
		scrapes   int
		want      []string // records at Info and above, prefixes
		wantDebug int
	}{
		{name: "no /metrics: logged once, at Info", scrapes: 10, want: []string{"INFO scrape target has no /metrics"}, wantDebug: 9},
		{name: "recovered: logged once", change: func() { e.set(http.StatusOK, nil) }, scrapes: 5, want: []string{"INFO scrape target recovered was=status 404 Not Found"}},
		{name: "another failure: Warn once", change: func() { e.set(http.StatusInternalServerError, nil) }, scrapes: 5, want: []string{"WARN scrape target failing; logged again when that changes err=status 500 Internal Server Error"}, wantDebug: 4},
		{name: "a different error: logged again", change: func() { e.set(http.StatusNotFound, nil) }, scrapes: 3, want: []string{"INFO scrape target has no /metrics"}, wantDebug: 2},
		{name: "a second target failing: its own record", change: func() {
			mu.Lock()
			defer mu.Unlock()
			targets = append(targets, Target{URL: refused})
		}, scrapes: 4, want: []string{"WARN scrape target failing"}, wantDebug: 4 + 3},
	}
	for _, s := range steps {
		if s.change != nil {
			s.change()
		}
		scrapeN(s.scrapes)
		logged, debug := logs.take()
		ok := len(logged) == len(s.want) && debug == s.wantDebug
		for i := 0; ok && i < len(logged); i++ {
			ok = strings.HasPrefix(logged[i], s.want[i])
		}
		if !ok {
			t.Errorf("%s: logged %q and %d at Debug; want %q and %d", s.name, logged, debug, s.want, s.wantDebug)
		}
	}
}
