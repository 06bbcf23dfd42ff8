package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

const (
	maxBody     = 1 << 20
	maxWait     = 10 * time.Minute
	waitSuffix  = "/wait"
	apiPrefix   = "/v1/workloads"
	defaultWait = maxWait
)

// apiError is the body of every error response.
type apiError struct {
	Error  string  `json:"error"`
	Status *Status `json:"status,omitempty"`
}

// Handler serves s as JSON over HTTP, at full paths under /v1/workloads
// (mount it at "/v1/workloads" and "/v1/workloads/" without stripping):
//
//	PUT    /v1/workloads/{id...}       Apply; body: a Spec (its id may be omitted)
//	GET    /v1/workloads?group=G       List
//	GET    /v1/workloads/{id...}       Get
//	POST   /v1/workloads/{id...}/wait  WaitReady, bounded by ?timeout= (a Go duration, at most 10m)
//	DELETE /v1/workloads/{id...}       Remove
//
// It has no authentication: the data plane serves it on a unix socket
// only Runway's user can open (0600).
func Handler(s *Supervisor) http.Handler {
	h := &handler{s: s}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+apiPrefix, h.wrap(h.list))
	mux.HandleFunc("GET "+apiPrefix+"/{$}", h.wrap(h.list))
	mux.HandleFunc("GET "+apiPrefix+"/{id...}", h.wrap(h.get))
	mux.HandleFunc("PUT "+apiPrefix+"/{id...}", h.wrap(h.apply))
	mux.HandleFunc("POST "+apiPrefix+"/{id...}", h.wrap(h.wait))
	mux.HandleFunc("DELETE "+apiPrefix+"/{id...}", h.wrap(h.remove))
	return mux
}

type handler struct{ s *Supervisor }

// httpError is an error with the status it is answered with.
type httpError struct {
	code   int
	err    error
	status *Status
}

func (e *httpError) Error() string { return e.err.Error() }
func (e *httpError) Unwrap() error { return e.err }

func badRequest(format string, args ...any) error {
	return &httpError{code: http.StatusBadRequest, err: fmt.Errorf(format, args...)}
}

func (h *handler) wrap(f func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			h.writeError(w, r, err)
		}
	}
}

// writeError maps err to a status and a message. Every message is safe to
// show to the caller: it is Runway itself, on a private socket.
func (h *handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	var he *httpError
	var ve *ValidationError
	var ee *ExitError
	body := apiError{Error: err.Error()}
	switch {
	case errors.As(err, &he):
		code, body.Status = he.code, he.status
	case errors.As(err, &ve):
		code = http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, ErrClosed):
		code = http.StatusServiceUnavailable
	case errors.As(err, &ee):
		code = http.StatusConflict
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		code = http.StatusGatewayTimeout
	}
	if code == http.StatusInternalServerError {
		h.s.log.Error("workload API", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, code, body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) error {
	group := r.URL.Query().Get("group")
	if err := validID("group", group, true); err != nil {
		return err
	}
	out := h.s.List(group)
	if out == nil {
		out = []Status{}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	st, ok := h.s.Get(id)
	if !ok {
		return fmt.Errorf("workload %s: %w", id, ErrNotFound)
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (h *handler) apply(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	sp, err := decodeSpec(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return badRequest("decoding workload %s: %w", id, err)
	}
	if sp.ID == "" {
		sp.ID = id
	}
	if sp.ID != id {
		return badRequest("body id %q differs from the path's %q", sp.ID, id)
	}
	st, err := h.s.Apply(r.Context(), sp)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// decodeSpec decodes one Spec strictly: unknown fields and trailing data
// are errors.
func decodeSpec(r io.Reader) (Spec, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var sp Spec
	if err := dec.Decode(&sp); err != nil {
		return Spec{}, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Spec{}, errors.New("data after the workload")
	}
	return sp, nil
}

func (h *handler) wait(w http.ResponseWriter, r *http.Request) error {
	id, ok := strings.CutSuffix(r.PathValue("id"), waitSuffix)
	if !ok {
		return &httpError{code: http.StatusNotFound, err: fmt.Errorf("no such action: POST %s", r.URL.Path)}
	}
	timeout := defaultWait
	if v := r.URL.Query().Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > maxWait {
			return badRequest("timeout %q: want a duration up to %v", v, maxWait)
		}
		timeout = d
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	st, err := h.s.WaitReady(ctx, id)
	if err != nil {
		var ee *ExitError
		code := http.StatusGatewayTimeout
		switch {
		case errors.As(err, &ee):
			code = http.StatusConflict
		case errors.Is(err, ErrNotFound):
			code = http.StatusNotFound
		case errors.Is(err, ErrClosed):
			code = http.StatusServiceUnavailable
		}
		return &httpError{code: code, err: err, status: &st}
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// removeBound bounds a Remove over the socket: the gateway's drain (at
// most 25 s) and a stop grace.
const removeBound = 2 * time.Minute

func (h *handler) remove(w http.ResponseWriter, r *http.Request) error {
	// Not cut short when the caller goes away (a control plane killed
	// mid-Stop): a stop that began drains and stops gracefully, bounded
	// here rather than by the caller.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), removeBound)
	defer cancel()
	if err := h.s.Remove(ctx, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
