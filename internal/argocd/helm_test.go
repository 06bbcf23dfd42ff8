package argocd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"testing"
	texttemplate "text/template"

	"sigs.k8s.io/yaml"
)

// This file renders the export's charts as Argo CD would have Helm render
// them, for the tests (Helm is not in the module graph). Helm's templates
// are text/template with Helm's functions; the charts use only these of
// them, with Helm's definitions: toJson (json.Marshal, "" on error),
// fail and Sprig's quote. Values are merged as Helm merges them (maps deeply, the rest
// replaced), options missingkey=zero and "<no value>" removed as Helm does.

var helmFuncs = texttemplate.FuncMap{
	"toJson": func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(b)
	},
	"fail": func(msg string) (string, error) { return "", fmt.Errorf("%s", msg) },
	// quote is Sprig's: each non-nil argument as Go's %q of its string
	// form, joined by spaces.
	"quote": func(args ...any) string {
		var out []string
		for _, a := range args {
			if a == nil {
				continue
			}
			s, ok := a.(string)
			if !ok {
				s = fmt.Sprintf("%v", a)
			}
			out = append(out, fmt.Sprintf("%q", s))
		}
		return strings.Join(out, " ")
	},
}

// helmTemplate renders chart (a directory of files) with values over its
// values.yaml, returning its objects sorted by file, or Helm's error.
func helmTemplate(files []File, chart string, values map[string]any) ([]map[string]any, error) {
	byPath := map[string][]byte{}
	for _, f := range files {
		byPath[f.Path] = f.Data
	}
	var defaults map[string]any
	if err := yaml.Unmarshal(byPath[path.Join(chart, "values.yaml")], &defaults); err != nil {
		return nil, fmt.Errorf("chart %s: values.yaml: %w", chart, err)
	}
	vals := merge(defaults, jsonRoundTrip(values))
	set := texttemplate.New("").Funcs(helmFuncs).Option("missingkey=zero")
	var names []string
	for _, p := range slices.Sorted(maps.Keys(byPath)) {
		if !strings.HasPrefix(p, chart+"/templates/") {
			continue
		}
		if _, err := set.New(p).Parse(string(byPath[p])); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", p, err)
		}
		names = append(names, p)
	}
	data := map[string]any{"Values": vals, "Release": map[string]any{"Name": path.Base(chart)}}
	var objs []map[string]any
	for _, n := range names {
		var b bytes.Buffer
		if err := set.ExecuteTemplate(&b, n, data); err != nil {
			return nil, fmt.Errorf("rendering %s: %w", n, err)
		}
		text := strings.ReplaceAll(b.String(), "<no value>", "")
		for _, doc := range strings.Split(text, "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var obj map[string]any
			if err := yaml.UnmarshalStrict([]byte(doc), &obj); err != nil {
				return nil, fmt.Errorf("%s renders invalid YAML: %w\n%s", n, err, doc)
			}
			objs = append(objs, obj)
		}
	}
	return objs, nil
}

// merge is Helm's coalescing of user values over a chart's defaults.
func merge(dst, src map[string]any) map[string]any {
	out := maps.Clone(dst)
	if out == nil {
		out = map[string]any{}
	}
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := out[k].(map[string]any); ok {
				out[k] = merge(dm, sm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// jsonRoundTrip gives v the types YAML values decode to.
func jsonRoundTrip(v map[string]any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

// appSetApplication is the Application the ApplicationSet's git files
// generator makes for the staging manifest file (a name in
// apps/staging/manifests) holding data: as in Argo CD with goTemplate,
// every string of the template is a Go template over the file's JSON
// and the path parameters. trimSuffix is Sprig's.
func appSetApplication(t *testing.T, appset map[string]any, file string, data []byte) map[string]any {
	t.Helper()
	var params map[string]any
	if err := json.Unmarshal(data, &params); err != nil {
		t.Fatal(err)
	}
	params["path"] = map[string]any{
		"path": "apps/staging/manifests", "filename": file, "basename": "manifests",
		"segments": []any{"apps", "staging", "manifests"},
	}
	funcs := texttemplate.FuncMap{"trimSuffix": func(suffix, s string) string { return strings.TrimSuffix(s, suffix) }}
	var walk func(v any) any
	walk = func(v any) any {
		switch v := v.(type) {
		case string:
			tpl, err := texttemplate.New("").Funcs(funcs).Option("missingkey=error").Parse(v)
			if err != nil {
				t.Fatalf("ApplicationSet template %q: %v", v, err)
			}
			var b bytes.Buffer
			if err := tpl.Execute(&b, params); err != nil {
				t.Fatalf("ApplicationSet template %q: %v", v, err)
			}
			return b.String()
		case map[string]any:
			out := map[string]any{}
			for k, e := range v {
				out[k] = walk(e)
			}
			return out
		case []any:
			out := make([]any, len(v))
			for i, e := range v {
				out[i] = walk(e)
			}
			return out
		}
		return v
	}
	tmpl := walk(appset["spec"].(map[string]any)["template"]).(map[string]any)
	tmpl["apiVersion"] = "argoproj.io/v1alpha1"
	tmpl["kind"] = "Application"
	return tmpl
}

// syncApplication renders what Argo CD syncs for app: its chart with its
// helm values (valueFiles from state, then valuesObject, then
// parameters), and, for an Application of Applications, what those sync
// in turn. It returns every object, the Applications included.
func syncApplication(t *testing.T, files []File, state map[string][]byte, o Options, app map[string]any) []map[string]any {
	t.Helper()
	src := app["spec"].(map[string]any)["source"].(map[string]any)
	chart := strings.TrimPrefix(src["path"].(string), o.ChartPath+"/")
	helm, _ := src["helm"].(map[string]any)
	values := map[string]any{}
	for _, vf := range asList(helm["valueFiles"]) {
		p := path.Clean(path.Join(src["path"].(string), vf.(string)))
		data, ok := state[p]
		if !ok {
			t.Fatalf("%s: values file %s (%s) not in the state repo", chart, vf, p)
		}
		var v map[string]any
		if err := yaml.Unmarshal(data, &v); err != nil {
			t.Fatalf("%s: values file %s: %v", chart, p, err)
		}
		values = merge(values, v)
	}
	if vo, ok := helm["valuesObject"].(map[string]any); ok {
		values = merge(values, vo)
	}
	for _, p := range asList(helm["parameters"]) {
		p := p.(map[string]any)
		var v any = p["value"]
		if p["forceString"] != true { // helm --set: true/false are booleans
			switch p["value"] {
			case "true":
				v = true
			case "false":
				v = false
			}
		}
		values[p["name"].(string)] = v
	}
	objs, err := helmTemplate(files, chart, values)
	if err != nil {
		t.Fatalf("rendering %s for %s: %v", chart, app["metadata"].(map[string]any)["name"], err)
	}
	ns := app["spec"].(map[string]any)["destination"].(map[string]any)["namespace"].(string)
	var all []map[string]any
	for _, obj := range objs {
		// Argo CD puts namespaced objects without one in the destination's.
		if meta := obj["metadata"].(map[string]any); meta["namespace"] == nil && obj["kind"] != "Namespace" {
			meta["namespace"] = ns
		}
		all = append(all, obj)
		if obj["kind"] == "Application" {
			all = append(all, syncApplication(t, files, state, o, obj)...)
		}
	}
	return all
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}
