package argocd

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/runtime"
)

// Defaults of Options.
const (
	DefaultChartPath         = "argocd"
	DefaultRevision          = "HEAD"
	DefaultArgoCDNamespace   = "argocd"
	DefaultProject           = "default"
	DefaultDestinationServer = "https://kubernetes.default.svc"
	DefaultNamespacePrefix   = "runway-"
	DefaultHookImage         = "curlimages/curl:8.11.1"
	DefaultDatabaseStorage   = "1Gi"
)

// Options say what to render. RepoURL, ReporterURL and Apps are required;
// PrometheusAddress too when an app has AnalysisTemplates.
type Options struct {
	// Manifests are the state repository's environments by name
	// (production included), as read now. They are checked (every app
	// must be known) but not rendered: Argo CD reads them at each sync.
	// Nil: nothing is checked.
	Manifests map[string]*manifest.Manifest
	// Apps are the app (and service) specs with their AnalysisTemplates.
	Apps []App
	// RepoURL is the state repository as Argo CD reaches it. The export
	// is committed to it at ChartPath.
	RepoURL string
	// Revision is the state repository's revision Argo CD follows.
	// Zero value: HEAD.
	Revision string
	// ChartPath is the export's directory in the state repository, slash
	// separated. Zero value: argocd.
	ChartPath string
	// ArgoCDNamespace holds the Applications. Zero value: argocd.
	ArgoCDNamespace string
	// Project is the Applications' AppProject. Zero value: default.
	Project string
	// DestinationServer is the cluster the apps run on, as Argo CD names
	// it. Zero value: the cluster Argo CD runs in.
	DestinationServer string
	// NamespacePrefix starts every environment's namespace. Zero value:
	// runway-.
	NamespacePrefix string
	// ReporterURL is Runway's API as the hook Jobs reach it (scheme,
	// host, port): they POST to ReporterURL/workflow/update.
	ReporterURL string
	// PrometheusAddress is written into every AnalysisTemplate's
	// prometheus.address: the cluster's Prometheus.
	PrometheusAddress string
	// Registry holds the apps' images: an app's is Registry/<app>:<version>
	// (the image package's naming). Empty: the manifest's images.code.image
	// as it is.
	Registry string
	// HookImage runs the report hooks: it needs sh and curl. Zero value:
	// DefaultHookImage.
	HookImage string
	// DatabaseStorage is the size of each environment's PostgreSQL
	// volume. Zero value: 1Gi.
	DatabaseStorage string
}

// App is one app repository's spec and the AnalysisTemplate files its
// analysisTemplates name, by path.
type App struct {
	Spec      *appspec.Spec
	Templates map[string][]byte
}

func (o *Options) setDefaults() {
	o.Revision = cmp.Or(o.Revision, DefaultRevision)
	o.ChartPath = strings.Trim(cmp.Or(o.ChartPath, DefaultChartPath), "/")
	o.ArgoCDNamespace = cmp.Or(o.ArgoCDNamespace, DefaultArgoCDNamespace)
	o.Project = cmp.Or(o.Project, DefaultProject)
	o.DestinationServer = cmp.Or(o.DestinationServer, DefaultDestinationServer)
	o.NamespacePrefix = cmp.Or(o.NamespacePrefix, DefaultNamespacePrefix)
	o.HookImage = cmp.Or(o.HookImage, DefaultHookImage)
	o.DatabaseStorage = cmp.Or(o.DatabaseStorage, DefaultDatabaseStorage)
}

// maxEnvName is the longest environment name (manifest.ValidEnvName).
const maxEnvName = 40

var (
	// refRE is a conservative image reference or registry: no spaces,
	// quotes or control characters.
	refRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._:/@-]*$`)
	// quantityRE is a Kubernetes storage quantity.
	quantityRE = regexp.MustCompile(`^[1-9][0-9]*(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$`)
	// segmentRE is one directory of ChartPath.
	segmentRE = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)
)

// validate checks o (defaults applied); every problem is reported.
func (o *Options) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := checkURL("repository URL", o.RepoURL, true); err != nil {
		errs = append(errs, err)
	}
	if err := checkURL("reporter URL", o.ReporterURL, false); err != nil {
		errs = append(errs, err)
	} else if u, _ := url.Parse(o.ReporterURL); u.Path != "" && u.Path != "/" {
		add("reporter URL %q: want scheme://host[:port] without a path", o.ReporterURL)
	}
	if o.PrometheusAddress != "" {
		if err := checkURL("Prometheus address", o.PrometheusAddress, false); err != nil {
			errs = append(errs, err)
		}
	}
	if o.Registry != "" && (!refRE.MatchString(o.Registry) || strings.HasSuffix(o.Registry, "/")) {
		add("registry %q: want host[:port][/path]", o.Registry)
	}
	if !refRE.MatchString(o.HookImage) {
		add("hook image %q is not an image reference", o.HookImage)
	}
	if !quantityRE.MatchString(o.DatabaseStorage) {
		add("database storage %q is not a quantity like 1Gi", o.DatabaseStorage)
	}
	for _, seg := range strings.Split(o.ChartPath, "/") {
		if !segmentRE.MatchString(seg) || seg == "." || seg == ".." {
			add("chart path %q: want a relative path of [a-zA-Z0-9._-] directories", o.ChartPath)
			break
		}
	}
	if strings.HasPrefix(o.ChartPath+"/", "apps/") {
		add("chart path %q is inside apps/, the manifests' directory", o.ChartPath)
	}
	for what, name := range map[string]string{"Argo CD namespace": o.ArgoCDNamespace, "project": o.Project} {
		if !runtime.ValidName(name) {
			add("%s %q must be a DNS label", what, name)
		}
	}
	if err := checkURL("destination server", o.DestinationServer, false); err != nil {
		errs = append(errs, err)
	}
	if p := o.NamespacePrefix; !runtime.ValidName(p+"x") || len(p)+maxEnvName > runtime.MaxNameLen {
		add("namespace prefix %q: with an environment name of up to %d characters it must make a DNS label", p, maxEnvName)
	}
	slices.SortStableFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// checkURL accepts an absolute http(s) URL (or, for a repository, also an
// ssh or git one) with no space, quote or control character.
func checkURL(what, s string, repo bool) error {
	if s == "" {
		return fmt.Errorf("%s is required", what)
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '"' || r == '\'' || r == '\\' }) {
		return fmt.Errorf("%s %q has a space, a quote or a control character", what, s)
	}
	if repo && strings.HasPrefix(s, "git@") { // scp-like ssh address
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%s %q: %w", what, s, err)
	}
	schemes := []string{"http", "https"}
	if repo {
		schemes = append(schemes, "ssh", "git")
	}
	if !slices.Contains(schemes, u.Scheme) || u.Host == "" {
		return fmt.Errorf("%s %q: want an absolute %s URL", what, s, strings.Join(schemes, ", "))
	}
	return nil
}

// app is an App checked and ready to render.
type app struct {
	spec      *appspec.Spec
	templates []*analysis.Template // sorted by name
	// args are the names each template declares, by template name.
	args map[string][]string
}

// checkApps validates the apps and returns them by name.
func (o *Options) checkApps() (map[string]*app, error) {
	if len(o.Apps) == 0 {
		return nil, errors.New("no app specs given: pass each app repository's runway.yaml")
	}
	apps := map[string]*app{}
	var errs []error
	for _, in := range o.Apps {
		a, err := o.checkApp(in)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		name := a.spec.Name
		if apps[name] != nil {
			errs = append(errs, fmt.Errorf("app %s: given twice", name))
			continue
		}
		apps[name] = a
	}
	// Every app's AnalysisTemplates share the environment's namespace:
	// two apps owning one object would overwrite each other at every
	// sync. Names are <app>-<name>, which still may meet (app a's b-c and
	// app a-b's c): refuse that.
	owner := map[string]string{}
	for _, name := range sortedKeys(apps) {
		for _, t := range apps[name].templates {
			obj := templateObjectName(name, t.Metadata.Name)
			if prev, ok := owner[obj]; ok {
				errs = append(errs, fmt.Errorf("app %s: template %s would be the AnalysisTemplate %s, as one of app %s's is: rename one", name, t.Metadata.Name, obj, prev))
				continue
			}
			owner[obj] = name
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return apps, nil
}

// maxSubdomain is the longest DNS subdomain (RFC 1123), an object name.
const maxSubdomain = 253

// templateObjectName is the name of app's AnalysisTemplate name in the
// cluster: <app>-<name>, as the Argo Rollouts driver names them, so that
// the templates of apps sharing a namespace never meet. An app name (a
// DNS label of at most 40 characters) and a template name (a DNS label)
// always make a DNS subdomain; checkApp checks it all the same.
func templateObjectName(app, name string) string { return app + "-" + name }

func (o *Options) checkApp(in App) (*app, error) {
	s := in.Spec
	if s == nil {
		return nil, errors.New("an app without a spec")
	}
	if !appspec.ValidName(s.Name) {
		return nil, fmt.Errorf("app name %q must be a DNS label of at most 40 characters", s.Name)
	}
	if s.IsService() && s.Name != postgresName {
		return nil, fmt.Errorf("service %s: only the %s service is known", s.Name, postgresName)
	}
	if s.Name == postgresName && !s.IsService() {
		return nil, fmt.Errorf("app %s: the name is the database service's", s.Name)
	}
	a := &app{spec: s, args: map[string][]string{}}
	defined := map[string]bool{}
	for _, p := range s.AnalysisTemplates {
		data, ok := in.Templates[p]
		if !ok {
			return nil, fmt.Errorf("app %s: analysis template file %s was not read", s.Name, p)
		}
		ts, err := analysis.ParseFile(p, data)
		if err != nil {
			return nil, fmt.Errorf("app %s: %w", s.Name, err)
		}
		for _, t := range ts {
			name := t.Metadata.Name
			switch {
			case t.Kind != "AnalysisTemplate":
				return nil, fmt.Errorf("app %s: %s: %s %s: only kind AnalysisTemplate is exported (a cluster-wide template is not the app's to ship)", s.Name, p, t.Kind, name)
			case !runtime.ValidName(name):
				return nil, fmt.Errorf("app %s: %s: template name %q must be a DNS label", s.Name, p, name)
			case defined[name]:
				return nil, fmt.Errorf("app %s: %s: template %s is defined twice", s.Name, p, name)
			case len(templateObjectName(s.Name, name)) > maxSubdomain:
				return nil, fmt.Errorf("app %s: %s: template name %q: the AnalysisTemplate %s would be longer than %d characters", s.Name, p, name, templateObjectName(s.Name, name), maxSubdomain)
			}
			defined[name] = true
			for _, arg := range t.Spec.Args {
				if arg.Name == "stable-version" && arg.Value == nil {
					return nil, fmt.Errorf("app %s: template %s takes arg stable-version, which Argo Rollouts cannot fill with a version (only with a pod template hash): give it a value or drop it", s.Name, name)
				}
				a.args[name] = append(a.args[name], arg.Name)
			}
			a.templates = append(a.templates, t)
		}
	}
	if err := s.CheckTemplates(defined); err != nil {
		return nil, fmt.Errorf("app %s: %w", s.Name, err)
	}
	if len(a.templates) > 0 && o.PrometheusAddress == "" {
		return nil, fmt.Errorf("app %s has AnalysisTemplates: the Prometheus address is required", s.Name)
	}
	slices.SortFunc(a.templates, func(x, y *analysis.Template) int { return strings.Compare(x.Metadata.Name, y.Metadata.Name) })
	return a, nil
}

// checkManifests reports every app of a manifest that has no spec (the
// database service needs none) and every app whose name, with its
// environment's, would not fit Argo CD's names.
func (o *Options) checkManifests(apps map[string]*app) error {
	var errs []error
	for _, env := range sortedKeys(o.Manifests) {
		m := o.Manifests[env]
		if err := manifest.ValidEnvName(env); err != nil {
			errs = append(errs, fmt.Errorf("state repo: %w", err))
			continue
		}
		for _, name := range m.AppNames() {
			if apps[name] == nil && name != postgresName {
				errs = append(errs, fmt.Errorf("state repo: %s: unknown app %s: no runway.yaml of that name was given (known: %s)",
					manifestPath(env), name, strings.Join(known(apps), ", ")))
			}
		}
	}
	return errors.Join(errs...)
}

// manifestPath is env's file in the state repository.
func manifestPath(env string) string {
	if env == manifest.ProductionEnv {
		return manifest.ProductionPath
	}
	return manifest.StagingPath(env)
}

// known lists the app names, the database service included, sorted.
func known(apps map[string]*app) []string {
	names := []string{postgresName}
	for n := range apps {
		if n != postgresName {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// relUp is the path from a chart directory back to the repository root.
func (o *Options) relUp() string {
	n := len(strings.Split(path.Join(o.ChartPath, "charts", "x"), "/"))
	return strings.Repeat("../", n)
}
