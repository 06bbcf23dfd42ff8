package argocd

import (
	"bytes"
	"cmp"
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/runway-cd/runway/internal/manifest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// The example: examples/state's production (the database) with
// homelabping promoted into it, and one staging environment testing a
// newer homelabping, as Runway's pipeline writes them.
const (
	stagingEnv         = "v20261201130000"
	productionWorkflow = "homelabping-ab12c-production"
	stagingWorkflow    = "homelabping-cd34e"
)

func testOptions() Options {
	return Options{
		RepoURL:           "https://git.example.com/state.git",
		ReporterURL:       "http://runway.runway-system.svc:8080",
		PrometheusAddress: "http://prometheus.monitoring.svc:9090",
		Registry:          "registry.example.com/runway",
	}
}

// exampleState returns the example's manifests, parsed and as the state
// repository's files.
func exampleState(t *testing.T) (map[string]*manifest.Manifest, map[string][]byte) {
	t.Helper()
	envs, err := LoadState(context.Background(), "../../examples/state", t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	prod := envs[manifest.ProductionEnv]
	entry := func(version, commit, workflow string) *manifest.App {
		a := &manifest.App{}
		a.Images.Code = manifest.Image{Image: "runway.local/homelabping", Tag: version, Label: "main"}
		a.Images.Pipeline = &manifest.Image{Image: "runway.local/homelabping-pipeline", Tag: version, Label: "main"}
		a.Deploy.Revision = commit
		a.LastChangeDescription = "ping answers JSON"
		a.DeployingWorkflowName = workflow
		return a
	}
	prod.Apps["homelabping"] = entry("v20261201120000", "1111111111111111111111111111111111111111", productionWorkflow)
	prod.DeployingWorkflowName = productionWorkflow
	staging := prod.Clone()
	staging.EnvName = stagingEnv
	staging.DeployingWorkflowName = stagingWorkflow
	staging.Apps["homelabping"] = entry(stagingEnv, "2222222222222222222222222222222222222222", "")
	for _, a := range staging.Apps {
		a.DeployingWorkflowName = ""
	}
	envs = map[string]*manifest.Manifest{manifest.ProductionEnv: prod, stagingEnv: staging}
	files := map[string][]byte{}
	for env, m := range envs {
		data, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		files[manifestPath(env)] = data
	}
	return envs, files
}

// exampleOptions are testOptions with the example's apps and state.
func exampleOptions(t *testing.T) (Options, map[string][]byte) {
	t.Helper()
	o := testOptions()
	envs, files := exampleState(t)
	o.Manifests = envs
	for _, dir := range []string{"../../examples/homelabping", "../../examples/services/postgres-schema"} {
		a, err := LoadApp(dir)
		if err != nil {
			t.Fatal(err)
		}
		o.Apps = append(o.Apps, a)
	}
	return o, files
}

// renderedEnvironments is what Argo CD syncs for each environment of the
// example: its Application (from the ApplicationSet for staging) and
// everything under it, by environment.
func renderedEnvironments(t *testing.T, o Options, files []File, state map[string][]byte) map[string][]map[string]any {
	t.Helper()
	top := map[string]map[string]any{}
	for _, f := range files {
		if f.Path == "applicationset.yaml" || f.Path == "application-production.yaml" {
			var obj map[string]any
			if err := yaml.UnmarshalStrict(f.Data, &obj); err != nil {
				t.Fatalf("%s: %v", f.Path, err)
			}
			top[f.Path] = obj
		}
	}
	o.setDefaults()
	staging := appSetApplication(t, top["applicationset.yaml"], stagingEnv+".json", state[manifestPath(stagingEnv)])
	out := map[string][]map[string]any{}
	for env, app := range map[string]map[string]any{manifest.ProductionEnv: top["application-production.yaml"], stagingEnv: staging} {
		objs := append([]map[string]any{app}, syncApplication(t, files, state, o, app)...)
		slices.SortStableFunc(objs, func(a, b map[string]any) int {
			return cmp.Compare(objectKey(a), objectKey(b))
		})
		out[env] = objs
	}
	return out
}

// objectKey orders objects: namespaces first, then by kind, namespace, name.
func objectKey(obj map[string]any) string {
	meta := obj["metadata"].(map[string]any)
	first := "1"
	if obj["kind"] == "Namespace" {
		first = "0"
	}
	ns, _ := meta["namespace"].(string)
	return fmt.Sprintf("%s/%s/%s/%s", first, obj["kind"], ns, meta["name"])
}

func TestGolden(t *testing.T) {
	o, state := exampleOptions(t)
	files, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(files, again, func(a, b File) bool { return a.Path == b.Path && bytes.Equal(a.Data, b.Data) }) {
		t.Fatal("two renders of the same options differ")
	}
	golden := map[string][]byte{}
	for _, f := range files {
		golden[path.Join("export", f.Path)] = f.Data
	}
	for env, objs := range renderedEnvironments(t, o, files, state) {
		var b bytes.Buffer
		for _, obj := range objs {
			data, err := yaml.Marshal(obj)
			if err != nil {
				t.Fatal(err)
			}
			b.WriteString("---\n")
			b.Write(data)
		}
		golden[path.Join("rendered", env+".yaml")] = b.Bytes()
	}
	checkGolden(t, "testdata", golden)
}

// checkGolden compares want (paths under dir) with dir's files, or with
// -update writes them, removing files no longer rendered.
func checkGolden(t *testing.T, dir string, want map[string][]byte) {
	t.Helper()
	// Only the directories of want are golden (not testdata/fuzz).
	have := map[string]bool{}
	tops := map[string]bool{}
	for p := range want {
		top, _, _ := strings.Cut(p, "/")
		tops[top] = true
	}
	for top := range tops {
		_ = filepath.WalkDir(filepath.Join(dir, top), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				rel, _ := filepath.Rel(dir, p)
				have[filepath.ToSlash(rel)] = true
			}
			return nil
		})
	}
	for _, p := range slices.Sorted(func(yield func(string) bool) {
		for k := range want {
			if !yield(k) {
				return
			}
		}
	}) {
		file := filepath.Join(dir, filepath.FromSlash(p))
		delete(have, p)
		if *update {
			if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, want[p], 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(file)
		if err != nil {
			t.Errorf("%s: %v (run go test -update)", p, err)
			continue
		}
		if !bytes.Equal(got, want[p]) {
			t.Errorf("%s differs from the golden file (run go test -update and review the diff):\n%s", p, firstDiff(string(got), string(want[p])))
		}
	}
	for p := range have {
		if *update {
			_ = os.Remove(filepath.Join(dir, filepath.FromSlash(p)))
			continue
		}
		t.Errorf("%s: golden file no longer rendered (run go test -update)", p)
	}
}

func firstDiff(golden, got string) string {
	g, w := strings.Split(golden, "\n"), strings.Split(got, "\n")
	for i := range max(len(g), len(w)) {
		var a, b string
		if i < len(g) {
			a = g[i]
		}
		if i < len(w) {
			b = w[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\n golden: %s\n    got: %s", i+1, a, b)
		}
	}
	return ""
}
