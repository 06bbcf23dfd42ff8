package environment

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"k8s.io/client-go/util/workqueue"

	"github.com/runway-cd/runway/internal/manifest"
)

// Keys of the work queues. An environment's key is envKeyPrefix + its
// name, so that no environment name can pass for sync or gc.
const (
	syncKey      = "sync"
	gcKey        = "gc"
	envKeyPrefix = "env/"
)

// controlWorkers serve the control queue: the sync, gc, production and
// teardown keys. They are quick next to a staging bring-up, but a teardown
// stops a PostgreSQL server: a few run side by side.
const controlWorkers = 4

// Trigger asks for the state repository to be read now: the pipeline calls
// it right after it pushes to the state repository, and so does the state
// repository's webhook. It never blocks.
func (c *Controller) Trigger() { c.control.Add(syncKey) }

// Run serves the work queues until ctx ends: it reads the state repository
// at once, on every Trigger and every PollInterval. A key that failed is
// retried after a backoff of its own, from RetryInterval doubling up to
// PollInterval, as Argo CD retries a failed sync. When ctx ends the workers
// stop, and work in flight stops where it is (its ctx is ctx). Run is
// called once.
func (c *Controller) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range controlWorkers {
		wg.Go(func() { c.work(ctx, c.control) })
	}
	for range c.opts.MaxParallel {
		wg.Go(func() { c.work(ctx, c.bringups) })
	}
	defer wg.Wait()
	defer c.bringups.ShutDown()
	defer c.control.ShutDown()
	c.Trigger()
	ticker := c.clock.NewTicker(c.opts.PollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C():
			c.Trigger()
		}
	}
}

// work serves q until it shuts down.
func (c *Controller) work(ctx context.Context, q workqueue.TypedRateLimitingInterface[string]) {
	for {
		key, shutdown := q.Get()
		if shutdown {
			return
		}
		c.serve(ctx, q, key)
	}
}

// serve reconciles one key taken from q and retries it with backoff if it
// failed.
func (c *Controller) serve(ctx context.Context, q workqueue.TypedRateLimitingInterface[string], key string) {
	defer q.Done(key)
	if ctx.Err() != nil {
		return // shutting down: what is left in the queue is not started
	}
	err := c.reconcileKey(ctx, key)
	switch {
	case err == nil:
		q.Forget(key)
	case ctx.Err() != nil:
	default:
		c.log.Error("reconcile failed", "key", key, "err", err, "failures", q.NumRequeues(key)+1)
		q.AddRateLimited(key)
	}
}

// reconcileKey reconciles one key. The sync key enqueues the keys it found.
func (c *Controller) reconcileKey(ctx context.Context, key string) error {
	switch {
	case key == syncKey:
		keys, err := c.sync(ctx)
		if err != nil {
			return err
		}
		c.enqueue(keys)
		return nil
	case key == gcKey:
		return c.collectGarbage(ctx)
	case strings.HasPrefix(key, envKeyPrefix):
		return c.reconcileEnvKey(ctx, strings.TrimPrefix(key, envKeyPrefix))
	default:
		c.log.Error("unknown work queue key dropped", "key", key)
		return nil
	}
}

// Reconcile makes one whole pass in the caller's goroutine: read the state
// repository, tear down what it no longer declares, create or update what
// it does, then collect what nothing explains. Run does the same, one key
// at a time, on its workers.
func (c *Controller) Reconcile(ctx context.Context) error {
	keys, err := c.sync(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range keys {
		if err := c.reconcileKey(ctx, k.key); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k.key, err))
		}
	}
	return errors.Join(errs...)
}

// queuedKey is a key and whether it goes to the bring-up queue.
type queuedKey struct {
	key     string
	bringUp bool
}

func (c *Controller) enqueue(keys []queuedKey) {
	for _, k := range keys {
		if k.bringUp {
			c.bringups.Add(k.key)
		} else {
			c.control.Add(k.key)
		}
	}
}

// sync reads the state repository and keeps the snapshot. It returns the
// keys to reconcile: orphans first (their teardown frees what new
// environments need), then every declared environment, then gc. A snapshot
// that failed to read changes nothing: absence is acted on only once
// confirmed.
func (c *Controller) sync(ctx context.Context) ([]queuedKey, error) {
	snap, err := c.repo.Snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading state repo (nothing changed): %w", err)
	}
	for env, perr := range snap.Invalid {
		c.log.Warn("manifest invalid; environment left as it is", "env", env, "err", perr)
	}
	onDisk := c.rt.Envs()
	if _, declared := snap.Envs[manifest.ProductionEnv]; !declared && slices.Contains(onDisk, manifest.ProductionEnv) {
		c.log.Warn("production manifest is missing; production left running")
	}
	c.mu.Lock()
	c.snap = snap
	orphans := c.orphansLocked(onDisk)
	for _, env := range orphans {
		if cancel := c.bringing[env]; cancel != nil {
			cancel() // its manifest is gone: stop waiting for its health
		}
	}
	c.mu.Unlock()
	var keys []queuedKey
	for _, env := range orphans {
		keys = append(keys, queuedKey{key: envKeyPrefix + env})
	}
	for _, env := range snap.EnvNames() {
		keys = append(keys, queuedKey{key: envKeyPrefix + env, bringUp: env != manifest.ProductionEnv})
	}
	return append(keys, queuedKey{key: gcKey}), nil
}

// orphansLocked are environments that run (or have files) but that the
// kept snapshot neither declares nor reports invalid. Production is never
// an orphan. The caller holds mu.
func (c *Controller) orphansLocked(onDisk []string) []string {
	seen := map[string]bool{}
	for n := range c.envs {
		seen[n] = true
	}
	for _, n := range onDisk {
		seen[n] = true
	}
	var out []string
	for n := range seen {
		if c.undeclaredLocked(n) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// undeclaredLocked reports whether the kept snapshot confirms that env is
// not declared: it is neither declared nor invalid, and not production.
// The caller holds mu.
func (c *Controller) undeclaredLocked(env string) bool {
	if c.snap == nil || env == manifest.ProductionEnv {
		return false
	}
	_, declared := c.snap.Envs[env]
	_, invalid := c.snap.Invalid[env]
	return !declared && !invalid
}

// reconcileEnvKey reconciles env from the kept snapshot: brings it to its
// manifest, tears it down when the manifest is confirmed gone, leaves it
// as it is when its manifest is invalid or nothing was read yet.
func (c *Controller) reconcileEnvKey(ctx context.Context, env string) error {
	c.mu.Lock()
	orphan := c.undeclaredLocked(env)
	c.mu.Unlock()
	if orphan {
		return c.teardown(ctx, env)
	}
	return c.reconcileEnv(ctx, env)
}

// envLock serialises the reconciles of one environment: its key may be in
// both queues for a moment (a staging environment whose manifest was just
// deleted is torn down from the control queue).
type envLock struct {
	mu   sync.Mutex
	refs int
}

// lockEnv locks env against other reconciles of it and returns the unlock.
// Only reconciles of the same environment wait.
func (c *Controller) lockEnv(env string) (unlock func()) {
	c.mu.Lock()
	l := c.locks[env]
	if l == nil {
		l = &envLock{}
		c.locks[env] = l
	}
	l.refs++
	c.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		c.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(c.locks, env)
		}
		c.mu.Unlock()
	}
}

// tryLockEnv locks env against other reconciles of it unless one holds it
// now, and returns the unlock. Garbage collection uses it: it acts on an
// environment only while no pass of it is in flight, and never waits for
// one (a staging bring-up waits for health for seconds).
func (c *Controller) tryLockEnv(env string) (unlock func(), ok bool) {
	c.mu.Lock()
	l := c.locks[env]
	if l == nil {
		l = &envLock{}
		c.locks[env] = l
	}
	if !l.mu.TryLock() {
		c.mu.Unlock() // held, so refs > 0: the holder's unlock deletes it
		return nil, false
	}
	l.refs++
	c.mu.Unlock()
	return func() {
		l.mu.Unlock()
		c.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(c.locks, env)
		}
		c.mu.Unlock()
	}, true
}
