// Package argorollouts drives production on Kubernetes through Argo
// Rollouts: each production app is a Rollout carrying the app spec's
// canary steps and its AnalysisTemplates; Argo's controller runs the
// canary, and this package follows the Rollout's status into Runway's
// rollout status, API and reporter, maps promote/abort/retry to Argo's own
// operations, and reverts the production manifest in git on abort. It
// takes the environment controller's desired versions as the local
// rollout controller does (rollout.Desired) and answers the API's
// questions in the same types (rollout.Status).
//
// The controller is a level-triggered reconciler like Runway's own
// (internal/rollout): one key per app (env/app) in a work queue, fed by
// informers on the Rollouts, their ReplicaSets and their AnalysisRuns;
// each pass reads the objects from the informers' caches, does one
// idempotent action and is requeued when an object changes.
//
// Its durable record is kept in the Rollout's annotations, as Argo keeps
// status.stableRS in the object: the template's version, the workflow its
// end is reported to, its manifest entry and the stable one (what a
// revert writes back), and how the version ended (runway.dev/end:
// reverted, reported). A restart reads them back and never reports an end
// twice, save for a kill between a report and its record (reports are
// idempotent). Which version each ReplicaSet runs is the
// runway.dev/version label of its pod template.
//
// Deviations from Runway's local canary, where Argo decides: without a
// traffic router, a step's weight is the share of replicas (Argo's basic
// canary); a first version is deployed by Argo without steps; Retry is
// Argo's (status.abort=false on an aborted Rollout) and is refused once
// Runway has reverted the aborted change in git.
package argorollouts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/runtime"
)

// Templates makes the pod template of a replica set (the Kubernetes
// runtime's PodTemplate: image built and pushed, environment, probes)
// and the Secret of its variables that the template takes them from
// (EnsureVars, which makes the environment's namespace too; called again
// with the Rollout as owner once it exists).
type Templates interface {
	PodTemplate(ctx context.Context, rs runtime.ReplicaSet) (corev1.PodTemplateSpec, error)
	EnsureVars(ctx context.Context, rs runtime.ReplicaSet, owners ...metav1.OwnerReference) error
	Namespace(env string) string
}

// ReplicaSets makes the replica set of an artifact in an environment
// (workload.Starter.ReplicaSet: command, probes, database settings).
type ReplicaSets interface {
	ReplicaSet(ctx context.Context, env string, art build.Artifact, healthTimeout time.Duration) (runtime.ReplicaSet, error)
}

// Options configure a Controller. Config, Templates, ReplicaSets, Repo
// and Reporter are required.
type Options struct {
	Config      *rest.Config
	Templates   Templates
	ReplicaSets ReplicaSets
	// Artifacts, if set, find a stable version's artifact (to read its
	// spec) after a restart. Unused so far: everything a pass needs of
	// the stable version is in the Rollout's annotations.
	Artifacts rollout.Artifacts
	// PrometheusAddress is written into every AnalysisTemplate's
	// prometheus.address: the cluster's Prometheus.
	PrometheusAddress string
	Repo              rollout.Repo
	Reporter          rollout.Reporter
	// Events receives the rollouts' events (kind events.Rollout, name
	// env/app). Nil: none are recorded.
	Events *events.Recorder
	// Clock stamps starts and ends. Nil: the real clock.
	Clock clock.Clock
	// Logger nil: slog.Default().
	Logger *slog.Logger
	// Redact, if set, masks secrets in report messages and statuses.
	Redact func(string) string
	// Committed, if set, is called after a revert commit was pushed.
	Committed func()
	// Workers is how many apps are reconciled at once. Zero: 4.
	Workers int
	// Synced: Argo CD writes the Rollouts and its hooks report their
	// ends; the controller follows, steers and reverts (see synced.go).
	Synced bool
}

// maxHistory is how many finished rollouts List shows.
const maxHistory = 100

// commandTimeout bounds a command's API calls (the API's commands have no
// context).
const commandTimeout = 30 * time.Second

// Controller runs production rollouts on Argo Rollouts.
type Controller struct {
	opts  Options
	clock clock.Clock
	log   *slog.Logger
	dyn   dynamic.Interface
	kube  kubernetes.Interface
	queue workqueue.TypedRateLimitingInterface[string]

	// managed: Rollouts, ReplicaSets and AnalysisRuns (labelled by
	// the Rollout's analysisRunMetadata) with Runway's labels.
	managed  dynamicinformer.DynamicSharedInformerFactory
	rollouts cache.SharedIndexInformer
	rss      cache.SharedIndexInformer
	runs     cache.SharedIndexInformer

	mu       sync.Mutex
	keys     map[string]*keyState
	statuses map[string]rollout.Status // by env/app/canary
	started  bool
	done     chan struct{}
}

// keyState is what the controller keeps in memory about one app: the
// environment controller's hand-over and what the last pass found.
type keyState struct {
	desired   *rollout.Desired
	forgotten bool
	known     bool
	stable    string
	wanted    []string
	// failed is a version (and workflow) whose Rollout could not be
	// made (its spec or templates are wrong): not tried again.
	failed ended
	cancel context.CancelCauseFunc
	// entries are the handed-over versions' manifest entries (Synced
	// mode), order their versions oldest first.
	entries map[string]*manifest.App
	order   []string
}

type ended struct{ version, workflow string }

// New returns a Controller; Run starts it.
func New(o Options) (*Controller, error) {
	if o.Config == nil {
		return nil, errors.New("argo rollouts: Options.Config is required")
	}
	dyn, err := dynamic.NewForConfig(o.Config)
	if err != nil {
		return nil, fmt.Errorf("argo rollouts: making the API client: %w", err)
	}
	kube, err := kubernetes.NewForConfig(o.Config)
	if err != nil {
		return nil, fmt.Errorf("argo rollouts: making the API client: %w", err)
	}
	return newController(o, dyn, kube)
}

// newController is New with its API clients given (the unit tests give
// client-go's fakes).
func newController(o Options, dyn dynamic.Interface, kube kubernetes.Interface) (*Controller, error) {
	switch {
	case o.Templates == nil || o.ReplicaSets == nil:
		return nil, errors.New("argo rollouts: Options.Templates and Options.ReplicaSets are required")
	case o.Repo == nil || o.Reporter == nil:
		return nil, errors.New("argo rollouts: Options.Repo and Options.Reporter are required")
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	c := &Controller{
		opts: o, clock: o.Clock, log: o.Logger, dyn: dyn, kube: kube,
		queue: workqueue.NewTypedRateLimitingQueue(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](500*time.Millisecond, time.Minute)),
		keys: map[string]*keyState{}, statuses: map[string]rollout.Status{}, done: make(chan struct{}),
	}
	c.managed = dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, metav1.NamespaceAll, func(lo *metav1.ListOptions) {
		lo.LabelSelector = LabelManagedBy + "=" + ManagedBy + "," + LabelApp
	})
	c.rollouts = c.managed.ForResource(rolloutGVR).Informer()
	c.rss = c.managed.ForResource(replicaSetGVR).Informer()
	c.runs = c.managed.ForResource(analysisRunGVR).Informer()
	byLabels := c.handler(func(u *unstructured.Unstructured) string { return keyOf(u) })
	if _, err := c.rollouts.AddEventHandler(byLabels); err != nil {
		return nil, fmt.Errorf("argo rollouts: watching rollouts: %w", err)
	}
	ofRollout := c.handler(func(u *unstructured.Unstructured) string {
		for _, ref := range u.GetOwnerReferences() {
			if ref.Kind == "Rollout" {
				return keyOf(u)
			}
		}
		return ""
	})
	if _, err := c.rss.AddEventHandler(ofRollout); err != nil {
		return nil, fmt.Errorf("argo rollouts: watching replica sets: %w", err)
	}
	if _, err := c.runs.AddEventHandler(c.handler(c.ownerKey)); err != nil {
		return nil, fmt.Errorf("argo rollouts: watching analysis runs: %w", err)
	}
	return c, nil
}

func key(env, app string) string { return env + "/" + app }

func splitKey(k string) (env, app string) {
	env, app, _ = strings.Cut(k, "/")
	return env, app
}

// keyOf is the key of an object Runway labelled, "" for another.
func keyOf(u *unstructured.Unstructured) string {
	l := u.GetLabels()
	if l[LabelManagedBy] != ManagedBy || l[LabelEnv] == "" || l[LabelApp] == "" {
		return ""
	}
	return key(l[LabelEnv], l[LabelApp])
}

// ownerKey is the key of the Rollout owning an AnalysisRun.
func (c *Controller) ownerKey(u *unstructured.Unstructured) string {
	for _, ref := range u.GetOwnerReferences() {
		if ref.Kind != "Rollout" {
			continue
		}
		obj, ok, err := c.rollouts.GetStore().GetByKey(u.GetNamespace() + "/" + ref.Name)
		if err != nil || !ok {
			continue
		}
		if ro, ok := obj.(*unstructured.Unstructured); ok {
			return keyOf(ro)
		}
	}
	return ""
}

func (c *Controller) handler(keyFn func(*unstructured.Unstructured) string) cache.ResourceEventHandler {
	enqueue := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if u, ok := obj.(*unstructured.Unstructured); ok {
			if k := keyFn(u); k != "" {
				c.queue.Add(k)
			}
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}
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

// Run starts the informers, waits for their caches, and reconciles until
// ctx ends. Every Rollout Runway made is looked at once on start (the
// informers' initial list enqueues them): a rollout that ended while the
// controller was down is reported then.
func (c *Controller) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		return errors.New("argo rollouts: Run called twice")
	}
	c.started = true
	c.mu.Unlock()
	defer close(c.done)
	defer c.queue.ShutDown()
	c.managed.Start(ctx.Done())
	defer c.managed.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), c.rollouts.HasSynced, c.rss.HasSynced, c.runs.HasSynced) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("argo rollouts: the informers' caches did not sync")
	}
	c.log.Info("argo rollouts controller started", "rollouts", len(c.rollouts.GetStore().ListKeys()))
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
	return nil
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
	backoff bool
}

func requeueNow() result { return result{requeue: true} }
func backoff() result    { return result{backoff: true} }

func (c *Controller) processNext(ctx context.Context) bool {
	k, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(k)
	res, err := c.reconcile(ctx, k)
	switch {
	case ctx.Err() != nil:
	case err != nil:
		c.log.Error("reconciling argo rollout", "key", k, "err", err)
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

// errDesiredChanged cuts short a pass making the Rollout of a version the
// manifest no longer declares.
var errDesiredChanged = errors.New("desired version changed")

// SetDesired hands over the production manifest's version of an app. It
// is kept in memory and enqueues the app's key; it never blocks on I/O.
func (c *Controller) SetDesired(d rollout.Desired) {
	k := key(d.Env, d.App)
	c.mu.Lock()
	ks := c.state(k)
	if ks.desired != nil && ks.desired.Version != d.Version && ks.cancel != nil {
		ks.cancel(errDesiredChanged)
	}
	ks.desired, ks.forgotten = &d, false
	ks.rememberEntry(d.Version, d.Entry)
	c.mu.Unlock()
	c.queue.Add(k)
}

// Forget tells the controller that app is no longer in env's manifest:
// its Rollout, Service and AnalysisTemplates are deleted, an unfinished
// rollout's workflow told it was superseded.
func (c *Controller) Forget(env, app string) {
	k := key(env, app)
	c.mu.Lock()
	ks := c.state(k)
	ks.desired, ks.forgotten = nil, true
	if ks.cancel != nil {
		ks.cancel(errDesiredChanged)
	}
	c.mu.Unlock()
	c.queue.Add(k)
}

// Wanted returns the versions of app in env the Rollout runs or is about
// to run (stable and canary), and whether it is known yet: false until a
// pass has read the Rollout after a start.
func (c *Controller) Wanted(env, app string) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ks, ok := c.keys[key(env, app)]
	if !ok || !ks.known {
		return nil, false
	}
	return slices.Clone(ks.wanted), true
}

// Stable returns the version of the Rollout's stable ReplicaSet, "" if
// none (or not known yet).
func (c *Controller) Stable(env, app string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ks, ok := c.keys[key(env, app)]; ok {
		return ks.stable
	}
	return ""
}

func statusKey(s rollout.Status) string { return s.Env + "/" + s.App + "/" + s.CanaryVersion }

// remember records a rollout's status for List.
func (c *Controller) remember(s rollout.Status) {
	s.Analyses = slices.Clone(s.Analyses)
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.statuses[statusKey(s)]; ok && !old.Finished.IsZero() && s.Finished.IsZero() && old.Started.Equal(s.Started) {
		return // a pass on a cache older than the end it recorded
	}
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

// List returns the running rollouts, newest first, then the finished
// ones, the last to end first (those this process saw end, and each
// Rollout's last).
func (c *Controller) List() []rollout.Status {
	c.mu.Lock()
	var running, finished []rollout.Status
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

// reopen forgets the finished status of a rollout rolled out again.
func (c *Controller) reopen(env, app, version string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.statuses, env+"/"+app+"/"+version)
}

func (c *Controller) event(env, app, typ, reason, msg string) {
	c.opts.Events.Record(typ, events.Rollout, key(env, app), reason, msg)
}
