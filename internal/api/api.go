// Package api is Runway's JSON API: pipelines, environments, rollouts and
// their promote/abort actions. Handlers return errors; one function maps
// them to a status and a safe message.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/environment"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/rollout"
)

// Pipelines reads pipelines.
type Pipelines interface {
	Get(ctx context.Context, id string) (*pipeline.Pipeline, error)
	List(ctx context.Context, limit int) ([]*pipeline.Pipeline, error)
}

// Environments lists what runs.
type Environments interface {
	Status() []environment.EnvStatus
}

// Rollouts lists and steers canaries.
type Rollouts interface {
	List() []rollout.Status
	Promote(env, app string) error
	PromoteFull(env, app string) error
	Abort(env, app, reason string) error
	Retry(env, app string) error
}

// AnalysisRuns reads recorded analysis runs.
type AnalysisRuns interface {
	GetAnalysisRun(ctx context.Context, name string) (analysis.RunRecord, error)
	ListAnalysisRuns(ctx context.Context, limit int) ([]analysis.RunRecord, error)
}

// Handler serves the API under /api/v1/.
type Handler struct {
	pipelines Pipelines
	envs      Environments
	rollouts  Rollouts
	runs      AnalysisRuns
	log       *slog.Logger
	mux       *http.ServeMux
}

// New returns the API handler.
func New(p Pipelines, e Environments, r Rollouts, runs AnalysisRuns, logger *slog.Logger) *Handler {
	if logger == nil {
		logger = slog.Default()
	}
	h := &Handler{pipelines: p, envs: e, rollouts: r, runs: runs, log: logger, mux: http.NewServeMux()}
	h.handle("GET /api/v1/pipelines", h.listPipelines)
	h.handle("GET /api/v1/pipelines/{id}", h.getPipeline)
	h.handle("GET /api/v1/environments", h.listEnvironments)
	h.handle("GET /api/v1/rollouts", h.listRollouts)
	h.handle("POST /api/v1/rollouts/{env}/{app}/promote", h.promote)
	h.handle("POST /api/v1/rollouts/{env}/{app}/abort", h.abort)
	h.handle("POST /api/v1/rollouts/{env}/{app}/retry", h.retry)
	h.handle("GET /api/v1/analysisruns", h.listRuns)
	h.handle("GET /api/v1/analysisruns/{name}", h.getRun)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (h *Handler) handle(pattern string, f handlerFunc) {
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			status, msg := toStatus(err)
			if status >= 500 {
				h.log.Error("api request failed", "path", r.URL.Path, "err", err)
			}
			writeJSON(w, status, map[string]string{"error": msg})
		}
	})
}

// toStatus maps an error to an HTTP status and a message safe to show.
func toStatus(err error) (int, string) {
	switch {
	case errors.Is(err, pipeline.ErrNotFound), errors.Is(err, rollout.ErrNoRollout), errors.Is(err, ErrNotFound):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, rollout.ErrNotPaused):
		return http.StatusConflict, err.Error()
	default:
		return http.StatusInternalServerError, "internal error"
	}
}

// ErrNotFound marks a missing object; stores wrap it (or their own
// sentinel, mapped by the composition root).
var ErrNotFound = errors.New("not found")

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (h *Handler) listPipelines(w http.ResponseWriter, r *http.Request) error {
	ps, err := h.pipelines.List(r.Context(), 100)
	if err != nil {
		return err
	}
	if ps == nil {
		ps = []*pipeline.Pipeline{}
	}
	writeJSON(w, http.StatusOK, ps)
	return nil
}

func (h *Handler) getPipeline(w http.ResponseWriter, r *http.Request) error {
	p, err := h.pipelines.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

func (h *Handler) listEnvironments(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, h.envs.Status())
	return nil
}

func (h *Handler) listRollouts(w http.ResponseWriter, _ *http.Request) error {
	rs := h.rollouts.List()
	if rs == nil {
		rs = []rollout.Status{}
	}
	writeJSON(w, http.StatusOK, rs)
	return nil
}

func (h *Handler) promote(w http.ResponseWriter, r *http.Request) error {
	promote := h.rollouts.Promote
	if r.URL.Query().Get("full") == "true" {
		promote = h.rollouts.PromoteFull
	}
	if err := promote(r.PathValue("env"), r.PathValue("app")); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "promoting"})
	return nil
}

func (h *Handler) abort(w http.ResponseWriter, r *http.Request) error {
	reason := r.URL.Query().Get("reason")
	if reason == "" {
		reason = "aborted through the API"
	}
	if err := h.rollouts.Abort(r.PathValue("env"), r.PathValue("app"), reason); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "aborting"})
	return nil
}

func (h *Handler) retry(w http.ResponseWriter, r *http.Request) error {
	if err := h.rollouts.Retry(r.PathValue("env"), r.PathValue("app")); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "retrying"})
	return nil
}

func (h *Handler) listRuns(w http.ResponseWriter, r *http.Request) error {
	runs, err := h.runs.ListAnalysisRuns(r.Context(), 100)
	if err != nil {
		return err
	}
	if runs == nil {
		runs = []analysis.RunRecord{}
	}
	writeJSON(w, http.StatusOK, runs)
	return nil
}

func (h *Handler) getRun(w http.ResponseWriter, r *http.Request) error {
	run, err := h.runs.GetAnalysisRun(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, run)
	return nil
}
