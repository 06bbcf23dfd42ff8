package demo

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Probe sends one request and says which version answered with which
// status.
type Probe func(ctx context.Context) (version string, status int, err error)

// Traffic sends requests until stopped, counting answers by
// "version/status".
type Traffic struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	counts map[string]int
	sent   atomic.Int64
}

// SendTraffic calls probe every interval, for at most limit, until Stop.
func SendTraffic(ctx context.Context, interval, limit time.Duration, probe Probe) *Traffic {
	ctx, cancel := context.WithTimeout(ctx, limit)
	t := &Traffic{cancel: cancel, counts: map[string]int{}}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			version, status, err := probe(ctx)
			if ctx.Err() != nil {
				return // stopped mid-request: not an answer
			}
			t.sent.Add(1)
			key := fmt.Sprintf("%s/%d", version, status)
			if err != nil {
				key = "error: " + err.Error()
			}
			t.mu.Lock()
			t.counts[key]++
			t.mu.Unlock()
		}
	}()
	return t
}

// Stop ends the traffic and returns the counts.
func (t *Traffic) Stop() map[string]int {
	t.cancel()
	t.wg.Wait()
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.counts)
}

func summarize(counts map[string]int) string {
	var parts []string
	total := 0
	for k, n := range counts {
		parts = append(parts, fmt.Sprintf("%s: %d", k, n))
		total += n
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d requests (%s)", total, strings.Join(parts, ", "))
}
