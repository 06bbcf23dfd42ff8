package pipeline

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/redact"
	"github.com/runway-cd/runway/internal/reporter"
)

// Builder builds artifacts.
type Builder interface {
	Build(ctx context.Context, req build.Request) (build.Artifact, error)
}

// StateRepo is the state repository.
type StateRepo interface {
	ReadFile(ctx context.Context, path string) ([]byte, error)
	Commit(ctx context.Context, message string, changes ...gitops.Change) (string, error)
	// Update makes a commit whose changes edit computes from the head it
	// lands on, again on a new head after a lost race (gitops.Repo.Update):
	// every read-modify-write of a manifest goes through it.
	Update(ctx context.Context, message string, edit gitops.Edit) (string, error)
	// Snapshot is read to count the staging environments (MaxStaging).
	Snapshot(ctx context.Context) (*gitops.Snapshot, error)
}

// Reporter is the deploy-report gate.
type Reporter interface {
	Submit(ctx context.Context, workflow string, apps []string) error
	Wait(ctx context.Context, workflow string, timeout time.Duration) (reporter.Expectation, error)
	Get(ctx context.Context, workflow string) (reporter.Expectation, error)
}

// Environments is the environment controller.
type Environments interface {
	// Trigger asks for a reconcile now (after a push to the state repo).
	Trigger()
	// Envs lists the environments that run.
	Envs() []string
	// RunJob runs app's migrations or tests (kind) of version against env.
	RunJob(ctx context.Context, env, app, version, kind string, log io.Writer) error
	// URL is app's address in env through the gateway.
	URL(env, app string) string
}

// Request is a change to take through the pipeline.
type Request struct {
	App      string
	Repo     string
	CloneURL string
	Branch   string
	Commit   string
	Message  string
	// Author is the head commit's author ("Name <email>"), for people.
	Author   string
	Delivery string
	// Service, when set, says App's repository is a service's own
	// repository (schema, setup hooks, no app image): ServicePostgres.
	// Empty: an app.
	Service string
}

// Options tune the runner.
type Options struct {
	// DeployTimeout bounds the wait for a staging environment's reports.
	// Zero value: 5m.
	DeployTimeout time.Duration
	// RolloutTimeout bounds the wait for the production canary. Zero
	// value: 30m.
	RolloutTimeout time.Duration
	// TeardownTimeout bounds the wait for the staging environment to go.
	// Zero value: 2m.
	TeardownTimeout time.Duration
	// BuildTimeout bounds each build step. Zero value: 15m.
	BuildTimeout time.Duration
	// JobTimeout bounds each migrations or functional tests job, on top
	// of the job's own timeout in the app spec. Zero value: 10m.
	JobTimeout time.Duration
	// StagingTTL is how long a staging environment may live, from the
	// start of the step that pushed its manifest; then the Reaper removes
	// it and the steps still waiting on it fail. Zero value: 24h.
	StagingTTL time.Duration
	// KeepOnFailure keeps a failed pipeline's staging environment for
	// debugging until its TTL instead of tearing it down. Zero value:
	// torn down.
	KeepOnFailure bool
	Logger        *slog.Logger
	// AbortRollout, if set, aborts the production rollout of app when the
	// pipeline stops waiting for it (deadline), so no canary is left
	// serving for a pipeline that already failed. It must abort only a
	// rollout of this pipeline's version (another pipeline's rollout of
	// the app is none of its business).
	AbortRollout func(env, app, version, reason string) error
	// Clock is the clock: times recorded, deadlines and polls. Zero
	// value: Now's, else the real clock.
	Clock clock.Clock
	// Now, when Clock is nil, is the time recorded and compared, with
	// the real clock's timers. Zero value: see Clock.
	Now func() time.Time
	// Events records the pipelines' events (kind events.Pipeline, name
	// the pipeline's id): Queued, Started, Promoting, Superseded,
	// Cancelled, Succeeded, Failed. Zero value: none recorded.
	Events *events.Recorder
	// Redactor masks known secrets in everything a step writes to its
	// log, in step errors and in reasons, before they are stored or
	// served. Zero value: nothing is masked.
	Redactor *redact.Redactor
	// MaxRunning caps the pipelines running at once (limits.pipelines);
	// the others wait in phase Queued, in arrival order. Zero value: no
	// cap.
	MaxRunning int
	// MaxStaging caps the staging environments (staging manifests in the
	// state repo, limits.stagingEnvironments): a pipeline that would
	// push one more waits in its push-staging-manifest step, at most its
	// StagingTTL, until one is gone. Zero value: no cap.
	MaxStaging int
	// Ancestry orders each app's promotions by its commits' history (the
	// server passes its *build.Verifier): a change whose commit is an
	// ancestor of another's is the older one, whenever they arrived, and
	// the promote step never replaces a production entry whose revision
	// is the pipeline's own commit or a descendant of it (it ends
	// Superseded instead). A look-up that fails is logged and arrival
	// order decides. Zero value: arrival order (Created, then ID) is
	// commit order, and the promote step replaces whatever production
	// has.
	Ancestry Ancestry
}

// Runner runs pipelines, each in its own goroutine.
type Runner struct {
	store    Store
	builder  Builder
	repo     StateRepo
	reporter Reporter
	envs     Environments
	opts     Options
	log      *slog.Logger

	clk      clock.Clock
	mu       sync.Mutex
	running  map[string]*run
	promos   promotions // each app's promotion, in commit order
	queueMu  sync.Mutex // serialises the queued pipelines' position updates
	slots    *slots     // MaxRunning
	staging  stagingCap // MaxStaging
	versions sync.Mutex // serialises version picking
	wg       sync.WaitGroup
	expiries expiries // staging environments the reaper removed
	// draining is closed by Drain.
	draining  chan struct{}
	drainOnce sync.Once
}

// New returns a runner.
func New(store Store, builder Builder, repo StateRepo, rep Reporter, envs Environments, opts Options) *Runner {
	if opts.DeployTimeout == 0 {
		opts.DeployTimeout = 5 * time.Minute
	}
	if opts.RolloutTimeout == 0 {
		opts.RolloutTimeout = 30 * time.Minute
	}
	if opts.TeardownTimeout == 0 {
		opts.TeardownTimeout = 2 * time.Minute
	}
	if opts.BuildTimeout == 0 {
		opts.BuildTimeout = 15 * time.Minute
	}
	if opts.JobTimeout == 0 {
		opts.JobTimeout = 10 * time.Minute
	}
	if opts.StagingTTL == 0 {
		opts.StagingTTL = 24 * time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	clk := opts.Clock
	switch {
	case clk == nil && opts.Now != nil:
		clk = nowClock{now: opts.Now}
	case clk == nil:
		clk = clock.RealClock{}
	}
	opts.Now = clk.Now
	r := &Runner{
		store: store, builder: builder, repo: repo, reporter: rep, envs: envs, opts: opts, log: opts.Logger, clk: clk,
		running: map[string]*run{}, slots: newSlots(opts.MaxRunning), staging: newStagingCap(), draining: make(chan struct{}),
	}
	r.promos.anc = opts.Ancestry
	return r
}

// Start records a new pipeline durably, then runs it in the background
// under ctx. The returned id is valid as soon as Start returns.
func (r *Runner) Start(ctx context.Context, req Request) (string, error) {
	p := &Pipeline{
		ID: newID(req.App), App: req.App, Repo: req.Repo, CloneURL: req.CloneURL, Branch: req.Branch,
		Commit: req.Commit, Message: req.Message, Author: req.Author, Delivery: req.Delivery, Service: req.Service,
		Phase: Pending, Created: r.now().UTC(),
	}
	for _, n := range StepNames {
		p.Steps = append(p.Steps, Step{Name: n, Phase: Pending})
	}
	if err := r.store.SavePipeline(ctx, p); err != nil {
		return "", fmt.Errorf("recording pipeline: %w", err)
	}
	r.launch(ctx, p, false)
	return p.ID, nil
}

// Resume restarts every pipeline that had not finished, from its first
// step that had not succeeded, in the order they arrived: the oldest get
// the slots (Options.MaxRunning), the others queue again.
func (r *Runner) Resume(ctx context.Context) error {
	ps, err := r.store.ListPipelines(ctx, 1000)
	if err != nil {
		return fmt.Errorf("listing pipelines to resume: %w", err)
	}
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].before(ps[j]) })
	// Who holds and who waits for each app's promotion is known before
	// any of them runs again, so the newest waiting one goes next.
	r.promos.mu.Lock()
	for _, p := range ps {
		if !p.Phase.Done() {
			r.promos.seedLocked(p)
		}
	}
	r.promos.mu.Unlock()
	if err := r.promos.load(ctx, r.store); err != nil {
		return err
	}
	for _, p := range ps {
		if p.Phase.Done() {
			continue
		}
		r.log.Info("resuming pipeline", "pipeline", p.ID, "phase", p.Phase)
		r.launch(ctx, p, true)
	}
	return nil
}

// launch runs p in the background once it has a slot; when none is free
// it records p as Queued before returning. reread (Resume) runs the
// pipeline as stored when it registers, not p: a Cancel answered since p
// was read (the API serves while Resume runs) saved a request p lacks,
// which the run's first save would otherwise overwrite.
func (r *Runner) launch(ctx context.Context, p *Pipeline, reread bool) {
	// The run's own context ends when it is cancelled (Cancel, with
	// cause errCancelled) or when ctx ends.
	rctx, stop := context.WithCancelCause(ctx)
	r.mu.Lock()
	if _, dup := r.running[p.ID]; dup {
		r.mu.Unlock()
		stop(nil)
		return
	}
	if reread {
		// Under r.mu, which Cancel holds from its look-up of the running
		// pipelines to its save of a stored one.
		fresh, err := r.store.GetPipeline(ctx, p.ID)
		if err != nil {
			r.mu.Unlock()
			stop(nil)
			r.log.Error("reading pipeline to resume; it resumes on the next restart", "pipeline", p.ID, "err", err)
			return
		}
		if fresh.Phase.Done() {
			r.mu.Unlock()
			stop(nil)
			return
		}
		if fresh.CancelRequested != "" {
			r.promos.release(fresh.App, fresh.ID) // not waiting for its promotion any more
		}
		p = fresh
	}
	ru := &run{r: r, p: p, stop: stop}
	r.running[p.ID] = ru
	r.mu.Unlock()
	turn := r.slots.acquire(ru)
	if turn != nil {
		ru.queue(ctx)
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer stop(nil)
		defer func() {
			r.mu.Lock()
			delete(r.running, p.ID)
			r.mu.Unlock()
		}()
		if turn != nil {
			ok := r.slots.wait(rctx, turn, r.draining)
			r.requeue(ctx)
			if !ok {
				if ru.cancelRequested() && ctx.Err() == nil && !r.isDraining() {
					// Cancelled while queued: it needs no slot to end
					// (Cancel ended it already unless it has a staging
					// environment to tear down).
					ru.execute(ctx, rctx)
					return
				}
				r.log.Info("queued pipeline stopped for shutdown; it queues again on restart", "pipeline", p.ID)
				return
			}
		}
		defer func() {
			r.slots.release()
			r.requeue(ctx)
		}()
		ru.execute(ctx, rctx)
	}()
}

// now is the runner's clock's time.
func (r *Runner) now() time.Time { return r.clk.Now() }

// event records a pipeline event (a warning when warn is set).
func (r *Runner) event(warn bool, id, reason, msg string) {
	if warn {
		r.opts.Events.Warning(events.Pipeline, id, reason, msg)
		return
	}
	r.opts.Events.Normal(events.Pipeline, id, reason, msg)
}

// nowClock is the real clock with its time from a func (Options.Now).
type nowClock struct {
	clock.RealClock
	now func() time.Time
}

func (c nowClock) Now() time.Time                  { return c.now() }
func (c nowClock) Since(t time.Time) time.Duration { return c.now().Sub(t) }

// Get returns a pipeline, live if it is running.
func (r *Runner) Get(ctx context.Context, id string) (*Pipeline, error) {
	r.mu.Lock()
	ru, ok := r.running[id]
	r.mu.Unlock()
	if ok {
		return ru.snapshot(), nil
	}
	return r.store.GetPipeline(ctx, id)
}

// List returns the newest pipelines, live ones as they are now.
func (r *Runner) List(ctx context.Context, limit int) ([]*Pipeline, error) {
	ps, err := r.store.ListPipelines(ctx, limit)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, p := range ps {
		if ru, ok := r.running[p.ID]; ok {
			ps[i] = ru.snapshot()
		}
	}
	return ps, nil
}

// Wait blocks until every pipeline goroutine returned (cancel their
// context first).
func (r *Runner) Wait() { r.wg.Wait() }

func newID(app string) string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return app + "-" + string(b)
}

// logBuffer keeps the tail of a step's output.
type logBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (l *logBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, b...)
	if len(l.buf) > l.max {
		l.buf = append([]byte("...\n"), l.buf[len(l.buf)-l.max:]...)
	}
	return len(b), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}

// redact masks the known secrets in s.
func (r *Runner) redact(s string) string { return r.opts.Redactor.String(s) }

// errStep is a step failure whose message is the pipeline's reason.
type errStep struct{ msg string }

func (e *errStep) Error() string { return e.msg }

func failf(format string, args ...any) error { return &errStep{msg: fmt.Sprintf(format, args...)} }

// reason turns a step error into the pipeline's one-line reason.
func reason(step string, err error) string {
	var es *errStep
	if errors.As(err, &es) {
		return es.msg
	}
	return fmt.Sprintf("%s: %s", step, strings.TrimSpace(err.Error()))
}
