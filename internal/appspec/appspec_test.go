package appspec

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
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
				want := Run{Command: []string{"./a"}, PortEnv: "HTTP_PORT", HealthPath: "/ready", Replicas: 3}
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

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{
			name: "unknown field is named",
			yaml: minimal + "  replica: 2\n",
			want: []string{"parsing app spec", `unknown field "replica"`},
		},
		{
			name: "unknown top-level field is named",
			yaml: minimal + "strateg: {}\n",
			want: []string{`unknown field "strateg"`},
		},
		{
			name: "not yaml",
			yaml: "name: [",
			want: []string{"parsing app spec"},
		},
		{
			name: "name with capitals",
			yaml: strings.Replace(minimal, "my-app", "My_App", 1),
			want: []string{"invalid app spec", `name "My_App" must be a DNS label`},
		},
		{
			name: "name missing",
			yaml: strings.Replace(minimal, "name: my-app", "", 1),
			want: []string{`name "" must be a DNS label`},
		},
		{
			name: "name too long",
			yaml: strings.Replace(minimal, "my-app", strings.Repeat("a", 41), 1),
			want: []string{"must be a DNS label"},
		},
		{
			name: "name ending in a hyphen",
			yaml: strings.Replace(minimal, "my-app", "app-", 1),
			want: []string{`name "app-" must be a DNS label`},
		},
		{
			name: "wrong apiVersion and kind",
			yaml: minimal + "apiVersion: v2\nkind: Deployment\n",
			want: []string{`apiVersion "v2"`, `kind "Deployment" is not App`},
		},
		{
			name: "build.app and run.command required",
			yaml: "name: x\n",
			want: []string{"build.app is required", "run.command is required"},
		},
		{
			name: "replicas out of range",
			yaml: minimal + "  replicas: 33\n",
			want: []string{"run.replicas 33 is out of range"},
		},
		{
			name: "negative replicas",
			yaml: minimal + "  replicas: -1\n",
			want: []string{"run.replicas -1 is out of range"},
		},
		{
			name: "healthPath without slash",
			yaml: minimal + "  healthPath: healthz\n",
			want: []string{`run.healthPath "healthz" must start with /`},
		},
		{
			name: "setWeight above 100",
			yaml: minimal + "strategy: {canary: {steps: [{setWeight: 101}]}}\n",
			want: []string{"strategy.canary.steps[0].setWeight 101 is out of range 0..100"},
		},
		{
			name: "negative setWeight",
			yaml: minimal + "strategy: {canary: {steps: [{pause: {}}, {setWeight: -5}]}}\n",
			want: []string{"strategy.canary.steps[1].setWeight -5 is out of range"},
		},
		{
			name: "step with two kinds",
			yaml: minimal + "strategy: {canary: {steps: [{setWeight: 20, pause: {duration: 1s}}]}}\n",
			want: []string{"strategy.canary.steps[0] must set exactly one of setWeight, pause, analysis"},
		},
		{
			name: "empty step",
			yaml: minimal + "strategy: {canary: {steps: [{setWeight: 20}, {}]}}\n",
			want: []string{"strategy.canary.steps[1] must set exactly one"},
		},
		{
			name: "negative pause",
			yaml: minimal + "strategy: {canary: {steps: [{pause: {duration: -1s}}]}}\n",
			want: []string{"steps[0].pause.duration is negative"},
		},
		{
			name: "analysis step without templates",
			yaml: minimal + "strategy: {canary: {steps: [{analysis: {templates: []}}]}}\n",
			want: []string{"steps[0].analysis.templates is empty"},
		},
		{
			name: "bad duration",
			yaml: minimal + "strategy: {canary: {steps: [{pause: {duration: 3 seconds}}]}}\n",
			want: []string{"parsing app spec", `invalid duration "3 seconds"`},
		},
		{
			name: "duration without unit",
			yaml: withPipeline + "tests: {command: [./t], timeout: 30}\n",
			want: []string{`invalid duration "30"`},
		},
		{
			name: "needs unknown service",
			yaml: minimal + "needs: [postgres, redis]\n",
			want: []string{`needs: unknown service "redis" (known: postgres)`},
		},
		{
			name: "tests without build.pipeline",
			yaml: minimal + "tests: {command: [./functest]}\n",
			want: []string{"tests needs build.pipeline"},
		},
		{
			name: "migrations without build.pipeline",
			yaml: minimal + "migrations: {command: [./migrate]}\n",
			want: []string{"migrations needs build.pipeline"},
		},
		{
			name: "job without command",
			yaml: withPipeline + "migrations: {timeout: 1m}\n",
			want: []string{"migrations.command is required"},
		},
		{
			name: "startingStep beyond the steps",
			yaml: minimal + "strategy: {canary: {steps: [{setWeight: 50}, {pause: {}}], analysis: {templates: [{templateName: t}], startingStep: 3}}}\n",
			want: []string{"strategy.canary.analysis.startingStep 3 is out of range 0..2"},
		},
		{
			name: "negative startingStep",
			yaml: minimal + "strategy: {canary: {analysis: {templates: [{templateName: t}], startingStep: -1}}}\n",
			want: []string{"startingStep -1 is out of range 0..0"},
		},
		{
			name: "background analysis without templates",
			yaml: minimal + "strategy: {canary: {analysis: {templates: []}}}\n",
			want: []string{"strategy.canary.analysis.templates is empty"},
		},
		{
			name: "every problem is reported at once",
			yaml: "name: X\nrun: {healthPath: nope}\nneeds: [redis]\n",
			want: []string{"must be a DNS label", "build.app is required", "run.command is required", "must start with /", "unknown service"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded with %+v; want an error containing %q", s, tt.want)
			}
			if s != nil {
				t.Errorf("Parse returned a spec with its error: %+v", s)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
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
		if !ValidName(s.Name) || s.Run.PortEnv == "" || s.Run.Replicas < 1 || !strings.HasPrefix(s.Run.HealthPath, "/") || len(s.Run.Command) == 0 {
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
