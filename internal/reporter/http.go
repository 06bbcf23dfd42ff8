package reporter

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// maxBody bounds request bodies.
const maxBody = 1 << 20

// submitRequest is the original workflow-reporter's submit body.
type submitRequest struct {
	WorkflowName string
	Apps         []string
}

// updateRequest is the original workflow-reporter's update body.
type updateRequest struct {
	WorkflowName string
	App          string
	Success      *bool // required: a missing Success must not read as failure
	Message      string
}

// HandlerOptions configure the reporter's HTTP API.
type HandlerOptions struct {
	// Compatibility accepts POST /workflow/update without an Authorization
	// header, as the original workflow-reporter did, logging a warning the
	// first time. Anyone who can reach the listener can then forge reports
	// (make a staging gate pass, or fail any deploy): see docs/security.md.
	// A token that is present but wrong is still refused, and unknown
	// workflows and apps are still rejected.
	Compatibility bool
}

// Handler is HandlerWith(HandlerOptions{}): every update needs its token.
func (r *Reporter) Handler() http.Handler {
	return r.HandlerWith(HandlerOptions{})
}

// HandlerWith returns the reporter's HTTP API:
//
//	POST /workflow/submit                {"WorkflowName": "...", "Apps": ["a", "b"]}
//	POST /workflow/update                {"WorkflowName": "...", "App": "...", "Success": true, "Message": "..."}
//	GET  /api/v1/expectations/{workflow}
//	GET  /api/v1/expectations/{workflow}/token
//
// The first two are the original's routes and bodies; both answer with the
// expectation's state (never its token).
//
// POST /workflow/update is the route for hooks outside Runway and is
// authenticated here: it needs "Authorization: Bearer <token>" with the
// expectation's own token (see Reporter.Token). A missing token is 401 (or
// accepted in compatibility mode), a wrong one 403, an unknown workflow
// 404 and an app the expectation does not list 409; none of them changes
// anything. The message is made one line and cut to MaxMessage bytes.
//
// The other routes do no authentication of their own: the composition root
// puts them behind the API's bearer-token middleware. POST /workflow/submit
// then needs the admin token (a mutation), GET /api/v1/expectations/{workflow}
// any token. GET .../token answers the expectation's token and MUST be
// admin-only: a read-only caller must never learn it.
func (r *Reporter) HandlerWith(opts HandlerOptions) http.Handler {
	h := &handler{r: r, opts: opts}
	mux := http.NewServeMux()
	mux.Handle("POST /workflow/submit", r.handle(r.serveSubmit))
	mux.Handle("POST /workflow/update", r.handle(h.serveUpdate))
	mux.Handle("GET /api/v1/expectations/{workflow}", r.handle(r.serveGet))
	mux.Handle("GET /api/v1/expectations/{workflow}/token", r.handle(r.serveToken))
	return mux
}

// handler holds what the routes that depend on HandlerOptions need.
type handler struct {
	r        *Reporter
	opts     HandlerOptions
	warnOnce sync.Once
}

// The authentication and consistency errors of POST /workflow/update.
var (
	errNoToken     = errors.New("missing reporter token: send Authorization: Bearer <expectation token>")
	errBadToken    = errors.New("wrong reporter token for this workflow")
	errNotExpected = errors.New("app is not in the workflow's expectation")
)

func (r *Reporter) serveSubmit(w http.ResponseWriter, req *http.Request) error {
	var body submitRequest
	if err := decode(w, req, &body); err != nil {
		return err
	}
	if err := r.Submit(req.Context(), body.WorkflowName, body.Apps); err != nil {
		return err
	}
	return r.writeState(w, req, body.WorkflowName)
}

func (h *handler) serveUpdate(w http.ResponseWriter, req *http.Request) error {
	// The header is checked before the body is read or anything looked
	// up, so an anonymous caller learns nothing about workflows.
	given, present, err := bearer(req)
	if err != nil {
		return err
	}
	if !present && !h.opts.Compatibility {
		return errNoToken
	}
	var body updateRequest
	if err := decode(w, req, &body); err != nil {
		return err
	}
	if body.Success == nil {
		return fmt.Errorf("%w: field Success is required", ErrInvalid)
	}
	if err := validateName("workflow", body.WorkflowName); err != nil {
		return err
	}
	if err := validateName("app", body.App); err != nil {
		return err
	}
	ctx := req.Context()
	exp, err := h.r.Get(ctx, body.WorkflowName)
	if err != nil {
		return err
	}
	if present {
		token, err := h.r.Token(ctx, body.WorkflowName)
		if err != nil {
			return err
		}
		if subtle.ConstantTimeCompare([]byte(given), []byte(token)) != 1 {
			return fmt.Errorf("workflow %s: %w", body.WorkflowName, errBadToken)
		}
	} else {
		h.warnOnce.Do(func() {
			h.r.logger.Warn("reporter compatibility mode: accepted a report without a token; anyone who can reach the API can forge reports",
				"workflow", body.WorkflowName, "app", body.App, "remote", req.RemoteAddr)
		})
	}
	if !slices.Contains(exp.Apps, body.App) {
		return fmt.Errorf("%w: app %s, workflow %s expects %s", errNotExpected, body.App, body.WorkflowName, strings.Join(exp.Apps, ", "))
	}
	if err := h.r.Update(ctx, body.WorkflowName, body.App, *body.Success, body.Message); err != nil {
		return err
	}
	return h.r.writeState(w, req, body.WorkflowName)
}

// bearer returns the token of req's "Authorization: Bearer <token>" header.
// present is false when there is no Authorization header; any other form
// of the header is an error (never read as "no token").
func bearer(req *http.Request) (token string, present bool, err error) {
	values := req.Header.Values("Authorization")
	switch {
	case len(values) == 0:
		return "", false, nil
	case len(values) > 1:
		return "", true, fmt.Errorf("%w: more than one Authorization header", errNoToken)
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", true, fmt.Errorf("%w: Authorization header is not of the form Bearer <token>", errNoToken)
	}
	return token, true, nil
}

// tokenAnswer is the body of GET /api/v1/expectations/{workflow}/token.
type tokenAnswer struct {
	Workflow string `json:"workflow"`
	Token    string `json:"token"`
}

func (r *Reporter) serveToken(w http.ResponseWriter, req *http.Request) error {
	workflow := req.PathValue("workflow")
	token, err := r.Token(req.Context(), workflow)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, tokenAnswer{Workflow: workflow, Token: token})
}

func (r *Reporter) serveGet(w http.ResponseWriter, req *http.Request) error {
	workflow := req.PathValue("workflow")
	if err := validateName("workflow", workflow); err != nil {
		return err
	}
	exp, err := r.Get(req.Context(), workflow)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, exp)
}

// writeState answers with workflow's state, submitted or not.
func (r *Reporter) writeState(w http.ResponseWriter, req *http.Request, workflow string) error {
	exp, _, err := r.load(req.Context(), workflow)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, exp)
}

// decode reads exactly one JSON object into v, rejecting unknown fields and
// bodies over maxBody.
func decode(w http.ResponseWriter, req *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return err
		}
		return fmt.Errorf("%w: decoding body: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: decoding body: data after the JSON object", ErrInvalid)
	}
	return nil
}

// handle adapts a handler that returns an error, answering errors through
// writeError.
func (r *Reporter) handle(fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if err := fn(w, req); err != nil {
			r.writeError(w, req, err)
		}
	})
}

// writeError maps err to a status and a message safe to show; details of
// internal errors are only logged.
func (r *Reporter) writeError(w http.ResponseWriter, req *http.Request, err error) {
	status, msg := http.StatusInternalServerError, "internal error"
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, errNoToken):
		status, msg = http.StatusUnauthorized, err.Error()
		w.Header().Set("WWW-Authenticate", `Bearer realm="runway-reporter"`)
	case errors.Is(err, errBadToken):
		status, msg = http.StatusForbidden, err.Error()
	case errors.Is(err, errNotExpected):
		status, msg = http.StatusConflict, err.Error()
	case errors.Is(err, ErrInvalid):
		status, msg = http.StatusBadRequest, err.Error()
	case errors.Is(err, ErrNotFound):
		status, msg = http.StatusNotFound, err.Error()
	case errors.As(err, &mbe):
		status, msg = http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", mbe.Limit)
	}
	if status == http.StatusInternalServerError {
		r.logger.Error("reporter request failed", "method", req.Method, "path", req.URL.Path, "err", err)
	} else {
		r.logger.Debug("reporter request rejected", "method", req.Method, "path", req.URL.Path, "status", status, "err", err)
	}
	_ = writeJSON(w, status, map[string]string{"error": msg})
}

// writeJSON writes v as the JSON body of a response with status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n')) // the client went away; nothing left to tell it
	return nil
}
