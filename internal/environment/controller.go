// Package environment is the environment controller: it makes what runs
// match what the state repository declares. Every manifest file is one
// environment; a staging environment's apps run at its manifest's version,
// services first, and report to the reporter once healthy; an environment
// whose manifest is gone is torn down. In production the controller
// provides the services and hands each app's declared version to the
// rollout controller (Rollouts.SetDesired), which alone changes the
// versions that run there.
//
// The controller is a level-triggered reconciler with per-key work queues,
// in client-go's workqueue shape. The "sync" key reads the state
// repository, keeps the snapshot and enqueues one key per environment it
// declares, one per orphan (an environment that runs but is not declared)
// and a "gc" key. An environment key reconciles that environment alone
// from the kept snapshot. Staging bring-ups, which wait for health for
// seconds, have their own queue and at most Options.MaxParallel workers;
// every other key (sync, production, teardowns, gc) has its own workers,
// so a production pass or a teardown never waits behind a staging
// environment being created. No lock is held across I/O that another
// environment waits on: a key is never reconciled by two workers at once
// (the work queue's promise, plus a per-environment lock for a name that
// moves between queues), and the controller's own mutex guards only
// in-memory state.
package environment

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/internal/workload"
)

// Snapshotter reads the state repository.
type Snapshotter interface {
	// Snapshot reads every manifest at the head of the branch. An error
	// means nothing could be confirmed.
	Snapshot(ctx context.Context) (*gitops.Snapshot, error)
}

// Artifacts finds built artifacts.
type Artifacts interface {
	Resolve(app, version string, kind build.Kind) (build.Artifact, error)
}

// Router is the gateway's routing table. The controller routes staging
// apps itself; production routes are the rollout controller's, read here
// for Status and listed for garbage collection.
type Router interface {
	SetRoute(r gateway.Route) error
	Route(env, app string) (gateway.Route, bool)
	// Routes lists every route; a gateway that cannot be read lists none.
	Routes() []gateway.Route
	RemoveRoute(env, app string)
	RemoveEnv(env string)
	Host(env, app string) string
}

// Reporter receives the apps' deploy reports.
type Reporter interface {
	Update(ctx context.Context, workflow, app string, success bool, message string) error
}

// Rollouts is the rollout controller, which owns every version change of
// an app in production.
type Rollouts interface {
	// SetDesired hands over the production manifest's version of an app on
	// every pass; in memory, idempotent, enqueues the app's rollout key,
	// never blocks on I/O.
	SetDesired(d rollout.Desired)
	// Forget: app is no longer in env's manifest: the rollout controller
	// stops its versions, removes its route.
	Forget(env, app string)
	// Wanted is the versions of app in env the rollout controller runs or
	// is about to run (stable, canary), and whether it knows yet (after a
	// restart, before its first pass of the app: false => GC keeps every
	// version).
	Wanted(env, app string) (versions []string, known bool)
	// Stable is the version serving as stable ("" none yet), for Status.
	Stable(env, app string) string
}

// Services provides the services an environment's apps need.
type Services interface {
	// EnsurePostgres starts the environment's PostgreSQL server.
	EnsurePostgres(ctx context.Context, env string) error
}

// Environments lists and removes whole environments.
type Environments interface {
	// Envs lists the environments that have anything running or on disk.
	Envs() []string
	// Destroy removes everything of env: replicas, database server, files.
	Destroy(ctx context.Context, env string) error
}

// Collector is what garbage collection asks of the runtime.
type Collector interface {
	// Running lists every version of every app the runtime runs; absence
	// from it does not mean that nothing runs.
	Running() []runtime.Deployment
	// CollectStrays stops what the runtime started but recorded nowhere.
	CollectStrays(ctx context.Context) ([]string, error)
}

// Jobs runs commands to completion against an environment.
type Jobs interface {
	RunJob(ctx context.Context, j runtime.Job) error
}

// Runtime is everything the controller needs of the runtime:
// *local.Runtime is one.
type Runtime interface {
	workload.Runtime // Database, Start, Stop, Status: replicas
	Services
	Environments
	Collector
	Jobs
}

// Options configure the controller.
type Options struct {
	// PollInterval is the fallback re-read of the state repository when no
	// trigger came. Zero value: 30s.
	PollInterval time.Duration
	// RetryInterval is the first wait before a failed key (the sync, one
	// environment) is retried; it doubles on each failure of that key up
	// to PollInterval. Zero value: 1s.
	RetryInterval time.Duration
	// MaxParallel is how many staging environments are brought up at once
	// (the server sets it from the config's limits.parallelEnvironments).
	// More wait in the bring-up queue; production, teardowns, the
	// state repository's sync and garbage collection never wait for them.
	// Zero value: 8.
	MaxParallel int
	// GatewayAddr is the gateway's host:port, for the URLs given to jobs.
	GatewayAddr string
	// ReporterURL is the API's base URL (scheme, host and port, no path),
	// given to jobs as RUNWAY_REPORTER_URL with their workflow's reporter
	// token. Empty: jobs get no reporter variables.
	ReporterURL string
	// HealthTimeout bounds a replica set's wait for health. Zero: 60s.
	HealthTimeout time.Duration
	// Logger nil: slog.Default().
	Logger *slog.Logger
	// Store is pruned of stale rows by every garbage collection. nil:
	// store rows are not collected.
	Store GarbageStore
	// Redact removes secrets from the replicas' log tails shown by Status
	// and from report messages. Nil: log tails are left out.
	Redact func(string) string
	// Events records the environments' events (name: the environment):
	// Creating and Ready as a staging environment's pass begins bringing
	// apps up and once all of them serve, Failed when an app's version
	// failed (in production too: a service, or an artifact not found),
	// TearingDown and TornDown. Each is recorded once per manifest however
	// often a pass is retried. Nil: none are recorded.
	Events *events.Recorder
	// Clock is the controller's time: its poll, retry backoff and waits.
	// It is a clock.Clock with tickers, which the work queue needs
	// (clock.RealClock and the testing FakeClock both are). Nil: the real
	// clock.
	Clock clock.WithTicker
	// Synced, if set, is the engine that brings environments to their
	// manifests (Argo CD): see Synced. Nil: the controller does, with the
	// runtime.
	Synced Synced
}

// Controller reconciles environments.
type Controller struct {
	repo      Snapshotter
	rt        Runtime
	starter   workload.Starter
	artifacts Artifacts
	router    Router
	reporter  Reporter
	rollouts  Rollouts
	opts      Options
	log       *slog.Logger
	clock     clock.WithTicker
	events    *events.Recorder

	// control serves sync, gc, production and teardown keys; bringups
	// serves declared staging environments, MaxParallel at a time.
	control, bringups workqueue.TypedRateLimitingInterface[string]

	mu sync.Mutex // guards the fields below; never held across I/O
	// snap is the last snapshot read without error; nil before.
	snap *gitops.Snapshot
	envs map[string]*envState
	// locks serialise the reconciles of one environment (see lockEnv).
	locks map[string]*envLock
	// bringing cancels the staging bring-up in flight of an environment,
	// so that its teardown does not wait for its health checks.
	bringing map[string]context.CancelFunc
}

// envState is what the controller knows of one environment. Its fields
// and its apps' are guarded by Controller.mu.
type envState struct {
	name string
	// manifest is the manifest the last pass brought the environment to.
	manifest *manifest.Manifest
	apps     map[string]*appState
	// emitted is the manifest signature (see signature) for which each
	// event reason was last recorded, so that a retried pass of the same
	// manifest records nothing new.
	emitted map[string]string
}

// appState is what runs of one app, as this controller sees it. In
// production an app's versions are the rollout controller's: only failed
// and the handed-over artifact are kept.
type appState struct {
	version  string        // the version serving (staging, services)
	entry    *manifest.App // its manifest entry
	backends []gateway.Backend
	// failed is the version that failed to start (or, in production, to
	// resolve), so it is not retried on every pass; a new manifest version
	// clears it.
	failed string
	// reported remembers (workflow) reports already sent for this app.
	reported map[string]bool
	// unsent are reports the reporter did not take yet, by workflow: every
	// pass sends them again until they are taken (see envPass.flush).
	unsent map[string]unsentReport
	// transient counts the passes in a row that failed for a reason that
	// is not the version's (see retryLater).
	transient int
	// starting is the version whose replicas are being started, shown
	// with their health while the start waits for them.
	starting string
	// desired is the production artifact handed to the rollout controller.
	desired *build.Artifact
}

// New returns a controller. It does nothing until Run (or Reconcile).
func New(repo Snapshotter, rt Runtime, artifacts Artifacts, router Router, reporter Reporter, rollouts Rollouts, opts Options) *Controller {
	if opts.PollInterval <= 0 {
		opts.PollInterval = 30 * time.Second
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = time.Second
	}
	if opts.MaxParallel <= 0 {
		opts.MaxParallel = 8
	}
	if opts.HealthTimeout <= 0 {
		opts.HealthTimeout = 60 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	queue := func(name string) workqueue.TypedRateLimitingInterface[string] {
		return workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](opts.RetryInterval, opts.PollInterval),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: name, Clock: opts.Clock})
	}
	return &Controller{
		repo: repo, rt: rt, starter: workload.Starter{RT: rt}, artifacts: artifacts, router: router,
		reporter: reporter, rollouts: rollouts, opts: opts, log: opts.Logger, clock: opts.Clock, events: opts.Events,
		control: queue("environment-control"), bringups: queue("environment-bringup"),
		envs: map[string]*envState{}, locks: map[string]*envLock{}, bringing: map[string]context.CancelFunc{},
	}
}

// Envs returns the names of the environments the controller runs.
func (c *Controller) Envs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.envs))
	for n := range c.envs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
