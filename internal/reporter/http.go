package reporter

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
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

// Handler returns the reporter's HTTP API:
//
//	POST /workflow/submit                {"WorkflowName": "...", "Apps": ["a", "b"]}
//	POST /workflow/update                {"WorkflowName": "...", "App": "...", "Success": true, "Message": "..."}
//	GET  /api/v1/expectations/{workflow}
//
// The first two are the original's routes and bodies; both answer with the
// expectation's state.
func (r *Reporter) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /workflow/submit", r.handle(r.serveSubmit))
	mux.Handle("POST /workflow/update", r.handle(r.serveUpdate))
	mux.Handle("GET /api/v1/expectations/{workflow}", r.handle(r.serveGet))
	return mux
}

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

func (r *Reporter) serveUpdate(w http.ResponseWriter, req *http.Request) error {
	var body updateRequest
	if err := decode(w, req, &body); err != nil {
		return err
	}
	if body.Success == nil {
		return fmt.Errorf("%w: field Success is required", ErrInvalid)
	}
	if err := r.Update(req.Context(), body.WorkflowName, body.App, *body.Success, body.Message); err != nil {
		return err
	}
	return r.writeState(w, req, body.WorkflowName)
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
