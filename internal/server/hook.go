package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/webhook"
)

// tracker answers the webhook's question: is this push ours?
type tracker struct{ cfg *Config }

func (t tracker) Tracks(repo, branch string) bool {
	_, ok := t.cfg.app(repo, branch)
	return ok
}

// starter turns an accepted push into a pipeline.
type starter struct{ s *Server }

func (st starter) Start(ctx context.Context, p webhook.Push) (string, error) {
	app, ok := st.s.cfg.app(p.Repo, p.Branch)
	if !ok {
		return "", fmt.Errorf("push to %s %s is not tracked", p.Repo, p.Branch)
	}
	return st.s.pipelines.Start(st.s.runCtx, pipeline.Request{
		App: app.Name, Repo: p.Repo, CloneURL: app.URL, Branch: p.Branch, Commit: p.After, Message: p.Message, Author: p.Author, Delivery: p.Delivery,
		Service: app.Service,
	})
}

// newWebhook builds the handler of GitHub pushes: a push starts a pipeline
// only if its commit is on the tracked branch of the app's configured
// repository, fetched into WorkDir/verify, and it changes a path the app's
// path filter selects; a push to the state repository (stateRepo.repo)
// makes the environment controller reconcile at once.
func (s *Server) newWebhook() (*webhook.Handler, error) {
	v := s.verifier
	opts := webhook.Options{
		Secret:     []byte(s.cfg.WebhookSecret),
		Tracker:    tracker{&s.cfg},
		Verifier:   verifier{cfg: &s.cfg, v: v},
		Starter:    starter{s},
		Deliveries: s.db,
		Queue:      queue{s.pipelines},
		Paths:      changes{cfg: &s.cfg, v: v},
		Logger:     s.log,
	}
	if s.cfg.StateRepo.Repo != "" {
		opts.State = webhook.StateRepo{
			Repo: s.cfg.StateRepo.Repo, Branch: s.cfg.StateRepo.Branch, Reconciler: webhook.ReconcileFunc(s.envs.Trigger),
		}
	}
	h, err := webhook.NewHandler(opts)
	if err != nil {
		return nil, fmt.Errorf("building the webhook handler: %w", err)
	}
	return h, nil
}

// queue answers whether a pipeline just started waits for a slot.
type queue struct{ r *pipeline.Runner }

func (q queue) Queued(ctx context.Context, id string) (string, bool) {
	p, err := q.r.Get(ctx, id)
	if err != nil || p.Phase != pipeline.Queued {
		return "", false
	}
	return p.Reason, true
}

// verifier checks a push's commit in the app's configured repository,
// never at a URL from the payload.
type verifier struct {
	cfg *Config
	v   *build.Verifier
}

func (v verifier) Verify(ctx context.Context, repo, branch, commit string) error {
	app, ok := v.cfg.app(repo, branch)
	if !ok {
		return fmt.Errorf("push to %s %s is not tracked", repo, branch)
	}
	err := v.v.Verify(ctx, app.URL, branch, commit)
	switch {
	case errors.Is(err, build.ErrCommitNotFound):
		return fmt.Errorf("%w: %w", webhook.ErrUnknownCommit, err)
	case errors.Is(err, build.ErrNotOnBranch):
		return fmt.Errorf("%w: %w", webhook.ErrNotOnBranch, err)
	}
	return err
}

// changes gives the webhook an app's path filter and a push's changed
// paths, read in the app's configured repository (the verifier's mirror,
// which Verify has just fetched).
type changes struct {
	cfg *Config
	v   *build.Verifier
}

func (c changes) PathFilter(repo, branch string) (string, webhook.PathFilter) {
	app, ok := c.cfg.app(repo, branch)
	if !ok {
		return "", webhook.PathFilter{}
	}
	return app.Name, webhook.PathFilter{Paths: app.Paths, IgnorePaths: app.IgnorePaths}
}

func (c changes) ChangedPaths(ctx context.Context, repo, branch, before, after string) ([]string, error) {
	app, ok := c.cfg.app(repo, branch)
	if !ok {
		return nil, fmt.Errorf("push to %s %s is not tracked", repo, branch)
	}
	paths, err := c.v.ChangedPaths(ctx, app.URL, before, after, webhook.MaxChangedPaths)
	switch {
	case errors.Is(err, build.ErrCommitNotFound):
		return nil, fmt.Errorf("%w: %w", webhook.ErrUnknownCommit, err)
	case errors.Is(err, build.ErrTooManyChanges):
		return nil, fmt.Errorf("%w: %w", webhook.ErrTooManyPaths, err)
	}
	return paths, err
}
