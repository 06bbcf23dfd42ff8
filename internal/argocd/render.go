package argocd

import (
	"cmp"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/runway-cd/runway/internal/runtime/kubernetes"
)

// File is one file of the export: Path is slash separated, relative to
// the export's directory (Options.ChartPath in the state repository).
type File struct {
	Path string
	Data []byte
}

// Labels Runway puts on what it makes (the Kubernetes runtime's).
const (
	LabelManagedBy = kubernetes.LabelManagedBy
	ManagedBy      = kubernetes.ManagedBy
	LabelEnv       = kubernetes.LabelEnv
	LabelApp       = kubernetes.LabelApp
	LabelVersion   = kubernetes.LabelVersion
	// AnnotationRevision carries the git revision an app was built from.
	AnnotationRevision = "runway.dev/revision"
)

// Names of the export's objects.
const (
	// ApplicationSetName generates one Application per staging manifest.
	ApplicationSetName = "runway-staging"
	// ProductionApplication is production's Application.
	ProductionApplication = "runway-production"
	// ReporterSecret, in each environment's namespace, maps each
	// workflow to its reporter token: key = workflow name, value =
	// token. Runway writes it; the hook Jobs read their workflow's key.
	ReporterSecret = "runway-reporter"
	// DatabaseSecret, in each environment's namespace, holds the
	// PostgreSQL passwords: key "postgres" (the server's admin) and one
	// key per app that needs the database, named after the app.
	DatabaseSecret = "runway-database"
	// AppPort is the port every app listens on in its pod.
	AppPort = 8080
)

// Render renders the export: the ApplicationSet over the staging
// manifests, production's Application and the Helm charts they sync
// (see the package documentation). The result is sorted by path and the
// same for the same options.
func Render(o Options) ([]File, error) {
	o.setDefaults()
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("exporting for Argo CD: %w", err)
	}
	apps, err := o.checkApps()
	if err != nil {
		return nil, fmt.Errorf("exporting for Argo CD: %w", err)
	}
	if err := o.checkManifests(apps); err != nil {
		return nil, fmt.Errorf("exporting for Argo CD: %w", err)
	}
	r := &renderer{o: o, apps: apps}
	steps := []func() error{r.applicationSet, r.production, r.environmentChart, r.postgresChart}
	for _, name := range sortedKeys(apps) {
		if !apps[name].spec.IsService() {
			steps = append(steps, func() error { return r.appChart(apps[name]) })
		}
	}
	steps = append(steps, r.readme)
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, fmt.Errorf("exporting for Argo CD: %w", err)
		}
	}
	slices.SortFunc(r.files, func(a, b File) int { return cmp.Compare(a.Path, b.Path) })
	return r.files, nil
}

// renderer is one Render call's state.
type renderer struct {
	o     Options
	apps  map[string]*app
	files []File
}

// add adds a file that is plain YAML.
func (r *renderer) add(p string, obj any) error {
	b, err := plain(obj)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	r.files = append(r.files, File{Path: p, Data: b})
	return nil
}

// addTemplate adds a chart template made by fill, rendered where cond is.
func (r *renderer) addTemplate(p, cond string, fill func(t *template) any) error {
	t := &template{}
	b, err := t.render(fill(t), cond)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	r.files = append(r.files, File{Path: p, Data: b})
	return nil
}

// chartDir is the directory of chart name in the export.
func chartDir(name string) string { return path.Join("charts", name) }

// chartRepoPath is chart name's directory in the state repository.
func (r *renderer) chartRepoPath(name string) string {
	return path.Join(r.o.ChartPath, chartDir(name))
}

// chartMeta adds a chart's Chart.yaml and values.yaml.
func (r *renderer) chartMeta(name, description string, values map[string]any) error {
	chart := map[string]any{
		"apiVersion":  "v2",
		"name":        name,
		"description": description,
		"type":        "application",
		"version":     "0.1.0",
		"annotations": map[string]any{"runway.dev/generated-by": "runway export argocd"},
	}
	if err := r.add(path.Join(chartDir(name), "Chart.yaml"), chart); err != nil {
		return err
	}
	return r.add(path.Join(chartDir(name), "values.yaml"), values)
}

// labels are the labels of an object of app in the release's environment.
func labels(t *template, app string) map[string]any {
	return map[string]any{
		LabelManagedBy: ManagedBy,
		LabelApp:       app,
		LabelEnv:       t.value(".Values.env"),
	}
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	return slices.Sorted(maps.Keys(m))
}

// upper is s with its letters upper-cased and '-' as '_': an environment
// variable's name.
func upper(s string) string { return strings.ReplaceAll(strings.ToUpper(s), "-", "_") }
