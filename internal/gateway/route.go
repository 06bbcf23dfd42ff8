package gateway

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
)

// ErrInvalidRoute is returned, wrapped, by SetRoute and SetCanaryWeight when
// the route or weight given is not acceptable.
var ErrInvalidRoute = errors.New("invalid route")

// ErrNoRoute is returned, wrapped, by SetCanaryWeight when no route exists for
// the environment and app.
var ErrNoRoute = errors.New("no such route")

// Backend is one replica of an app version.
type Backend struct {
	// Addr is the replica's listening address, "IP:port": an IP literal,
	// never a host name, on loopback or in the gateway's BackendPolicy.
	Addr string
}

// Route is where requests for one app in one environment go.
type Route struct {
	// Env and App name the route; both are DNS labels of [a-z0-9-].
	Env, App string
	// StableVersion is the version serving the share of requests not sent
	// to the canary, on the Stable replicas.
	StableVersion string
	Stable        []Backend
	// CanaryVersion and Canary are the version under rollout and its
	// replicas; both empty when there is no canary.
	CanaryVersion string
	Canary        []Backend
	// CanaryWeight is the percentage, 0 to 100, of requests sent to the
	// canary.
	CanaryWeight int
	// Listen is the route's direct listener, "127.0.0.1:port", serving it
	// whatever the Host: set by the gateway when it has
	// Options.DirectListeners (empty otherwise); a caller may leave it
	// empty to keep the route's, or name another loopback address.
	Listen string `json:",omitempty"`
}

// clone returns r with its own copies of the backend slices, so the table
// never shares memory with callers.
func (r Route) clone() Route {
	r.Stable = append([]Backend(nil), r.Stable...)
	r.Canary = append([]Backend(nil), r.Canary...)
	return r
}

func (r Route) validate() error {
	if err := validateName("env", r.Env); err != nil {
		return err
	}
	if err := validateName("app", r.App); err != nil {
		return err
	}
	if err := validateWeight(r.CanaryWeight, r.CanaryVersion); err != nil {
		return err
	}
	if err := validateListen(r.Listen); err != nil {
		return err
	}
	if len(r.Stable) > 0 && r.StableVersion == "" {
		return fmt.Errorf("%w: stable backends without a stable version", ErrInvalidRoute)
	}
	if len(r.Canary) > 0 && r.CanaryVersion == "" {
		return fmt.Errorf("%w: canary backends without a canary version", ErrInvalidRoute)
	}
	for _, b := range append(append([]Backend(nil), r.Stable...), r.Canary...) {
		if err := validateAddr(b.Addr); err != nil {
			return err
		}
	}
	return nil
}

// validateName accepts a non-empty DNS label of lowercase letters, digits
// and hyphens; anything else could not be reached through a Host name.
func validateName(what, name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty %s name", ErrInvalidRoute, what)
	}
	if !validLabel(name) {
		return fmt.Errorf("%w: %s name %q: want 1 to 63 characters of [a-z0-9-]", ErrInvalidRoute, what, name)
	}
	return nil
}

func validLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func validateWeight(weight int, canaryVersion string) error {
	if weight < 0 || weight > 100 {
		return fmt.Errorf("%w: canary weight %d not in 0..100", ErrInvalidRoute, weight)
	}
	if weight > 0 && canaryVersion == "" {
		return fmt.Errorf("%w: canary weight %d without a canary version", ErrInvalidRoute, weight)
	}
	return nil
}

func validateAddr(addr string) error {
	_, err := parseBackendAddr(addr)
	return err
}

// routeKey identifies a route in the table.
type routeKey struct{ env, app string }

// pool is the replicas of one version with what a request to them needs.
type pool struct {
	version string
	targets []*target
	next    atomic.Uint64 // round robin among targets
	key     versionKey
	stats   *versionStats // nil until needed when version is ""

	// envHeader and versionHeader are the values of HeaderEnv and
	// HeaderVersion on the pool's responses.
	envHeader, versionHeader []string
}

// target is one backend of a pool.
type target struct {
	host  string // "IP:port"
	state *backendState
}

// pick returns the next backend, in round robin, for a request at now
// (unix nanoseconds), leaving out the backends in tried: the first usable
// one, else (failing open) the first unready or ejected one, else the first
// draining one, never a blocked one. It reports false when the pool has no
// backend left.
func (p *pool) pick(now int64, tried []*backendState) (*target, bool) {
	n := uint64(len(p.targets))
	if n == 0 {
		return nil, false
	}
	start := p.next.Add(1) - 1
	var degraded, draining *target
	for i := range n {
		t := p.targets[(start+i)%n]
		if len(tried) > 0 && slices.Contains(tried, t.state) {
			continue
		}
		switch t.state.rank(now) {
		case rankUsable:
			return t, true
		case rankDegraded:
			if degraded == nil {
				degraded = t
			}
		case rankDraining:
			if draining == nil {
				draining = t
			}
		}
	}
	if degraded != nil {
		return degraded, true
	}
	return draining, draining != nil
}

// entry is a route as served: immutable apart from its counters. A change to
// a route replaces its entry, which restarts the split and the round robin.
type entry struct {
	route  Route
	stable *pool
	canary *pool
	split  atomic.Uint64 // requests seen, drives the weighted split
}

// choose returns the pool for the next request. Request n (from 0) goes to
// the canary when floor((n+1)*w/100) > floor(n*w/100): the smooth weighted
// round robin of two members, done with one atomic counter. After n requests
// the canary has had exactly floor(n*w/100) of them.
func (e *entry) choose() *pool {
	w := uint64(e.route.CanaryWeight)
	switch w {
	case 0:
		return e.stable
	case 100:
		return e.canary
	}
	n := e.split.Add(1) - 1
	if (n+1)*w/100 > n*w/100 {
		return e.canary
	}
	return e.stable
}

// table is an immutable snapshot of all routes.
type table map[routeKey]*entry
