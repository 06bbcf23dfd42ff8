// Package remote drives a gateway that runs in another process, through the
// admin API of gateway.Gateway.AdminHandler on its unix socket. Its Client has the methods of
// gateway.Gateway that controllers use, so a control plane can swap the
// in-process gateway for one that keeps serving while it restarts.
//
// Every call has a short deadline: the gateway is on the same machine, and a
// controller must not hang on a gateway that is being restarted. Methods
// that return no error (Route, Routes, RemoveRoute, RemoveEnv, SetReady) log failures;
// controllers are level-triggered and will repeat the change on their next
// pass.
package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/runway-cd/runway/internal/gateway"
)

// Timeout bounds every call to the admin API.
const Timeout = 2 * time.Second

// adminBase is the URL every admin request is sent to; the transport dials
// the socket whatever the host says.
const adminBase = "http://gateway"

// Transport returns an http.Transport that sends every request over the
// unix socket at socket, whatever its URL's host, and never through a proxy.
func Transport(socket string) *http.Transport {
	var d net.Dialer
	return &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
}

// Client is a gateway in another process. It is safe for concurrent use.
type Client struct {
	socket string
	base   *url.URL
	http   *http.Client
	// long is for calls whose caller's context bounds them (Drain).
	long *http.Client
	log  *slog.Logger
	// hosts is a route-less Gateway used only for Host, so that the host
	// format has one definition.
	hosts *gateway.Gateway
}

// New returns a Client for the gateway whose admin API listens on the unix
// socket at socket and whose routes are under domain (empty means
// "localhost", as in gateway.Options). It logs to slog.Default() unless
// given a logger with WithLogger.
func New(socket string, domain string) *Client {
	base, _ := url.Parse(adminBase)
	tr := Transport(socket)
	return &Client{
		socket: socket,
		base:   base,
		http:   &http.Client{Timeout: Timeout, Transport: tr},
		long:   &http.Client{Transport: tr},
		log:    slog.Default(),
		hosts:  gateway.New(gateway.Options{Domain: domain}),
	}
}

// WithLogger makes the client log to logger instead of slog.Default() and
// returns it.
func (c *Client) WithLogger(logger *slog.Logger) *Client {
	if logger != nil {
		c.log = logger
	}
	return c
}

// Socket returns the path of the gateway's admin socket.
func (c *Client) Socket() string { return c.socket }

// SetPolicy replaces the gateway's backend policy and returns the routes it
// removed for breaking it. An invalid policy is reported wrapping
// gateway.ErrInvalidRoute.
func (c *Client) SetPolicy(p gateway.BackendPolicy) ([]string, error) {
	var resp gateway.PolicyResponse
	if err := c.call(http.MethodPut, "/policy", p, &resp); err != nil {
		return nil, fmt.Errorf("setting gateway backend policy: %w", err)
	}
	return resp.Removed, nil
}

// Host returns the Host name that reaches app in env, as gateway.Gateway.Host
// does for the production environment "production".
func (c *Client) Host(env, app string) string { return c.hosts.Host(env, app) }

// SetRoute adds or replaces the route of r.Env and r.App. An invalid route is
// reported wrapping gateway.ErrInvalidRoute.
func (c *Client) SetRoute(r gateway.Route) error {
	if err := c.call(http.MethodPut, routePath(r.Env, r.App), r, nil); err != nil {
		return fmt.Errorf("setting route %s/%s: %w", r.Env, r.App, err)
	}
	return nil
}

// SetCanaryWeight changes the canary share of the route of app in env. A
// missing route is reported wrapping gateway.ErrNoRoute, a bad weight
// wrapping gateway.ErrInvalidRoute.
func (c *Client) SetCanaryWeight(env, app string, weight int) error {
	err := c.call(http.MethodPost, routePath(env, app)+"/weight", gateway.WeightRequest{Weight: weight}, nil)
	if err != nil {
		return fmt.Errorf("setting canary weight of %s/%s: %w", env, app, err)
	}
	return nil
}

// Route returns the route of app in env. A gateway that cannot be reached
// is logged and reported as no route.
func (c *Client) Route(env, app string) (gateway.Route, bool) {
	var r gateway.Route
	err := c.call(http.MethodGet, routePath(env, app), nil, &r)
	if errors.Is(err, gateway.ErrNoRoute) {
		return gateway.Route{}, false
	}
	if err != nil {
		c.log.Error("reading gateway route", "env", env, "app", app, "err", err)
		return gateway.Route{}, false
	}
	return r, true
}

// Routes returns all routes, sorted by Env, then App. A gateway that cannot
// be reached is logged and reported as no routes.
func (c *Client) Routes() []gateway.Route {
	var rs []gateway.Route
	if err := c.call(http.MethodGet, "/routes", nil, &rs); err != nil {
		c.log.Error("reading gateway routes", "err", err)
		return nil
	}
	return rs
}

// RemoveRoute removes the route of app in env, if there is one; failures are
// logged.
func (c *Client) RemoveRoute(env, app string) {
	if err := c.call(http.MethodDelete, routePath(env, app), nil, nil); err != nil {
		c.log.Error("removing gateway route", "env", env, "app", app, "err", err)
	}
}

// RemoveEnv removes every route of env; failures are logged.
func (c *Client) RemoveEnv(env string) {
	if err := c.call(http.MethodDelete, "/envs/"+url.PathEscape(env), nil, nil); err != nil {
		c.log.Error("removing gateway routes of environment", "env", env, "err", err)
	}
}

// SetReady marks the backends at addr ready or not, as
// gateway.Gateway.SetReady does; failures are logged.
func (c *Client) SetReady(addr string, ready bool) {
	if err := c.call(http.MethodPost, "/backends/ready", gateway.ReadyRequest{Addr: addr, Ready: &ready}, nil); err != nil {
		c.log.Error("setting gateway backend readiness", "backend", addr, "ready", ready, "err", err)
	}
}

// Drain stops new requests to addr and waits until none is in flight, as
// gateway.Gateway.Drain does. ctx bounds the wait, and so does
// gateway.MaxDrainWait; a drain that did not finish in time is reported
// wrapping context.DeadlineExceeded.
func (c *Client) Drain(ctx context.Context, addr string) error {
	wait := gateway.MaxDrainWait
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl))
	}
	if wait <= 0 {
		return fmt.Errorf("draining backend %s: %w", addr, context.DeadlineExceeded)
	}
	// The gateway answers within wait; the margin is for the round trip.
	ctx, cancel := context.WithTimeout(ctx, wait+Timeout)
	defer cancel()
	req := gateway.DrainRequest{Addr: addr, TimeoutMillis: max(wait.Milliseconds(), 1)}
	if err := c.do(ctx, c.long, http.MethodPost, "/backends/drain", req, nil); err != nil {
		return fmt.Errorf("draining backend %s: %w", addr, err)
	}
	return nil
}

func routePath(env, app string) string {
	return "/routes/" + url.PathEscape(env) + "/" + url.PathEscape(app)
}

// call sends body as JSON to the admin API and decodes a 2xx answer into
// out, if out is not nil. Error answers become errors wrapping
// gateway.ErrInvalidRoute (400), gateway.ErrNoRoute (404) or
// context.DeadlineExceeded (504, a drain that did not finish).
func (c *Client) call(method, path string, body, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	return c.do(ctx, c.http, method, path, body, out)
}

// do is call with the caller's context and client.
func (c *Client) do(ctx context.Context, hc *http.Client, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	u := c.base.String() + path
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("calling gateway admin API: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("reading answer of %s %s: %w", method, u, err)
	}
	if resp.StatusCode/100 != 2 {
		return statusError(method, u, resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding answer of %s %s: %w", method, u, err)
	}
	return nil
}

func statusError(method, u string, code int, data []byte) error {
	var e gateway.ErrorResponse
	if json.Unmarshal(data, &e) != nil || e.Error == "" {
		// Not the admin API's answer: perhaps something else listens there.
		const max = 200
		msg := strings.TrimSpace(string(data))
		if len(msg) > max {
			msg = msg[:max] + "..."
		}
		return fmt.Errorf("%s %s: unexpected answer %d: %q", method, u, code, msg)
	}
	switch code {
	case http.StatusBadRequest:
		return fmt.Errorf("%s %s: %s: %w", method, u, e.Error, gateway.ErrInvalidRoute)
	case http.StatusNotFound:
		return fmt.Errorf("%s %s: %s: %w", method, u, e.Error, gateway.ErrNoRoute)
	case http.StatusGatewayTimeout:
		return fmt.Errorf("%s %s: %s: %w", method, u, e.Error, context.DeadlineExceeded)
	}
	return fmt.Errorf("%s %s: gateway answered %d: %s", method, u, code, e.Error)
}
