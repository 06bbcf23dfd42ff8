package rollout

import (
	"context"
	"fmt"
	"time"

	"github.com/runway-cd/runway/internal/oneline"
)

// save writes the rollout's checkpoint. A checkpoint that cannot be saved
// is logged, not fatal: the rollout goes on, and a restart would then
// resume it from an earlier checkpoint (every step is idempotent).
func (r *rollout) save(ctx context.Context) {
	if r.c.cps == nil {
		return
	}
	// Snapshot and write under one lock, so that the step loop and the
	// background analysis never write an older state over a newer one.
	r.saveMu.Lock()
	defer r.saveMu.Unlock()
	cp := r.checkpoint()
	if err := r.c.cps.SaveRollout(context.WithoutCancel(ctx), cp); err != nil {
		r.c.log.Error("saving rollout checkpoint", "app", r.req.App, "canary", r.req.CanaryVersion, "err", err)
	}
}

func (r *rollout) checkpoint() Checkpoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	cp := Checkpoint{
		Status: r.status, Workflow: r.req.Workflow, StableEntry: r.req.StableEntry,
		Runs: r.runs, Full: r.full, PauseStarted: r.pauseStarted,
		StepRun: r.stepRun, BackgroundRun: r.bgRun, Aborting: r.aborting, Promoting: r.promoting,
	}
	cp.Analyses = append([]Run(nil), r.status.Analyses...)
	return cp
}

// update changes the rollout's state under its lock and saves the
// checkpoint.
func (r *rollout) update(ctx context.Context, f func(r *rollout)) {
	r.mu.Lock()
	f(r)
	r.mu.Unlock()
	r.save(ctx)
}

// resumeFrom takes the state of an unfinished checkpoint.
func (r *rollout) resumeFrom(cp Checkpoint) {
	r.resume = &cp
	r.runs, r.full, r.pauseStarted = cp.Runs, cp.Full, cp.PauseStarted
	r.stepRun, r.bgRun, r.aborting, r.promoting = cp.StepRun, cp.BackgroundRun, cp.Aborting, cp.Promoting
	if cp.StableEntry != nil {
		r.req.StableEntry = cp.StableEntry // it has the git revision
	}
	r.status.Started, r.status.Step, r.status.Weight = cp.Started, cp.Step, cp.Weight
	r.status.Analyses = append([]Run(nil), cp.Analyses...)
	r.status.Message = fmt.Sprintf("resuming at step %d/%d, weight %d%%", cp.Step+1, len(r.steps), cp.Weight)
}

// resumable finds the unfinished checkpoint req continues: same canary
// and same stable version. Other unfinished checkpoints of the app are
// rollouts that can no longer go on: they are ended, as promoted if their
// canary had been promoted and is req's stable version, else as
// superseded. An error means the checkpoints could not be read: the
// rollout must not start (it would overwrite one).
func (c *Controller) resumable(ctx context.Context, req Request) (Checkpoint, bool, error) {
	if c.cps == nil {
		return Checkpoint{}, false, nil
	}
	cps, err := c.cps.UnfinishedRollouts(ctx, req.Env, req.App)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("reading rollout checkpoints of %s: %w", req.App, err)
	}
	var found *Checkpoint
	for i, cp := range cps {
		switch {
		case cp.CanaryVersion == req.CanaryVersion && cp.StableVersion == req.StableVersion:
			found = &cps[i]
		case cp.Promoting && cp.Aborting == "" && cp.CanaryVersion == req.StableVersion:
			cp.Weight, cp.Step = 100, cp.Steps
			c.end(ctx, cp, true, fmt.Sprintf("%s %s promoted (recorded after a restart)", req.App, cp.CanaryVersion))
		default:
			c.end(ctx, cp, false, fmt.Sprintf("superseded: %s %s now rolls out over %s", req.App, req.CanaryVersion, req.StableVersion))
		}
	}
	if found == nil {
		return Checkpoint{}, false, nil
	}
	return *found, true, nil
}

// Resumable returns the newest unfinished checkpoint of app in env that no
// running rollout owns: after a restart, what the environment controller
// needs to recover the stable version a canary ran beside. An error means
// it is not known: act on nothing.
func (c *Controller) Resumable(ctx context.Context, env, app string) (Checkpoint, bool, error) {
	if c.cps == nil {
		return Checkpoint{}, false, nil
	}
	if _, ok := c.Active(env, app); ok {
		return Checkpoint{}, false, nil
	}
	cps, err := c.cps.UnfinishedRollouts(ctx, env, app)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("reading rollout checkpoints of %s: %w", app, err)
	}
	if len(cps) == 0 {
		return Checkpoint{}, false, nil
	}
	return cps[len(cps)-1], true, nil
}

// Settle ends the unfinished checkpoints of app in env once production
// runs version without a canary: the control plane was killed after the
// rollout's outcome was applied but before it was recorded. A checkpoint
// whose canary is version and that had passed every step was promoted;
// any other one did not go through.
// Either way its pipeline gets the report it waits for.
func (c *Controller) Settle(ctx context.Context, env, app, version string) {
	if c.cps == nil {
		return
	}
	if _, ok := c.Active(env, app); ok {
		return
	}
	cps, err := c.cps.UnfinishedRollouts(ctx, env, app)
	if err != nil {
		c.log.Error("reading rollout checkpoints", "app", app, "err", err)
		return
	}
	for _, cp := range cps {
		switch {
		case cp.Aborting != "":
			c.end(ctx, cp, false, fmt.Sprintf("canary %s aborted: %s", cp.CanaryVersion, oneline.Clean(cp.Aborting, maxAbortReason)))
		case cp.CanaryVersion == version && cp.Promoting:
			cp.Weight, cp.Step = 100, cp.Steps
			c.end(ctx, cp, true, fmt.Sprintf("%s %s promoted (recorded after a restart)", app, version))
		default:
			c.end(ctx, cp, false, fmt.Sprintf("canary %s did not finish: production runs %s", cp.CanaryVersion, version))
		}
	}
}

// end records a checkpoint's rollout as ended and reports it.
func (c *Controller) end(ctx context.Context, cp Checkpoint, ok bool, msg string) {
	ctx = context.WithoutCancel(ctx)
	cp.Phase, cp.Message, cp.Finished = Degraded, msg, time.Now().UTC()
	if ok {
		cp.Phase = Healthy
	}
	if err := c.cps.SaveRollout(ctx, cp); err != nil {
		c.log.Error("saving rollout checkpoint", "app", cp.App, "canary", cp.CanaryVersion, "err", err)
	}
	c.log.Info("unfinished rollout ended", "app", cp.App, "canary", cp.CanaryVersion, "phase", cp.Phase, "message", msg)
	c.mu.Lock()
	c.history = append(c.history, cp.Status)
	c.mu.Unlock()
	if cp.Workflow == "" {
		return
	}
	if err := c.reporter.Update(ctx, cp.Workflow, cp.App, ok, oneline.Reason(msg)); err != nil {
		c.log.Error("reporting rollout end", "err", err)
	}
}
