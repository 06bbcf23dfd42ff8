package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

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
		App: app.Name, Repo: p.Repo, CloneURL: app.URL, Branch: p.Branch, Commit: p.After, Message: p.Message, Delivery: p.Delivery,
	})
}

// newWebhook builds the handler of GitHub pushes: a push starts a pipeline
// only if its commit is on the tracked branch of the app's configured
// repository, fetched into WorkDir/verify.
func (s *Server) newWebhook() (*webhook.Handler, error) {
	h, err := webhook.NewHandler(webhook.Options{
		Secret:     []byte(s.cfg.WebhookSecret),
		Tracker:    tracker{&s.cfg},
		Verifier:   verifier{cfg: &s.cfg, v: build.NewVerifier(filepath.Join(s.cfg.WorkDir, "verify"), 0)},
		Starter:    starter{s},
		Deliveries: s.db,
		Queue:      queue{s.pipelines},
		Logger:     s.log,
	})
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

