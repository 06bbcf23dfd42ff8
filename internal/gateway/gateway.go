package gateway

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Gateway.
type Options struct {
	// Domain is the DNS suffix of every route's host. Empty means
	// "localhost", which resolves to loopback without any DNS setup.
	Domain string
	// ProductionEnv is the environment reached by "<app>.<domain>". Empty
	// means "production".
	ProductionEnv string
	// Logger receives proxy errors. Nil means slog.Default().
	Logger *slog.Logger
	// Backends says which addresses routes may use; see BackendPolicy. An
	// invalid policy is logged and replaced by loopback only.
	Backends BackendPolicy
	// Self is the gateway's own traffic address, which no backend may have.
	Self string
	// DirectListeners gives every route a listener of its own on
	// loopback, Route.Listen, serving that route whatever the Host (see
	// direct.go). Close closes them. Serve always turns it on.
	DirectListeners bool
}

// Gateway is an http.Handler that proxies each request to a replica of the
// app its Host names. It is safe for concurrent use; routes can change while
// it serves.
type Gateway struct {
	domain  string
	prodEnv string
	log     *slog.Logger
	proxy   *httputil.ReverseProxy
	fast    bool // take the fast path (fast.go) where it applies
	buffers *bufferPool
	metrics *metrics

	self   string
	mu     sync.Mutex // serializes writers of routes and policy; guards states, retired
	routes atomic.Pointer[table]
	policy atomic.Pointer[backendPolicy]

	// states is the state of every backend address a route uses; retired
	// the states of addresses no route uses any more that still had
	// requests in flight when dropped.
	states  map[string]*backendState
	retired map[string][]*backendState
	now     func() time.Time // time.Now but in tests

	// direct are the routes' direct listeners, when directOn; guarded by
	// mu, as is closed (set by Close).
	directOn bool
	closed   bool
	direct   map[routeKey]*directListener
	directWG sync.WaitGroup
}

// New returns a Gateway with no routes.
func New(opts Options) *Gateway {
	g := &Gateway{
		domain:  strings.ToLower(strings.Trim(opts.Domain, ".")),
		prodEnv: opts.ProductionEnv,
		log:     opts.Logger,
		metrics: newMetrics(),
		fast:    true,
		buffers: &bufferPool{},
		self:    opts.Self,
		states:  make(map[string]*backendState),
		retired: make(map[string][]*backendState),
		now:     time.Now,

		directOn: opts.DirectListeners,
		direct:   make(map[routeKey]*directListener),
	}
	if g.domain == "" {
		g.domain = "localhost"
	}
	if g.prodEnv == "" {
		g.prodEnv = "production"
	}
	if g.log == nil {
		g.log = slog.Default()
	}
	g.proxy = g.newProxy()
	g.routes.Store(&table{})
	p, err := parseBackendPolicy(opts.Backends, g.self)
	if err != nil {
		g.log.Error("invalid gateway backend policy; allowing loopback backends only", "err", err)
		p, _ = parseBackendPolicy(BackendPolicy{}, "")
	}
	g.policy.Store(p)
	return g
}

// SetRoute adds the route r, or replaces the route of the same Env and App,
// in one step: every request sees either the old route or the new one.
// With direct listeners, an empty r.Listen keeps the route's listener (or
// opens one on a free loopback port) and another address moves it there.
func (g *Gateway) SetRoute(r Route) error {
	if err := r.validate(); err != nil {
		return fmt.Errorf("setting route %s/%s: %w", r.Env, r.App, err)
	}
	r = r.clone()
	var err error
	g.update(func(t table) {
		// Checked under the writers' lock, so a concurrent SetPolicy
		// cannot let a route past a policy that no longer holds.
		if err = g.policy.Load().checkRoute(r); err != nil {
			err = fmt.Errorf("setting route %s/%s: %w", r.Env, r.App, err)
			return
		}
		if err = g.checkNotDirect(r); err != nil {
			err = fmt.Errorf("setting route %s/%s: %w", r.Env, r.App, err)
			return
		}
		if err = g.bindDirect(&r); err != nil {
			err = fmt.Errorf("setting route %s/%s: %w", r.Env, r.App, err)
			return
		}
		t[routeKey{r.Env, r.App}] = g.newEntry(r)
	})
	return err
}

// Policy returns the backend policy in force.
func (g *Gateway) Policy() BackendPolicy {
	return g.policy.Load().src
}

// SetPolicy replaces the backend policy (the gateway's own address stays
// reserved) and removes every route the new policy forbids, returning their
// "env/app" names. An invalid policy changes nothing and is reported
// wrapping ErrInvalidRoute.
func (g *Gateway) SetPolicy(p BackendPolicy) ([]string, error) {
	bp, err := parseBackendPolicy(p, g.self)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRoute, err)
	}
	var removed []string
	g.update(func(t table) {
		g.policy.Store(bp)
		for k, e := range t {
			if err := bp.checkRoute(e.route); err != nil {
				g.log.Warn("removing route the new backend policy forbids", "env", k.env, "app", k.app, "err", err)
				delete(t, k)
				removed = append(removed, k.env+"/"+k.app)
			}
		}
	})
	slices.Sort(removed)
	return removed, nil
}

// SetCanaryWeight changes the share of requests, 0 to 100, that the route of
// app in env sends to its canary.
func (g *Gateway) SetCanaryWeight(env, app string, weight int) error {
	var err error
	g.update(func(t table) {
		e, ok := t[routeKey{env, app}]
		if !ok {
			err = fmt.Errorf("setting canary weight of %s/%s: %w", env, app, ErrNoRoute)
			return
		}
		if err = validateWeight(weight, e.route.CanaryVersion); err != nil {
			err = fmt.Errorf("setting canary weight of %s/%s: %w", env, app, err)
			return
		}
		r := e.route
		r.CanaryWeight = weight
		t[routeKey{env, app}] = g.newEntry(r)
	})
	return err
}

// Route returns the route of app in env.
func (g *Gateway) Route(env, app string) (Route, bool) {
	e, ok := (*g.routes.Load())[routeKey{env, app}]
	if !ok {
		return Route{}, false
	}
	return e.route.clone(), true
}

// Routes returns all routes, sorted by Env, then App.
func (g *Gateway) Routes() []Route {
	t := *g.routes.Load()
	rs := make([]Route, 0, len(t))
	for _, e := range t {
		rs = append(rs, e.route.clone())
	}
	slices.SortFunc(rs, func(a, b Route) int {
		return cmp.Or(cmp.Compare(a.Env, b.Env), cmp.Compare(a.App, b.App))
	})
	return rs
}

// RemoveRoute removes the route of app in env, if there is one. Its metrics
// stay exported.
func (g *Gateway) RemoveRoute(env, app string) {
	g.update(func(t table) {
		delete(t, routeKey{env, app})
	})
}

// RemoveEnv removes every route of env. Metrics of env and of every other
// environment stay exported.
func (g *Gateway) RemoveEnv(env string) {
	g.update(func(t table) {
		for k := range t {
			if k.env == env {
				delete(t, k)
			}
		}
	})
}

// MetricsHandler serves the gateway's metrics in the Prometheus exposition
// format: runway_gateway_requests_total{env,app,version,code} and
// runway_gateway_request_duration_seconds{env,app,version}.
func (g *Gateway) MetricsHandler() http.Handler {
	return g.metrics.handler()
}

// Counts returns how many requests the gateway has answered for version of
// app in env, and how many of them with a 5xx status.
func (g *Gateway) Counts(env, app, version string) (total, serverErrors uint64) {
	s, ok := g.metrics.lookup(versionKey{env, app, version})
	if !ok {
		return 0, 0
	}
	return s.total.Load(), s.serverErrors.Load()
}

// update applies change to a copy of the route table and publishes the copy.
func (g *Gateway) update(change func(table)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := make(table, len(*g.routes.Load())+1)
	for k, e := range *g.routes.Load() {
		t[k] = e
	}
	change(t)
	g.forgetUnused(t)
	g.closeUnusedDirect(t)
	g.routes.Store(&t)
}

func (g *Gateway) newEntry(r Route) *entry {
	return &entry{
		route:  r,
		stable: g.newPool(r.Env, r.App, r.StableVersion, r.Stable),
		canary: g.newPool(r.Env, r.App, r.CanaryVersion, r.Canary),
	}
}

func (g *Gateway) newPool(env, app, version string, backends []Backend) *pool {
	p := &pool{
		version:       version,
		key:           versionKey{env, app, version},
		envHeader:     []string{env},
		versionHeader: []string{version},
	}
	if version != "" {
		// Create the series now, so they exist before the first request.
		p.stats = g.metrics.stats(p.key)
	}
	for _, b := range backends {
		p.targets = append(p.targets, &target{host: b.Addr, state: g.state(b.Addr)})
	}
	return p
}
