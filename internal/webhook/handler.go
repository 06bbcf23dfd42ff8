package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"sync"
	"time"

	"github.com/google/go-github/v75/github"
)

// maxBody is GitHub's largest webhook payload.
const maxBody = 25 << 20

// startTimeout bounds starting a pipeline and recording its delivery.
const startTimeout = 30 * time.Second

// handler serves POST /webhooks/github.
type handler struct {
	secret     []byte
	tracker    Tracker
	starter    Starter
	deliveries Deliveries
	logger     *slog.Logger

	// startMu makes lookup, start and save of a delivery one step, so a
	// delivery sent twice at once starts one pipeline.
	startMu sync.Mutex
}

// response is the JSON body of every answer.
type response struct {
	Status   string `json:"status,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Pipeline string `json:"pipeline,omitempty"`
	Error    string `json:"error,omitempty"`
}

// NewHandler returns the handler of GitHub webhooks. Every request must carry
// a valid X-Hub-Signature-256 for secret; with an empty secret every request
// is refused. A nil logger discards logs.
func NewHandler(secret []byte, tracker Tracker, starter Starter, deliveries Deliveries, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &handler{
		secret:     append([]byte(nil), secret...),
		tracker:    tracker,
		starter:    starter,
		deliveries: deliveries,
		logger:     logger,
	}
}

// ServeHTTP verifies, decodes and acts on one delivery.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	status, resp, err := h.serve(w, r)
	if err != nil {
		if status >= http.StatusInternalServerError {
			h.logger.Error("webhook failed", "delivery", github.DeliveryID(r), "err", err)
		} else {
			h.logger.Info("webhook rejected", "delivery", github.DeliveryID(r), "status", status, "err", err)
		}
	}
	body, _ := json.Marshal(resp) // a struct of strings always encodes
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// serve returns the status and body to answer with, and the error behind a
// refusal, which is logged and not shown.
func (h *handler) serve(w http.ResponseWriter, r *http.Request) (int, response, error) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return http.StatusMethodNotAllowed, response{Error: "method not allowed"}, nil
	}
	payload, status, err := h.verify(w, r)
	if err != nil {
		return status, response{Error: http.StatusText(status)}, err
	}
	if status == http.StatusUnauthorized {
		return status, response{Error: "invalid signature"}, nil
	}

	switch event := github.WebHookType(r); event {
	case "ping":
		return http.StatusOK, response{Status: "pong"}, nil
	case "push":
	case "":
		return http.StatusBadRequest, response{Error: "missing X-GitHub-Event header"}, nil
	default:
		return http.StatusAccepted, response{Status: "ignored", Reason: fmt.Sprintf("event %s is not handled", event)}, nil
	}

	push, err := ParsePush(payload)
	if err != nil {
		return http.StatusBadRequest, response{Error: err.Error()}, err
	}
	push.Delivery = github.DeliveryID(r)
	if push.Delivery == "" || len(push.Delivery) > 128 {
		return http.StatusBadRequest, response{Error: "missing or oversized X-GitHub-Delivery header"}, nil
	}
	if reason := h.ignore(push); reason != "" {
		h.logger.Info("push ignored", "delivery", push.Delivery, "repo", push.Repo, "ref", push.Ref, "reason", reason)
		return http.StatusAccepted, response{Status: "ignored", Reason: reason}, nil
	}
	return h.start(r.Context(), push)
}

// verify reads the body and checks its signature. It returns the payload, or
// 401 with a nil error for a missing or wrong signature, or another status
// with the error for a body it cannot read.
func (h *handler) verify(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	if len(h.secret) == 0 {
		return nil, http.StatusUnauthorized, nil
	}
	if r.Header.Get(github.SHA256SignatureHeader) == "" {
		return nil, http.StatusUnauthorized, nil
	}
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (ct != "application/json" && ct != "application/x-www-form-urlencoded") {
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("content type %q: %w", r.Header.Get("Content-Type"), errUnsupportedType)
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	payload, err := github.ValidatePayload(r, h.secret)
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("reading body: %w", err)
		}
		// A body that cannot be read or does not match its signature is
		// the same to us: nothing we may act on.
		return nil, http.StatusUnauthorized, nil
	}
	return payload, http.StatusOK, nil
}

var errUnsupportedType = errors.New("unsupported content type")

// ignore returns why a push does not start a pipeline, or "" if it does.
func (h *handler) ignore(p Push) string {
	switch {
	case p.Deleted:
		return fmt.Sprintf("ref %s was deleted", p.Ref)
	case p.Branch == "":
		return fmt.Sprintf("ref %s is not a branch", p.Ref)
	case !h.tracker.Tracks(p.Repo, p.Branch):
		return fmt.Sprintf("branch %s of %s is not tracked", p.Branch, p.Repo)
	}
	return ""
}

// start starts the pipeline of a tracked push unless its delivery already
// started one.
func (h *handler) start(ctx context.Context, p Push) (int, response, error) {
	// Finish what we begin even if GitHub hangs up: a pipeline started but
	// not recorded would start again on redelivery.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), startTimeout)
	defer cancel()

	h.startMu.Lock()
	defer h.startMu.Unlock()

	id, found, err := h.deliveries.LookupDelivery(ctx, p.Delivery)
	if err != nil {
		return http.StatusInternalServerError, response{Error: "internal error"}, fmt.Errorf("looking up delivery: %w", err)
	}
	if found {
		h.logger.Info("duplicate delivery", "delivery", p.Delivery, "pipeline", id)
		return http.StatusOK, response{Status: "duplicate", Pipeline: id}, nil
	}
	id, err = h.starter.Start(ctx, p)
	if err != nil {
		return http.StatusInternalServerError, response{Error: "starting pipeline failed"}, fmt.Errorf("starting pipeline for %s@%s: %w", p.Repo, p.After, err)
	}
	if err := h.deliveries.SaveDelivery(ctx, p.Delivery, id, time.Now().UTC()); err != nil {
		// The pipeline runs; only a redelivery could start it twice.
		h.logger.Error("recording delivery failed", "delivery", p.Delivery, "pipeline", id, "err", err)
	}
	h.logger.Info("pipeline started", "delivery", p.Delivery, "repo", p.Repo, "branch", p.Branch, "after", p.After, "pipeline", id)
	return http.StatusAccepted, response{Status: "accepted", Pipeline: id}, nil
}
