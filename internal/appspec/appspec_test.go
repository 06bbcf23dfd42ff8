package appspec

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/runway-cd/runway/internal/runtime"
)

// exampleDir is the homelabping app shipped with Runway; its spec is the
// one users copy, so it must always parse.
const exampleDir = "../../examples/homelabping"

func TestLoadExample(t *testing.T) {
	s, err := Load(exampleDir)
	if err != nil {
		t.Fatalf("Load(%s): %v", exampleDir, err)
	}
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"apiVersion", s.APIVersion, "runway.dev/v1alpha1"},
		{"kind", s.Kind, "App"},
		{"name", s.Name, "homelabping"},
		{"build.app", s.Build.App, `go build -o "$RUNWAY_OUT/homelabping" .`},
		{"build.pipeline has both programs", strings.Count(s.Build.Pipeline, "$RUNWAY_OUT/"), 2},
		{"run.command", s.Run.Command, []string{"./homelabping"}},
		{"run.portEnv", s.Run.PortEnv, "PORT"},
		{"run.healthPath", s.Run.HealthPath, "/healthz"},
		{"run.replicas", s.Run.Replicas, 2},
		{"needs", s.Needs, []string{"postgres"}},
		{"migrations.command", s.Migrations.Command, []string{"./migrate"}},
		{"migrations.timeout defaulted", s.Migrations.Timeout.Duration, 5 * time.Minute},
		{"tests.command", s.Tests.Command, []string{"./functest", "-test.v", "-test.count=1"}},
		{"steps", len(s.Strategy.Canary.Steps), 9},
		{"first step weight", *s.Strategy.Canary.Steps[0].SetWeight, 20},
		{"second step pause", s.Strategy.Canary.Steps[1].Pause.Duration.Duration, 3 * time.Second},
		{"third step analysis", s.Strategy.Canary.Steps[2].Analysis.Templates, []TemplateRef{{TemplateName: "maintain-success-rate"}}},
		{"last step weight", *s.Strategy.Canary.Steps[6].SetWeight, 80},
		{"no background analysis", s.Strategy.Canary.Analysis == nil, true},
		{"analysisTemplates", s.AnalysisTemplates, []string{"analysis/maintain-success-rate.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("got %#v, want %#v", tt.got, tt.want)
			}
		})
	}
	for _, f := range s.AnalysisTemplates {
		if _, err := os.Stat(filepath.Join(exampleDir, filepath.FromSlash(f))); err != nil {
			t.Errorf("analysis template file listed in the example is missing: %v", err)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "reading app spec") {
		t.Fatalf("Load of an empty dir: err = %v, want a reading error", err)
	}
}

// minimal is the smallest valid spec; cases below add to it.
const minimal = `
name: my-app
build:
  app: make
run:
  command: [./my-app]
`

// withPipeline is minimal with a pipeline artifact, which jobs need.
const withPipeline = `
name: my-app
build:
  app: make
  pipeline: make tests
run:
  command: [./my-app]
`

func TestParseDefaults(t *testing.T) {
	tests := []struct {
		name   string
		yaml   string
		assert func(*testing.T, *Spec)
	}{
		{
			name: "zero values get defaults",
			yaml: minimal,
			assert: func(t *testing.T, s *Spec) {
				if s.Run.PortEnv != "PORT" || s.Run.HealthPath != "/healthz" || s.Run.Replicas != 1 {
					t.Errorf("run = %+v, want portEnv PORT, healthPath /healthz, replicas 1", s.Run)
				}
				if s.Migrations != nil || s.Tests != nil || s.Strategy.Canary != nil {
					t.Errorf("absent sections became non-nil: %+v", s)
				}
				if s.ProgressDeadlineSeconds != 600 || s.ProgressDeadline() != 10*time.Minute {
					t.Errorf("progressDeadlineSeconds = %d (%s), want 600", s.ProgressDeadlineSeconds, s.ProgressDeadline())
				}
				readiness, liveness := s.Run.Probes()
				want := runtime.Probe{Path: "/healthz", Period: time.Second, FailureThreshold: 3}
				if readiness != want || liveness != nil {
					t.Errorf("probes = %+v, %+v; want readiness %+v and no liveness", readiness, liveness, want)
				}
			},
		},
		{
			name: "readiness follows healthPath",
			yaml: minimal + "  healthPath: /up\n",
			assert: func(t *testing.T, s *Spec) {
				if readiness, _ := s.Run.Probes(); readiness.Path != "/up" || s.Run.ReadinessPath != "/up" {
					t.Errorf("readiness path %q (field %q), want healthPath /up", readiness.Path, s.Run.ReadinessPath)
				}
			},
		},
		{
			name: "probes and progress deadline as written",
			yaml: minimal + `  healthPath: /up
  readinessPath: /ready
  readinessPeriod: 250ms
  readinessFailureThreshold: 2
  livenessPath: /live?deep=1
  livenessPeriod: 10s
  livenessFailureThreshold: 6
progressDeadlineSeconds: 30
`,
			assert: func(t *testing.T, s *Spec) {
				readiness, liveness := s.Run.Probes()
				if want := (runtime.Probe{Path: "/ready", Period: 250 * time.Millisecond, FailureThreshold: 2}); readiness != want {
					t.Errorf("readiness = %+v, want %+v", readiness, want)
				}
				if want := (runtime.Probe{Path: "/live?deep=1", Period: 10 * time.Second, FailureThreshold: 6}); liveness == nil || *liveness != want {
					t.Errorf("liveness = %+v, want %+v", liveness, want)
				}
				if s.Run.HealthPath != "/up" || s.ProgressDeadline() != 30*time.Second {
					t.Errorf("healthPath %q, progress deadline %s; want /up and 30s", s.Run.HealthPath, s.ProgressDeadline())
				}
			},
		},
		{
			name: "liveness path alone gets the defaults",
			yaml: minimal + "  livenessPath: /livez\n",
			assert: func(t *testing.T, s *Spec) {
				_, liveness := s.Run.Probes()
				if want := (runtime.Probe{Path: "/livez", Period: 5 * time.Second, FailureThreshold: 3}); liveness == nil || *liveness != want {
					t.Errorf("liveness = %+v, want %+v", liveness, want)
				}
			},
		},
		{
			name: "job timeouts default to 5m",
			yaml: withPipeline + `  env: {GREETING: hi}
migrations:
  command: [./migrate]
tests:
  command: [./functest]
  timeout: 90s
`,
			assert: func(t *testing.T, s *Spec) {
				if got := s.Migrations.Timeout.Duration; got != 5*time.Minute {
					t.Errorf("migrations.timeout = %v, want 5m", got)
				}
				if got := s.Tests.Timeout.Duration; got != 90*time.Second {
					t.Errorf("tests.timeout = %v, want 90s as written", got)
				}
				if s.Run.Env["GREETING"] != "hi" {
					t.Errorf("run.env = %v", s.Run.Env)
				}
			},
		},
		{
			name: "explicit values are kept",
			yaml: `
name: a1
build: {app: make}
run: {command: [./a], portEnv: HTTP_PORT, healthPath: /ready, replicas: 3}
`,
			assert: func(t *testing.T, s *Spec) {
				want := Run{Command: []string{"./a"}, PortEnv: "HTTP_PORT", HealthPath: "/ready", Replicas: 3,
					// Defaults of the probes: readiness on healthPath, no liveness.
					ReadinessPath: "/ready", ReadinessPeriod: Duration{time.Second}, ReadinessFailureThreshold: 3}
				if !reflect.DeepEqual(s.Run, want) {
					t.Errorf("run = %+v, want %+v", s.Run, want)
				}
			},
		},
		{
			name: "pause without duration waits for promotion",
			yaml: minimal + `
strategy:
  canary:
    steps:
      - setWeight: 0
      - pause: {}
      - setWeight: 100
    analysis:
      templates: [{templateName: t}]
      startingStep: 3
      args: [{name: x, value: "1"}]
`,
			assert: func(t *testing.T, s *Spec) {
				c := s.Strategy.Canary
				if c.Steps[1].Pause == nil || c.Steps[1].Pause.Duration.Duration != 0 {
					t.Errorf("pause step = %+v, want zero duration", c.Steps[1].Pause)
				}
				if *c.Steps[0].SetWeight != 0 || *c.Steps[2].SetWeight != 100 {
					t.Errorf("weights 0 and 100 must be accepted: %+v", c.Steps)
				}
				if c.Analysis.StartingStep != 3 || c.Analysis.Args[0] != (Arg{Name: "x", Value: "1"}) {
					t.Errorf("background analysis = %+v", c.Analysis)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.assert(t, s)
		})
	}
}

// service is a service repository's spec, as examples/services has it.
const service = `apiVersion: runway.dev/v1alpha1
kind: Service
name: postgres
build:
  pipeline: |
    go build -o "$RUNWAY_OUT/migrate" ./cmd/migrate
    go test -c -o "$RUNWAY_OUT/functest" ./functest
migrations:
  command: [./migrate]
tests:
  command: [./functest, -test.v]
`

func TestParseService(t *testing.T) {
	tests := []struct {
		name   string
		yaml   string
		assert func(*testing.T, *Spec)
	}{
		{
			name: "jobs and pipeline, nothing of an app's",
			yaml: service,
			assert: func(t *testing.T, s *Spec) {
				if !s.IsService() || s.Kind != KindService || s.Name != "postgres" {
					t.Errorf("kind %q name %q, IsService %v; want a Service named postgres", s.Kind, s.Name, s.IsService())
				}
				if s.Migrations == nil || s.Migrations.Timeout.Duration != 5*time.Minute || s.Tests == nil || s.Tests.Timeout.Duration != 5*time.Minute {
					t.Errorf("jobs = %+v, %+v; want both with the 5m default", s.Migrations, s.Tests)
				}
				// No app defaults: nothing suggests a service has replicas.
				if !reflect.ValueOf(s.Run).IsZero() || s.ProgressDeadlineSeconds != 0 || s.Build.App != "" || s.Strategy.Canary != nil {
					t.Errorf("a service got an app's fields: run %+v, progressDeadlineSeconds %d, build.app %q", s.Run, s.ProgressDeadlineSeconds, s.Build.App)
				}
			},
		},
		{
			name: "no jobs yet",
			yaml: "kind: Service\nname: postgres\nbuild: {pipeline: \"true\"}\n",
			assert: func(t *testing.T, s *Spec) {
				if !s.IsService() || s.Migrations != nil || s.Tests != nil {
					t.Errorf("spec = %+v, want a service without jobs", s)
				}
			},
		},
		{
			name: "any manifest name",
			yaml: strings.Replace(service, "name: postgres", "name: db", 1),
			assert: func(t *testing.T, s *Spec) {
				if s.Name != "db" {
					t.Errorf("name = %q, want db", s.Name)
				}
			},
		},
		{
			name: "no kind is an app",
			yaml: minimal,
			assert: func(t *testing.T, s *Spec) {
				if s.IsService() {
					t.Error("a spec without kind is a service")
				}
			},
		},
		{
			name: "a marshalled service parses again",
			yaml: service,
			assert: func(t *testing.T, s *Spec) {
				out, err := yaml.Marshal(s)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := Parse(out); err != nil {
					t.Errorf("re-parsing %s: %v", out, err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.assert(t, s)
		})
	}
}

// serviceExampleDir is the service repository shipped with Runway.
const serviceExampleDir = "../../examples/services/postgres-schema"

func TestLoadServiceExample(t *testing.T) {
	s, err := Load(serviceExampleDir)
	if err != nil {
		t.Fatalf("Load(%s): %v", serviceExampleDir, err)
	}
	if !s.IsService() || s.Name != "postgres" || s.Migrations == nil || s.Tests == nil {
		t.Fatalf("spec = %+v; want a Service named postgres with migrations and tests", s)
	}
}

// TestParseErrors feeds hostile and mistyped specs; each error must be the
// exact message, naming the file, the line and the field path.
func TestParseErrors(t *testing.T) {
	const (
		parsing = "parsing app spec: "
		invalid = "invalid app spec: "
	)
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{
			name: "unknown field is named with its path and line",
			yaml: minimal + "  replicaCount: 2\n",
			want: parsing + "runway.yaml:7: run.replicaCount: unknown field",
		},
		{
			name: "unknown top-level field",
			yaml: minimal + "strateg: {}\n",
			want: parsing + "runway.yaml:7: strateg: unknown field",
		},
		{
			name: "unknown field deep in a step",
			yaml: minimal + "strategy:\n  canary:\n    steps:\n    - setWeight: 20\n    - pause: {duration: 1s, until: never}\n",
			want: parsing + "runway.yaml:11: strategy.canary.steps[1].pause.until: unknown field",
		},
		{
			name: "every unknown field at once",
			yaml: minimal + "  replica: 2\nbuidl: {}\n",
			want: parsing + "runway.yaml:7: run.replica: unknown field\nrunway.yaml:8: buidl: unknown field",
		},
		{
			name: "key set twice",
			yaml: minimal + "name: other\n",
			want: parsing + "runway.yaml:7: name: set twice",
		},
		{
			name: "not yaml",
			yaml: "name: [",
			want: parsing + "runway.yaml:1: invalid YAML: did not find expected node content",
		},
		{
			name: "a list where an object goes",
			yaml: "name: a\nbuild: [make]\nrun: {command: [./a]}\n",
			want: parsing + "runway.yaml:2: build: want an object, got a list",
		},
		{
			name: "a string where a list goes",
			yaml: "name: a\nbuild: {app: make}\nrun: {command: ./a}\n",
			want: parsing + `runway.yaml:3: run.command: want a list, got the string "./a"`,
		},
		{
			name: "a string where an integer goes",
			yaml: minimal + "  replicas: two\n",
			want: parsing + `runway.yaml:7: run.replicas: want an integer, got the string "two"`,
		},
		{
			name: "a quoted number where an integer goes",
			yaml: minimal + "  replicas: \"2\"\n",
			want: parsing + `runway.yaml:7: run.replicas: want an integer, got the string "2"`,
		},
		{
			name: "an object where a string goes",
			yaml: "name: {x: 1}\nbuild: {app: make}\nrun: {command: [./a]}\n",
			want: parsing + "runway.yaml:1: name: want a string, got an object",
		},
		{
			name: "bad duration",
			yaml: minimal + "strategy: {canary: {steps: [{pause: {duration: 3 seconds}}]}}\n",
			want: parsing + `runway.yaml:7: strategy.canary.steps[0].pause.duration: invalid duration "3 seconds": time: unknown unit " seconds" in duration "3 seconds"`,
		},
		{
			name: "duration without unit",
			yaml: withPipeline + "tests: {command: [./t], timeout: 30}\n",
			want: parsing + `runway.yaml:8: tests.timeout: invalid duration "30": time: missing unit in duration "30"`,
		},
		{
			name: "name with capitals",
			yaml: strings.Replace(minimal, "my-app", "My_App", 1),
			want: invalid + `runway.yaml:2: name: "My_App" must be a DNS label ([a-z0-9-], at most 40 characters)`,
		},
		{
			name: "name missing",
			yaml: strings.Replace(minimal, "name: my-app", "", 1),
			want: invalid + `runway.yaml: name: "" must be a DNS label ([a-z0-9-], at most 40 characters)`,
		},
		{
			name: "name too long",
			yaml: strings.Replace(minimal, "my-app", strings.Repeat("a", 41), 1),
			want: invalid + `runway.yaml:2: name: "` + strings.Repeat("a", 41) + `" must be a DNS label ([a-z0-9-], at most 40 characters)`,
		},
		{
			name: "wrong apiVersion and kind",
			yaml: minimal + "apiVersion: v2\nkind: Deployment\n",
			want: invalid + `runway.yaml:7: apiVersion: "v2" is not runway.dev/v1alpha1` + "\n" + `runway.yaml:8: kind: "Deployment" is not App or Service`,
		},
		{
			name: "required fields absent",
			yaml: "name: x\n",
			want: invalid + "runway.yaml: build.app: is required\nrunway.yaml: run.command: is required",
		},
		{
			name: "replicas out of range",
			yaml: minimal + "  replicas: 33\n",
			want: invalid + "runway.yaml:7: run.replicas: 33 is out of range 1..32",
		},
		{
			name: "negative replicas",
			yaml: minimal + "  replicas: -1\n",
			want: invalid + "runway.yaml:7: run.replicas: -1 is out of range 1..32",
		},
		{
			name: "healthPath without slash",
			yaml: minimal + "  healthPath: healthz\n",
			want: invalid + `runway.yaml:7: run.healthPath: "healthz" must start with /`,
		},
		{
			name: "readinessPath without slash",
			yaml: minimal + "  readinessPath: ready\n",
			want: invalid + `runway.yaml:7: run.readinessPath: "ready" must start with /`,
		},
		{
			name: "livenessPath with a space",
			yaml: minimal + "  livenessPath: \"/live now\"\n",
			want: invalid + `runway.yaml:7: run.livenessPath: "/live now" has a space or a control character`,
		},
		{
			name: "livenessPath too long",
			yaml: minimal + "  livenessPath: /" + strings.Repeat("a", MaxProbePath) + "\n",
			want: invalid + "runway.yaml:7: run.livenessPath: is 1025 bytes, more than 1024",
		},
		{
			name: "probe periods out of range",
			yaml: minimal + "  readinessPeriod: 10ms\n  livenessPath: /livez\n  livenessPeriod: 2h\n",
			want: invalid + "runway.yaml:7: run.readinessPeriod: 10ms is out of range 100ms..1h0m0s\n" +
				"runway.yaml:9: run.livenessPeriod: 2h0m0s is out of range 100ms..1h0m0s",
		},
		{
			name: "negative period",
			yaml: minimal + "  readinessPeriod: -1s\n",
			want: invalid + "runway.yaml:7: run.readinessPeriod: -1s is out of range 100ms..1h0m0s",
		},
		{
			name: "failure thresholds out of range",
			yaml: minimal + "  readinessFailureThreshold: -1\n  livenessPath: /livez\n  livenessFailureThreshold: 101\n",
			want: invalid + "runway.yaml:7: run.readinessFailureThreshold: -1 is out of range 1..100\n" +
				"runway.yaml:9: run.livenessFailureThreshold: 101 is out of range 1..100",
		},
		{
			name: "liveness settings without livenessPath",
			yaml: minimal + "  livenessPeriod: 5s\n  livenessFailureThreshold: 2\n",
			want: invalid + "runway.yaml:7: run.livenessPeriod: needs run.livenessPath\n" +
				"runway.yaml:8: run.livenessFailureThreshold: needs run.livenessPath",
		},
		{
			name: "progressDeadlineSeconds out of range",
			yaml: minimal + "progressDeadlineSeconds: 86401\n",
			want: invalid + "runway.yaml:7: progressDeadlineSeconds: 86401 is out of range 1..86400",
		},
		{
			name: "negative progressDeadlineSeconds",
			yaml: minimal + "progressDeadlineSeconds: -5\n",
			want: invalid + "runway.yaml:7: progressDeadlineSeconds: -5 is out of range 1..86400",
		},
		{
			name: "progressDeadlineSeconds as a duration",
			yaml: minimal + "progressDeadlineSeconds: 10m\n",
			want: parsing + `runway.yaml:7: progressDeadlineSeconds: want an integer, got the string "10m"`,
		},
		{
			name: "setWeight above 100",
			yaml: minimal + "strategy:\n  canary:\n    steps:\n    - setWeight: 20\n    - setWeight: 101\n",
			want: invalid + "runway.yaml:11: strategy.canary.steps[1].setWeight: 101 is out of range 0..100",
		},
		{
			name: "step with two kinds",
			yaml: minimal + "strategy: {canary: {steps: [{setWeight: 20, pause: {duration: 1s}}]}}\n",
			want: invalid + "runway.yaml:7: strategy.canary.steps[0]: must set exactly one of setWeight, pause, analysis",
		},
		{
			name: "empty step",
			yaml: minimal + "strategy:\n  canary:\n    steps:\n    - setWeight: 20\n    - {}\n",
			want: invalid + "runway.yaml:11: strategy.canary.steps[1]: must set exactly one of setWeight, pause, analysis",
		},
		{
			name: "negative pause",
			yaml: minimal + "strategy: {canary: {steps: [{pause: {duration: -1s}}]}}\n",
			want: invalid + "runway.yaml:7: strategy.canary.steps[0].pause.duration: is negative",
		},
		{
			name: "analysis step without templates",
			yaml: minimal + "strategy: {canary: {steps: [{analysis: {templates: []}}]}}\n",
			want: invalid + "runway.yaml:7: strategy.canary.steps[0].analysis.templates: is empty",
		},
		{
			name: "analysis step with an empty templateName",
			yaml: minimal + "strategy:\n  canary:\n    steps:\n    - analysis:\n        templates:\n        - templateName: \"\"\n",
			want: invalid + "runway.yaml:12: strategy.canary.steps[0].analysis.templates[0].templateName: is required",
		},
		{
			name: "needs unknown service",
			yaml: minimal + "needs:\n- postgres\n- redis\n",
			want: invalid + `runway.yaml:9: needs[1]: unknown service "redis" (known: postgres)`,
		},
		{
			name: "tests without build.pipeline",
			yaml: minimal + "tests: {command: [./functest]}\n",
			want: invalid + "runway.yaml:7: tests: needs build.pipeline to build the pipeline artifact",
		},
		{
			name: "job without command",
			yaml: withPipeline + "migrations: {timeout: 1m}\n",
			want: invalid + "runway.yaml:8: migrations.command: is required",
		},
		{
			name: "startingStep beyond the steps",
			yaml: minimal + "strategy: {canary: {steps: [{setWeight: 50}, {pause: {}}], analysis: {templates: [{templateName: t}], startingStep: 3}}}\n",
			want: invalid + "runway.yaml:7: strategy.canary.analysis.startingStep: 3 is out of range 0..2",
		},
		{
			name: "background analysis without templates",
			yaml: minimal + "strategy: {canary: {analysis: {templates: []}}}\n",
			want: invalid + "runway.yaml:7: strategy.canary.analysis.templates: is empty",
		},
		{
			name: "analysisTemplates entry outside the repository",
			yaml: minimal + "analysisTemplates:\n- ok.yaml\n- ../../etc/shadow\n- /etc/shadow\n",
			want: invalid + `runway.yaml:9: analysisTemplates[1]: "../../etc/shadow" is outside the repository` + "\n" +
				`runway.yaml:10: analysisTemplates[2]: "/etc/shadow" is absolute: want a path relative to the repository root`,
		},
		{
			name: "every problem is reported at once, in file order",
			yaml: "name: X\nrun: {healthPath: nope}\nneeds: [redis]\n",
			want: invalid + `runway.yaml:1: name: "X" must be a DNS label ([a-z0-9-], at most 40 characters)` + "\n" +
				"runway.yaml:2: run.command: is required\n" +
				`runway.yaml:2: run.healthPath: "nope" must start with /` + "\n" +
				`runway.yaml:3: needs[0]: unknown service "redis" (known: postgres)` + "\n" +
				"runway.yaml: build.app: is required",
		},
		{
			name: "kind is case-sensitive",
			yaml: strings.Replace(service, "kind: Service", "kind: service", 1),
			want: invalid + `runway.yaml:2: kind: "service" is not App or Service` + "\n" +
				"runway.yaml:4: build.app: is required\nrunway.yaml: run.command: is required",
		},
		{
			name: "service with an app's fields",
			yaml: strings.Replace(service, "build:\n", "build:\n  app: go build -o \"$RUNWAY_OUT/db\" .\n", 1) + `run:
  command: [./db]
  readinessPath: /ready
  livenessPath: /live
needs: [postgres]
strategy:
  canary:
    steps: [{setWeight: 50}]
progressDeadlineSeconds: 60
analysisTemplates: [analysis/rate.yaml]
`,
			want: invalid + "runway.yaml:5: build.app: not allowed with kind Service: a service has no app artifact (build.pipeline builds its migrations and tests)\n" +
				"runway.yaml:13: run: not allowed with kind Service: a service has no replicas to run or probe (no command, readiness or liveness): Runway runs the environment's PostgreSQL server itself\n" +
				"runway.yaml:17: needs: not allowed with kind Service: a service's jobs get the database of every app that needs postgres (RUNWAY_DATABASE_APPS)\n" +
				"runway.yaml:18: strategy: not allowed with kind Service: a service has no canary: its change reaches production as a new revision of its manifest entry\n" +
				"runway.yaml:21: progressDeadlineSeconds: not allowed with kind Service: a service has no canary\n" +
				"runway.yaml:22: analysisTemplates: not allowed with kind Service: a service has no canary to analyse",
		},
		{
			name: "service with an empty run",
			yaml: service + "run: {}\n",
			want: invalid + "runway.yaml:12: run: not allowed with kind Service: a service has no replicas to run or probe (no command, readiness or liveness): Runway runs the environment's PostgreSQL server itself",
		},
		{
			name: "service with only a liveness probe",
			yaml: service + "run:\n  livenessPath: /live\n",
			want: invalid + "runway.yaml:12: run: not allowed with kind Service: a service has no replicas to run or probe (no command, readiness or liveness): Runway runs the environment's PostgreSQL server itself",
		},
		{
			name: "service without build.pipeline",
			yaml: "kind: Service\nname: postgres\nmigrations: {command: [./migrate]}\n",
			want: invalid + "runway.yaml: build.pipeline: is required with kind Service: it builds the service's migrations and tests",
		},
		{
			name: "service with an empty build.pipeline",
			yaml: "kind: Service\nname: postgres\nbuild: {pipeline: \"  \"}\n",
			want: invalid + "runway.yaml:3: build.pipeline: is required with kind Service: it builds the service's migrations and tests",
		},
		{
			name: "service name not a DNS label",
			yaml: strings.Replace(service, "name: postgres", "name: Postgres_15", 1),
			want: invalid + `runway.yaml:3: name: "Postgres_15" must be a DNS label ([a-z0-9-], at most 40 characters)`,
		},
		{
			name: "service job without command",
			yaml: strings.Replace(service, "tests:\n  command: [./functest, -test.v]\n", "tests: {timeout: 1m}\n", 1),
			want: invalid + "runway.yaml:10: tests.command: is required",
		},
		{
			name: "too big",
			yaml: "#" + strings.Repeat("x", MaxBytes),
			want: parsing + "runway.yaml is 1048577 bytes, more than 1048576",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded with %+v; want %q", s, tt.want)
			}
			if s != nil {
				t.Errorf("Parse returned a spec with its error: %+v", s)
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n%s\nwant:\n%s", err, tt.want)
			}
		})
	}
}

func TestCheckTemplates(t *testing.T) {
	spec := minimal + `strategy:
  canary:
    steps:
    - setWeight: 20
    - analysis:
        templates:
        - templateName: maintain-success-rate
        - templateName: maintain-succes-rate
    analysis:
      templates:
      - templateName: latency
`
	s, err := Parse([]byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		defined map[string]bool
		want    string
	}{
		{"all defined", map[string]bool{"maintain-success-rate": true, "maintain-succes-rate": true, "latency": true}, ""},
		{"a typo", map[string]bool{"maintain-success-rate": true, "latency": true},
			`runway.yaml:14: strategy.canary.steps[1].analysis.templates[1].templateName: "maintain-succes-rate" is not defined by any file in analysisTemplates`},
		{"none defined", nil,
			`runway.yaml:13: strategy.canary.steps[1].analysis.templates[0].templateName: "maintain-success-rate" is not defined by any file in analysisTemplates` + "\n" +
				`runway.yaml:14: strategy.canary.steps[1].analysis.templates[1].templateName: "maintain-succes-rate" is not defined by any file in analysisTemplates` + "\n" +
				`runway.yaml:17: strategy.canary.analysis.templates[0].templateName: "latency" is not defined by any file in analysisTemplates`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.CheckTemplates(tt.defined)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("CheckTemplates:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"single letter", "a", true},
		{"letters digits hyphen", "my-app-2", true},
		{"40 characters", "a" + strings.Repeat("b", 39), true},
		{"41 characters", "a" + strings.Repeat("b", 40), false},
		{"empty", "", false},
		{"leading digit", "1app", false},
		{"leading hyphen", "-app", false},
		{"trailing hyphen", "app-", false},
		{"upper case", "App", false},
		{"underscore", "my_app", false},
		{"dot", "my.app", false},
		{"path", "../app", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidName(tt.in); got != tt.want {
				t.Errorf("ValidName(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestDurationJSON(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"seconds", `"10s"`, 10 * time.Second, false},
		{"compound", `"1m30s"`, 90 * time.Second, false},
		{"empty string is zero", `""`, 0, false},
		{"null is zero", `null`, 0, false},
		{"no unit", `"10"`, 0, true},
		{"word", `"soon"`, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Duration{Duration: time.Hour}
			err := d.UnmarshalJSON([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("UnmarshalJSON(%s) err = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if d.Duration != tt.want {
				t.Fatalf("UnmarshalJSON(%s) = %v, want %v", tt.in, d.Duration, tt.want)
			}
			b, err := d.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			var back Duration
			if err := back.UnmarshalJSON(b); err != nil || back != d {
				t.Fatalf("round trip through %s = %v, %v", b, back, err)
			}
		})
	}
}

// FuzzParse checks that Parse never panics and that what it accepts is
// valid and survives a round trip through YAML unchanged.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile(filepath.Join(exampleDir, FileName))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(minimal))
	f.Add([]byte(minimal + "strategy: {canary: {steps: [{setWeight: 20}, {pause: {duration: 1s}}], analysis: {templates: [{templateName: t}], startingStep: 1}}}\n"))
	f.Add([]byte(withPipeline + "tests: {command: [./t], timeout: 1m}\n"))
	f.Add([]byte(minimal + "  readinessPath: /r\n  readinessPeriod: 200ms\n  livenessPath: /l\n  livenessFailureThreshold: 5\nprogressDeadlineSeconds: 60\n"))
	f.Add([]byte(service))
	f.Add([]byte(service + "run: {}\n"))
	f.Add([]byte("name: [\n"))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			if s != nil {
				t.Fatalf("Parse returned a spec and an error: %v", err)
			}
			return
		}
		if s.IsService() {
			if !ValidName(s.Name) || !reflect.ValueOf(s.Run).IsZero() || s.Build.App != "" || strings.TrimSpace(s.Build.Pipeline) == "" ||
				s.Strategy.Canary != nil || len(s.AnalysisTemplates) > 0 || len(s.Needs) > 0 || s.ProgressDeadlineSeconds != 0 {
				t.Fatalf("Parse accepted an invalid service spec: %+v", s)
			}
		} else if readiness, _ := s.Run.Probes(); !ValidName(s.Name) || s.Run.PortEnv == "" || s.Run.Replicas < 1 || !strings.HasPrefix(s.Run.HealthPath, "/") || len(s.Run.Command) == 0 ||
			!strings.HasPrefix(readiness.Path, "/") || readiness.Period < MinProbePeriod || s.ProgressDeadlineSeconds < 1 {
			t.Fatalf("Parse accepted an invalid spec: %+v", s)
		}
		out, err := yaml.Marshal(s)
		if err != nil {
			t.Fatalf("marshalling an accepted spec: %v", err)
		}
		s2, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parsing an accepted spec failed: %v\n%s", err, out)
		}
		out2, err := yaml.Marshal(s2)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != string(out2) {
			t.Fatalf("round trip changed the spec:\n%s\n---\n%s", out, out2)
		}
	})
}
