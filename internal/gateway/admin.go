package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"sync"
	"time"
)

// maxAdminBody bounds the body of an admin request. A route with a few
// hundred replicas fits.
const maxAdminBody = 64 << 10

// Health is the body of the admin API's GET /healthz.
type Health struct {
	// Status is "ok".
	Status string `json:"status"`
	// PID is the gateway process's id, so a supervisor can tell that the
	// process answering is the one it recorded.
	PID int `json:"pid"`
	// Routes is the number of routes in the table.
	Routes int `json:"routes"`
}

// WeightRequest is the body of POST /routes/{env}/{app}/weight.
type WeightRequest struct {
	Weight int `json:"weight"`
}

// PolicyResponse is the answer to PUT /policy.
type PolicyResponse struct {
	// Policy is the policy now in force.
	Policy BackendPolicy `json:"policy"`
	// Removed names, as "env/app", the routes the new policy forbade.
	Removed []string `json:"removed"`
}

// ReadyRequest is the body of POST /backends/ready: SetReady(Addr, Ready).
type ReadyRequest struct {
	Addr  string `json:"addr"`
	Ready *bool  `json:"ready"` // required
}

// DrainRequest is the body of POST /backends/drain: Drain(Addr), waiting at
// most TimeoutMillis (0 or more than MaxDrainWait: MaxDrainWait).
type DrainRequest struct {
	Addr          string `json:"addr"`
	TimeoutMillis int64  `json:"timeoutMillis"`
}

// MaxDrainWait bounds how long POST /backends/drain waits, below the admin
// server's write timeout so the answer still reaches the client.
const MaxDrainWait = 25 * time.Second

// ErrorResponse is the body of every admin API error.
type ErrorResponse struct {
	Error string `json:"error"`
}

// AdminHandler returns the gateway's control API, for a control plane that
// runs in another process. It answers only connections over a unix socket,
// whose file mode (0600, in a 0700 directory) decides who may connect: any
// local user could reach a TCP port. In JSON:
//
//	GET    /healthz                    Health
//	GET    /policy                     BackendPolicy
//	PUT    /policy                     body BackendPolicy; answers PolicyResponse
//	GET    /routes                     []Route, as Routes
//	GET    /routes/{env}/{app}         Route, or 404
//	PUT    /routes/{env}/{app}         body Route; answers the route set
//	POST   /routes/{env}/{app}/weight  body WeightRequest; answers the route
//	DELETE /routes/{env}/{app}         204
//	DELETE /envs/{env}                 204
//	POST   /backends/ready             body ReadyRequest; 204
//	POST   /backends/drain             body DrainRequest; 204 once drained,
//	                                   504 if requests are still in flight
//	                                   when the timeout ends
//	GET    /metrics                    MetricsHandler
//
// Every change is saved to statePath with SaveRoutes before the 2xx answer,
// so a gateway restarted with LoadRoutes(statePath) comes back with every
// change it acknowledged. Errors are ErrorResponse with status 400 for a bad
// body, an invalid route or a backend the BackendPolicy forbids, 404 for a
// missing route (read or weight change), 413 for a body over 64 KiB and 500
// when the table could not be saved. A request that fails changes nothing.
// Readiness and drains are not saved: the supervisor reports them again.
func (g *Gateway) AdminHandler(statePath string) http.Handler {
	a := &admin{g: g, statePath: statePath}
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", a.handle(a.health))
	mux.Handle("GET /policy", a.handle(a.policy))
	mux.Handle("PUT /policy", a.handle(a.setPolicy))
	mux.Handle("GET /routes", a.handle(a.routes))
	mux.Handle("GET /routes/{env}/{app}", a.handle(a.route))
	mux.Handle("PUT /routes/{env}/{app}", a.handle(a.setRoute))
	mux.Handle("POST /routes/{env}/{app}/weight", a.handle(a.setWeight))
	mux.Handle("DELETE /routes/{env}/{app}", a.handle(a.removeRoute))
	mux.Handle("DELETE /envs/{env}", a.handle(a.removeEnv))
	mux.Handle("POST /backends/ready", a.handle(a.setReady))
	mux.Handle("POST /backends/drain", a.handle(a.drain))
	mux.Handle("GET /metrics", g.MetricsHandler())
	return unixOnly(mux)
}

// admin serves the control API of one Gateway.
type admin struct {
	g         *Gateway
	statePath string
	// mu orders changes with their saves, so the file always ends with the
	// table of the last change, never an older snapshot saved late.
	mu sync.Mutex
}

// apiError is an error with the status and message a client may see.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

func (a *admin) handle(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxAdminBody)
		if err := h(w, r); err != nil {
			a.writeError(w, r, err)
		}
	})
}

// writeError maps err to a status and a message safe to show; the detail of
// unexpected errors goes to the log only.
func (a *admin) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	var tooLarge *http.MaxBytesError
	code, msg := http.StatusInternalServerError, "internal error"
	switch {
	case errors.As(err, &ae):
		code, msg = ae.code, ae.msg
	case errors.As(err, &tooLarge):
		code, msg = http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", tooLarge.Limit)
	case errors.Is(err, ErrNoRoute):
		code, msg = http.StatusNotFound, err.Error()
	case errors.Is(err, ErrInvalidRoute):
		code, msg = http.StatusBadRequest, err.Error()
	}
	if code >= 500 {
		a.g.log.ErrorContext(r.Context(), "gateway admin request", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, code, ErrorResponse{Error: msg})
}

func (a *admin) health(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, Health{Status: "ok", PID: os.Getpid(), Routes: len(*a.g.routes.Load())})
	return nil
}

func (a *admin) policy(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, a.g.Policy())
	return nil
}

func (a *admin) setPolicy(w http.ResponseWriter, r *http.Request) error {
	var p BackendPolicy
	if err := decodeBody(r, &p); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	removed, err := a.g.SetPolicy(p)
	if err != nil {
		return err
	}
	if len(removed) > 0 {
		if err := a.save(); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, PolicyResponse{Policy: a.g.Policy(), Removed: removed})
	return nil
}

func (a *admin) routes(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, a.g.Routes())
	return nil
}

func (a *admin) route(w http.ResponseWriter, r *http.Request) error {
	env, app := r.PathValue("env"), r.PathValue("app")
	rt, ok := a.g.Route(env, app)
	if !ok {
		return &apiError{http.StatusNotFound, fmt.Sprintf("%s/%s: %v", env, app, ErrNoRoute)}
	}
	writeJSON(w, http.StatusOK, rt)
	return nil
}

func (a *admin) setRoute(w http.ResponseWriter, r *http.Request) error {
	env, app := r.PathValue("env"), r.PathValue("app")
	var rt Route
	if err := decodeBody(r, &rt); err != nil {
		return err
	}
	if rt.Env == "" {
		rt.Env = env
	}
	if rt.App == "" {
		rt.App = app
	}
	if rt.Env != env || rt.App != app {
		return &apiError{http.StatusBadRequest, fmt.Sprintf("body names route %s/%s, path names %s/%s", rt.Env, rt.App, env, app)}
	}
	return a.changeRoute(w, env, app, func() error { return a.g.SetRoute(rt) })
}

func (a *admin) setWeight(w http.ResponseWriter, r *http.Request) error {
	env, app := r.PathValue("env"), r.PathValue("app")
	var req WeightRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	return a.changeRoute(w, env, app, func() error { return a.g.SetCanaryWeight(env, app, req.Weight) })
}

// changeRoute applies change to the route of app in env, saves the routes
// and answers with the route as it now is.
func (a *admin) changeRoute(w http.ResponseWriter, env, app string, change func() error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := change(); err != nil {
		return err
	}
	if err := a.save(); err != nil {
		return err
	}
	got, _ := a.g.Route(env, app)
	writeJSON(w, http.StatusOK, got)
	return nil
}

func (a *admin) removeRoute(w http.ResponseWriter, r *http.Request) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.g.RemoveRoute(r.PathValue("env"), r.PathValue("app"))
	if err := a.save(); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *admin) removeEnv(w http.ResponseWriter, r *http.Request) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.g.RemoveEnv(r.PathValue("env"))
	if err := a.save(); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *admin) setReady(w http.ResponseWriter, r *http.Request) error {
	var req ReadyRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.Ready == nil {
		return &apiError{http.StatusBadRequest, "ready: required"}
	}
	if err := validateAddr(req.Addr); err != nil {
		return err
	}
	a.g.SetReady(req.Addr, *req.Ready)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *admin) drain(w http.ResponseWriter, r *http.Request) error {
	var req DrainRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if err := validateAddr(req.Addr); err != nil {
		return err
	}
	if req.TimeoutMillis < 0 {
		return &apiError{http.StatusBadRequest, fmt.Sprintf("timeoutMillis %d: negative", req.TimeoutMillis)}
	}
	wait := MaxDrainWait
	if req.TimeoutMillis > 0 && req.TimeoutMillis < MaxDrainWait.Milliseconds() {
		wait = time.Duration(req.TimeoutMillis) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	if err := a.g.Drain(ctx, req.Addr); err != nil {
		return &apiError{http.StatusGatewayTimeout, err.Error()}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// save persists the table; callers hold a.mu.
func (a *admin) save() error {
	if err := a.g.SaveRoutes(a.statePath); err != nil {
		return fmt.Errorf("persisting change: %w", err)
	}
	return nil
}

// decodeBody decodes exactly one JSON value with no unknown fields into v.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return err
		}
		return &apiError{http.StatusBadRequest, "decoding body: " + err.Error()}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return err
		}
		return &apiError{http.StatusBadRequest, "decoding body: data after the JSON value"}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client went away; nothing to do
}

// unixOnly refuses requests that did not come over a unix socket: the
// admin API changes where production traffic goes, and only a socket's file
// mode keeps other local users out.
func unixOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Context().Value(http.LocalAddrContextKey).(*net.UnixAddr); !ok {
			writeJSON(w, http.StatusForbidden, ErrorResponse{Error: "admin API answers over its unix socket only"})
			return
		}
		// ServeMux would redirect an unclean path (an empty name makes
		// "/routes//web"); the API answers 2xx or 4xx, never 3xx.
		if p := r.URL.Path; p == "" || path.Clean(p) != p {
			writeJSON(w, http.StatusNotFound, ErrorResponse{Error: fmt.Sprintf("no admin API path %q", p)})
			return
		}
		h.ServeHTTP(w, r)
	})
}
