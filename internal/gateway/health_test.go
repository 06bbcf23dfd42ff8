package gateway

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestEjectionSchedule(t *testing.T) {
	clock := newFakeClock()
	s := &backendState{addr: "127.0.0.1:1"}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
		16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, w := range want {
		if got := s.eject(clock.Now()); got != w {
			t.Fatalf("ejection %d lasts %v, want %v", i+1, got, w)
		}
		if got := s.eject(clock.Now()); got != 0 {
			t.Fatalf("a second failure during ejection %d ejected again for %v", i+1, got)
		}
		clock.Advance(w - time.Nanosecond)
		if r := s.rank(clock.Now().UnixNano()); r != rankDegraded {
			t.Fatalf("ejection %d: rank %d just before it ends, want degraded", i+1, r)
		}
		clock.Advance(time.Nanosecond)
		if r := s.rank(clock.Now().UnixNano()); r != rankUsable {
			t.Fatalf("ejection %d: rank %d once it ended, want usable", i+1, r)
		}
	}

	s.answered()
	if got := s.eject(clock.Now()); got != time.Second {
		t.Errorf("ejection after an answer lasts %v, want the base %v", got, time.Second)
	}
	s.setReady(true)
	if r := s.rank(clock.Now().UnixNano()); r != rankUsable {
		t.Errorf("rank %d after SetReady(true) during an ejection, want usable", r)
	}
	if got := s.eject(clock.Now()); got != 2*time.Second {
		t.Errorf("ejection after a ready mark lasts %v, want 2s (ready ends an ejection, not the count)", got)
	}
}

func TestPoolPickSkipsAndFailsOpen(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		setup func(a, b, c *backendState)
		tried func(a, b, c *backendState) []*backendState
		want  []string // hosts of successive picks
	}{
		{name: "all usable: round robin", want: []string{"a", "b", "c", "a"}},
		{name: "unready skipped", setup: func(_, b, _ *backendState) { b.setReady(false) }, want: []string{"a", "c", "c", "a"}},
		{name: "ejected skipped", setup: func(a, _, _ *backendState) { a.eject(now) }, want: []string{"b", "b", "c", "b"}},
		{name: "draining skipped", setup: func(_, _, c *backendState) { c.setDraining() }, want: []string{"a", "b", "a", "a"}},
		{name: "all unready: fail open", setup: func(a, b, c *backendState) {
			a.setReady(false)
			b.setReady(false)
			c.setReady(false)
		}, want: []string{"a", "b", "c", "a"}},
		{name: "degraded before draining", setup: func(a, b, c *backendState) {
			a.setDraining()
			b.setReady(false)
			c.eject(now)
		}, want: []string{"b", "b", "c", "b"}},
		{name: "only draining left", setup: func(a, b, c *backendState) {
			a.setDraining()
			b.setDraining()
			c.setDraining()
		}, want: []string{"a", "b", "c", "a"}},
		{name: "tried left out", tried: func(a, b, _ *backendState) []*backendState { return []*backendState{a, b} },
			want: []string{"c", "c", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b, c := &backendState{addr: "a"}, &backendState{addr: "b"}, &backendState{addr: "c"}
			if tt.setup != nil {
				tt.setup(a, b, c)
			}
			var tried []*backendState
			if tt.tried != nil {
				tried = tt.tried(a, b, c)
			}
			p := &pool{targets: []*target{{host: "a", state: a}, {host: "b", state: b}, {host: "c", state: c}}}
			var got []string
			for range tt.want {
				tg, ok := p.pick(now.UnixNano(), tried)
				if !ok {
					t.Fatal("no pick")
				}
				got = append(got, tg.host)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("picks = %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("all tried", func(t *testing.T) {
		a := &backendState{addr: "a"}
		p := &pool{targets: []*target{{host: "a", state: a}}}
		if tg, ok := p.pick(now.UnixNano(), []*backendState{a}); ok {
			t.Errorf("pick = %s, want none", tg.host)
		}
	})
}

func TestSetReady(t *testing.T) {
	a := startBackend(t, "a", http.StatusOK)
	b := startBackend(t, "b", http.StatusOK)
	g := New(Options{})
	route := Route{Env: "production", App: "web", StableVersion: "v1", Stable: backends(a, b)}
	mustSetRoute(t, g, route)
	get := front(t, g)
	served := func(n int) map[string]int {
		t.Helper()
		m := map[string]int{}
		for range n {
			resp := get("web.localhost", "/")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			m[readBody(t, resp)]++
		}
		return m
	}

	g.SetReady(a.addr, false)
	if got := served(4); got["b"] != 4 {
		t.Errorf("with a unready: served %v, want all by b", got)
	}
	// Replacing the route keeps the mark: it belongs to the address.
	mustSetRoute(t, g, Route{Env: "production", App: "web", StableVersion: "v2", Stable: backends(b, a)})
	mustSetRoute(t, g, Route{Env: "staging", App: "web", StableVersion: "v2", Stable: backends(a, b)})
	if got := served(4); got["b"] != 4 {
		t.Errorf("with a unready, after SetRoute: served %v, want all by b", got)
	}
	g.SetReady(b.addr, false)
	if got := served(4); got["a"] != 2 || got["b"] != 2 {
		t.Errorf("with both unready: served %v, want failing open to both", got)
	}
	g.SetReady(a.addr, true)
	g.SetReady(b.addr, true)
	if got := served(4); got["a"] != 2 || got["b"] != 2 {
		t.Errorf("with both ready again: served %v, want round robin", got)
	}

	g.SetReady(a.addr, false)
	g.RemoveEnv("staging")
	g.RemoveRoute("production", "web")
	mustSetRoute(t, g, route)
	if got := served(4); got["a"] != 2 || got["b"] != 2 {
		t.Errorf("after the address left every route: served %v, want a's mark forgotten", got)
	}
	g.SetReady("127.0.0.1:9", false) // no route uses it: nothing to do
	if _, ok := g.states["127.0.0.1:9"]; ok {
		t.Error("SetReady kept state for an address no route uses")
	}
}

func TestDrain(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	slow := startHandler(t, func(w http.ResponseWriter, _ *http.Request) {
		arrived <- struct{}{}
		<-release
		w.Write([]byte("slow"))
	})
	other := startBackend(t, "other", http.StatusOK)
	g := New(Options{})
	mustSetRoute(t, g, Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: slow}, {Addr: other.addr}}})
	get := front(t, g)

	done := make(chan string)
	go func() { done <- readBody(t, get("web.localhost", "/")) }()
	<-arrived

	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	if err := g.Drain(canceled, slow); !errors.Is(err, context.Canceled) {
		t.Fatalf("Drain with a request in flight and a canceled context = %v, want context.Canceled", err)
	}
	// Draining: new requests go to the other backend.
	for range 3 {
		if body := readBody(t, get("web.localhost", "/")); body != "other" {
			t.Errorf("request during drain served by %q, want other", body)
		}
	}
	drained := make(chan error)
	go func() { drained <- g.Drain(t.Context(), slow) }()
	close(release)
	if body := <-done; body != "slow" {
		t.Errorf("in-flight request answered %q, want slow", body)
	}
	if err := <-drained; err != nil {
		t.Errorf("Drain = %v", err)
	}
	if err := g.Drain(t.Context(), "127.0.0.1:9"); err != nil {
		t.Errorf("Drain of an unknown address = %v, want nil", err)
	}
}

// TestDrainAfterRouteRemoved: a request in flight to a backend whose route
// was removed still holds up Drain.
func TestDrainAfterRouteRemoved(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	slow := startHandler(t, func(w http.ResponseWriter, _ *http.Request) {
		arrived <- struct{}{}
		<-release
	})
	g := New(Options{})
	mustSetRoute(t, g, Route{Env: "production", App: "web", StableVersion: "v1", Stable: []Backend{{Addr: slow}}})
	get := front(t, g)
	done := make(chan struct{})
	go func() { get("web.localhost", "/"); close(done) }()
	<-arrived
	g.RemoveRoute("production", "web")
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	if err := g.Drain(canceled, slow); !errors.Is(err, context.Canceled) {
		t.Errorf("Drain = %v, want context.Canceled while the request is in flight", err)
	}
	close(release)
	<-done
	if err := g.Drain(t.Context(), slow); err != nil {
		t.Errorf("Drain after the request = %v", err)
	}
}

// TestSetBlocked: a blocked backend (its port is another user's) gets no
// request, not even when its pool fails open; with every backend blocked
// the pool answers 503, never the squatter.
func TestSetBlocked(t *testing.T) {
	a := startBackend(t, "a", http.StatusOK)
	b := startBackend(t, "b", http.StatusOK)
	g := New(Options{})
	mustSetRoute(t, g, Route{Env: "production", App: "web", StableVersion: "v1", Stable: backends(a, b)})
	get := front(t, g)
	served := func(n int) map[string]int {
		t.Helper()
		m := map[string]int{}
		for range n {
			resp := get("web.localhost", "/")
			if resp.StatusCode != http.StatusOK {
				m[strconv.Itoa(resp.StatusCode)]++
				resp.Body.Close()
				continue
			}
			m[readBody(t, resp)]++
		}
		return m
	}
	g.SetBlocked(a.addr, true)
	g.SetReady(b.addr, false) // failing open would pick a, were it not blocked
	if got := served(4); got["b"] != 4 {
		t.Errorf("a blocked, b unready: served %v, want all by b", got)
	}
	g.SetReady(a.addr, true) // a passing probe does not clear the block
	g.SetBlocked(b.addr, true)
	if got := served(4); got["503"] != 4 {
		t.Errorf("both blocked: served %v, want 503 for all", got)
	}
	g.SetBlocked(a.addr, false)
	g.SetBlocked(b.addr, false)
	g.SetReady(b.addr, true)
	if got := served(4); got["a"] != 2 || got["b"] != 2 {
		t.Errorf("unblocked: served %v, want round robin", got)
	}
}
