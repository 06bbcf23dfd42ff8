package environment

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/gateway"
	"github.com/runway-cd/runway/internal/manifest"
)

// Synced is another engine that brings environments to their manifests:
// Argo CD, in the server's runtime argocd (see internal/argocd). With it
// the controller starts, stops and reports nothing of its own. Each pass
// of an environment prepares what the engine's manifests need of Runway
// (Prepare: the namespace and the Secrets holding the workflows' reporter
// tokens and the database passwords) and routes each app's declared
// version, so that a job reaches the replicas the engine runs; the
// engine's hooks send the deploy reports. Production's apps are still
// handed to the rollouts, which follow the engine's Rollouts. Garbage
// collection leaves replicas and processes alone (they are the engine's);
// a teardown still destroys what is left of an environment.
type Synced interface {
	// Prepare makes what m's environment needs before the engine syncs
	// it; idempotent, called on every pass. An error wrapping
	// ErrPrepareAgain is not a failure: the environment's key is
	// retried with backoff.
	Prepare(ctx context.Context, m *manifest.Manifest) error
}

// ErrPrepareAgain marks a preparation that is not complete yet but will
// be without anyone's help (a workflow the manifest names was not
// submitted to the reporter yet, so it has no token).
var ErrPrepareAgain = errors.New("not complete yet")

// reconcileSynced is a pass of an environment the Synced engine brings to
// its manifest.
func (p *envPass) reconcileSynced(ctx context.Context) error {
	if err := p.c.opts.Synced.Prepare(ctx, p.m); err != nil {
		err = fmt.Errorf("preparing %s for its sync: %w", p.st.name, err)
		if !errors.Is(err, ErrPrepareAgain) {
			p.event(events.Warning, "Failed", err.Error())
		}
		return err
	}
	services, apps := split(p.m)
	if p.m.EnvName == manifest.ProductionEnv {
		var errs []error
		for _, name := range apps {
			if err := p.handOver(ctx, name, p.m.Apps[name]); err != nil {
				errs = append(errs, err)
			}
		}
		for _, name := range p.undeclaredApps() {
			p.c.rollouts.Forget(p.st.name, name)
			p.set(func() { delete(p.st.apps, name) })
		}
		p.event(events.Normal, "Prepared", "handed to the sync: "+strings.Join(p.m.AppNames(), ", "))
		return p.settleProduction(errors.Join(errs...))
	}
	for _, name := range services {
		a := p.m.Apps[name]
		as := p.app(name)
		p.set(func() { as.version, as.entry = a.Version(), a })
	}
	var errs []error
	for _, name := range apps {
		a := p.m.Apps[name]
		as := p.app(name)
		// The declared version: the engine runs it; the route answers
		// with its ready replicas as the runtime finds them.
		if err := p.c.router.SetRoute(gateway.Route{Env: p.st.name, App: name, StableVersion: a.Version()}); err != nil {
			errs = append(errs, fmt.Errorf("routing %s: %w", name, err))
			continue
		}
		p.set(func() { as.version, as.entry = a.Version(), a })
	}
	for _, name := range p.undeclaredApps() {
		p.c.router.RemoveRoute(p.st.name, name)
		p.set(func() { delete(p.st.apps, name) })
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	p.event(events.Normal, "Prepared", "handed to the sync: "+strings.Join(p.m.AppNames(), ", "))
	return nil
}
