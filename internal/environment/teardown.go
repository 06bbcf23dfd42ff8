package environment

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/runway-cd/runway/internal/events"
)

// teardown removes everything of env. A staging bring-up of env in flight
// is cancelled first, so the teardown does not wait for its health checks.
func (c *Controller) teardown(ctx context.Context, env string) error {
	c.mu.Lock()
	if cancel := c.bringing[env]; cancel != nil {
		cancel()
	}
	c.mu.Unlock()
	unlock := c.lockEnv(env)
	defer unlock()
	c.mu.Lock()
	_, known := c.envs[env]
	orphan := c.undeclaredLocked(env)
	c.mu.Unlock()
	if !orphan {
		return nil // declared again meanwhile
	}
	if !known && !slices.Contains(c.rt.Envs(), env) {
		return nil // nothing left of it
	}
	start := c.clock.Now()
	c.events.Normal(events.Environment, env, "TearingDown", "its manifest is gone from the state repository")
	c.router.RemoveEnv(env)
	if err := c.rt.Destroy(ctx, env); err != nil {
		c.events.Warning(events.Environment, env, "Failed", "tearing down: "+err.Error())
		return fmt.Errorf("tearing down %s: %w", env, err)
	}
	c.mu.Lock()
	delete(c.envs, env)
	c.mu.Unlock()
	took := c.clock.Since(start).Round(time.Millisecond)
	c.log.Info("environment torn down", "env", env, "took", took)
	c.events.Normal(events.Environment, env, "TornDown", "took "+took.String())
	return nil
}
