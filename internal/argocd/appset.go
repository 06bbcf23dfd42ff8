package argocd

import (
	"fmt"
	"path"
	"strings"

	"github.com/runway-cd/runway/internal/manifest"
)

// Argo CD's names.
const (
	argoAPIVersion = "argoproj.io/v1alpha1"
	// finalizer makes deleting an Application delete what it synced.
	finalizer = "resources-finalizer.argocd.argoproj.io"
	// environmentChart is the app-of-apps chart of an environment.
	environmentChart = "environment"
)

// syncPolicy is every Application's: automated with pruning, so a
// resource that leaves the chart leaves the cluster, and foreground
// propagation, so an Application is gone only once what it made is.
// There is no CreateNamespace=true: the namespace is one of the
// environment's own resources (charts/environment), so deleting the
// environment deletes it too (with CreateNamespace Argo CD leaves it
// behind, empty: argo-cd issues #7875, #4435).
//
// Only an environment's own Application (retry true), which has no
// hooks, retries a failed sync. An app's Application, whose chart has
// the report hooks, must not: gitops-engine runs the SyncFail hooks
// inside the failed attempt, before Argo CD retries, so the reporter
// would take a failure (final: Runway reverts production or fails the
// staging workflow) that a retry might then turn into a success. A
// failed sync of an app is thus reported once, as it happened; a later
// sync (the manifest's next change, or one started by hand) reports
// again.
func syncPolicy(retry bool) map[string]any {
	p := map[string]any{
		"automated":   map[string]any{"prune": true, "selfHeal": true},
		"syncOptions": []any{"PrunePropagationPolicy=foreground", "PruneLast=true"},
	}
	if retry {
		p["retry"] = map[string]any{
			"limit":   int64(5),
			"backoff": map[string]any{"duration": "5s", "factor": int64(2), "maxDuration": "3m"},
		}
	}
	return p
}

// environmentSource is the source of an environment's Application: the
// environment chart, with the environment's manifest JSON (valid YAML)
// as its values file, read from the same repository at the same revision.
func (r *renderer) environmentSource(manifestFile, env string, production bool) map[string]any {
	return map[string]any{
		"repoURL":        r.o.RepoURL,
		"targetRevision": r.o.Revision,
		"path":           r.chartRepoPath(environmentChart),
		"helm": map[string]any{
			"releaseName": environmentChart,
			"valueFiles":  []any{r.o.relUp() + manifestFile},
			"parameters": []any{
				map[string]any{"name": "env", "value": env, "forceString": true},
				map[string]any{"name": "production", "value": fmt.Sprint(production)},
			},
		},
	}
}

// applicationSet renders the ApplicationSet: a git files generator over
// the staging manifests makes one Application per file, named and
// namespaced after the file (the environment, as Runway names it).
func (r *renderer) applicationSet() error {
	env := `{{ trimSuffix ".json" .path.filename }}`
	as := map[string]any{
		"apiVersion": argoAPIVersion,
		"kind":       "ApplicationSet",
		"metadata": map[string]any{
			"name":      ApplicationSetName,
			"namespace": r.o.ArgoCDNamespace,
			"labels":    map[string]any{LabelManagedBy: ManagedBy},
		},
		"spec": map[string]any{
			"goTemplate":        true,
			"goTemplateOptions": []any{"missingkey=error"},
			"generators": []any{map[string]any{"git": map[string]any{
				"repoURL":  r.o.RepoURL,
				"revision": r.o.Revision,
				"files": []any{
					map[string]any{"path": manifest.StagingDir + "/*.json"},
					// Runway never reads a staging file named production.
					map[string]any{"path": manifest.StagingPath(manifest.ProductionEnv), "exclude": true},
				},
			}}},
			// Deleting a manifest deletes its Application and, by the
			// finalizer, everything the Application made.
			"syncPolicy": map[string]any{"preserveResourcesOnDeletion": false},
			"template": map[string]any{
				"metadata": map[string]any{
					"name":       "runway-" + env,
					"namespace":  r.o.ArgoCDNamespace,
					"labels":     map[string]any{LabelManagedBy: ManagedBy, LabelEnv: env},
					"finalizers": []any{finalizer},
				},
				"spec": map[string]any{
					"project":     r.o.Project,
					"source":      r.environmentSource(manifest.StagingDir+"/{{ .path.filename }}", env, false),
					"destination": map[string]any{"server": r.o.DestinationServer, "namespace": r.o.NamespacePrefix + env},
					"syncPolicy":  syncPolicy(true),
				},
			},
		},
	}
	return r.add("applicationset.yaml", as)
}

// production renders production's Application, the same chart with
// production's manifest as its values.
func (r *renderer) production() error {
	env := manifest.ProductionEnv
	a := map[string]any{
		"apiVersion": argoAPIVersion,
		"kind":       "Application",
		"metadata": map[string]any{
			"name":       ProductionApplication,
			"namespace":  r.o.ArgoCDNamespace,
			"labels":     map[string]any{LabelManagedBy: ManagedBy, LabelEnv: env},
			"finalizers": []any{finalizer},
		},
		"spec": map[string]any{
			"project":     r.o.Project,
			"source":      r.environmentSource(manifest.ProductionPath, env, true),
			"destination": map[string]any{"server": r.o.DestinationServer, "namespace": r.o.NamespacePrefix + env},
			"syncPolicy":  syncPolicy(true),
		},
	}
	return r.add("application-production.yaml", a)
}

// environmentChart renders the app-of-apps chart: the environment's
// namespace and one Application per app of its manifest.
func (r *renderer) environmentChart() error {
	dir := chartDir(environmentChart)
	err := r.chartMeta(environmentChart, "A Runway environment: its namespace and an Application per app of its manifest (the values are the manifest JSON).",
		map[string]any{"env": "", "production": false, "deploying_workflow_name": "", "apps": map[string]any{}})
	if err != nil {
		return err
	}
	if err := r.addTemplate(path.Join(dir, "templates", "namespace.yaml"), "", r.namespace); err != nil {
		return err
	}
	if err := r.checkTemplate(path.Join(dir, "templates", "check.yaml")); err != nil {
		return err
	}
	for _, name := range known(r.apps) {
		cond := fmt.Sprintf("index .Values.apps %s", quote(name))
		err := r.addTemplate(path.Join(dir, "templates", "app-"+name+".yaml"), cond, func(t *template) any { return r.childApplication(t, name) })
		if err != nil {
			return err
		}
	}
	return nil
}

// namespace is the environment's namespace, created before anything else
// of it (sync wave -1) and deleted with it.
func (r *renderer) namespace(t *template) any {
	return map[string]any{
		"apiVersion": "v1",
		"kind":       "Namespace",
		"metadata": map[string]any{
			"name":        t.value(fmt.Sprintf("printf \"%%s%%s\" %s .Values.env", quote(r.o.NamespacePrefix))),
			"labels":      map[string]any{LabelManagedBy: ManagedBy, LabelEnv: t.value(".Values.env")},
			"annotations": map[string]any{"argocd.argoproj.io/sync-wave": "-1"},
		},
	}
}

// checkTemplate fails the environment's rendering, with a message Argo CD
// shows, for an app no chart was exported for, or no environment name.
func (r *renderer) checkTemplate(p string) error {
	names := known(r.apps)
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = quote(n)
	}
	text := fmt.Sprintf(`{{- if not .Values.env }}
{{- fail "the environment's name (value env) is empty" }}
{{- end }}
{{- range $name, $_ := .Values.apps }}
{{- if not (eq $name %s) }}
{{- fail (printf "app %%q of the manifest has no chart in this export (it has %s): run runway export argocd again with its runway.yaml" $name) }}
{{- end }}
{{- end }}
`, strings.Join(quoted, " "), strings.Join(names, ", "))
	r.files = append(r.files, File{Path: p, Data: []byte(text)})
	return nil
}

// appField is the action printing, quoted, app's manifest entry field
// at keys ("images", "code", "image_tag"), or "" when any level is
// missing or empty.
func appField(t *template, app string, keys ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{{ with index $.Values.apps %s }}", quote(app))
	for _, k := range keys {
		fmt.Fprintf(&b, "{{ with .%s }}", k)
	}
	b.WriteString("{{ quote . }}")
	for range keys {
		b.WriteString(`{{ else }}""{{ end }}`)
	}
	b.WriteString("{{ end }}")
	return t.action(b.String())
}

// childApplication is app's Application in the environment: its chart,
// with the values of its manifest entry.
func (r *renderer) childApplication(t *template, name string) any {
	wave := "1"
	if name == postgresName {
		wave = "0" // the database's Application first
	}
	workflow := fmt.Sprintf(`{{ with index $.Values.apps %s }}{{ with .deploying_workflow_name }}{{ quote . }}{{ else }}{{ quote $.Values.deploying_workflow_name }}{{ end }}{{ end }}`, quote(name))
	values := map[string]any{
		"env":             t.value(".Values.env"),
		"production":      t.boolean(".Values.production"),
		"workflow":        t.action(workflow),
		"image":           appField(t, name, "images", "code", "image"),
		"version":         appField(t, name, "images", "code", "image_tag"),
		"revision":        appField(t, name, "deploy", "revision"),
		"pipelineImage":   appField(t, name, "images", "pipeline", "image"),
		"pipelineVersion": appField(t, name, "images", "pipeline", "image_tag"),
	}
	if name == postgresName {
		// Which apps needing the database this environment runs: the
		// setup hook requires only their passwords.
		dbs := map[string]any{}
		for _, app := range r.databaseApps() {
			dbs[app] = t.boolean(fmt.Sprintf("not (not (index $.Values.apps %s))", quote(app)))
		}
		values["databases"] = dbs
	}
	return map[string]any{
		"apiVersion": argoAPIVersion,
		"kind":       "Application",
		"metadata": map[string]any{
			"name":      t.value(fmt.Sprintf("printf \"%%s-%%s\" .Values.env %s", quote(name))),
			"namespace": r.o.ArgoCDNamespace,
			"labels": map[string]any{
				LabelManagedBy: ManagedBy, LabelEnv: t.value(".Values.env"), LabelApp: name,
			},
			"annotations": map[string]any{"argocd.argoproj.io/sync-wave": wave},
			"finalizers":  []any{finalizer},
		},
		"spec": map[string]any{
			"project": r.o.Project,
			"source": map[string]any{
				"repoURL":        r.o.RepoURL,
				"targetRevision": r.o.Revision,
				"path":           r.chartRepoPath(name),
				"helm":           map[string]any{"releaseName": name, "valuesObject": values},
			},
			"destination": map[string]any{
				"server":    r.o.DestinationServer,
				"namespace": t.value(fmt.Sprintf("printf \"%%s%%s\" %s .Values.env", quote(r.o.NamespacePrefix))),
			},
			"syncPolicy": syncPolicy(false), // it has the report hooks: no retry
		},
	}
}
