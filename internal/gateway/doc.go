// Package gateway is Runway's data plane: one HTTP listener that routes each
// request by its Host header to the replicas of an app in an environment,
// splits production traffic between a stable and a canary version by weight,
// and counts every request per environment, app, version and status code.
//
// Host names are "<app>.<domain>" for the production environment and
// "<app>.<env>.<domain>" for staging environment <env>; the domain is
// "localhost" unless configured, so nothing needs DNS on a single machine.
//
// The split is deterministic rather than random: over any run of n requests
// to a route with canary weight w, the canary receives n*w/100 of them
// rounded down, and the two versions interleave as evenly as possible. This
// is what lets a rollout step of 20% mean exactly 20% even at low traffic,
// and what lets tests assert exact counts.
//
// Each version's replicas form a pool served in round robin. A replica the
// supervisor reports unready (SetReady) or that is being drained (Drain)
// gets no new requests, and one whose connection is refused or reset is
// ejected passively for 1s, doubling per consecutive ejection up to 30s
// (Envoy's outlier detection); a pool whose replicas are all out fails
// open rather than answer 502. A request that could not reach a replica is
// retried on another of the same pool when that is safe (see retrier).
//
// A GET or HEAD without a body takes a fast path (fast.go) that writes the
// request to a pooled keep-alive connection and reads the response in the
// handler's goroutine; every other request goes through
// httputil.ReverseProxy. Both forward the same headers (a test holds them
// to it).
//
// With Options.DirectListeners (always on in a gateway process, Serve),
// every route also has a loopback listener of its own, Route.Listen, that
// serves it whatever the Host: the URL that works with any HTTP client.
//
// The route table is an immutable value behind an atomic pointer: requests
// read it without locks, and changes (SetRoute, SetCanaryWeight, RemoveRoute,
// RemoveEnv) build a new table and swap it in.
//
// Every backend is an IP:port on loopback or inside a CIDR of the
// BackendPolicy, and never the gateway's own address or Runway's API; the
// admin API (AdminHandler) answers only over a unix socket whose file mode
// keeps other local users out. Backends cannot set X-Runway-* response
// headers, not through trailers nor 1xx responses either.
//
// Metrics are registered on the gateway's own prometheus.Registry and served
// by MetricsHandler. Counters are kept after their route is removed, so a
// scrape never sees a counter go backwards or vanish before its last
// increments were read; they are small and live as long as the Gateway.
package gateway
