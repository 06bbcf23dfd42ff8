// Package reporter tracks which apps of an environment must report that they
// are ready, records their reports and lets a pipeline wait for the outcome.
//
// It is the durable form of the original system's "workflow-reporter": a
// pipeline submits an expectation (the apps that must report), the apps' hook
// jobs report success or failure, and a waiter ends when every expected app
// reported success, when one reported failure, or when its deadline passes.
// The Store is the source of truth; an in-memory broadcast wakes waiters as
// soon as something changes, so nothing polls.
//
// Runway's own controllers report in process (Update). Hooks outside
// Runway report over HTTP (HandlerWith) with their expectation's own
// random token (Token), which the environment's jobs receive.
package reporter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/runway-cd/runway/internal/oneline"
)

// Phase is the state of an expectation.
type Phase string

// The phases of an expectation.
const (
	PhasePending   Phase = "Pending"
	PhaseSucceeded Phase = "Succeeded"
	PhaseFailed    Phase = "Failed"
)

// Report is one app's report for a workflow. The last report per app wins.
type Report struct {
	App     string `json:"app"`
	Success bool   `json:"success"`
	// Outcome says what kind of end a failed report is, for a waiter to
	// branch on by code: "" for an ordinary report, OutcomeSuperseded for
	// a rollout overtaken by a newer one. Only Supersede sets it; the store
	// keeps it apart from Message, so no message (a hook's over HTTP
	// included, whose body has no such field) can stand for one.
	Outcome Outcome   `json:"outcome,omitempty"`
	Message string    `json:"message,omitempty"`
	Time    time.Time `json:"time"`
}

// Outcome is the kind of end a report records beyond success or failure.
type Outcome string

// OutcomeSuperseded marks the failed report of a rollout that a newer
// version of the same app overtook: nothing was wrong with the change, it
// will never report otherwise (see Supersede).
const OutcomeSuperseded Outcome = "Superseded"

// Expectation is what a workflow waits for: the apps that must report, the
// reports received so far (including reports of apps that are not expected,
// which are kept but do not count), and the resulting phase.
type Expectation struct {
	Workflow string            `json:"workflow"`
	Apps     []string          `json:"apps"`
	Reports  map[string]Report `json:"reports"`
	Phase    Phase             `json:"phase"`
	Reason   string            `json:"reason,omitempty"`
	Created  time.Time         `json:"created"`
}

// Store persists expectations and reports. It is implemented by the SQLite
// store (internal/store/sqlite).
type Store interface {
	// SaveExpectation creates or replaces the apps list of workflow's
	// expectation. Saving it again keeps its creation time.
	SaveExpectation(ctx context.Context, workflow string, apps []string, created time.Time) error
	// SaveReport records r for workflow; the last report per (workflow, app) wins.
	SaveReport(ctx context.Context, workflow string, r Report) error
	// LoadExpectation returns the expectation of workflow and every report
	// recorded for it. Reports are returned even if found is false.
	LoadExpectation(ctx context.Context, workflow string) (apps []string, created time.Time, reports []Report, found bool, err error)
	// ExpectationToken returns workflow's bearer token, storing ifNone
	// first when it has none; a stored token never changes. found is false,
	// and nothing is stored, when workflow was never submitted.
	ExpectationToken(ctx context.Context, workflow, ifNone string) (token string, found bool, err error)
}

// ErrNotFound is returned by Get for a workflow that was never submitted.
var ErrNotFound = errors.New("expectation not found")

// ErrInvalid is wrapped by errors about bad input (names, app lists).
var ErrInvalid = errors.New("invalid input")

// MaxMessage is the longest report message kept, in bytes. A message is
// made one line (oneline.Clean: line breaks and control characters become
// spaces) and cut on a rune boundary to this length rather than refused, so
// a verbose hook never loses its report, blocks a pipeline or forges lines
// in what quotes it (logs, step output, commit messages).
const MaxMessage = oneline.MaxReason

// Reporter records expectations and reports in a Store and wakes waiters.
type Reporter struct {
	store   Store
	logger  *slog.Logger
	recheck time.Duration // how often a waiter re-reads the store unwoken

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
}

// New returns a Reporter that keeps its state in store. A nil logger
// discards logs.
func New(store Store, logger *slog.Logger) *Reporter {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Reporter{store: store, logger: logger, recheck: recheckInterval, changed: make(chan struct{})}
}

// Submit registers which apps must report for workflow and gives the
// expectation its token (see Token). Submitting again replaces the apps
// list and keeps the token; reports already received, even those received
// before the first Submit, are kept and count.
func (r *Reporter) Submit(ctx context.Context, workflow string, apps []string) error {
	if err := validateName("workflow", workflow); err != nil {
		return err
	}
	if len(apps) == 0 {
		return fmt.Errorf("%w: workflow %q: no apps to expect", ErrInvalid, workflow)
	}
	seen := make(map[string]bool, len(apps))
	for _, app := range apps {
		if err := validateName("app", app); err != nil {
			return err
		}
		if seen[app] {
			return fmt.Errorf("%w: app %q listed twice", ErrInvalid, app)
		}
		seen[app] = true
	}
	if err := r.store.SaveExpectation(ctx, workflow, apps, time.Now().UTC()); err != nil {
		return fmt.Errorf("saving expectation of %s: %w", workflow, err)
	}
	if _, err := r.Token(ctx, workflow); err != nil {
		return err
	}
	r.logger.Info("expectation submitted", "workflow", workflow, "apps", apps)
	r.broadcast()
	return nil
}

// Update records app's report for workflow. A report may arrive before the
// workflow is submitted; it is stored and counts once the workflow is
// submitted with app among its apps. message is made one line and cut to
// MaxMessage bytes, never refused.
//
// Update trusts its caller: it is for Runway's own controllers, in process.
// Reports from outside go through Handler, which checks the token.
func (r *Reporter) Update(ctx context.Context, workflow, app string, success bool, message string) error {
	return r.save(ctx, workflow, Report{App: app, Success: success, Message: message})
}

// Supersede records app's report for workflow as failed with Outcome
// OutcomeSuperseded: the rollout that workflow waits for was overtaken by
// a newer version of app and will never report. The expectation ends
// (Failed), so a waiter wakes and, by the Outcome, ends as superseded
// rather than failed. message is cleaned as Update's is.
func (r *Reporter) Supersede(ctx context.Context, workflow, app, message string) error {
	return r.save(ctx, workflow, Report{App: app, Outcome: OutcomeSuperseded, Message: message})
}

// save validates and records rep for workflow and wakes the waiters.
func (r *Reporter) save(ctx context.Context, workflow string, rep Report) error {
	if err := validateName("workflow", workflow); err != nil {
		return err
	}
	if err := validateName("app", rep.App); err != nil {
		return err
	}
	rep.Message = oneline.Clean(rep.Message, MaxMessage)
	rep.Time = time.Now().UTC()
	if err := r.store.SaveReport(ctx, workflow, rep); err != nil {
		return fmt.Errorf("saving report of %s for %s: %w", rep.App, workflow, err)
	}
	r.logger.Info("report received", "workflow", workflow, "app", rep.App, "success", rep.Success, "outcome", rep.Outcome)
	r.broadcast()
	return nil
}

// Get returns the current state of workflow's expectation, or ErrNotFound.
func (r *Reporter) Get(ctx context.Context, workflow string) (Expectation, error) {
	exp, found, err := r.load(ctx, workflow)
	if err != nil {
		return Expectation{}, err
	}
	if !found {
		return Expectation{}, fmt.Errorf("workflow %q: %w", workflow, ErrNotFound)
	}
	return exp, nil
}

// Token returns the bearer token of workflow's expectation: 32 random bytes,
// hex, made at its first Submit (or at the first call for an expectation
// stored before tokens existed) and never changed. Hooks outside Runway
// send it as "Authorization: Bearer <token>" on POST /workflow/update; only
// an admin may read it (GET /api/v1/expectations/{workflow}/token). A
// workflow never submitted has no token: ErrNotFound.
func (r *Reporter) Token(ctx context.Context, workflow string) (string, error) {
	if err := validateName("workflow", workflow); err != nil {
		return "", err
	}
	fresh, err := newToken()
	if err != nil {
		return "", err
	}
	token, found, err := r.store.ExpectationToken(ctx, workflow, fresh)
	if err != nil {
		return "", fmt.Errorf("loading token of %s: %w", workflow, err)
	}
	if !found {
		return "", fmt.Errorf("workflow %q: %w", workflow, ErrNotFound)
	}
	return token, nil
}

// tokenBytes is the number of random bytes in a token.
const tokenBytes = 32

// newToken returns tokenBytes random bytes, hex encoded.
func newToken() (string, error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("making a reporter token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// load reads workflow's state. When the workflow was not submitted, found is
// false and exp holds the reports received so far in phase Pending.
func (r *Reporter) load(ctx context.Context, workflow string) (exp Expectation, found bool, err error) {
	apps, created, reports, found, err := r.store.LoadExpectation(ctx, workflow)
	if err != nil {
		return Expectation{}, false, fmt.Errorf("loading expectation of %s: %w", workflow, err)
	}
	exp = Expectation{
		Workflow: workflow,
		Apps:     apps,
		Reports:  make(map[string]Report, len(reports)),
		Created:  created,
	}
	if exp.Apps == nil {
		exp.Apps = []string{}
	}
	for _, rep := range reports {
		rep.Message = oneline.Clean(rep.Message, MaxMessage) // stored before messages were bounded
		exp.Reports[rep.App] = rep
	}
	if !found {
		exp.Phase = PhasePending
		exp.Reason = "not submitted yet"
		return exp, false, nil
	}
	exp.Phase, exp.Reason = evaluate(exp.Apps, exp.Reports)
	return exp, true, nil
}

// changes returns a channel that is closed at the next change.
func (r *Reporter) changes() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// broadcast wakes every waiter.
func (r *Reporter) broadcast() {
	r.mu.Lock()
	defer r.mu.Unlock()
	close(r.changed)
	r.changed = make(chan struct{})
}
