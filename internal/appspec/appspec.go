// Package appspec reads the app spec, the runway.yaml file at the root of an
// app repository that tells Runway how to build the app and its pipeline
// artifact, how to run it, what it needs, how to migrate and test it and how
// to roll it out.
package appspec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// FileName is where the spec lives in an app repository and in every
// artifact built from it.
const FileName = "runway.yaml"

// Spec is a parsed app spec.
type Spec struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Name is the app's name: the key in manifests and the first label of
	// its gateway host.
	Name  string `json:"name"`
	Build Build  `json:"build"`
	Run   Run    `json:"run"`
	// Needs lists the services the app needs in each environment. The only
	// one known today is "postgres": a database and user of the app's name on
	// the environment's PostgreSQL server, passed in PG* and DATABASE_URL.
	Needs      []string `json:"needs,omitempty"`
	Migrations *Job     `json:"migrations,omitempty"`
	Tests      *Job     `json:"tests,omitempty"`
	Strategy   Strategy `json:"strategy,omitempty"`
	// AnalysisTemplates are paths, relative to the repository root, of Argo
	// Rollouts AnalysisTemplate documents that the canary steps refer to.
	AnalysisTemplates []string `json:"analysisTemplates,omitempty"`
}

// Build holds shell scripts (run with sh -c in a clean checkout of the
// pushed commit). Each writes its artifact's files to $RUNWAY_OUT.
type Build struct {
	App      string `json:"app"`
	Pipeline string `json:"pipeline,omitempty"`
}

// Run says how to run one replica of the app.
type Run struct {
	// Command is run from the app artifact's directory; a first element
	// starting with ./ names a file of the artifact.
	Command []string `json:"command"`
	// PortEnv names the variable that carries the replica's port. Zero
	// value: PORT.
	PortEnv string `json:"portEnv,omitempty"`
	// HealthPath must answer 2xx before a replica counts as up. Zero value:
	// /healthz.
	HealthPath string `json:"healthPath,omitempty"`
	// Replicas is the number of processes per version. Zero value: 1.
	Replicas int `json:"replicas,omitempty"`
	// Env adds variables to every replica.
	Env map[string]string `json:"env,omitempty"`
}

// Job is a command run from the pipeline artifact's directory against an
// environment: migrations or functional tests.
type Job struct {
	Command []string `json:"command"`
	// Timeout bounds one run. Zero value: 5m.
	Timeout Duration `json:"timeout,omitempty"`
}

// Strategy is the rollout strategy in production.
type Strategy struct {
	Canary *Canary `json:"canary,omitempty"`
}

// Canary has the shape of Argo Rollouts' spec.strategy.canary.
type Canary struct {
	Steps    []Step              `json:"steps,omitempty"`
	Analysis *BackgroundAnalysis `json:"analysis,omitempty"`
}

// Step is one canary step; exactly one field is set.
type Step struct {
	SetWeight *int          `json:"setWeight,omitempty"`
	Pause     *Pause        `json:"pause,omitempty"`
	Analysis  *StepAnalysis `json:"analysis,omitempty"`
}

// Pause waits Duration, or until promoted when Duration is zero.
type Pause struct {
	Duration Duration `json:"duration,omitempty"`
}

// StepAnalysis runs an analysis and waits for its outcome.
type StepAnalysis struct {
	Templates []TemplateRef `json:"templates"`
	Args      []Arg         `json:"args,omitempty"`
}

// BackgroundAnalysis runs beside the steps from StartingStep on.
type BackgroundAnalysis struct {
	Templates    []TemplateRef `json:"templates"`
	Args         []Arg         `json:"args,omitempty"`
	StartingStep int           `json:"startingStep,omitempty"`
}

// TemplateRef names an AnalysisTemplate.
type TemplateRef struct {
	TemplateName string `json:"templateName"`
}

// Arg is a value passed to the templates' {{args.NAME}}. Runway adds
// app, env, version, stable-version and canary-version on its own.
type Arg struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Duration is a time.Duration written as "10s", "1m30s".
type Duration struct{ time.Duration }

// UnmarshalJSON accepts a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		d.Duration = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: %w", s, err)
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + d.Duration.String() + `"`), nil
}

var nameRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$`)

// ValidName reports whether s may name an app or environment: a DNS label
// of lower-case letters, digits and hyphens, at most 40 characters.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Parse decodes and validates a spec. Unknown fields are errors.
func Parse(data []byte) (*Spec, error) {
	var s Spec
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return nil, fmt.Errorf("parsing app spec: %w", err)
	}
	s.setDefaults()
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("invalid app spec: %w", err)
	}
	return &s, nil
}

// Load reads FileName from dir.
func Load(dir string) (*Spec, error) {
	data, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		return nil, fmt.Errorf("reading app spec: %w", err)
	}
	return Parse(data)
}

func (s *Spec) setDefaults() {
	if s.Run.PortEnv == "" {
		s.Run.PortEnv = "PORT"
	}
	if s.Run.HealthPath == "" {
		s.Run.HealthPath = "/healthz"
	}
	if s.Run.Replicas == 0 {
		s.Run.Replicas = 1
	}
	for _, j := range []*Job{s.Migrations, s.Tests} {
		if j != nil && j.Timeout.Duration == 0 {
			j.Timeout.Duration = 5 * time.Minute
		}
	}
}

func (s *Spec) validate() error {
	var errs []error
	if s.APIVersion != "" && s.APIVersion != "runway.dev/v1alpha1" {
		errs = append(errs, fmt.Errorf("apiVersion %q is not runway.dev/v1alpha1", s.APIVersion))
	}
	if s.Kind != "" && s.Kind != "App" {
		errs = append(errs, fmt.Errorf("kind %q is not App", s.Kind))
	}
	if !ValidName(s.Name) {
		errs = append(errs, fmt.Errorf("name %q must be a DNS label ([a-z0-9-], at most 40 characters)", s.Name))
	}
	if strings.TrimSpace(s.Build.App) == "" {
		errs = append(errs, errors.New("build.app is required"))
	}
	if len(s.Run.Command) == 0 {
		errs = append(errs, errors.New("run.command is required"))
	}
	if s.Run.Replicas < 0 || s.Run.Replicas > 32 {
		errs = append(errs, fmt.Errorf("run.replicas %d is out of range 1..32", s.Run.Replicas))
	}
	if !strings.HasPrefix(s.Run.HealthPath, "/") {
		errs = append(errs, fmt.Errorf("run.healthPath %q must start with /", s.Run.HealthPath))
	}
	for _, n := range s.Needs {
		if n != "postgres" {
			errs = append(errs, fmt.Errorf("needs: unknown service %q (known: postgres)", n))
		}
	}
	for name, j := range map[string]*Job{"migrations": s.Migrations, "tests": s.Tests} {
		if j != nil && len(j.Command) == 0 {
			errs = append(errs, fmt.Errorf("%s.command is required", name))
		}
		if j != nil && j.Timeout.Duration < 0 {
			errs = append(errs, fmt.Errorf("%s.timeout is negative", name))
		}
		if j != nil && strings.TrimSpace(s.Build.Pipeline) == "" {
			errs = append(errs, fmt.Errorf("%s needs build.pipeline to build the pipeline artifact", name))
		}
	}
	if c := s.Strategy.Canary; c != nil {
		errs = append(errs, c.validate()...)
	}
	return errors.Join(errs...)
}

func (c *Canary) validate() []error {
	var errs []error
	for i, st := range c.Steps {
		n := 0
		if st.SetWeight != nil {
			n++
			if w := *st.SetWeight; w < 0 || w > 100 {
				errs = append(errs, fmt.Errorf("strategy.canary.steps[%d].setWeight %d is out of range 0..100", i, w))
			}
		}
		if st.Pause != nil {
			n++
			if st.Pause.Duration.Duration < 0 {
				errs = append(errs, fmt.Errorf("strategy.canary.steps[%d].pause.duration is negative", i))
			}
		}
		if st.Analysis != nil {
			n++
			if len(st.Analysis.Templates) == 0 {
				errs = append(errs, fmt.Errorf("strategy.canary.steps[%d].analysis.templates is empty", i))
			}
		}
		if n != 1 {
			errs = append(errs, fmt.Errorf("strategy.canary.steps[%d] must set exactly one of setWeight, pause, analysis", i))
		}
	}
	if a := c.Analysis; a != nil {
		if len(a.Templates) == 0 {
			errs = append(errs, errors.New("strategy.canary.analysis.templates is empty"))
		}
		if a.StartingStep < 0 || a.StartingStep > len(c.Steps) {
			errs = append(errs, fmt.Errorf("strategy.canary.analysis.startingStep %d is out of range 0..%d", a.StartingStep, len(c.Steps)))
		}
	}
	return errs
}
