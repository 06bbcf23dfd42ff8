package environment

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/runtime"
)

// RunJob runs the migrations or functional tests (kind) from app's
// pipeline artifact of version against env. The job gets the app's
// database settings, RUNWAY_APP_URL (the app's URL in env: a listener of
// the gateway serving only this app there, which any client reaches),
// RUNWAY_APP_HOST_URL and RUNWAY_GATEWAY_ADDR (the same app by name on
// the gateway's shared listener, and that listener's address) and, when
// env's workflow has an expectation, the
// variables to report to it (see reporterVars). Nothing else: the runtime
// adds only its allow-listed variables of Runway's own environment, and
// runs the job as env's sandbox user.
func (c *Controller) RunJob(ctx context.Context, env, app, version, kind string, log io.Writer) error {
	art, err := c.artifacts.Resolve(app, version, build.Pipeline)
	if err != nil {
		return err
	}
	job := art.Spec.Tests
	if kind == "migrations" {
		job = art.Spec.Migrations
	}
	if job == nil {
		fmt.Fprintf(log, "%s has no %s in its app spec; nothing to run\n", app, kind)
		return nil
	}
	vars, err := c.appVars(ctx, env, art)
	if err != nil {
		return err
	}
	vars = append(vars,
		"RUNWAY_APP_URL="+c.URL(env, app),
		"RUNWAY_APP_HOST_URL="+c.HostURL(env, app),
		"RUNWAY_GATEWAY_ADDR="+c.opts.GatewayAddr,
		"RUNWAY_ENV="+env, "RUNWAY_APP="+app, "RUNWAY_VERSION="+version)
	rvars, err := c.reporterVars(ctx, env)
	if err != nil {
		return err
	}
	vars = append(vars, rvars...)
	fmt.Fprintf(log, "$ %s\n", strings.Join(job.Command, " "))
	return c.rt.RunJob(ctx, runtime.Job{
		Env: env, App: app, Name: kind, Dir: art.Dir, Command: job.Command, Vars: vars, Log: log, Timeout: job.Timeout.Duration,
	})
}
