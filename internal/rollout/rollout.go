// Package rollout is the canary controller for production: it starts a new
// version beside the stable one and walks Argo Rollouts-style steps
// (setWeight, pause, analysis) by moving the gateway's weights, judges the
// canary with analysis runs, and either promotes it or aborts: traffic back
// to stable at once, canary stopped, failure reported and the production
// manifest reverted in git so git says what runs. A canary whose replicas
// crash-loop, or are not ready within the spec's progressDeadlineSeconds,
// is aborted the same way, whatever step the rollout is at.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/runtime"
)

// Router is the part of the gateway a rollout drives.
type Router interface {
	SetRoute(r gateway.Route) error
	SetCanaryWeight(env, app string, weight int) error
}

// Analyzer runs one analysis run to its end.
type Analyzer interface {
	Analyze(ctx context.Context, req AnalysisRequest) (Outcome, error)
}

// AnalysisRequest names the templates to run and their arguments.
type AnalysisRequest struct {
	Name      string
	Templates []appspec.TemplateRef
	Args      map[string]string
	Artifact  build.Artifact // holds the template files
	// Resume continues the run of this name that a killed control plane
	// left unfinished, with its stored measurements; a run it finds ended
	// gives its stored verdict.
	Resume bool
}

// Outcome is an analysis run's end: Successful, Failed, Inconclusive or
// Error, with a reason a person can read.
type Outcome struct {
	Phase  string
	Reason string
}

// Analysis phases.
const (
	Successful   = "Successful"
	Failed       = "Failed"
	Inconclusive = "Inconclusive"
	Error        = "Error"
)

// StateRepo is where rollbacks are committed.
type StateRepo interface {
	ReadFile(ctx context.Context, path string) ([]byte, error)
	Commit(ctx context.Context, message string, changes ...gitops.Change) (string, error)
}

// Reporter receives the rollout's end, as the original's hook does.
type Reporter interface {
	Update(ctx context.Context, workflow, app string, success bool, message string) error
}

// Target owns the canary's replicas.
type Target interface {
	// StartCanary starts the canary's replicas and returns once they are
	// ready. Its ctx ends at the spec's progressDeadlineSeconds.
	StartCanary(ctx context.Context) ([]gateway.Backend, error)
	// CanaryStatus says how each canary replica is doing (the runtime's
	// Status of the canary version); nil when none is known. It is
	// called about every second while the rollout runs: it must be cheap.
	CanaryStatus(ctx context.Context) []runtime.ReplicaStatus
	Promoted(ctx context.Context, canary []gateway.Backend) error
	Aborted(ctx context.Context) error
}

// Request starts a rollout of CanaryVersion beside StableVersion.
type Request struct {
	Env, App      string
	Workflow      string // reported to when the rollout ends
	StableVersion string
	Stable        []gateway.Backend
	StableEntry   *manifest.App // written back to git on abort
	CanaryVersion string
	Artifact      build.Artifact // the canary's app artifact, with its spec
	Target        Target
}

// Phases of a rollout, as Argo Rollouts names them.
const (
	Progressing = "Progressing"
	Paused      = "Paused"
	Healthy     = "Healthy"
	Degraded    = "Degraded"
)

// Status is a rollout's state for the API.
type Status struct {
	Env           string    `json:"env"`
	App           string    `json:"app"`
	StableVersion string    `json:"stableVersion"`
	CanaryVersion string    `json:"canaryVersion"`
	Phase         string    `json:"phase"`
	Step          int       `json:"step"`
	Steps         int       `json:"steps"`
	Weight        int       `json:"weight"`
	Message       string    `json:"message"`
	Started       time.Time `json:"started"`
	Finished      time.Time `json:"finished,omitzero"`
	Analyses      []Run     `json:"analyses,omitempty"`
}

// Run is one analysis run of a rollout.
type Run struct {
	Name   string `json:"name"`
	Phase  string `json:"phase"`
	Reason string `json:"reason"`
}

// Controller runs rollouts, one at a time per app.
type Controller struct {
	router   Router
	analyzer Analyzer
	repo     StateRepo
	reporter Reporter
	onDone   func()
	log      *slog.Logger
	cps      Checkpoints // nil: rollouts do not survive a restart
	// canaryCheck is how often a rollout looks at its canary's replicas
	// (see health.go); tests shorten it.
	canaryCheck time.Duration

	mu      sync.Mutex
	active  map[string]*rollout
	history []Status
	wg      sync.WaitGroup
}

// New returns a controller. onDone, if set, is called after every rollout
// ends (the environment controller's trigger).
func New(router Router, analyzer Analyzer, repo StateRepo, reporter Reporter, onDone func(), logger *slog.Logger) *Controller {
	if logger == nil {
		logger = slog.Default()
	}
	if onDone == nil {
		onDone = func() {}
	}
	return &Controller{router: router, analyzer: analyzer, repo: repo, reporter: reporter, onDone: onDone, log: logger, active: map[string]*rollout{},
		canaryCheck: defaultCanaryCheck}
}

func key(env, app string) string { return env + "/" + app }

// Persist makes every rollout save its checkpoint to cps, and Start resume
// from an unfinished one. Call it before the first Start. If cps can list
// rollouts, the finished ones become the history List shows.
func (c *Controller) Persist(ctx context.Context, cps Checkpoints) error {
	c.cps = cps
	lister, ok := cps.(interface {
		ListRollouts(ctx context.Context, limit int) ([]Checkpoint, error)
	})
	if !ok {
		return nil
	}
	all, err := lister.ListRollouts(ctx, maxHistory)
	if err != nil {
		return fmt.Errorf("loading rollout history: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(all) - 1; i >= 0; i-- { // oldest first, as history is kept
		if all[i].Done() {
			c.history = append(c.history, all[i].Status)
		}
	}
	return nil
}

// maxHistory is how many finished rollouts List shows.
const maxHistory = 100

// Start begins a rollout in the background. It fails if one is already
// running for the app.
func (c *Controller) Start(ctx context.Context, req Request) error {
	k := key(req.Env, req.App)
	running := func() bool {
		_, ok := c.active[k]
		return ok
	}
	c.mu.Lock()
	busy := running()
	c.mu.Unlock()
	if busy {
		return fmt.Errorf("a rollout of %s in %s is already running", req.App, req.Env)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("starting a rollout of %s: %w", req.App, err) // shutting down
	}
	// Outside c.mu: it may end superseded checkpoints, which records them.
	cp, resume, err := c.resumable(ctx, req)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if running() {
		return fmt.Errorf("a rollout of %s in %s is already running", req.App, req.Env)
	}
	var steps []appspec.Step
	if cn := req.Artifact.Spec.Strategy.Canary; cn != nil {
		steps = cn.Steps
	}
	r := &rollout{
		c: c, req: req, steps: steps, promote: make(chan struct{}, 1), retry: make(chan struct{}, 1), bgInconclusive: make(chan string, 1),
		status: Status{Env: req.Env, App: req.App, StableVersion: req.StableVersion, CanaryVersion: req.CanaryVersion,
			Phase: Progressing, Steps: len(steps), Started: time.Now().UTC(), Message: "starting canary replicas"},
	}
	if resume {
		r.resumeFrom(cp)
		c.log.Info("rollout resumed from its checkpoint", "env", req.Env, "app", req.App, "canary", req.CanaryVersion,
			"step", cp.Step+1, "weight", cp.Weight, "stepRun", cp.StepRun, "backgroundRun", cp.BackgroundRun)
	}
	r.save(ctx)
	c.active[k] = r
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		r.run(ctx)
		c.mu.Lock()
		delete(c.active, k)
		c.history = append(c.history, r.snapshot())
		if len(c.history) > maxHistory {
			c.history = c.history[len(c.history)-maxHistory:]
		}
		c.mu.Unlock()
		c.onDone()
	}()
	return nil
}

// Active returns the running rollout of app in env.
func (c *Controller) Active(env, app string) (Status, bool) {
	c.mu.Lock()
	r, ok := c.active[key(env, app)]
	c.mu.Unlock()
	if !ok {
		return Status{}, false
	}
	return r.snapshot(), true
}

// List returns running rollouts then finished ones, newest first.
func (c *Controller) List() []Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Status
	for _, r := range c.active {
		out = append(out, r.snapshot())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.After(out[j].Started) })
	for i := len(c.history) - 1; i >= 0; i-- {
		out = append(out, c.history[i])
	}
	return out
}

// ErrNoRollout is returned by Promote and Abort when none runs.
var ErrNoRollout = errors.New("no rollout in progress")

// Wait blocks until every rollout goroutine has returned (their context
// must be cancelled first).
func (c *Controller) Wait() { c.wg.Wait() }
