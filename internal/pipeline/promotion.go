package pipeline

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Promotions are serialized per app, in commit order. A pipeline takes
// its app's promotion when its promote step starts and holds it through
// its production-functional-tests; one that reaches promote meanwhile
// waits. When the promotion frees, the newest waiting pipeline takes it,
// and every older one, waiting or still to come, is superseded once a
// newer one's promotion landed: production only moves forward in commit
// order. A newer pipeline still in staging holds nobody back, and a
// promotion that failed before its commit landed supersedes nobody.
//
// Commit order is the commits' history when Options.Ancestry is set and
// tells it (one commit is the other's ancestor): a push delivered again
// late, or two close pushes verified in reverse order, still promote in
// the order of their commits. Otherwise (no Ancestry, unrelated commits,
// the history could not be read, the same commit twice) it is arrival
// order: Created, then ID. The promote step also refuses, whatever the
// gate says, to replace a production entry whose revision is its own
// commit or a descendant of it (see promote).
//
// Who holds and who waits is derived from the pipelines themselves
// (Pipeline.Promoting, the promote step's phase), which are stored: Resume
// seeds the gate from the stored records before any pipeline runs again,
// and the newest promotion of each app that landed is read from the store
// on first use.

// Ancestry tells how two commits of an app's repository are ordered in
// its history; *build.Verifier implements it.
type Ancestry interface {
	// IsAncestor reports whether ancestor is descendant or one of its
	// ancestors in url's history.
	IsAncestor(ctx context.Context, url, ancestor, descendant string) (bool, error)
}

// maxResolveRounds bounds the rounds of history look-ups one decision of
// the gate makes (more are needed only while new pipelines keep arriving);
// past it, the pairs still unknown are ordered by arrival.
const maxResolveRounds = 8

// entrant is a pipeline as the promotion gate knows it.
type entrant struct {
	id, version, commit, url string
	created                  time.Time
}

func entrantOf(p *Pipeline) entrant {
	return entrant{id: p.ID, version: p.Version, commit: p.Commit, url: p.CloneURL, created: p.Created}
}

// before reports whether e arrived before o.
func (e entrant) before(o entrant) bool {
	if !e.created.Equal(o.created) {
		return e.created.Before(o.created)
	}
	return e.id < o.id
}

// commitPair is two commits of one repository, a < b, whose order the
// gate looked up.
type commitPair struct{ url, a, b string }

// pairOf is the pair of e's and o's commits, and whether their history
// can order them at all (same repository, different commits).
func pairOf(e, o entrant) (commitPair, bool) {
	if e.url != o.url || e.commit == o.commit || e.commit == "" || o.commit == "" {
		return commitPair{}, false
	}
	if e.commit < o.commit {
		return commitPair{url: e.url, a: e.commit, b: o.commit}, true
	}
	return commitPair{url: e.url, a: o.commit, b: e.commit}, true
}

// appPromotion is one app's promotion state.
type appPromotion struct {
	// newest is the newest pipeline whose promotion landed.
	newest *entrant
	// holder holds the promotion now.
	holder *entrant
	// waiting are the pipelines at their promote step waiting for it.
	waiting map[string]entrant
}

// promotions is the gate of every app. The zero value is ready (arrival
// order); anc, set before first use, orders commits by their history.
type promotions struct {
	anc     Ancestry
	mu      sync.Mutex
	loaded  bool
	apps    map[string]*appPromotion
	changed chan struct{}
	// order caches the history look-ups: -1 a is b's ancestor, +1 b is
	// a's, 0 neither or unknown (arrival order decides).
	order map[commitPair]int8
}

func (g *promotions) app(name string) *appPromotion {
	if g.apps == nil {
		g.apps = map[string]*appPromotion{}
	}
	a, ok := g.apps[name]
	if !ok {
		a = &appPromotion{waiting: map[string]entrant{}}
		g.apps[name] = a
	}
	return a
}

// olderLocked reports whether e's change is older than o's: e's commit is
// an ancestor of o's where the history was looked up and says so, else e
// arrived first. Call with g.mu held.
func (g *promotions) olderLocked(e, o entrant) bool {
	if k, ok := pairOf(e, o); ok {
		switch rel := g.order[k]; {
		case rel < 0:
			return e.commit == k.a
		case rel > 0:
			return e.commit == k.b
		}
	}
	return e.before(o)
}

// unknownLocked lists the pairs of e's commit and the others' whose order
// the history may tell but was not looked up yet (none without Ancestry).
// Call with g.mu held.
func (g *promotions) unknownLocked(e entrant, others []entrant) []commitPair {
	if g.anc == nil {
		return nil
	}
	var need []commitPair
	for _, o := range others {
		k, ok := pairOf(e, o)
		if !ok {
			continue
		}
		if _, known := g.order[k]; !known && !slices.Contains(need, k) {
			need = append(need, k)
		}
	}
	return need
}

// resolve looks up the order of each pair in the history, without holding
// g.mu. A look-up that fails is logged and recorded as unknown: arrival
// order decides that pair. It returns ctx's error if ctx ended.
func (g *promotions) resolve(ctx context.Context, need []commitPair, log *slog.Logger) error {
	for _, k := range need {
		rel, err := g.lookUp(ctx, k)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			log.Warn("ordering two commits by their history failed; their pipelines' arrival order decides",
				"repo", k.url, "commits", k.a+" "+k.b, "err", err)
		}
		g.mu.Lock()
		if g.order == nil {
			g.order = map[commitPair]int8{}
		}
		g.order[k] = rel
		g.mu.Unlock()
	}
	return nil
}

// lookUp is k's order in the history: -1 a is b's ancestor, +1 b is a's, 0
// neither.
func (g *promotions) lookUp(ctx context.Context, k commitPair) (int8, error) {
	if ok, err := g.anc.IsAncestor(ctx, k.url, k.a, k.b); err != nil || ok {
		if ok {
			return -1, nil
		}
		return 0, fmt.Errorf("is %.12s an ancestor of %.12s: %w", k.a, k.b, err)
	}
	ok, err := g.anc.IsAncestor(ctx, k.url, k.b, k.a)
	switch {
	case err != nil:
		return 0, fmt.Errorf("is %.12s an ancestor of %.12s: %w", k.b, k.a, err)
	case ok:
		return 1, nil
	}
	return 0, nil
}

// changes returns a channel closed at the next change; call with g.mu held.
func (g *promotions) changes() <-chan struct{} {
	if g.changed == nil {
		g.changed = make(chan struct{})
	}
	return g.changed
}

// broadcast wakes the waiters; call with g.mu held.
func (g *promotions) broadcast() {
	if g.changed != nil {
		close(g.changed)
	}
	g.changed = make(chan struct{})
}

// noteLandedLocked records that e's promotion of app landed at some time;
// call with g.mu held.
func (g *promotions) noteLandedLocked(a *appPromotion, e entrant) {
	if a.newest == nil || g.olderLocked(*a.newest, e) {
		a.newest = &e
	}
}

// seedLocked records what a stored pipeline says about its app's
// promotion: a pipeline that took it and has not finished its production
// tests holds it; one whose promote step was running without taking it
// waits (unless a cancel was asked for it); one whose promote step
// succeeded landed its promotion. The caller holds g.mu.
func (g *promotions) seedLocked(p *Pipeline) {
	a := g.app(p.App)
	e := entrantOf(p)
	if p.landed() {
		g.noteLandedLocked(a, e)
	}
	if p.promoted() {
		if !p.Phase.Done() && !p.Step(StepProductionTests).Phase.Done() && (a.holder == nil || g.olderLocked(*a.holder, e)) {
			a.holder = &e
		}
		return
	}
	if !p.Phase.Done() && p.CancelRequested == "" && p.Step(StepPromote).Phase == Running {
		a.waiting[e.id] = e
	}
}

// load reads, once, which pipeline of each app promoted last, from every
// stored pipeline (finished ones too).
func (g *promotions) load(ctx context.Context, store Store) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.loaded {
		return nil
	}
	ps, err := store.ListPipelines(ctx, 1000)
	if err != nil {
		return fmt.Errorf("listing pipelines for the promotion order: %w", err)
	}
	for _, p := range ps {
		if p.landed() {
			g.noteLandedLocked(g.app(p.App), entrantOf(p))
		}
	}
	g.loaded = true
	return nil
}

// verdict is what the gate says to a pipeline at its promote step.
type verdict int

const (
	take verdict = iota
	wait
	supersede
	// resolve: the history of some commits must be looked up first
	// (decision.need), then the gate asked again.
	resolve
)

// decision is the gate's answer to a pipeline at its promote step.
type decision struct {
	v verdict
	// msg says whom a waiting pipeline waits for, or why it is superseded.
	msg string
	// changed is closed at the gate's next change.
	changed <-chan struct{}
	// need are the pairs of commits to look up (verdict resolve).
	need []commitPair
}

// try decides for e at its promote step of app: take the promotion (it
// then holds it), wait (e is recorded as waiting), be superseded, or
// resolve the history of some commits first. final orders every pair not
// looked up by arrival instead.
func (g *promotions) try(app string, e entrant, final bool) decision {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.app(app)
	d := decision{changed: g.changes()}
	if a.holder != nil && a.holder.id == e.id {
		d.v = take
		return d
	}
	if !final {
		var others []entrant
		if a.newest != nil {
			others = append(others, *a.newest)
		}
		if a.holder == nil {
			for _, w := range a.waiting {
				others = append(others, w)
			}
		}
		if d.need = g.unknownLocked(e, others); len(d.need) > 0 {
			d.v = resolve
			return d
		}
	}
	if n := a.newest; n != nil && n.id != e.id && g.olderLocked(e, *n) {
		delete(a.waiting, e.id)
		what := "promoted first"
		if a.holder != nil && a.holder.id == n.id {
			what = "holds the promotion"
		}
		d.v, d.msg = supersede, fmt.Sprintf("superseded by %s (%s, commit %.12s): a newer change of %s %s", n.id, n.version, n.commit, app, what)
		return d
	}
	if h := a.holder; h != nil {
		a.waiting[e.id] = e
		d.v, d.msg = wait, fmt.Sprintf(waitingPrefix+"%s (%s) is rolling out", h.id, h.version)
		return d
	}
	// e goes unless a waiting one is newer than e itself (not merely newer
	// than another waiter: where history and arrival mix, the order need
	// not be transitive, and e is never superseded by its own ancestor).
	var newer *entrant
	for _, w := range a.waiting {
		if w.id != e.id && g.olderLocked(e, w) && (newer == nil || g.olderLocked(*newer, w)) {
			newer = &w
		}
	}
	delete(a.waiting, e.id)
	g.broadcast()
	if newer != nil {
		d.v, d.msg = supersede, fmt.Sprintf("superseded by %s (%s, commit %.12s): a newer change of %s passed staging and promotes instead",
			newer.id, newer.version, newer.commit, app)
		return d
	}
	a.holder = &e
	d.v = take
	return d
}

// took records that e holds app's promotion, landed already, without the
// gate deciding (a promotion found landed after a restart).
func (g *promotions) took(app string, e entrant) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.app(app)
	delete(a.waiting, e.id)
	g.noteLandedLocked(a, e)
	if a.holder == nil || g.olderLocked(*a.holder, e) {
		a.holder = &e
	}
	g.broadcast()
}

// landed records that e's promotion commit of app landed: from now on
// the changes older than e's are superseded.
func (g *promotions) landed(app string, e entrant) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.noteLandedLocked(g.app(app), e)
	g.broadcast()
}

// release frees app's promotion if id holds it, and forgets id as a
// waiter: the pipeline finished its production tests, or ended.
func (g *promotions) release(app, id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.app(app)
	changed := false
	if a.holder != nil && a.holder.id == id {
		a.holder, changed = nil, true
	}
	if _, ok := a.waiting[id]; ok {
		delete(a.waiting, id)
		changed = true
	}
	if changed {
		g.broadcast()
	}
}

// awaitPromotion returns once the pipeline holds its app's promotion
// (recorded durably as Pipeline.Promoting), or with an error: superseded,
// cancelled, interrupted by a drain, or ctx's.
func (ru *run) awaitPromotion(ctx context.Context, w io.Writer) error {
	g := &ru.r.promos
	if err := g.load(ctx, ru.r.store); err != nil {
		return err
	}
	app, me := ru.p.App, entrantOf(ru.p)
	said := ""
	rounds := 0
	for {
		d := g.try(app, me, rounds >= maxResolveRounds)
		switch d.v {
		case resolve:
			rounds++
			if err := g.resolve(ctx, d.need, ru.r.log.With("pipeline", ru.p.ID)); err != nil {
				g.release(app, me.id)
				return err
			}
			continue
		case take:
			// A holder interrupted by a shutdown lets go of the promotion
			// in memory only; its stored record still holds it, so a
			// waiter stopping too must not take it (a restart would seed
			// two holders).
			if err := ctx.Err(); err != nil {
				g.release(app, me.id)
				return err
			}
			if ru.r.isDraining() {
				return errInterrupted
			}
			ok, err := ru.updateIf(ctx, func(p *Pipeline) bool {
				if p.CancelRequested != "" {
					return false
				}
				p.Promoting = true
				// Why it waited, in this run or one before a restart, is
				// no longer so.
				if p.FailedStep == "" && strings.HasPrefix(p.Reason, waitingPrefix) {
					p.Reason = ""
				}
				return true
			})
			if err != nil || !ok {
				g.release(app, me.id)
				if err != nil {
					return fmt.Errorf("recording the promotion: %w", err)
				}
				return errCancelled
			}
			if said != "" {
				fmt.Fprintf(w, "%s: the promotion of %s is free\n", ru.r.now().UTC().Format(time.RFC3339), app)
			}
			ru.r.event(false, ru.p.ID, "Promoting", fmt.Sprintf("promoting %s %s (commit %.12s)", app, ru.p.Version, ru.p.Commit))
			return nil
		case supersede:
			fmt.Fprintln(w, d.msg)
			return &errSuperseded{msg: d.msg}
		}
		rounds = 0
		if d.msg != said {
			said = d.msg
			fmt.Fprintln(w, d.msg)
			ru.r.log.Info("pipeline waiting to promote", "pipeline", ru.p.ID, "reason", d.msg)
			_ = ru.update(ctx, func(p *Pipeline) {
				if p.FailedStep == "" {
					p.Reason = d.msg
				}
			})
		}
		select {
		case <-d.changed:
		case <-ctx.Done():
			g.release(app, me.id)
			return ctx.Err()
		case <-ru.r.draining:
			// Still waiting as far as the stored record says: a restart
			// seeds it as a waiter again.
			return errInterrupted
		}
	}
}

// waitingPrefix starts the reason of a pipeline waiting for its app's
// promotion.
const waitingPrefix = "waiting to promote: "

// errSuperseded ends a pipeline Superseded; msg is its reason.
type errSuperseded struct{ msg string }

func (e *errSuperseded) Error() string { return e.msg }
