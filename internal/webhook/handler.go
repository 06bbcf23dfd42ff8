package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/google/go-github/v75/github"
)

const (
	// MaxBody is GitHub's largest webhook payload (25 MB); a larger body
	// is refused with 413.
	MaxBody = 25 << 20
	// LargeBody is the size past which a body needs one of the handler's
	// large-body slots (Options.LargeBodies) to be read.
	LargeBody = 1 << 20
	// MinSecret is the shortest secret NewHandler accepts.
	MinSecret = 16
	// DefaultLargeBodies is how many large bodies are read at once when
	// Options.LargeBodies is zero.
	DefaultLargeBodies = 2
	// DefaultBodies is how many bodies of any size are read at once when
	// Options.Bodies is zero.
	DefaultBodies = 64
)

// startTimeout bounds starting a pipeline and recording its delivery.
const startTimeout = 30 * time.Second

// retryAfter is the Retry-After (seconds) of a 503.
const retryAfter = 10

// Options are what a Handler needs. Every field but Logger and LargeBodies
// is required.
type Options struct {
	// Secret signs every delivery (X-Hub-Signature-256); at least
	// MinSecret bytes.
	Secret     []byte
	Tracker    Tracker
	Verifier   Verifier
	Starter    Starter
	Deliveries Deliveries
	// Queue, when set, tells whether a started pipeline waits for a slot;
	// the answer then says "queued" with the reason.
	Queue Queue
	// Paths, when set, applies the apps' path filters: a verified push
	// that changes no path its app's filter selects is answered 200
	// {"ignored": true, "reason": ...} and recorded as handled, so a
	// redelivery is a duplicate. Nil: every tracked push runs.
	Paths Paths
	// State, when its Repo is set, makes a push to the state repository's
	// branch ask State.Reconciler for a pass (answered 202 "reconciling")
	// after the same signature check and delivery dedup.
	State StateRepo
	// Bodies is how many requests may be reading a body at once; others
	// get 503 with Retry-After. Zero means DefaultBodies.
	Bodies int
	// LargeBodies is how many requests with a body over LargeBody may
	// hold one in memory at once; others get 503 with Retry-After.
	// Zero means DefaultLargeBodies.
	LargeBodies int
	// Logger gets one line per refusal and per started pipeline; nil
	// discards.
	Logger *slog.Logger
}

// Handler serves POST /webhooks/github.
type Handler struct {
	secret     []byte
	tracker    Tracker
	verifier   Verifier
	starter    Starter
	deliveries Deliveries
	queue      Queue
	paths      Paths
	state      StateRepo
	logger     *slog.Logger

	// large holds one token per request reading a body over LargeBody,
	// bodies one per request reading a body.
	large, bodies chan struct{}

	// startMu makes lookup, start and save of a delivery one step, so a
	// delivery sent twice at once starts one pipeline.
	startMu sync.Mutex
}

// response is the JSON body of every answer.
type response struct {
	Status string `json:"status,omitempty"`
	// Ignored marks a push acknowledged and recorded without a pipeline
	// because of its app's path filter.
	Ignored  bool   `json:"ignored,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Pipeline string `json:"pipeline,omitempty"`
	Error    string `json:"error,omitempty"`
}

// reply is an answer: its status, its body and, for a refusal, the error
// behind it, which is logged and not shown.
type reply struct {
	status int
	body   response
	err    error
	// unread: the body may be left unread, so the connection closes
	// after the answer (Go's server would otherwise wait for the rest of
	// a chunked body before answering).
	unread bool
}

// early marks a refusal made before the whole body was read.
func early(rep *reply) reply {
	rep.unread = true
	return *rep
}

// refuse is the reply of a refusal whose message is safe to show.
func refuse(status int, msg string, err error) *reply {
	return &reply{status: status, body: response{Error: msg}, err: err}
}

// NewHandler returns the handler of GitHub webhooks. Every request must carry
// a valid X-Hub-Signature-256 for opts.Secret, which must be at least
// MinSecret bytes long.
func NewHandler(opts Options) (*Handler, error) {
	if len(opts.Secret) < MinSecret {
		return nil, fmt.Errorf("webhook secret is %d bytes, want at least %d", len(opts.Secret), MinSecret)
	}
	if opts.Tracker == nil || opts.Verifier == nil || opts.Starter == nil || opts.Deliveries == nil {
		return nil, errors.New("webhook handler needs a tracker, a verifier, a starter and a delivery store")
	}
	if opts.LargeBodies < 0 {
		return nil, fmt.Errorf("webhook large body slots %d is negative", opts.LargeBodies)
	}
	if opts.LargeBodies == 0 {
		opts.LargeBodies = DefaultLargeBodies
	}
	if opts.Bodies < 0 {
		return nil, fmt.Errorf("webhook body slots %d is negative", opts.Bodies)
	}
	if opts.Bodies == 0 {
		opts.Bodies = DefaultBodies
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.State.Repo != "" {
		if err := ValidRepoName(opts.State.Repo); err != nil {
			return nil, fmt.Errorf("webhook state repository: %w", err)
		}
		if opts.State.Reconciler == nil {
			return nil, errors.New("webhook handler needs a reconciler for the state repository's pushes")
		}
		if opts.State.Branch == "" {
			opts.State.Branch = "main"
		}
	}
	return &Handler{
		secret:     append([]byte(nil), opts.Secret...),
		tracker:    opts.Tracker,
		verifier:   opts.Verifier,
		starter:    opts.Starter,
		deliveries: opts.Deliveries,
		queue:      opts.Queue,
		paths:      opts.Paths,
		state:      opts.State,
		logger:     opts.Logger,
		large:      make(chan struct{}, opts.LargeBodies),
		bodies:     make(chan struct{}, max(opts.Bodies, opts.LargeBodies)),
	}, nil
}

// ServeHTTP verifies, decodes and acts on one delivery.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rep := h.serve(w, r)
	if rep.err != nil {
		switch {
		case rep.unread, rep.status == http.StatusUnauthorized:
			// Refused before the sender proved it knows the secret: a
			// flood of these must not flood the log too (the sender sees
			// the reason in the answer).
			h.logger.Debug("webhook refused", "delivery", github.DeliveryID(r), "status", rep.status, "err", rep.err)
		case rep.status >= http.StatusInternalServerError:
			h.logger.Error("webhook failed", "delivery", github.DeliveryID(r), "status", rep.status, "err", rep.err)
		default:
			h.logger.Info("webhook rejected", "delivery", github.DeliveryID(r), "status", rep.status, "err", rep.err)
		}
	}
	if rep.unread {
		w.Header().Set("Connection", "close")
	}
	if rep.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	body, _ := json.Marshal(rep.body) // a struct of strings always encodes
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.status)
	_, _ = w.Write(append(body, '\n'))
}

// serve decides the answer to one request. Everything that can be refused
// from the headers is refused before the body is read.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request) reply {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return *refuse(http.StatusMethodNotAllowed, "method not allowed", nil)
	}
	sig, rep := signature(r)
	if rep != nil {
		return early(rep)
	}
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (ct != "application/json" && ct != "application/x-www-form-urlencoded") {
		return early(refuse(http.StatusUnsupportedMediaType, "content type must be application/json or application/x-www-form-urlencoded",
			fmt.Errorf("content type %q: %w", r.Header.Get("Content-Type"), errUnsupportedType)))
	}
	payload, release, rep := h.readSigned(w, r, sig)
	defer release()
	if rep != nil {
		return early(rep)
	}
	if ct == "application/x-www-form-urlencoded" {
		form, err := url.ParseQuery(string(payload))
		if err != nil {
			return *refuse(http.StatusBadRequest, "form body does not parse", fmt.Errorf("parsing form body: %w", err))
		}
		payload = []byte(form.Get("payload"))
	}

	switch event := github.WebHookType(r); event {
	case "ping":
		return reply{status: http.StatusOK, body: response{Status: "pong"}}
	case "push":
	case "":
		return *refuse(http.StatusBadRequest, "missing X-GitHub-Event header", nil)
	default:
		return reply{status: http.StatusAccepted, body: response{Status: "ignored", Reason: fmt.Sprintf("event %s is not handled", event)}}
	}

	push, err := ParsePush(payload)
	// A replayed body (a captured delivery sent again under a new
	// delivery id) is recognised by its digest.
	sum := sha256.Sum256(payload)
	bodyKey := "sha256:" + hex.EncodeToString(sum[:])
	release() // the push is decoded: the body's memory may go
	if err != nil {
		return *refuse(http.StatusBadRequest, err.Error(), err)
	}
	push.Delivery = github.DeliveryID(r)
	if push.Delivery == "" || len(push.Delivery) > 128 {
		return *refuse(http.StatusBadRequest, "missing or oversized X-GitHub-Delivery header", nil)
	}
	if h.isState(push) {
		return h.reconcile(r.Context(), push, bodyKey)
	}
	if reason := h.ignore(push); reason != "" {
		h.logger.Info("push ignored", "delivery", push.Delivery, "repo", push.Repo, "ref", push.Ref, "reason", reason)
		return reply{status: http.StatusAccepted, body: response{Status: "ignored", Reason: reason}}
	}
	return h.start(r.Context(), push, bodyKey)
}

var errUnsupportedType = errors.New("unsupported content type")

// duplicate answers a delivery already acted on: the same delivery id
// (GitHub's redelivery) or the same body under another id (a replay).
func (h *Handler) duplicate(ctx context.Context, delivery, bodyKey string) *reply {
	for _, key := range []string{delivery, bodyKey} {
		id, found, err := h.deliveries.LookupDelivery(ctx, key)
		if err != nil {
			return refuse(http.StatusInternalServerError, "internal error", fmt.Errorf("looking up delivery: %w", err))
		}
		if found {
			h.logger.Info("duplicate delivery", "delivery", delivery, "pipeline", id, "sameBody", key == bodyKey)
			return &reply{status: http.StatusOK, body: response{Status: "duplicate", Pipeline: id}}
		}
	}
	return nil
}

// ignore returns why a push does not start a pipeline, or "" if it does.
func (h *Handler) ignore(p Push) string {
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
// started one or its commit is not on the tracked branch.
func (h *Handler) start(ctx context.Context, p Push, bodyKey string) reply {
	// Finish what we begin even if GitHub hangs up: a pipeline started but
	// not recorded would start again on redelivery.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), startTimeout)
	defer cancel()

	if rep := h.duplicate(sctx, p.Delivery, bodyKey); rep != nil {
		return *rep
	}
	// Checked outside startMu: a fetch may take seconds and other
	// deliveries need not wait for it.
	if rep := h.check(ctx, p); rep != nil {
		return *rep
	}
	filtered, rep := h.filter(ctx, p)
	if rep != nil {
		return *rep
	}

	h.startMu.Lock()
	defer h.startMu.Unlock()

	if rep := h.duplicate(sctx, p.Delivery, bodyKey); rep != nil {
		return *rep
	}
	if filtered != "" {
		h.save(sctx, p.Delivery, bodyKey, "")
		h.logger.Info("push ignored by path filter", "delivery", p.Delivery, "repo", p.Repo, "branch", p.Branch, "after", p.After, "reason", filtered)
		return reply{status: http.StatusOK, body: response{Status: "ignored", Ignored: true, Reason: filtered}}
	}
	id, err := h.starter.Start(sctx, p)
	if err != nil {
		return *refuse(http.StatusInternalServerError, "starting pipeline failed", fmt.Errorf("starting pipeline for %s@%s: %w", p.Repo, p.After, err))
	}
	h.save(sctx, p.Delivery, bodyKey, id)
	h.logger.Info("pipeline started", "delivery", p.Delivery, "repo", p.Repo, "branch", p.Branch, "after", p.After, "pipeline", id)
	if h.queue != nil {
		if reason, queued := h.queue.Queued(sctx, id); queued {
			return reply{status: http.StatusAccepted, body: response{Status: "queued", Reason: reason, Pipeline: id}}
		}
	}
	return reply{status: http.StatusAccepted, body: response{Status: "accepted", Pipeline: id}}
}

// save records that a delivery (its id and its body's digest) was acted
// on: it started pipeline id, or nothing ("") for a push filtered out or
// one of the state repository.
func (h *Handler) save(ctx context.Context, delivery, bodyKey, id string) {
	for _, key := range []string{delivery, bodyKey} {
		if err := h.deliveries.SaveDelivery(ctx, key, id, time.Now().UTC()); err != nil {
			// What was done is done; only a redelivery could do it twice.
			h.logger.Error("recording delivery failed", "delivery", delivery, "pipeline", id, "err", err)
		}
	}
}

// check asks the verifier whether the pushed commit is on the tracked
// branch, and turns a no into 422 and a failure to find out into 503.
func (h *Handler) check(ctx context.Context, p Push) *reply {
	err := h.verifier.Verify(ctx, p.Repo, p.Branch, p.After)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrUnknownCommit):
		return refuse(http.StatusUnprocessableEntity, fmt.Sprintf("commit %s is not in %s", p.After, p.Repo), err)
	case errors.Is(err, ErrNotOnBranch):
		return refuse(http.StatusUnprocessableEntity, fmt.Sprintf("commit %s is not on branch %s of %s", p.After, p.Branch, p.Repo), err)
	default:
		return refuse(http.StatusServiceUnavailable, fmt.Sprintf("cannot fetch %s to check commit %s; try again later", p.Repo, p.After), err)
	}
}
