package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/http"
)

// Direct listeners: with Options.DirectListeners, every route also has a
// listener of its own on loopback, Route.Listen, that serves that route
// whatever the request's Host says. "http://127.0.0.1:<port>/" needs no
// name resolution, so it works with every client (Go's resolver does not
// resolve "<app>.<env>.localhost", curl and browsers do); it is the URL to
// give migrations, tests and users. The port is chosen when the route is
// first set, kept when the route is replaced or reloaded from the state
// file, and closed when the route is removed.

// directListener serves one route on its own address.
type directListener struct {
	addr string
	srv  *http.Server
}

// directHandler serves the route key on a direct listener.
type directHandler struct {
	g   *Gateway
	key routeKey
}

func (h directHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.g.serve(w, r, h.key.env, h.key.app, h.g.now())
}

// validateListen accepts "" or a loopback IP:port.
func validateListen(addr string) error {
	if addr == "" {
		return nil
	}
	ap, err := parseBackendAddr(addr)
	if err != nil {
		return fmt.Errorf("%w: listen address %q: want a loopback IP:port", ErrInvalidRoute, addr)
	}
	if !ap.Addr().IsLoopback() {
		return fmt.Errorf("%w: listen address %q: not a loopback address", ErrInvalidRoute, addr)
	}
	return nil
}

// bindDirect gives r its direct listener: the one it has when r.Listen is
// empty or names it, else a new one on r.Listen, else a new one on a free
// loopback port; r.Listen is set to its address. Without direct listeners
// r.Listen is cleared. Callers hold g.mu.
func (g *Gateway) bindDirect(r *Route) error {
	if !g.directOn {
		r.Listen = ""
		return nil
	}
	if g.closed {
		return nil
	}
	k := routeKey{r.Env, r.App}
	cur := g.direct[k]
	if cur != nil && (r.Listen == "" || r.Listen == cur.addr) {
		r.Listen = cur.addr
		return nil
	}
	addr := r.Listen
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%w: listening for %s/%s: %w", ErrInvalidRoute, r.Env, r.App, err)
	}
	d := &directListener{addr: ln.Addr().String(), srv: TrafficServer(directHandler{g, k}, g.log)}
	g.directWG.Go(func() {
		if err := d.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Error("serving direct listener", "env", r.Env, "app", r.App, "listen", d.addr, "err", err)
		}
	})
	if cur != nil {
		cur.srv.Close()
	}
	g.direct[k] = d
	r.Listen = d.addr
	g.log.Info("route listening", "env", r.Env, "app", r.App, "listen", d.addr)
	return nil
}

// checkNotDirect refuses a route whose backend is a direct listener: it
// would loop. Callers hold g.mu.
func (g *Gateway) checkNotDirect(r Route) error {
	for _, b := range append(append([]Backend(nil), r.Stable...), r.Canary...) {
		for _, d := range g.direct {
			if b.Addr == d.addr {
				return fmt.Errorf("%w: backend %s is a direct listener of the gateway: the route would loop", ErrInvalidRoute, b.Addr)
			}
		}
	}
	return nil
}

// closeUnusedDirect closes the direct listeners of routes t no longer has
// or that moved; callers hold g.mu.
func (g *Gateway) closeUnusedDirect(t table) {
	for k, d := range g.direct {
		if e, ok := t[k]; !ok || e.route.Listen != d.addr {
			d.srv.Close()
			delete(g.direct, k)
		}
	}
}

// Close closes every direct listener and their connections and waits for
// them to stop. Routes set afterwards get no listener. Close does not
// affect ServeHTTP.
func (g *Gateway) Close() error {
	g.mu.Lock()
	g.closed = true
	var err error
	for k, d := range g.direct {
		err = errors.Join(err, d.srv.Close())
		delete(g.direct, k)
	}
	g.mu.Unlock()
	g.directWG.Wait()
	if err != nil {
		return fmt.Errorf("closing direct listeners: %w", err)
	}
	return nil
}
