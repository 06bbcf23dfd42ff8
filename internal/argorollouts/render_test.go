package argorollouts

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/runway-cd/runway/internal/appspec"
	"github.com/runway-cd/runway/internal/build"
	"github.com/runway-cd/runway/internal/manifest"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files of testdata/")

const specYAML = `
name: web
build: {app: make}
run:
  command: [./web]
  replicas: 2
progressDeadlineSeconds: 120
analysisTemplates: [analysis/rate.yaml]
strategy:
  canary:
    steps:
    - setWeight: 20
    - pause: {duration: 1500ms}
    - analysis:
        templates: [{templateName: error-ratio}]
        args: [{name: threshold, value: "0.2"}, {name: env, value: prod-override}]
    - setWeight: 50
    - pause: {}
    analysis:
      templates: [{templateName: error-ratio}]
      startingStep: 1
`

const templateYAML = `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: error-ratio
  labels: {team: web}
spec:
  args:
  - name: version
  - name: threshold
    value: "0.5"
  metrics:
  - name: errors
    interval: 2s
    count: 3
    failureLimit: 0
    successCondition: result[0] <= {{args.threshold}}
    provider:
      prometheus:
        address: http://ignored:9090
        query: max(canary_error_ratio{version="{{args.version}}"})
`

func testArtifact(t *testing.T, spec, template string) build.Artifact {
	t.Helper()
	s, err := appspec.Parse([]byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "analysis"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "analysis", "rate.yaml"), []byte(template), 0o644); err != nil {
		t.Fatal(err)
	}
	return build.Artifact{App: "web", Version: "v2", Kind: build.App, Dir: dir, Spec: s}
}

func entry(t *testing.T, version string) *manifest.App {
	t.Helper()
	m, err := manifest.Parse([]byte(`{"envname":"production","apps":{"web":{"images":{"code":{"image":"web","image_tag":"` + version + `"}},"deploy":{"revision":"r-` + version + `"}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	return m.Apps["web"]
}

func testPod() corev1.PodTemplateSpec {
	var pod corev1.PodTemplateSpec
	pod.Labels = map[string]string{"extra": "kept"}
	pod.Spec.Containers = []corev1.Container{{
		Name: "app", Image: "127.0.0.1:5000/web@sha256:abc",
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
	}}
	return pod
}

// golden compares got (as indented JSON) with testdata/name, rewritten
// with -update.
func golden(t *testing.T, name string, got any) {
	t.Helper()
	data, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, '\n')
	path := filepath.Join("testdata", name)
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if !bytes.Equal(data, want) {
		t.Errorf("%s differs from the golden file (run with -update to accept):\n%s", name, data)
	}
}

func TestRenderRolloutGolden(t *testing.T) {
	art := testArtifact(t, specYAML, templateYAML)
	ro, err := renderRollout(rolloutInput{
		Env: "production", App: "web", Namespace: "runway-production", Version: "v2", Workflow: "wf-2",
		Entry: entry(t, "v2"), StableVersion: "v1", StableEntry: entry(t, "v1"), Spec: art.Spec, Pod: testPod(),
		Started: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC),
	})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "rollout.json", ro.Object)
}

func TestRenderTemplatesGolden(t *testing.T) {
	art := testArtifact(t, specYAML, templateYAML)
	ts, err := renderTemplates(art, "production", "runway-production", "http://127.0.0.1:9090")
	if err != nil {
		t.Fatal(err)
	}
	objs := make([]map[string]any, len(ts))
	for i, u := range ts {
		objs[i] = u.Object
	}
	golden(t, "analysistemplates.json", objs)
}

func TestRenderRollout(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		in      func(*rolloutInput)
		wantErr string
		assert  func(t *testing.T, ro *unstructured.Unstructured)
	}{
		{
			name: "selector never holds the version; the template does",
			spec: specYAML,
			assert: func(t *testing.T, ro *unstructured.Unstructured) {
				sel, _, _ := unstructured.NestedStringMap(ro.Object, "spec", "selector", "matchLabels")
				if _, ok := sel[LabelVersion]; ok || sel[LabelApp] != "web" || sel[LabelEnv] != "production" {
					t.Errorf("selector = %v", sel)
				}
				l, _, _ := unstructured.NestedStringMap(ro.Object, "spec", "template", "metadata", "labels")
				if l[LabelVersion] != "v2" || l["extra"] != "kept" || l[LabelManagedBy] != ManagedBy {
					t.Errorf("template labels = %v", l)
				}
			},
		},
		{
			name: "no canary strategy: no steps",
			spec: "name: web\nbuild: {app: make}\nrun: {command: [./web]}\n",
			assert: func(t *testing.T, ro *unstructured.Unstructured) {
				if steps := slice(ro.Object, "spec", "strategy", "canary", "steps"); len(steps) != 0 {
					t.Errorf("steps = %v", steps)
				}
				if n, _ := integer(ro.Object, "spec", "replicas"); n != 1 {
					t.Errorf("replicas = %d", n)
				}
				if n, _ := integer(ro.Object, "spec", "progressDeadlineSeconds"); n != 600 {
					t.Errorf("progressDeadlineSeconds = %d", n)
				}
			},
		},
		{
			name: "back on stable records its end",
			spec: specYAML,
			in: func(in *rolloutInput) {
				in.End = &endRecord{Version: "v2", Outcome: outcomeStable, Reported: true}
			},
			assert: func(t *testing.T, ro *unstructured.Unstructured) {
				e, ok := readEnd(ro)
				if !ok || e.Outcome != outcomeStable || !e.done() {
					t.Errorf("end = %+v, %v", e, ok)
				}
			},
		},
		{
			name: "first version: no stable entry annotation",
			spec: specYAML,
			in:   func(in *rolloutInput) { in.StableVersion, in.StableEntry = "", nil },
			assert: func(t *testing.T, ro *unstructured.Unstructured) {
				if _, ok := ro.GetAnnotations()[annStableEntry]; ok {
					t.Errorf("annotations = %v", ro.GetAnnotations())
				}
			},
		},
		{
			name:    "no spec",
			in:      func(in *rolloutInput) { in.Spec = nil },
			wantErr: "no app spec",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := rolloutInput{Env: "production", App: "web", Namespace: "ns", Version: "v2", StableVersion: "v1",
				StableEntry: entry(t, "v1"), Pod: testPod()}
			if tt.spec != "" {
				in.Spec = testArtifact(t, tt.spec, templateYAML).Spec
			}
			if tt.in != nil {
				tt.in(&in)
			}
			ro, err := renderRollout(in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.assert(t, ro)
		})
	}
}

func TestRenderTemplatesErrors(t *testing.T) {
	tests := []struct {
		name, template, want string
	}{
		{"unsupported provider", strings.Replace(templateYAML, "prometheus:", "web:", 1), "not supported"},
		{"not yaml", "{", "analysis/rate.yaml"},
		{"defined twice", templateYAML + "---\n" + templateYAML, "defined in analysis/rate.yaml and analysis/rate.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			art := testArtifact(t, specYAML, tt.template)
			_, err := renderTemplates(art, "production", "ns", "http://p")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestRenderService(t *testing.T) {
	svc := renderService("production", "web", "ns", testPod())
	if svc == nil || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 80 || svc.Spec.Ports[0].TargetPort.StrVal != "http" {
		t.Fatalf("service = %+v", svc)
	}
	if _, ok := svc.Spec.Selector[LabelVersion]; ok {
		t.Errorf("selector = %v", svc.Spec.Selector)
	}
	if renderService("production", "web", "ns", corev1.PodTemplateSpec{}) != nil {
		t.Error("a template without ports got a service")
	}
}

// yamlObject parses a YAML object (a Rollout, an AnalysisRun) for the
// status tests.
func yamlObject(t *testing.T, s string) *unstructured.Unstructured {
	t.Helper()
	data, err := yaml.YAMLToJSON([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(data); err != nil {
		t.Fatal(err)
	}
	return u
}
