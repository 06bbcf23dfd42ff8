package gateway

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Passive ejection (Envoy's outlier detection, nginx's max_fails and
// fail_timeout as models): a backend whose connection is refused or reset is
// taken out of its pools for ejectBase, twice as long for each ejection
// that follows without a response in between, at most ejectMax.
const (
	ejectBase = time.Second
	ejectMax  = 30 * time.Second
)

// backendState is what the gateway knows about one backend address, shared
// by every pool that has the address and kept across route changes: whether
// its replica is ready (SetReady), draining (Drain) or ejected after a
// failure, and how many requests are in flight to it.
//
// The request path reads it with atomic loads only.
type backendState struct {
	addr string

	flags        atomic.Uint32 // stateUnready | stateDraining
	ejectedUntil atomic.Int64  // unix nanoseconds; 0: not ejected
	consecutive  atomic.Int32  // ejections since the last response
	inflight     atomic.Int64
	waiters      atomic.Int32 // Drain calls waiting for inflight to reach 0

	mu   sync.Mutex    // orders ejections and SetReady; guards idle
	idle chan struct{} // closed when inflight reaches 0 while waited for

	conns conns // the fast path's idle connections
}

const (
	stateUnready uint32 = 1 << iota
	stateDraining
	// stateBlocked: another user's process holds the replica's port;
	// never sent a request, not even failing open (SetBlocked).
	stateBlocked
)

// Ranks of a backend for a new request: pools pick the first rankUsable
// backend; failing that (every backend is unready, ejected or draining)
// they fail open, rather than answer 502 for a pool that may well work.
const (
	rankUsable   = iota
	rankDegraded // unready or ejected: the first choice of failing open
	rankDraining // about to be stopped: the last resort
	rankBlocked  // its port is someone else's: never
)

func (s *backendState) rank(now int64) int {
	f := s.flags.Load()
	switch {
	case f&stateBlocked != 0:
		return rankBlocked
	case f&stateDraining != 0:
		return rankDraining
	case f&stateUnready != 0:
		return rankDegraded
	}
	if u := s.ejectedUntil.Load(); u != 0 && now < u {
		return rankDegraded
	}
	return rankUsable
}

// eject takes the backend out of its pools after a failure at now and
// returns for how long, or 0 when it already was ejected: failures of
// requests that were in flight together count as one.
func (s *backendState) eject(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.ejectedUntil.Load(); u != 0 && now.UnixNano() < u {
		return 0
	}
	n := s.consecutive.Load()
	d := ejectBase
	for i := int32(0); i < n && d < ejectMax; i++ {
		d *= 2
	}
	d = min(d, ejectMax)
	s.consecutive.Store(n + 1)
	s.ejectedUntil.Store(now.Add(d).UnixNano())
	return d
}

// answered records that the backend answered a request: the next ejection,
// if any, starts again from ejectBase.
func (s *backendState) answered() {
	if s.consecutive.Load() != 0 {
		s.mu.Lock()
		s.consecutive.Store(0)
		s.mu.Unlock()
	}
}

// setReady marks the backend ready or not. Ready also ends an ejection and
// a drain: the replica's probe passes, so it takes requests again.
func (s *backendState) setReady(ready bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ready {
		s.ejectedUntil.Store(0)
		for {
			f := s.flags.Load()
			if s.flags.CompareAndSwap(f, f&^(stateUnready|stateDraining)) {
				return
			}
		}
	}
	for {
		f := s.flags.Load()
		if s.flags.CompareAndSwap(f, f|stateUnready) {
			return
		}
	}
}

func (s *backendState) setBlocked(blocked bool) {
	for {
		f := s.flags.Load()
		next := f | stateBlocked
		if !blocked {
			next = f &^ stateBlocked
		}
		if s.flags.CompareAndSwap(f, next) {
			return
		}
	}
}

func (s *backendState) setDraining() {
	for {
		f := s.flags.Load()
		if s.flags.CompareAndSwap(f, f|stateDraining) {
			return
		}
	}
}

// start counts a request sent to the backend; done must follow.
func (s *backendState) start() { s.inflight.Add(1) }

func (s *backendState) done() {
	if s.inflight.Add(-1) == 0 && s.waiters.Load() > 0 {
		s.mu.Lock()
		if s.idle != nil {
			close(s.idle)
			s.idle = nil
		}
		s.mu.Unlock()
	}
}

// waitIdle returns when no request is in flight to the backend, or with
// ctx's error when ctx ends first.
func (s *backendState) waitIdle(ctx context.Context) error {
	s.waiters.Add(1)
	defer s.waiters.Add(-1)
	for {
		s.mu.Lock()
		// waiters was raised before this load: a request finishing now
		// either is seen here or sees waiters and closes idle.
		if s.inflight.Load() == 0 {
			s.mu.Unlock()
			return nil
		}
		if s.idle == nil {
			s.idle = make(chan struct{})
		}
		idle := s.idle
		s.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// SetReady marks every backend with address addr, in every pool, ready or
// not: pools send new requests to unready backends only when none of their
// backends is usable. Ready also ends an ejection and a drain of addr that
// began before. The mark belongs to the address, so it survives SetRoute
// replacing the routes that use it; it is forgotten once no route uses the
// address, and SetReady on an address no route uses does nothing (a backend
// is ready when added).
func (g *Gateway) SetReady(addr string, ready bool) {
	g.mu.Lock()
	s, ok := g.states[addr]
	g.mu.Unlock()
	if !ok {
		return
	}
	s.setReady(ready)
	if !ready {
		s.conns.closeIdle() // likely to a process that is gone
	}
	g.log.Debug("backend readiness", "backend", addr, "ready", ready)
}

// SetBlocked marks every backend with address addr as one no request may
// go to, not even when its pool has nothing else (then the pool answers
// 503): the supervisor found another user's process holding the replica's
// port, which would otherwise get the replica's traffic. Only
// SetBlocked(addr, false) clears it.
func (g *Gateway) SetBlocked(addr string, blocked bool) {
	g.mu.Lock()
	s, ok := g.states[addr]
	g.mu.Unlock()
	if !ok {
		return
	}
	s.setBlocked(blocked)
	if blocked {
		s.conns.closeIdle()
		g.log.Warn("backend blocked: another user's process holds its port", "backend", addr)
	}
}

// Drain stops sending new requests to addr (unless a pool has nothing else,
// as with SetReady) and waits until no request is in flight to it, requests
// of routes already changed or removed included. It returns ctx's error,
// wrapped, if ctx ends first; the address stays draining until
// SetReady(addr, true) or until no route uses it.
func (g *Gateway) Drain(ctx context.Context, addr string) error {
	g.mu.Lock()
	var wait []*backendState
	if s, ok := g.states[addr]; ok {
		s.setDraining()
		wait = append(wait, s)
	}
	wait = append(wait, g.retired[addr]...)
	g.mu.Unlock()
	for _, s := range wait {
		if err := s.waitIdle(ctx); err != nil {
			return fmt.Errorf("draining backend %s: %d requests still in flight: %w", addr, s.inflight.Load(), err)
		}
	}
	return nil
}

// state returns the state of addr, creating it; callers hold g.mu.
func (g *Gateway) state(addr string) *backendState {
	s, ok := g.states[addr]
	if !ok {
		s = &backendState{addr: addr}
		g.states[addr] = s
	}
	return s
}

// forgetUnused drops the state of addresses no route of t uses; callers
// hold g.mu. A dropped state with requests still in flight is kept as
// retired until they finish, so that Drain still waits for them.
func (g *Gateway) forgetUnused(t table) {
	used := make(map[string]bool, len(g.states))
	for _, e := range t {
		for _, p := range []*pool{e.stable, e.canary} {
			for _, tg := range p.targets {
				used[tg.state.addr] = true
			}
		}
	}
	for addr, s := range g.states {
		if !used[addr] {
			delete(g.states, addr)
			s.conns.forgotten.Store(true)
			s.conns.closeIdle()
			if s.inflight.Load() > 0 {
				g.retired[addr] = append(g.retired[addr], s)
			}
		}
	}
	for addr, ss := range g.retired {
		keep := ss[:0]
		for _, s := range ss {
			if s.inflight.Load() > 0 {
				keep = append(keep, s)
			}
		}
		if len(keep) == 0 {
			delete(g.retired, addr)
		} else {
			g.retired[addr] = keep
		}
	}
}
