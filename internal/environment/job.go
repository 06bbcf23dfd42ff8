package environment

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/runtime"
)

// RunJob runs the migrations or functional tests (kind) from app's
// pipeline artifact of version against env. An app's job gets the app's
// database settings, RUNWAY_APP_URL (the app's URL in env: a listener of
// the gateway serving only this app there, which any client reaches),
// RUNWAY_APP_HOST_URL and RUNWAY_GATEWAY_ADDR (the same app by name on
// the gateway's shared listener, and that listener's address). A
// service's job (app is a service entry of env's manifest, run from its
// own repository's pipeline: see service.go) gets the databases of env's
// apps instead (serviceJobVars) and no URL. Both get RUNWAY_ENV,
// RUNWAY_APP, RUNWAY_VERSION and, when app's workflow in env has an
// expectation, the variables to report to it (see reporterVars). Nothing
// else: the runtime adds only its allow-listed variables of Runway's own
// environment, and runs the job as env's sandbox user.
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
	var vars []string
	if c.serviceEntry(env, app) != nil {
		// A service's job (its repository's migrations and tests): the
		// databases of env's apps, no URL (a service is not routed).
		if vars, err = c.serviceJobVars(ctx, env, app, log); err != nil {
			return err
		}
	} else {
		if vars, err = c.starter.Vars(ctx, env, art); err != nil {
			return err
		}
		appURL := c.jobURL(ctx, env, app)
		vars = append(vars,
			"RUNWAY_APP_URL="+appURL,
			"RUNWAY_APP_HOST_URL="+c.HostURL(env, app),
			"RUNWAY_GATEWAY_ADDR="+c.opts.GatewayAddr)
		fmt.Fprintf(log, "RUNWAY_APP_URL=%s\n", appURL)
	}
	vars = append(vars, "RUNWAY_ENV="+env, "RUNWAY_APP="+app, "RUNWAY_VERSION="+version)
	rvars, err := c.reporterVars(ctx, env, app)
	if err != nil {
		return err
	}
	vars = append(vars, rvars...)
	fmt.Fprintf(log, "$ %s\n", strings.Join(job.Command, " "))
	return c.rt.RunJob(ctx, runtime.Job{
		Env: env, App: app, Name: kind, Dir: art.Dir, Command: job.Command, Vars: vars, Log: log, Timeout: job.Timeout.Duration,
	})
}

// jobURL is the app's URL in env for a job: its route's own listener. The
// gateway may be restarting (its process killed) when the job starts; the
// name-based URL is not a fallback then, since not every client resolves
// it, so the route is asked again for a while.
func (c *Controller) jobURL(ctx context.Context, env, app string) string {
	deadline := c.clock.Now().Add(jobURLWait)
	for attempt := 0; ; attempt++ {
		if r, ok := c.router.Route(env, app); ok {
			if r.Listen != "" {
				return "http://" + r.Listen
			}
			return c.HostURL(env, app) // a gateway without route listeners
		}
		if c.clock.Now().After(deadline) || attempt >= jobURLAttempts || ctx.Err() != nil {
			c.log.Warn("the app's route could not be read for its job; giving the name-based URL", "env", env, "app", app)
			return c.HostURL(env, app)
		}
		select {
		case <-ctx.Done():
		case <-c.clock.After(100 * time.Millisecond):
		}
	}
}

// jobURLWait bounds jobURL's wait for the gateway: more than a gateway
// restart takes (about 0.1-0.5 s).
const jobURLWait = 10 * time.Second

// jobURLAttempts bounds jobURL's reads in count too, 100 ms apart.
const jobURLAttempts = int(jobURLWait / (100 * time.Millisecond))
