package argocd

import (
	"fmt"
	"strings"

	"github.com/runway-cd/runway/internal/manifest"
)

// readme renders README.md: what the export is and how to install it.
func (r *renderer) readme() error {
	o := r.o
	var b strings.Builder
	fmt.Fprintf(&b, `# Runway's method on Argo CD

Rendered by `+"`runway export argocd`"+`; do not edit, render again. Commit this
directory to the state repository (%s) at %s/, then apply the two
Argo CD objects:

    kubectl apply -n %s -f %s/applicationset.yaml -f %s/application-production.yaml

- applicationset.yaml: one Application per staging manifest
  (%s/*.json), deleted with everything it made when
  the manifest is deleted.
- application-production.yaml: production (%s).
- charts/environment: an environment's namespace (%s<env>, labelled
  %s=%s) and one Application per app of its manifest. Its
  values are the manifest JSON itself (a helm valueFiles entry).
- charts/<app>: the app's Deployment (staging) or Rollout (production),
  Service, AnalysisTemplates (named <app>-<name>) and the hook Jobs that
  report to Runway's reporter at %s. An app's Application does not
  retry a failed sync: its SyncFail hook has already reported it.
- charts/postgres: the environment's PostgreSQL server.

Each environment's namespace needs two Secrets, which Runway writes when it
drives Argo CD (or you do, by hand):

- %s: one key per workflow, the workflow's reporter token
  (GET /api/v1/expectations/<workflow>/token with the admin token).
- %s: key postgres (the server's password) and one key per app
  of the environment that needs the database: %s.
`, o.RepoURL, o.ChartPath, o.ArgoCDNamespace, o.ChartPath, o.ChartPath,
		manifest.StagingDir, manifest.ProductionPath, o.NamespacePrefix, LabelManagedBy, ManagedBy,
		o.ReporterURL, ReporterSecret, DatabaseSecret, orNone(r.databaseApps()))
	r.files = append(r.files, File{Path: "README.md", Data: []byte(b.String())})
	return nil
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
