package rollout

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/internal/workload"
)

// Router is the part of the gateway the controller drives.
type Router interface {
	SetRoute(r gateway.Route) error
	SetCanaryWeight(env, app string, weight int) error
	RemoveRoute(env, app string)
	Route(env, app string) (gateway.Route, bool)
}

// Repo is the state repository, where aborted canaries are reverted.
type Repo interface {
	Update(ctx context.Context, message string, edit gitops.Edit) (string, error)
}

// Reporter receives a production change's end, as the original's hook
// does: Update for a version deployed, promoted or aborted, Supersede for a
// rollout a newer version took the place of.
type Reporter interface {
	Update(ctx context.Context, workflow, app string, success bool, message string) error
	Supersede(ctx context.Context, workflow, app, message string) error
}

// Workloads start and stop the replicas of app versions (workload.Starter).
type Workloads interface {
	// Start runs art's replicas in env (adopting those already running)
	// and waits at most healthTimeout for them to be ready. A failure
	// that is not the version's fault wraps workload.ErrRetry.
	Start(ctx context.Context, env string, art build.Artifact, healthTimeout time.Duration) ([]gateway.Backend, error)
	Stop(ctx context.Context, env, app, version string) error
	// Status says how each replica of a version is doing; it is called
	// about every CanaryCheck while a canary runs: it must be cheap.
	Status(env, app, version string) []runtime.ReplicaStatus
}

var _ Workloads = workload.Starter{}

// Artifacts find built artifacts.
type Artifacts interface {
	Resolve(app, version string, kind build.Kind) (build.Artifact, error)
}

// Options configure a Controller. Router, Analyzer, Repo, Reporter, Store
// and Workloads are required.
type Options struct {
	Router    Router
	Analyzer  Analyzer
	Repo      Repo
	Reporter  Reporter
	Store     Store
	Workloads Workloads
	// Artifacts, if set, lets the controller start the stable version's
	// replicas again when none is ready and the route lost them (the
	// data plane restarted). Nil: only the desired version can be started.
	Artifacts Artifacts
	// Events receives the rollouts' events (kind events.Rollout, name
	// env/app). Nil: none are recorded.
	Events *events.Recorder
	// Clock times pauses, health deadlines and requeues. Nil: the real
	// clock. A Clock that is not a clock.WithTicker (clock.RealClock and
	// the fake clocks are) times the work queue's requeues by the real
	// clock.
	Clock clock.Clock
	// Logger nil: slog.Default().
	Logger *slog.Logger
	// Workers is how many keys (apps) are reconciled at once. Zero: 4.
	// The starts of replicas, which wait for their health, run outside
	// the workers.
	Workers int
	// CanaryCheck is how often a running canary's replicas are looked at.
	// Zero: 1s.
	CanaryCheck time.Duration
	// HealthTimeout bounds a version's wait for its replicas' health when
	// it is started as stable. Zero: 60s. A canary waits up to its spec's
	// progressDeadlineSeconds if that is longer.
	HealthTimeout time.Duration
	// Redact, if set, masks secrets in report messages (a replica's log
	// tail in a start failure may print its DATABASE_URL).
	Redact func(string) string
	// Committed, if set, is called after the controller pushed a commit to
	// the state repository (an aborted canary's revert), so that the
	// composition root can have the repository read again at once rather
	// than at the next poll. It must not block.
	Committed func()
}

// Defaults of Options.
const (
	defaultWorkers       = 4
	defaultCanaryCheck   = time.Second
	defaultHealthTimeout = 60 * time.Second
)

// maxHistory is how many finished rollouts List shows.
const maxHistory = 100

// Controller reconciles the production apps, one key (env/app) at a time
// per app and Options.Workers apps at once.
type Controller struct {
	opts     Options
	clock    clock.Clock
	log      *slog.Logger
	queue    workqueue.TypedRateLimitingInterface[string]
	analyses *analysisRuns
	// starts are the startRuns going on.
	starts sync.WaitGroup

	mu   sync.Mutex
	keys map[string]*keyState
	// statuses are the rollouts' statuses by env/app/canary, written
	// through at every save: what List and Active show.
	statuses map[string]Status
	started  bool
	done     chan struct{} // closed when Run returns
}

// keyState is what the controller keeps in memory about one app. The
// durable state is in the store; this is the hand-over from the
// environment controller (desired, forgotten), what the last pass found
// (for Wanted and Stable), and the canary's health watch.
type keyState struct {
	desired   *Desired
	forgotten bool
	// known is set once a pass has loaded the app's stored state; stable
	// and wanted are what it found.
	known  bool
	stable string
	wanted []string
	// ended is the version and workflow of the app's last rollout (or
	// failed first deploy) that ended: the same change is not rolled out
	// again (its revert may not have reached the manifest yet).
	ended ended
	// startFails counts starts that failed for a reason that is not the
	// version's fault, in a row.
	startFails int
	// deploying is the first deploy under way; unsent the failure of one
	// given up that the reporter did not take.
	deploying *firstDeploy
	unsent    *unsentReport
	watch     *canaryWatch
	// cancel ends the I/O of the pass in flight (an abort request).
	cancel context.CancelCauseFunc
	// start is the app's start of replicas running outside the workers,
	// or ended and not yet taken by a pass.
	start *startRun
	// storeMu orders this app's checkpoint writes (a pass's, a command's).
	storeMu sync.Mutex
}

type ended struct{ version, workflow string }

// New returns a controller; Run runs it.
func New(opts Options) *Controller {
	opts.Workers = cmp.Or(opts.Workers, defaultWorkers)
	opts.CanaryCheck = cmp.Or(opts.CanaryCheck, defaultCanaryCheck)
	opts.HealthTimeout = cmp.Or(opts.HealthTimeout, defaultHealthTimeout)
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	var qclock clock.WithTicker = clock.RealClock{}
	if c, ok := opts.Clock.(clock.WithTicker); ok {
		qclock = c
	}
	c := &Controller{
		opts: opts, clock: opts.Clock, log: opts.Logger,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](500*time.Millisecond, time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Clock: qclock}),
		keys: map[string]*keyState{}, statuses: map[string]Status{}, done: make(chan struct{}),
	}
	c.analyses = &analysisRuns{analyzer: opts.Analyzer, log: opts.Logger, enqueue: c.queue.Add, runs: map[string]*analysisRun{}}
	return c
}

func key(env, app string) string { return env + "/" + app }

func splitKey(k string) (env, app string) {
	env, app, _ = strings.Cut(k, "/")
	return env, app
}

// state returns the app's keyState, made on first use. Call with c.mu held.
func (c *Controller) state(k string) *keyState {
	ks, ok := c.keys[k]
	if !ok {
		ks = &keyState{}
		c.keys[k] = ks
	}
	return ks
}

// Run loads the rollout history, enqueues every unfinished rollout (so an
// abort or a promotion a restart interrupted finishes) and runs the
// workers until ctx ends. A shutdown leaves every rollout where its stored
// status says: it is not a verdict. Run returns once the workers and the
// analysis runs have stopped.
func (c *Controller) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		return errors.New("rollout controller: Run called twice")
	}
	c.started = true
	c.mu.Unlock()
	defer close(c.done)
	defer c.queue.ShutDown()
	all, err := c.loadHistory(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	for i, cp := range all { // newest first
		if i < maxHistory || !cp.Done() {
			c.statuses[statusKey(cp.Status)] = cp.Status
		}
		ks := c.state(key(cp.Env, cp.App))
		switch {
		case !cp.Done():
			// A restart is an ordinary pass from the stored status.
			c.log.Info("rollout resumed from its checkpoint", "env", cp.Env, "app", cp.App, "canary", cp.CanaryVersion,
				"step", cp.Step+1, "steps", cp.Steps, "weight", cp.Weight)
			c.queue.Add(key(cp.Env, cp.App))
		case ks.ended == ended{}:
			ks.ended = ended{cp.CanaryVersion, cp.Workflow}
		}
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for range c.opts.Workers {
		wg.Go(func() {
			for c.processNext(ctx) {
			}
		})
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	c.starts.Wait()
	c.analyses.wait()
	// Shutting down is not a verdict: every unfinished rollout stays at
	// its stored step and weight, and the next start resumes it.
	for _, st := range c.List() {
		if st.Finished.IsZero() {
			c.log.Info("rollout interrupted by shutdown", "env", st.Env, "app", st.App, "canary", st.CanaryVersion,
				"step", st.Step+1, "steps", st.Steps, "weight", st.Weight)
		}
	}
	return nil
}

// maxScan bounds how many stored rollouts Run reads to find the
// unfinished ones.
const maxScan = maxHistory << 10

// loadHistory returns the stored rollouts, newest first: at least the
// newest maxHistory, and every one there is (an unfinished rollout paused
// for longer than the newest maxHistory took is among them), up to
// maxScan. The store pages by limit only, so ever larger pages are read
// until one holds every rollout.
func (c *Controller) loadHistory(ctx context.Context) ([]Checkpoint, error) {
	for limit := maxHistory; ; limit *= 2 {
		all, err := c.opts.Store.ListRollouts(ctx, limit)
		if err != nil {
			return nil, fmt.Errorf("loading rollout history: %w", err)
		}
		if len(all) < limit {
			return all, nil
		}
		if limit >= maxScan {
			c.log.Warn("rollout history longer than the controller reads; an unfinished rollout older than those read resumes when its app is handed over",
				"read", len(all))
			return all, nil
		}
	}
}

// Wait blocks until Run has returned (its ctx must be cancelled first). It
// returns at once if Run was never called.
func (c *Controller) Wait() {
	c.mu.Lock()
	started := c.started
	c.mu.Unlock()
	if started {
		<-c.done
	}
}

// result is what a pass asks of the queue.
type result struct {
	requeue bool
	after   time.Duration
	// backoff requeues after the key's rate-limited backoff (a failure
	// worth trying again).
	backoff bool
}

func requeueNow() result                  { return result{requeue: true} }
func requeueAfter(d time.Duration) result { return result{requeue: true, after: d} }
func backoff() result                     { return result{backoff: true} }

func (c *Controller) processNext(ctx context.Context) bool {
	k, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(k)
	res, err := c.reconcile(ctx, k)
	switch {
	case ctx.Err() != nil:
		// Shutting down: the next Run picks the key up again.
	case err != nil:
		c.log.Error("reconciling rollout", "key", k, "err", err)
		c.queue.AddRateLimited(k)
	case res.backoff:
		c.queue.AddRateLimited(k)
	default:
		c.queue.Forget(k)
		if res.requeue {
			c.queue.AddAfter(k, res.after)
		}
	}
	return true
}

// SetDesired hands over the production manifest's version of an app. It
// is kept in memory and enqueues the app's key; it never blocks on I/O. A
// new version cuts short what the app's pass in flight waits for (a
// canary's start), so that its rollout is superseded at once.
func (c *Controller) SetDesired(d Desired) {
	k := key(d.Env, d.App)
	c.mu.Lock()
	ks := c.state(k)
	if ks.desired != nil && ks.desired.Version != d.Version {
		if ks.cancel != nil {
			ks.cancel(errDesiredChanged)
		}
		ks.cancelStart(errDesiredChanged)
	}
	ks.desired, ks.forgotten = &d, false
	c.mu.Unlock()
	c.queue.Add(k)
}

// Forget tells the controller that app is no longer in env's manifest: its
// versions are stopped, its route removed, its record cleared and an
// unfinished rollout ended.
func (c *Controller) Forget(env, app string) {
	k := key(env, app)
	c.mu.Lock()
	ks := c.state(k)
	ks.desired, ks.forgotten = nil, true
	c.mu.Unlock()
	c.queue.Add(k)
}

// Wanted returns the versions of app in env that the controller runs or is
// about to run (stable, canary, and the old stable while a promotion
// finishes), and whether it knows yet: false until a pass has loaded the
// app's stored state after a start, when every version must be kept.
func (c *Controller) Wanted(env, app string) (versions []string, known bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ks, ok := c.keys[key(env, app)]
	if !ok || !ks.known {
		return nil, false
	}
	return slices.Clone(ks.wanted), true
}

// Stable returns the version serving app in env as stable, "" if none (or
// not known yet).
func (c *Controller) Stable(env, app string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ks, ok := c.keys[key(env, app)]; ok {
		return ks.stable
	}
	return ""
}

func statusKey(s Status) string { return s.Env + "/" + s.App + "/" + s.CanaryVersion }

// remember records a rollout's status for List and Active.
func (c *Controller) remember(s Status) {
	s.Analyses = slices.Clone(s.Analyses)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.statuses[statusKey(s)] = s
	var finished []string
	for k, st := range c.statuses {
		if !st.Finished.IsZero() {
			finished = append(finished, k)
		}
	}
	if len(finished) <= maxHistory {
		return
	}
	sort.Slice(finished, func(i, j int) bool { return c.statuses[finished[i]].Finished.Before(c.statuses[finished[j]].Finished) })
	for _, k := range finished[:len(finished)-maxHistory] {
		delete(c.statuses, k)
	}
}

// List returns the running rollouts, newest first, then the finished ones,
// the last to end first.
func (c *Controller) List() []Status {
	c.mu.Lock()
	var running, finished []Status
	for _, s := range c.statuses {
		s.Analyses = slices.Clone(s.Analyses)
		if s.Finished.IsZero() {
			running = append(running, s)
		} else {
			finished = append(finished, s)
		}
	}
	c.mu.Unlock()
	sort.Slice(running, func(i, j int) bool { return running[i].Started.After(running[j].Started) })
	sort.Slice(finished, func(i, j int) bool {
		if !finished[i].Finished.Equal(finished[j].Finished) {
			return finished[i].Finished.After(finished[j].Finished)
		}
		return finished[i].Started.After(finished[j].Started)
	})
	return append(running, finished...)
}

// Active returns the running rollout of app in env.
func (c *Controller) Active(env, app string) (Status, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out Status
	found := false
	for _, s := range c.statuses {
		if s.Env == env && s.App == app && s.Finished.IsZero() && (!found || s.Started.After(out.Started)) {
			out, found = s, true
		}
	}
	out.Analyses = slices.Clone(out.Analyses)
	return out, found
}

// event records a rollout event of the app.
func (c *Controller) event(env, app, typ, reason, msg string) {
	c.opts.Events.Record(typ, events.Rollout, key(env, app), reason, msg)
}
