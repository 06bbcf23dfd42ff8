package argocd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/manifest"
)

func TestRenderRefuses(t *testing.T) {
	tests := []struct {
		name   string
		modify func(t *testing.T, o *Options)
		want   string
	}{
		{"no apps", func(t *testing.T, o *Options) { o.Apps = nil }, "no app specs given"},
		{"unknown app in a manifest", func(t *testing.T, o *Options) {
			o.Manifests[stagingEnv].Apps["billing"] = &manifest.App{Images: manifest.Images{Code: manifest.Image{Image: "billing", Tag: "v1"}}}
		}, "apps/staging/manifests/v20261201130000.json: unknown app billing: no runway.yaml of that name was given (known: homelabping, postgres)"},
		{"hostile environment name", func(t *testing.T, o *Options) {
			o.Manifests["Bad_Env"] = o.Manifests[stagingEnv]
		}, `environment name "Bad_Env" must be a DNS label`},
		{"app given twice", func(t *testing.T, o *Options) { o.Apps = append(o.Apps, o.Apps[0]) }, "app homelabping: given twice"},
		{"missing repository URL", func(t *testing.T, o *Options) { o.RepoURL = "" }, "repository URL is required"},
		{"relative repository URL", func(t *testing.T, o *Options) { o.RepoURL = "state.git" }, "want an absolute"},
		{"reporter URL with a path", func(t *testing.T, o *Options) { o.ReporterURL = "http://runway:8080/api" }, "without a path"},
		{"reporter URL with a quote", func(t *testing.T, o *Options) { o.ReporterURL = `http://runway"x` }, "a quote"},
		{"no Prometheus with analysis templates", func(t *testing.T, o *Options) { o.PrometheusAddress = "" }, "the Prometheus address is required"},
		{"hostile registry", func(t *testing.T, o *Options) { o.Registry = "reg.example.com/x\n- evil" }, "want host[:port][/path]"},
		{"chart path escaping the repository", func(t *testing.T, o *Options) { o.ChartPath = "../elsewhere" }, "chart path"},
		{"chart path among the manifests", func(t *testing.T, o *Options) { o.ChartPath = "apps/argocd" }, "inside apps/"},
		{"long namespace prefix", func(t *testing.T, o *Options) { o.NamespacePrefix = strings.Repeat("a", 30) + "-" }, "namespace prefix"},
		{"bad storage", func(t *testing.T, o *Options) { o.DatabaseStorage = "lots" }, "not a quantity"},
		{"template file not read", func(t *testing.T, o *Options) { o.Apps[0].Templates = nil }, "analysis template file analysis/maintain-success-rate.yaml was not read"},
		{"malformed template", func(t *testing.T, o *Options) {
			o.Apps[0].Templates["analysis/maintain-success-rate.yaml"] = []byte("kind: AnalysisTemplate\nmetadata: {name: x}\nspec: {metrics: [{name: m, bogus: 1}]}\n")
		}, "bogus"},
		{"stable-version arg", func(t *testing.T, o *Options) {
			o.Apps[0].Templates["analysis/maintain-success-rate.yaml"] = []byte(`apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: maintain-success-rate}
spec:
  args: [{name: stable-version}]
  metrics: [{name: m, successCondition: "result[0] > 0", provider: {prometheus: {query: "up"}}}]
`)
		}, "stable-version"},
		{"templates of two apps named alike", func(t *testing.T, o *Options) {
			// homelabping's maintain-success-rate and
			// homelabping-maintain's success-rate would both be the
			// AnalysisTemplate homelabping-maintain-success-rate.
			o.Apps = append(o.Apps, renamedApp(t, o.Apps[0], "homelabping-maintain", "success-rate"))
		}, "app homelabping-maintain: template success-rate would be the AnalysisTemplate homelabping-maintain-success-rate, as one of app homelabping's is"},
		{"service other than postgres", func(t *testing.T, o *Options) {
			s, err := appspec.Parse([]byte("kind: Service\nname: redis\nbuild: {pipeline: 'true'}\n"))
			if err != nil {
				t.Fatal(err)
			}
			o.Apps = append(o.Apps, App{Spec: s})
		}, "only the postgres service is known"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, _ := exampleOptions(t)
			tt.modify(t, &o)
			_, err := Render(o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Render: %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestLoadStateRefuses(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"no production manifest", map[string]string{}, "production.json"},
		{"malformed JSON", map[string]string{
			manifest.ProductionPath: `{"envname": "production", "apps": {`,
		}, "decoding manifest"},
		{"hostile app name", map[string]string{
			manifest.ProductionPath: `{"envname": "production", "apps": {"../x": {"images": {"code": {"image": "x"}}}}}`,
		}, `manifest app name "../x"`},
		{"hostile staging file name", map[string]string{
			manifest.ProductionPath:                   `{"envname": "production", "apps": {}}`,
			"apps/staging/manifests/Staging One.json": `{"envname": "x", "apps": {}}`,
		}, `"Staging One" must be a DNS label`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for p, data := range tt.files {
				file := filepath.Join(dir, filepath.FromSlash(p))
				if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := LoadState(context.Background(), dir, t.TempDir(), "")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadState: %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestLoadAppRefuses(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"no runway.yaml", map[string]string{}, "runway.yaml"},
		{"malformed YAML", map[string]string{"runway.yaml": "name: [x\n"}, "parsing app spec"},
		{"hostile name", map[string]string{"runway.yaml": "name: Evil_App\nbuild: {app: 'true'}\nrun: {command: [./x]}\n"}, "must be a DNS label"},
		{"template outside the repository", map[string]string{
			"runway.yaml": "name: web\nbuild: {app: 'true'}\nrun: {command: [./x]}\nanalysisTemplates: [../t.yaml]\n",
		}, "outside the repository"},
		{"template file missing", map[string]string{
			"runway.yaml": "name: web\nbuild: {app: 'true'}\nrun: {command: [./x]}\nanalysisTemplates: [t.yaml]\n",
		}, "t.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for p, data := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, p), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := LoadApp(dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadApp: %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// A manifest's values are data wherever Helm prints them: quotes, line
// breaks and braces in a version, a workflow or an image stay inside
// their one field.
func TestHostileManifestValuesStayValues(t *testing.T) {
	o, state := exampleOptions(t)
	files, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	hostile := "v1\"\n  evil: {{ fail \"x\" }}\n'"
	values := map[string]any{
		"env": "production", "production": true, "workflow": hostile,
		"image": hostile, "version": hostile, "revision": hostile,
	}
	objs, err := helmTemplate(files, "charts/homelabping", values)
	if err != nil {
		t.Fatal(err)
	}
	_ = state
	var sawRollout bool
	for _, obj := range objs {
		if obj["kind"] != "Rollout" {
			continue
		}
		sawRollout = true
		tpl := obj["spec"].(map[string]any)["template"].(map[string]any)
		labels := tpl["metadata"].(map[string]any)["labels"].(map[string]any)
		if labels[LabelVersion] != hostile {
			t.Errorf("version label = %q, want the value as given", labels[LabelVersion])
		}
		c := tpl["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
		if want := "registry.example.com/runway/homelabping:" + hostile; c["image"] != want {
			t.Errorf("image = %q, want %q", c["image"], want)
		}
		if _, ok := tpl["metadata"].(map[string]any)["evil"]; ok {
			t.Error("a value added a field")
		}
	}
	if !sawRollout {
		t.Fatal("no Rollout rendered for production")
	}
}

// The literal braces of an AnalysisTemplate reach Argo Rollouts as written.
func TestAnalysisTemplateBracesSurvive(t *testing.T) {
	o, _ := exampleOptions(t)
	files, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := helmTemplate(files, "charts/homelabping", map[string]any{"env": "production", "production": true})
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range objs {
		if obj["kind"] != "AnalysisTemplate" {
			continue
		}
		m := obj["spec"].(map[string]any)["metrics"].([]any)[0].(map[string]any)
		prom := m["provider"].(map[string]any)["prometheus"].(map[string]any)
		if q := prom["query"].(string); !strings.Contains(q, `env="{{args.env}}"`) {
			t.Errorf("query = %s, want {{args.env}} as written", q)
		}
		if prom["address"] != o.PrometheusAddress {
			t.Errorf("address = %v, want %s", prom["address"], o.PrometheusAddress)
		}
		return
	}
	t.Fatal("no AnalysisTemplate rendered for production")
}

// An app in a manifest that the export has no chart for fails the
// environment's rendering with a message naming it.
func TestEnvironmentChartRefusesUnknownApp(t *testing.T) {
	o, _ := exampleOptions(t)
	files, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]any{"env": "v1", "apps": map[string]any{"billing": map[string]any{}}}
	_, err = helmTemplate(files, "charts/environment", values)
	if err == nil || !strings.Contains(err.Error(), `app "billing" of the manifest has no chart`) {
		t.Fatalf("rendering: %v, want the unknown app named", err)
	}
}

// Staging runs a Deployment and no Rollout; production the reverse.
func TestWorkloadPerEnvironment(t *testing.T) {
	o, _ := exampleOptions(t)
	files, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		production bool
		want, not  string
	}{{false, "Deployment", "Rollout"}, {true, "Rollout", "Deployment"}} {
		objs, err := helmTemplate(files, "charts/homelabping", map[string]any{"env": "e", "production": tt.production, "workflow": "w"})
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[any]int{}
		for _, obj := range objs {
			kinds[obj["kind"]]++
		}
		if kinds[tt.want] != 1 || kinds[tt.not] != 0 {
			t.Errorf("production=%v: kinds %v, want one %s and no %s", tt.production, kinds, tt.want, tt.not)
		}
		if kinds["Job"] != 2 {
			t.Errorf("production=%v: %d hook Jobs, want 2", tt.production, kinds["Job"])
		}
	}
}

// Whatever a manifest holds, Helm's rendering of a chart stays valid
// YAML and every value lands, as it is, in its one field.
func FuzzManifestValues(f *testing.F) {
	o := testOptions()
	a, err := LoadApp("../../examples/homelabping")
	if err != nil {
		f.Fatal(err)
	}
	o.Apps = []App{a}
	files, err := Render(o)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"v20261201120000", "\"", "'\n: x", "{{ fail \"x\" }}", "\u2028", "a\x00b", "}}{{", "\x7f", "\u0085\u009f", "\ufeff\uffff", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		values := map[string]any{"env": "production", "production": true, "workflow": "w", "version": s, "revision": s}
		objs, err := helmTemplate(files, "charts/homelabping", values)
		if err != nil {
			t.Fatalf("rendering with %q: %v", s, err)
		}
		for _, obj := range objs {
			if obj["kind"] != "Rollout" {
				continue
			}
			meta := obj["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)
			// Values come through JSON or YAML, which cannot carry
			// invalid UTF-8: each invalid byte is U+FFFD by then.
			var b strings.Builder
			for _, r := range s { // ranging decodes each invalid byte to U+FFFD
				b.WriteRune(r)
			}
			want := b.String()
			if got := meta["labels"].(map[string]any)[LabelVersion]; got != want {
				t.Fatalf("version label %q, want %q", got, want)
			}
			if got := meta["annotations"].(map[string]any)[AnnotationRevision]; got != want {
				t.Fatalf("revision annotation %q, want %q", got, want)
			}
		}
	})
}

// renamedApp is a copy of a (the example's homelabping) named name, its
// template file also defining the templates extra.
func renamedApp(t *testing.T, a App, name string, extra ...string) App {
	t.Helper()
	spec := *a.Spec
	spec.Name = name
	templates := map[string][]byte{}
	for p, data := range a.Templates {
		for _, n := range extra {
			doc := strings.Replace(string(data), "name: maintain-success-rate", "name: "+n, 1)
			data = append(append(data, "\n---\n"...), doc...)
		}
		templates[p] = data
	}
	return App{Spec: &spec, Templates: templates}
}

// Two apps' templates of one name are two AnalysisTemplates, each named
// after its app, and each app's Rollout names its own.
func TestTemplatesNamedPerApp(t *testing.T) {
	o, _ := exampleOptions(t)
	o.Apps = append(o.Apps, renamedApp(t, o.Apps[0], "billing"))
	files, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	owner := map[string]string{}
	for _, app := range []string{"homelabping", "billing"} {
		objs, err := helmTemplate(files, "charts/"+app, map[string]any{"env": "production", "production": true})
		if err != nil {
			t.Fatal(err)
		}
		var templates, refs []string
		for _, obj := range objs {
			switch obj["kind"] {
			case "AnalysisTemplate":
				name := obj["metadata"].(map[string]any)["name"].(string)
				if prev, ok := owner[name]; ok {
					t.Errorf("AnalysisTemplate %s rendered by %s and %s", name, prev, app)
				}
				owner[name] = app
				templates = append(templates, name)
			case "Rollout":
				canary := obj["spec"].(map[string]any)["strategy"].(map[string]any)["canary"].(map[string]any)
				var ans []any
				for _, st := range canary["steps"].([]any) {
					if an, ok := st.(map[string]any)["analysis"]; ok {
						ans = append(ans, an)
					}
				}
				if bg, ok := canary["analysis"]; ok {
					ans = append(ans, bg)
				}
				for _, an := range ans {
					for _, ref := range an.(map[string]any)["templates"].([]any) {
						refs = append(refs, ref.(map[string]any)["templateName"].(string))
					}
				}
			}
		}
		want := app + "-maintain-success-rate"
		if len(templates) != 1 || templates[0] != want {
			t.Errorf("%s: AnalysisTemplates %v, want [%s]", app, templates, want)
		}
		if len(refs) == 0 {
			t.Errorf("%s: the Rollout names no template", app)
		}
		for _, r := range refs {
			if r != want {
				t.Errorf("%s: the Rollout names template %s, want %s", app, r, want)
			}
		}
	}
}
