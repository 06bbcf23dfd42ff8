package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/runway-cd/runway/internal/gitops"
	"github.com/runway-cd/runway/internal/manifest"
)

// A staging environment lives at most the runner's StagingTTL, counted from
// the start of the step that pushed its manifest (or, for a manifest no
// pipeline explains, from the commit that added it). Two things enforce
// it: the Reaper deletes expired manifests from the state repository, and
// a pipeline's steps that need its staging environment fail with a clear
// reason once it expired instead of waiting out their own deadline.

// VersionFinder finds the pipeline that picked a version (versions name
// staging environments).
type VersionFinder interface {
	// PipelineByVersion fails with ErrNotFound when no pipeline has it.
	PipelineByVersion(ctx context.Context, version string) (*Pipeline, error)
}

// StagingRepo is what the reaper needs of the state repository.
type StagingRepo interface {
	Snapshot(ctx context.Context) (*gitops.Snapshot, error)
	// Added is when path was added, as of revision.
	Added(ctx context.Context, revision, path string) (time.Time, error)
	Commit(ctx context.Context, message string, changes ...gitops.Change) (string, error)
}

// Expired is a staging environment the reaper removed.
type Expired struct {
	Env string
	// Created is when its TTL started.
	Created time.Time
	// Pipeline created it; "" when no pipeline is known and the age came
	// from the state repository's history.
	Pipeline string
}

// Reaper removes staging environments older than the runner's StagingTTL.
type Reaper struct {
	runner    *Runner
	repo      StagingRepo
	pipelines VersionFinder
}

// NewReaper returns a reaper for runner's staging environments; it takes
// the TTL, clock and logger from runner's options.
func NewReaper(runner *Runner, repo StagingRepo, pipelines VersionFinder) *Reaper {
	return &Reaper{runner: runner, repo: repo, pipelines: pipelines}
}

// Interval is how often Run looks: a tenth of the TTL, at most a minute
// and at least 100ms.
func (rp *Reaper) Interval() time.Duration {
	return min(max(rp.runner.opts.StagingTTL/10, 100*time.Millisecond), time.Minute)
}

// Run reaps now and then every Interval until ctx ends. Failures are
// logged and retried on the next tick.
func (rp *Reaper) Run(ctx context.Context) {
	for {
		if _, err := rp.Reap(ctx); err != nil && ctx.Err() == nil {
			rp.runner.log.Warn("expiring staging environments", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-rp.runner.clk.After(rp.Interval()):
		}
	}
}

// Reap deletes, one commit each, the staging manifests whose environment
// is older than the TTL, and fails the waits of a pipeline still using one.
// When the state repository cannot be read it deletes nothing; an
// environment whose age cannot be established is left alone (and named in
// the error).
func (rp *Reaper) Reap(ctx context.Context) ([]Expired, error) {
	snap, err := rp.repo.Snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the state repo for expired staging environments: %w", err)
	}
	ttl, now := rp.runner.opts.StagingTTL, rp.runner.now()
	var expired []Expired
	var errs []error
	for _, env := range stagingEnvs(snap) {
		e, err := rp.created(ctx, snap.Revision, env)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !now.After(e.Created.Add(ttl)) {
			continue
		}
		msg := fmt.Sprintf("expire staging environment %s: TTL %s passed", env, shortDuration(ttl))
		if _, err := rp.repo.Commit(ctx, msg, gitops.Change{Path: manifest.StagingPath(env), Delete: true}); err != nil {
			errs = append(errs, fmt.Errorf("deleting expired staging environment %s: %w", env, err))
			continue
		}
		rp.runner.log.Info("staging environment expired: manifest deleted", "env", env, "ttl", ttl.String(),
			"created", e.Created, "pipeline", e.Pipeline)
		rp.runner.expiries.expire(env)
		expired = append(expired, e)
	}
	if len(expired) > 0 {
		rp.runner.staging.free()
		rp.runner.envs.Trigger()
	}
	return expired, errors.Join(errs...)
}

// created is when env's TTL started.
func (rp *Reaper) created(ctx context.Context, revision, env string) (Expired, error) {
	p, err := rp.pipelines.PipelineByVersion(ctx, env)
	switch {
	case err == nil:
		return Expired{Env: env, Created: stagedAt(p), Pipeline: p.ID}, nil
	case !errors.Is(err, ErrNotFound):
		return Expired{}, fmt.Errorf("finding the pipeline of staging environment %s: %w", env, err)
	}
	added, err := rp.repo.Added(ctx, revision, manifest.StagingPath(env))
	if err != nil {
		return Expired{}, fmt.Errorf("finding when staging environment %s was added: %w", env, err)
	}
	return Expired{Env: env, Created: added}, nil
}

// stagingEnvs are the staging environments the snapshot has a file for,
// parsed or not, sorted.
func stagingEnvs(s *gitops.Snapshot) []string {
	var names []string
	for env := range s.Envs {
		if env != manifest.ProductionEnv {
			names = append(names, env)
		}
	}
	for env := range s.Invalid {
		if _, dup := s.Envs[env]; !dup && env != manifest.ProductionEnv {
			names = append(names, env)
		}
	}
	sort.Strings(names)
	return names
}

// stagedAt is when p's staging environment's TTL started: when its
// staging manifest step started.
func stagedAt(p *Pipeline) time.Time {
	if s := p.Step(StepStage); s != nil && !s.Started.IsZero() {
		return s.Started
	}
	return p.Created
}

// stagingUntil is when the pipeline's staging environment expires.
func (ru *run) stagingUntil() time.Time { return stagedAt(ru.p).Add(ru.r.opts.StagingTTL) }

// errExpired is the reason a step needing an expired environment fails.
func (ru *run) errExpired(env string) error {
	return failf("staging environment %s expired after TTL %s (at %s)", env,
		shortDuration(ru.r.opts.StagingTTL), ru.stagingUntil().UTC().Format(time.RFC3339))
}

// beforeExpiry wraps a step that needs the staging environment when it
// starts and must not be stopped half-way (a promotion's commit): it
// fails at once when the environment expired.
func (ru *run) beforeExpiry(f stepFunc) stepFunc {
	return func(ctx context.Context, w io.Writer) error {
		if env := ru.p.StagingEnv; env != "" && !ru.r.now().Before(ru.stagingUntil()) {
			return ru.errExpired(env)
		}
		return f(ctx, w)
	}
}

// untilExpiry wraps a step that waits on the staging environment (its
// reports, jobs against it): it fails when the environment expires, at
// its TTL or when the reaper removes it, whichever comes first.
func (ru *run) untilExpiry(f stepFunc) stepFunc {
	return func(ctx context.Context, w io.Writer) error {
		env := ru.p.StagingEnv
		if env == "" {
			return f(ctx, w)
		}
		left := ru.stagingUntil().Sub(ru.r.now())
		if left <= 0 {
			return ru.errExpired(env)
		}
		reaped, release := ru.r.expiries.watch(env)
		defer release()
		ectx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		timer := ru.r.clk.NewTimer(left)
		defer timer.Stop()
		go func() {
			select {
			case <-reaped:
				cancel(errTTL)
			case <-timer.C():
				cancel(errTTL)
			case <-ectx.Done():
			}
		}()
		err := f(ectx, w)
		if err != nil && ctx.Err() == nil && errors.Is(context.Cause(ectx), errTTL) {
			fmt.Fprintf(w, "-- staging environment %s expired\n", env)
			return ru.errExpired(env)
		}
		return err
	}
}

// errTTL is the cause untilExpiry stops a step with.
var errTTL = errors.New("staging environment expired")

// keepForDebugging decides whether the teardown of a failed pipeline keeps
// its staging environment (Options.KeepOnFailure), and records it.
func (ru *run) keepForDebugging(ctx context.Context, w io.Writer) (bool, error) {
	env := ru.p.StagingEnv
	if !ru.r.opts.KeepOnFailure || !ru.failed() {
		return false, nil
	}
	until := ru.stagingUntil()
	if !ru.r.now().Before(until) {
		fmt.Fprintf(w, "staging environment %s is not kept: its TTL %s passed\n", env, shortDuration(ru.r.opts.StagingTTL))
		return false, nil
	}
	if _, err := ru.r.repo.ReadFile(ctx, manifest.StagingPath(env)); err != nil {
		if gitops.IsNotExist(err) {
			fmt.Fprintf(w, "staging manifest of %s already deleted: nothing to keep\n", env)
			return false, nil
		}
		return false, fmt.Errorf("reading staging manifest: %w", err)
	}
	if err := ru.update(ctx, func(p *Pipeline) { p.StagingKeptUntil = until.UTC() }); err != nil {
		return false, fmt.Errorf("recording the kept staging environment: %w", err)
	}
	where := ""
	if ru.p.StagingURL != "" {
		where = " at " + ru.p.StagingURL
	}
	fmt.Fprintf(w, "pipeline failed: staging environment %s%s kept for debugging until %s (TTL %s); then it is removed\n",
		env, where, until.UTC().Format(time.RFC3339), shortDuration(ru.r.opts.StagingTTL))
	ru.r.log.Info("staging environment kept for debugging", "pipeline", ru.p.ID, "env", env, "until", until.UTC(), "url", ru.p.StagingURL)
	return true, nil
}

// failed reports whether a step of the pipeline failed.
func (ru *run) failed() bool {
	for _, s := range ru.p.Steps {
		if s.Phase == Failed {
			return true
		}
	}
	return false
}

// expiries tells the steps waiting on a staging environment that the
// reaper removed it. The zero value is ready.
type expiries struct {
	mu    sync.Mutex
	chans map[string]chan struct{}
}

// watch returns a channel closed when env is expired, and a func to call
// when done watching.
func (e *expiries) watch(env string) (<-chan struct{}, func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.chans == nil {
		e.chans = map[string]chan struct{}{}
	}
	ch, ok := e.chans[env]
	if !ok {
		ch = make(chan struct{})
		e.chans[env] = ch
	}
	return ch, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.chans[env] == ch {
			delete(e.chans, env)
		}
	}
}

// expire wakes the watchers of env.
func (e *expiries) expire(env string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ch, ok := e.chans[env]; ok {
		close(ch)
		delete(e.chans, env)
	}
}

// shortDuration prints d without trailing zero units: 24h, 1h30m, 10m.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
