package environment

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/manifest"
)

// A service's own repository (the database's: schema, setup hooks, no app
// image) goes through the pipeline like an app's, with only the service
// entry's deploy.revision and images.pipeline changing (see
// pipeline/service.go). For the controller nothing changes in how the
// service runs: EnsurePostgres keeps the environment's server as it is,
// and the pass reports the service to the entry's workflow once per
// workflow; in production that is the promoting pipeline's, so the report
// comes from the first production pass that has seen the new revision.
// There is no canary (no replicas to shift traffic between) and nothing is
// handed to the rollout controller. What differs is the service's jobs
// (migrations, tests), which RunJob runs from the service's pipeline
// artifact with serviceJobVars.

// serviceEntry returns env's entry of app as the last pass of env saw it
// when it is a service, else nil.
func (c *Controller) serviceEntry(env, app string) *manifest.App {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.envs[env]
	if st == nil || st.manifest == nil {
		return nil
	}
	if a, ok := st.manifest.Apps[app]; ok && isService(a) {
		return a
	}
	return nil
}

// serviceJobVars are the database settings a service's job gets: for
// every app of env that needs postgres, its database's settings with the
// app's name as prefix (upper-case, '-' as '_'): WEB_PGHOST, WEB_PGPORT,
// WEB_PGUSER, WEB_PGPASSWORD, WEB_PGDATABASE, WEB_DATABASE_URL for app
// web; RUNWAY_DATABASE_APPS lists those apps, space-separated, in name
// order. There are no plain PG* variables: a schema change names the
// database it is for.
//
// Least privilege: each app's own role, the owner of its database, and
// nothing more. The owner can create, alter and drop tables, indexes and
// schemas in its database (PostgreSQL 15 gives public to the database
// owner), which is all a schema migration does; and tables it creates are
// the app's own, so the app and its own later migrations keep full use of
// them, with no grants to keep in step. The environment's superuser
// (reachable only over the server's unix socket) is not given: it would
// let a job read every role's password, change server settings and run
// programs as the server's OS user. A dedicated migration role would need
// CREATE on each database plus grants (or ALTER DEFAULT PRIVILEGES) to
// every app role for each object it makes, and the runtime offers none
// today (runtime.Databases has Database(env, app) only).
//
// An app whose artifact cannot be found (it cannot run in env either) is
// left out, and the job's log says so.
func (c *Controller) serviceJobVars(ctx context.Context, env, service string, log io.Writer) ([]string, error) {
	c.mu.Lock()
	var m *manifest.Manifest
	if st := c.envs[env]; st != nil {
		m = st.manifest
	}
	c.mu.Unlock()
	if m == nil {
		return nil, fmt.Errorf("environment %s was not reconciled: its apps' databases are unknown", env)
	}
	var vars, apps []string
	for _, name := range m.AppNames() {
		a := m.Apps[name]
		if isService(a) {
			continue
		}
		art, err := c.artifacts.Resolve(name, a.Version(), build.App)
		if err != nil {
			fmt.Fprintf(log, "%s %s has no artifact (%v): its database is not given to %s's job\n", name, a.Version(), err, service)
			continue
		}
		if art.Spec == nil || !slices.Contains(art.Spec.Needs, "postgres") {
			continue
		}
		db, err := c.rt.Database(ctx, env, name)
		if err != nil {
			return nil, fmt.Errorf("getting the database of %s in %s for %s's job: %w", name, env, service, err)
		}
		prefix := envPrefix(name)
		for _, kv := range db.Env() {
			vars = append(vars, prefix+kv)
		}
		apps = append(apps, name)
	}
	if len(apps) == 0 {
		fmt.Fprintf(log, "no app of %s needs postgres: %s's job gets no database\n", env, service)
	}
	return append(vars, "RUNWAY_DATABASE_APPS="+strings.Join(apps, " ")), nil
}

// envPrefix is the variable prefix of app's database settings.
func envPrefix(app string) string {
	return strings.ToUpper(strings.ReplaceAll(app, "-", "_")) + "_"
}

// serviceReport is the message of a service's deploy report.
func serviceReport(a *manifest.App) string {
	msg := "postgres is up"
	if rev := a.Deploy.Revision; rev != "" {
		msg = fmt.Sprintf("postgres %s is up at revision %.12s", a.Images.Code.Tag, rev)
	}
	return msg
}
