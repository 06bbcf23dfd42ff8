package argorollouts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/rollout"
)

// pass is one reconciliation of one app: what it read, built once.
type pass struct {
	c       *Controller
	ks      *keyState
	key     string
	env     string
	app     string
	ns      string
	log     *slog.Logger
	desired *rollout.Desired // nil: none handed over since the start
	forgot  bool

	ro  *unstructured.Unstructured // nil: none
	obs observation
}

// reconcile runs one pass over k.
func (c *Controller) reconcile(ctx context.Context, k string) (result, error) {
	env, app := splitKey(k)
	passCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	c.mu.Lock()
	ks := c.state(k)
	ks.cancel = cancel
	p := &pass{
		c: c, ks: ks, key: k, env: env, app: app, ns: c.opts.Templates.Namespace(env),
		log: c.log.With("env", env, "app", app), desired: ks.desired, forgot: ks.forgotten,
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		ks.cancel = nil
		c.mu.Unlock()
	}()
	p.load()
	res, err := p.reconcile(passCtx)
	if errors.Is(context.Cause(passCtx), errDesiredChanged) && ctx.Err() == nil {
		return requeueNow(), nil
	}
	return res, err
}

// load reads the app's Rollout, ReplicaSets and AnalysisRuns from the
// informers' caches and publishes what they say.
func (p *pass) load() {
	p.ro = nil
	if obj, ok, err := p.c.rollouts.GetStore().GetByKey(p.ns + "/" + p.app); err == nil && ok {
		if u, ok := obj.(*unstructured.Unstructured); ok && keyOf(u) == p.key {
			p.ro = u
		}
	}
	rss, runs := p.owned()
	p.obs = observe(p.ro, rss, runs, p.c.opts.Redact)
	p.publish()
}

// owned are the ReplicaSets and AnalysisRuns of the pass's Rollout, from
// the informers' caches.
func (p *pass) owned() (rss, runs []*unstructured.Unstructured) {
	if p.ro == nil {
		return nil, nil
	}
	collect := func(inf cache.SharedIndexInformer) []*unstructured.Unstructured {
		var out []*unstructured.Unstructured
		_ = cache.ListAllByNamespace(inf.GetIndexer(), p.ns, labels.Everything(), func(obj any) {
			if u, ok := obj.(*unstructured.Unstructured); ok && ownedBy(u, p.ro) {
				out = append(out, u)
			}
		})
		return out
	}
	return collect(p.c.rss), collect(p.c.runs)
}

// publish makes what the pass found visible to Wanted, Stable and List.
func (p *pass) publish() {
	var wanted []string
	for _, v := range []string{p.obs.stableVersion, p.obs.version} {
		if v != "" && !slices.Contains(wanted, v) {
			wanted = append(wanted, v)
		}
	}
	p.c.mu.Lock()
	p.ks.known, p.ks.stable, p.ks.wanted = true, p.obs.stableVersion, wanted
	p.c.mu.Unlock()
	if s, ok := p.obs.status(p.env, p.app, p.c.clock.Now().UTC()); ok {
		p.c.remember(s)
	}
}

// action is what a pass does; nil: nothing.
type action func(ctx context.Context) (result, error)

// reconcile is the pass: one action, chosen from what was read. An
// action is chosen again from the Rollout as the API server has it now
// (the cache may not have the pass's own last write yet), so that no end
// is reported twice and no template written twice.
func (p *pass) reconcile(ctx context.Context) (result, error) {
	act := p.decide()
	if act == nil {
		return result{}, nil
	}
	if err := p.refresh(ctx); err != nil {
		return result{}, err
	}
	if act = p.decide(); act == nil {
		return result{}, nil
	}
	return act(ctx)
}

// refresh reads the Rollout from the API server.
func (p *pass) refresh(ctx context.Context) error {
	ro, err := p.c.dyn.Resource(rolloutGVR).Namespace(p.ns).Get(ctx, p.app, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		ro = nil
	case err != nil:
		return fmt.Errorf("reading the rollout of %s: %w", p, err)
	case keyOf(ro) != p.key:
		ro = nil // not Runway's: creating it fails, with a clear error
	}
	p.ro = ro
	rss, runs := p.owned()
	if ro != nil {
		// The runs as they are now too: an abort's reason is the failed
		// run's verdict, which the cache may not have yet.
		sel := labels.SelectorFromSet(objectLabels(p.env, p.app)).String()
		list, err := p.c.dyn.Resource(analysisRunGVR).Namespace(p.ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return fmt.Errorf("listing the analysis runs of %s: %w", p, err)
		}
		runs = runs[:0]
		for i := range list.Items {
			if ownedBy(&list.Items[i], ro) {
				runs = append(runs, &list.Items[i])
			}
		}
	}
	p.obs = observe(p.ro, rss, runs, p.c.opts.Redact)
	return nil
}

// decide chooses the pass's action from what it read.
func (p *pass) decide() action {
	if p.forgot {
		return p.forget
	}
	o := p.obs
	if o.exists && o.version != "" && !o.ended {
		switch {
		case o.end.Version == o.version && o.end.Outcome == outcomeAborted:
			return p.finishAborted // an abort under way
		case o.promoted || o.canaryPromoted():
			// Argo made the canary stable: it is promoted, even while
			// its old pods terminate (still Progressing) and a newer
			// version is handed over meanwhile.
			return p.finishPromoted
		case o.aborted || o.invalidSpec:
			return p.finishAborted
		case o.deadlineExceeded && o.firstDeploy():
			// Argo counts a first deploy as completed and leaves it
			// Degraded: its failure is Runway's to report.
			return p.finishAborted
		}
	}
	if p.c.opts.Synced {
		return p.decideSynced()
	}
	d := p.desired
	if d == nil {
		return nil // nothing handed over yet: the Rollout is followed
	}
	if !o.exists || o.version != d.Version {
		if o.exists && o.version != "" && !o.ended {
			if d.Version == o.stableVersion {
				return p.endBackOnStable
			}
			return func(ctx context.Context) (result, error) { return p.supersede(ctx, d) }
		}
		if p.failedBefore(d) {
			return nil
		}
		return func(ctx context.Context) (result, error) { return p.apply(ctx, d) }
	}
	if d.Workflow != o.workflow && o.ended && o.end.Outcome == outcomeAborted {
		return func(ctx context.Context) (result, error) { return p.retryChange(ctx, d) }
	}
	if d.Entry != nil && !sameEntry(d.Entry, o.entry) {
		// A person edited the running version's entry (another
		// deploy.revision): the record follows, or the next canary
		// would start over the stale one and an abort write it back.
		return func(ctx context.Context) (result, error) { return p.recordEntry(ctx, d) }
	}
	return nil
}

// firstDeploy reports whether the template's version is the Rollout's
// first (no stable version when it was made).
func (o observation) firstDeploy() bool { return o.stableAtStart == "" }

// canaryPromoted reports whether Argo promoted the canary of the
// template's version: its ReplicaSet is the stable one, in a status of
// the latest spec. (A first deploy is stable at once: it is promoted
// once Healthy.)
func (o observation) canaryPromoted() bool {
	return o.observed && o.fullyPromoted && o.stableVersion == o.version &&
		o.stableAtStart != "" && o.stableAtStart != o.version
}

func (p *pass) failedBefore(d *rollout.Desired) bool {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	return p.ks.failed == ended{d.Version, d.Workflow}
}

func (p *pass) setFailed(d *rollout.Desired) {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	p.ks.failed = ended{d.Version, d.Workflow}
}

func (p *pass) normal(reason, msg string)  { p.c.event(p.env, p.app, events.Normal, reason, msg) }
func (p *pass) warning(reason, msg string) { p.c.event(p.env, p.app, events.Warning, reason, msg) }

// String names the pass in errors.
func (p *pass) String() string { return fmt.Sprintf("%s/%s", p.env, p.app) }
