// Package api is Runway's JSON API: pipelines and their cancel action,
// environments, rollouts and their promote/abort actions, analysis runs
// and the event log. Handlers return errors; one function maps
// them to a status and a safe message.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"k8s.io/utils/clock"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/environment"
	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/oneline"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/rollout"
)

// Pipelines reads and cancels pipelines.
type Pipelines interface {
	Get(ctx context.Context, id string) (*pipeline.Pipeline, error)
	List(ctx context.Context, limit int) ([]*pipeline.Pipeline, error)
	// Cancel fails with pipeline.ErrNotFound, or wrapping
	// pipeline.ErrDone or pipeline.ErrPromoted.
	Cancel(ctx context.Context, id, reason string) error
}

// Events is the event log (an *events.Recorder).
type Events interface {
	// Since returns up to limit events after seq, oldest first, and a
	// channel closed when the next event is recorded.
	Since(seq uint64, limit int) ([]events.Event, <-chan struct{})
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
	events    Events
	log       *slog.Logger
	mux       *http.ServeMux
	// clock times the event log's long polls and streams.
	clock clock.Clock
	// streams counts the event streams being served (MaxEventStreams).
	streams atomic.Int64
}

// New returns the API handler. A nil ev serves an empty event log.
func New(p Pipelines, e Environments, r Rollouts, runs AnalysisRuns, ev Events, logger *slog.Logger) *Handler {
	if logger == nil {
		logger = slog.Default()
	}
	h := &Handler{pipelines: p, envs: e, rollouts: r, runs: runs, events: ev, log: logger, mux: http.NewServeMux(), clock: clock.RealClock{}}
	h.handle("GET /api/v1/pipelines", h.listPipelines)
	h.handle("GET /api/v1/pipelines/{id}", h.getPipeline)
	h.handle("POST /api/v1/pipelines/{id}/cancel", h.cancelPipeline)
	h.handle("GET /api/v1/events", h.listEvents)
	h.handle("GET /api/v1/environments", h.listEnvironments)
	h.handle("GET /api/v1/environments/{name}", h.getEnvironment)
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
		r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
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
	case errors.Is(err, pipeline.ErrNotFound), errors.Is(err, rollout.ErrNoRollout),
		errors.Is(err, analysis.ErrRunNotFound), errors.Is(err, ErrNotFound):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, rollout.ErrNotPaused), errors.Is(err, pipeline.ErrDone), errors.Is(err, pipeline.ErrPromoted):
		return http.StatusConflict, err.Error()
	case errors.As(err, new(*http.MaxBytesError)):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", MaxBody)
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest, err.Error()
	default:
		return http.StatusInternalServerError, "internal error"
	}
}

// ErrNotFound marks an object the API itself looked for and did not find
// (an environment by name). Stores do not use it: each domain has its own
// sentinel (pipeline.ErrNotFound, rollout.ErrNoRollout,
// analysis.ErrRunNotFound), and toStatus maps each of them to 404.
var ErrNotFound = errors.New("not found")

// ErrBadRequest marks a request body that is not what the route takes.
var ErrBadRequest = errors.New("bad request")

// MaxBody is the largest request body the API reads, in bytes.
const MaxBody = 64 << 10

// MaxReason is the longest abort reason kept, in bytes: a reason ends up
// in a commit message and in the rollout's status.
const MaxReason = 200

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

// cancelPipeline takes an optional body {"reason": "..."}; the reason is
// made one line of at most MaxReason bytes. It answers 202 with the
// pipeline as it is then.
func (h *Handler) cancelPipeline(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Reason string `json:"reason"`
	}
	if err := decodeOptional(r, &body); err != nil {
		return err
	}
	reason := oneline.Clean(body.Reason, MaxReason)
	if reason == "" {
		reason = "cancelled through the API"
	}
	id := r.PathValue("id")
	if err := h.pipelines.Cancel(r.Context(), id, reason); err != nil {
		return err
	}
	p, err := h.pipelines.Get(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, p)
	return nil
}

// Event log paging: limit defaults to DefaultEventLimit, at most
// MaxEventLimit.
const (
	DefaultEventLimit = 200
	MaxEventLimit     = 2000
)

// MaxEventWait is the longest long poll of the event log (?wait=).
const MaxEventWait = 60 * time.Second

// eventWriteSlack is how long past its wait a long poll's answer may take
// to write.
const eventWriteSlack = 10 * time.Second

// maxEventWakes bounds the wakes a long poll rechecks; the wait bounds it
// in time.
const maxEventWakes = 10000

// listEvents serves the events after ?since=N (default 0: the oldest
// kept), at most ?limit=M, oldest first. With ?wait=D (a Go duration, at
// most MaxEventWait) and no event after N yet, it answers once one is
// recorded, or with none when D passes or the client goes: a client
// follows the log by asking again with since set to the last seq it got.
//
// Asked with Accept: text/event-stream (or ?stream=1) it streams the
// events instead, as Server-Sent Events (see streamEvents), from
// Last-Event-ID or since, optionally only those of ?kind= and ?name=.
func (h *Handler) listEvents(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var since uint64
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: since must be an event sequence number (0 or more)", ErrBadRequest)
		}
		since = n
	}
	if wantsStream(r) {
		from, err := streamStart(r, since)
		if err != nil {
			return err
		}
		f, err := parseEventFilter(r)
		if err != nil {
			return err
		}
		return h.streamEvents(w, r, from, f)
	}
	limit := DefaultEventLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxEventLimit {
			return fmt.Errorf("%w: limit must be a number from 1 to %d", ErrBadRequest, MaxEventLimit)
		}
		limit = n
	}
	var wait time.Duration
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > MaxEventWait {
			return fmt.Errorf("%w: wait must be a duration from 0s to %s (30s, say)", ErrBadRequest, MaxEventWait)
		}
		wait = d
	}
	evs := h.eventsAfter(r.Context(), w, since, limit, wait)
	if evs == nil {
		evs = []events.Event{}
	}
	writeJSON(w, http.StatusOK, evs)
	return nil
}

// eventsAfter returns the events after since, waiting up to wait for the
// first one when there is none yet.
func (h *Handler) eventsAfter(ctx context.Context, w http.ResponseWriter, since uint64, limit int, wait time.Duration) []events.Event {
	var evs []events.Event
	var wake <-chan struct{}
	if h.events != nil {
		evs, wake = h.events.Since(since, limit)
	}
	if len(evs) > 0 || wait == 0 {
		return evs
	}
	// The server's write timeout may be shorter than the wait; this
	// answer's own deadline is the wait's. Not every writer can (an
	// httptest recorder): then the server's stands.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + eventWriteSlack))
	timer := h.clock.NewTimer(wait)
	defer timer.Stop()
	for range maxEventWakes {
		select {
		case <-wake:
		case <-timer.C():
			return nil
		case <-ctx.Done():
			return nil
		}
		// Woken by any new event; since may be ahead of the log (a
		// client that saw a log from before a restart), so check.
		if evs, wake = h.events.Since(since, limit); len(evs) > 0 {
			return evs
		}
	}
	return nil
}

func (h *Handler) listEnvironments(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, h.envs.Status())
	return nil
}

func (h *Handler) getEnvironment(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	for _, e := range h.envs.Status() {
		if e.Name == name {
			writeJSON(w, http.StatusOK, e)
			return nil
		}
	}
	return fmt.Errorf("%w: environment %q", ErrNotFound, name)
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

// abort takes its reason from the body {"reason": "..."} or else the
// query parameter reason. Whatever it is, it becomes one line of at most
// MaxReason bytes: a reason never fails the request (nor forges a
// trailer in the revert commit).
func (h *Handler) abort(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Reason string `json:"reason"`
	}
	if err := decodeOptional(r, &body); err != nil {
		return err
	}
	reason := body.Reason
	if reason == "" {
		reason = r.URL.Query().Get("reason")
	}
	reason = OneLine(reason, MaxReason)
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

// decodeOptional decodes a JSON body into v; an empty body leaves v as it
// is.
func decodeOptional(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		if errors.As(err, new(*http.MaxBytesError)) {
			return err
		}
		return fmt.Errorf("%w: decoding the JSON body: %v", ErrBadRequest, err)
	}
	return nil
}

// OneLine makes s a single line of at most maxBytes bytes: control
// characters (newlines included), line and paragraph separators and
// bidirectional controls become spaces, invalid UTF-8 becomes U+FFFD,
// and the result is cut at a rune boundary and trimmed.
func OneLine(s string, maxBytes int) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, string(utf8.RuneError)) {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == '\u2028' || r == '\u2029' {
			r = ' '
		}
		if b.Len()+utf8.RuneLen(r) > maxBytes {
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}
