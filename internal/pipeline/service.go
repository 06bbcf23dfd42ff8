package pipeline

import (
	"errors"
	"fmt"
	"strings"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/manifest"
)

// A service pipeline takes a change of a service's own repository (the
// database's: schema, setup hooks, no app image) through the same method
// as an app's, like the original's "just-pipeline" flow. What differs:
//
//   - build-app is skipped (there is no app image); build-pipeline builds
//     the artifact with the service's migrations and tests, under the
//     service's manifest name.
//   - The staging manifest is production's with only the service's entry
//     changed: deploy.revision (the pushed commit) and images.pipeline
//     (tag: the new version). images.code (postgres 15, say) stays: the
//     runtime provides the server itself. Every app of production comes
//     up in staging at its production version, on that environment's
//     server, as for any change.
//   - The version is the pipeline tag, not the code tag (entryVersion).
//   - Promote writes only those fields into production's entry of the
//     service, as it is at the head the commit lands on: a hand-made
//     change of the service's image (an upgrade to postgres 16) is kept.
//   - There is no canary: a service has no replicas to shift traffic
//     between. wait-rollout waits for the environment controller's
//     report of the service to the production workflow, which it sends
//     once a production pass has seen the entry with the new revision and
//     the server is up. The production migrations run after that, in
//     production-migrations, as for an app whose rollout completed: the
//     new schema reaches production's databases only once the change is
//     in production's manifest, and its tests run against the result.
//   - The promotion gate (one promotion of an app at a time, in commit
//     order) applies as to an app: the service's name is its key.

// ServicePostgres is the one service kind a repository can be today
// (Request.Service): the environments' PostgreSQL server.
const ServicePostgres = "postgres"

// DefaultPostgresImage is the code image of a service entry that
// production does not have yet: what every environment's manifest names
// for its PostgreSQL server.
var DefaultPostgresImage = manifest.Image{Image: "postgres", Tag: "15"}

// errSkipped is returned by a step that does not apply to the pipeline: it
// is recorded Skipped and the pipeline goes on.
var errSkipped = errors.New("step does not apply")

// isService reports whether the pipeline is a service's.
func (p *Pipeline) isService() bool { return p.Service != "" }

// specKind is the kind of app spec the pipeline's repository must have: a
// repository tracked as a service must hold a Service spec, any other an
// App spec.
func (p *Pipeline) specKind() string {
	if p.isService() {
		return appspec.KindService
	}
	return appspec.KindApp
}

// entryVersion is the version a pipeline's manifest entry carries: the
// code tag of an app, the pipeline tag of a service (whose code tag is its
// server's, the same for every change).
func (p *Pipeline) entryVersion(a *manifest.App) string {
	if !p.isService() {
		return a.Version()
	}
	if a.Images.Pipeline == nil {
		return ""
	}
	return a.Images.Pipeline.Tag
}

// serviceEntry is the service's manifest entry for this version: prev
// (production's) with only its revision and pipeline artifact changed. A
// production entry that is not a PostgreSQL server is refused: the config
// says the repository is postgres's, the manifest says the name runs
// something else.
func (ru *run) serviceEntry(prev *manifest.App) (*manifest.App, error) {
	a := prev
	if a == nil {
		a = &manifest.App{Images: manifest.Images{Code: DefaultPostgresImage}}
	}
	if !isPostgresImage(a.Images.Code.Image) {
		return nil, fmt.Errorf("production's entry %s runs image %q, not postgres: it cannot take the %s service's repository",
			ru.p.App, a.Images.Code.Image, ru.p.Service)
	}
	a.Images.Pipeline = &manifest.Image{Image: "runway.local/" + ru.p.App + "-pipeline", Tag: ru.p.Version, Label: ru.p.Branch}
	a.Deploy.Revision = ru.p.Commit
	a.LastChangeDescription = firstLine(ru.p.Message)
	return a, nil
}

// isPostgresImage is the environment controller's test of a service entry
// (environment.isService): an image named postgres.
func isPostgresImage(image string) bool {
	return image == "postgres" || strings.HasSuffix(image, "/postgres")
}
