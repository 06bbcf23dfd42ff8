package pipeline

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// Promotions are serialized per app, in commit order (arrival order:
// Created, then ID). A pipeline takes its app's promotion when its promote
// step starts and holds it through its production-functional-tests; one
// that reaches promote meanwhile waits. When the promotion frees, the
// newest waiting pipeline takes it, and every older one, waiting or still
// to come, is superseded: production only moves forward in commit order.
// A newer pipeline still in staging holds nobody back.
//
// Who holds and who waits is derived from the pipelines themselves
// (Pipeline.Promoting, the promote step's phase), which are stored: Resume
// seeds the gate from the stored records before any pipeline runs again,
// and the newest promoted pipeline of each app is read from the store on
// first use.

// entrant is a pipeline as the promotion gate knows it.
type entrant struct {
	id, version, commit string
	created             time.Time
}

func entrantOf(p *Pipeline) entrant {
	return entrant{id: p.ID, version: p.Version, commit: p.Commit, created: p.Created}
}

// before reports whether e arrived before o.
func (e entrant) before(o entrant) bool {
	if !e.created.Equal(o.created) {
		return e.created.Before(o.created)
	}
	return e.id < o.id
}

// appPromotion is one app's promotion state.
type appPromotion struct {
	// newest is the newest pipeline that took the promotion.
	newest *entrant
	// holder holds the promotion now.
	holder *entrant
	// waiting are the pipelines at their promote step waiting for it.
	waiting map[string]entrant
}

// promotions is the gate of every app. The zero value is ready.
type promotions struct {
	mu      sync.Mutex
	loaded  bool
	apps    map[string]*appPromotion
	changed chan struct{}
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

// noteTaken records that e took app's promotion at some time; call with
// g.mu held.
func (a *appPromotion) noteTaken(e entrant) {
	if a.newest == nil || a.newest.before(e) {
		a.newest = &e
	}
}

// seedLocked records what a stored pipeline says about its app's
// promotion: a pipeline that took it and has not finished its production
// tests holds it; one whose promote step was running without taking it
// waits. The caller holds g.mu.
func (g *promotions) seedLocked(p *Pipeline) {
	a := g.app(p.App)
	e := entrantOf(p)
	if p.promoted() {
		a.noteTaken(e)
		if !p.Phase.Done() && !p.Step(StepProductionTests).Phase.Done() && (a.holder == nil || a.holder.before(e)) {
			a.holder = &e
		}
		return
	}
	if !p.Phase.Done() && p.Step(StepPromote).Phase == Running {
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
		if p.promoted() {
			g.app(p.App).noteTaken(entrantOf(p))
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
)

// try decides for e at its promote step of app: take the promotion (it
// then holds it), wait (msg says for whom; e is recorded as waiting), or
// be superseded (msg is the reason). changed is closed at the next change.
func (g *promotions) try(app string, e entrant) (v verdict, msg string, changed <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.app(app)
	changed = g.changes()
	if a.holder != nil && a.holder.id == e.id {
		return take, "", changed
	}
	if n := a.newest; n != nil && n.id != e.id && e.before(*n) {
		delete(a.waiting, e.id)
		what := "promoted first"
		if a.holder != nil && a.holder.id == n.id {
			what = "holds the promotion"
		}
		return supersede, fmt.Sprintf("superseded by %s (%s, commit %.12s): a newer change of %s %s", n.id, n.version, n.commit, app, what), changed
	}
	if h := a.holder; h != nil {
		a.waiting[e.id] = e
		return wait, fmt.Sprintf("waiting to promote: %s (%s) is rolling out", h.id, h.version), changed
	}
	newest := e
	for _, w := range a.waiting {
		if newest.before(w) {
			newest = w
		}
	}
	if newest.id != e.id {
		delete(a.waiting, e.id)
		g.broadcast()
		return supersede, fmt.Sprintf("superseded by %s (%s, commit %.12s): a newer change of %s passed staging and promotes instead",
			newest.id, newest.version, newest.commit, app), changed
	}
	delete(a.waiting, e.id)
	a.holder = &e
	a.noteTaken(e)
	g.broadcast()
	return take, "", changed
}

// took records that e holds app's promotion without the gate deciding (a
// promotion found landed after a restart).
func (g *promotions) took(app string, e entrant) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.app(app)
	delete(a.waiting, e.id)
	a.noteTaken(e)
	if a.holder == nil || a.holder.before(e) {
		a.holder = &e
	}
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
	for {
		v, msg, changed := g.try(app, me)
		switch v {
		case take:
			ok, err := ru.updateIf(ctx, func(p *Pipeline) bool {
				if p.CancelRequested != "" {
					return false
				}
				p.Promoting = true
				if said != "" && p.FailedStep == "" {
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
			fmt.Fprintln(w, msg)
			return &errSuperseded{msg: msg}
		}
		if msg != said {
			said = msg
			fmt.Fprintln(w, msg)
			ru.r.log.Info("pipeline waiting to promote", "pipeline", ru.p.ID, "reason", msg)
			_ = ru.update(ctx, func(p *Pipeline) {
				if p.FailedStep == "" {
					p.Reason = msg
				}
			})
		}
		select {
		case <-changed:
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

// errSuperseded ends a pipeline Superseded; msg is its reason.
type errSuperseded struct{ msg string }

func (e *errSuperseded) Error() string { return e.msg }
