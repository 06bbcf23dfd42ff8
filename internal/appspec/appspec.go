// Package appspec reads the app spec, the runway.yaml file at the root of an
// app repository that tells Runway how to build the app and its pipeline
// artifact, how to run it, what it needs, how to migrate and test it and how
// to roll it out.
//
// A service's own repository (the database's: schema, setup hooks, no app
// image) has a spec too, of kind Service: only its pipeline artifact, its
// migrations and its tests, since Runway runs the service itself.
package appspec

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"sigs.k8s.io/yaml"

	"github.com/runway-cd/runway/internal/runtime"
	"github.com/runway-cd/runway/internal/yamlfield"
)

// FileName is where the spec lives in an app repository and in every
// artifact built from it.
const FileName = "runway.yaml"

// The kinds of spec (Spec.Kind).
const (
	// KindApp is an app's repository: what runs, how, and how it rolls
	// out. The zero value of Kind means it.
	KindApp = "App"
	// KindService is a service's own repository, the database's: build.pipeline,
	// migrations and tests only. Its name is the service's entry in the
	// manifests (postgres).
	KindService = "Service"
)

// Spec is a parsed app spec.
type Spec struct {
	APIVersion string `json:"apiVersion"`
	// Kind is KindApp or KindService. Zero value: KindApp.
	Kind string `json:"kind"`
	// Name is the app's name: the key in manifests and the first label of
	// its gateway host. For a service, its entry's name in the manifests.
	Name  string `json:"name"`
	Build Build  `json:"build"`
	// Run is an app's; a service's is zero (not allowed).
	Run Run `json:"run,omitzero"`
	// Needs lists the services the app needs in each environment. The only
	// one known today is "postgres": a database and user of the app's name on
	// the environment's PostgreSQL server, passed in PG* and DATABASE_URL.
	Needs      []string `json:"needs,omitempty"`
	Migrations *Job     `json:"migrations,omitempty"`
	Tests      *Job     `json:"tests,omitempty"`
	Strategy   Strategy `json:"strategy,omitzero"`
	// AnalysisTemplates are paths, relative to the repository root, of Argo
	// Rollouts AnalysisTemplate documents that the canary steps refer to.
	AnalysisTemplates []string `json:"analysisTemplates,omitempty"`
	// ProgressDeadlineSeconds is Argo Rollouts' field: a canary replica
	// not ready for this long (or not started within it), aborts the
	// rollout. Zero value: 600.
	ProgressDeadlineSeconds int `json:"progressDeadlineSeconds,omitempty"`

	doc *yamlfield.Doc // the parsed file, to give errors their lines
}

// Build holds shell scripts (run with sh -c in a clean checkout of the
// pushed commit). Each writes its artifact's files to $RUNWAY_OUT.
type Build struct {
	// App is required for an app, not allowed for a service.
	App      string `json:"app,omitempty"`
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
	// ReadinessPath is probed every ReadinessPeriod for as long as a
	// replica runs: a replica failing it ReadinessFailureThreshold times in
	// a row gets no traffic until it passes again (Kubernetes' readiness
	// probe). Zero value: HealthPath.
	ReadinessPath string `json:"readinessPath,omitempty"`
	// ReadinessPeriod is the time between readiness probes. Zero value: 1s.
	ReadinessPeriod Duration `json:"readinessPeriod,omitzero"`
	// ReadinessFailureThreshold is how many failed probes in a row make a
	// replica unready. Zero value: 3.
	ReadinessFailureThreshold int `json:"readinessFailureThreshold,omitempty"`
	// LivenessPath, when set, is probed every LivenessPeriod: a replica
	// failing it LivenessFailureThreshold times in a row is killed and
	// restarted (Kubernetes' liveness probe). Zero value: no liveness
	// probe; only an exit restarts a replica. The other liveness fields
	// need it.
	LivenessPath string `json:"livenessPath,omitempty"`
	// LivenessPeriod is the time between liveness probes. Zero value: 5s.
	LivenessPeriod Duration `json:"livenessPeriod,omitzero"`
	// LivenessFailureThreshold is how many failed probes in a row restart
	// a replica. Zero value: 3.
	LivenessFailureThreshold int `json:"livenessFailureThreshold,omitempty"`
	// Replicas is the number of processes per version. Zero value: 1.
	Replicas int `json:"replicas,omitempty"`
	// Env adds variables to every replica.
	Env map[string]string `json:"env,omitempty"`
}

// Probe defaults (Kubernetes' failureThreshold; periods shorter than its
// 10s, since a local replica is cheap to probe) and bounds.
const (
	DefaultReadinessPeriod  = time.Second
	DefaultLivenessPeriod   = 5 * time.Second
	DefaultFailureThreshold = 3
	MinProbePeriod          = 100 * time.Millisecond
	MaxProbePeriod          = time.Hour
	MaxFailureThreshold     = 100
	MaxProbePath            = 1024 // bytes
)

// progressDeadlineSeconds' default (Argo Rollouts') and upper bound.
const (
	DefaultProgressDeadline = 600
	MaxProgressDeadline     = 86400
)

// Probes returns the replica's readiness probe and its liveness probe
// (nil without livenessPath), defaults applied, in the runtime's terms.
// The probe timeout is left to the runtime's default.
func (r Run) Probes() (readiness runtime.Probe, liveness *runtime.Probe) {
	readiness = runtime.Probe{
		Path:             cmp.Or(r.ReadinessPath, r.HealthPath, "/healthz"),
		Period:           cmp.Or(r.ReadinessPeriod.Duration, DefaultReadinessPeriod),
		FailureThreshold: cmp.Or(r.ReadinessFailureThreshold, DefaultFailureThreshold),
	}
	if r.LivenessPath == "" {
		return readiness, nil
	}
	return readiness, &runtime.Probe{
		Path:             r.LivenessPath,
		Period:           cmp.Or(r.LivenessPeriod.Duration, DefaultLivenessPeriod),
		FailureThreshold: cmp.Or(r.LivenessFailureThreshold, DefaultFailureThreshold),
	}
}

// IsService reports whether the spec is a service's (kind Service).
func (s *Spec) IsService() bool { return s.Kind == KindService }

// ProgressDeadline is progressDeadlineSeconds as a duration, its default
// applied.
func (s *Spec) ProgressDeadline() time.Duration {
	return time.Duration(cmp.Or(s.ProgressDeadlineSeconds, DefaultProgressDeadline)) * time.Second
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

// Parse decodes and validates a spec. Unknown fields are errors. Every
// error names the file, the line and the field path:
//
//	runway.yaml:7: run.replicaCount: unknown field
//
// several are joined, one a line, in file order.
func Parse(data []byte) (*Spec, error) {
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("parsing app spec: %s is %d bytes, more than %d", FileName, len(data), MaxBytes)
	}
	doc, err := yamlfield.Parse(FileName, data, 0)
	if err != nil {
		return nil, fmt.Errorf("parsing app spec: %w", err)
	}
	if errs := doc.Check(reflect.TypeFor[Spec](), "unknown field"); len(errs) > 0 {
		return nil, fmt.Errorf("parsing app spec: %w", errors.Join(errs...))
	}
	// The strict JSON-tag decoding is the source of truth; the walk above
	// only locates what it would refuse.
	var s Spec
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return nil, fmt.Errorf("parsing app spec: %w", doc.Locate(err))
	}
	s.doc = doc
	s.setDefaults()
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("invalid app spec: %w", err)
	}
	return &s, nil
}

// MaxBytes bounds the size of an app spec.
const MaxBytes = 1 << 20

// Load reads FileName from dir, a directory Runway wrote (an artifact). A
// checkout of an app repository is read by the build through os.Root,
// never following a symlink.
func Load(dir string) (*Spec, error) {
	data, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		return nil, fmt.Errorf("reading app spec: %w", err)
	}
	return Parse(data)
}

// Errorf returns an error about the spec's field at path
// ("analysisTemplates[1]"), located at its line when the spec was parsed
// from a file.
func (s *Spec) Errorf(path, format string, args ...any) error {
	return s.errorf(path, format, args...)
}

func (s *Spec) errorf(path, format string, args ...any) error {
	if s.doc == nil {
		return &yamlfield.Error{File: FileName, Path: path, Msg: fmt.Sprintf(format, args...)}
	}
	return s.doc.Errorf(path, format, args...)
}

// TemplateRefs are the templateName references of the canary steps and of
// the background analysis, each with its field path.
func (s *Spec) TemplateRefs() []Ref {
	c := s.Strategy.Canary
	if c == nil {
		return nil
	}
	var refs []Ref
	for i, st := range c.Steps {
		if st.Analysis == nil {
			continue
		}
		for j, t := range st.Analysis.Templates {
			refs = append(refs, Ref{Path: fmt.Sprintf("strategy.canary.steps[%d].analysis.templates[%d].templateName", i, j), Name: t.TemplateName})
		}
	}
	if c.Analysis != nil {
		for j, t := range c.Analysis.Templates {
			refs = append(refs, Ref{Path: fmt.Sprintf("strategy.canary.analysis.templates[%d].templateName", j), Name: t.TemplateName})
		}
	}
	return refs
}

// Ref is a reference to an AnalysisTemplate by name, at a field path.
type Ref struct {
	Path string
	Name string
}

// CheckTemplates reports every templateName that defined (the names the
// files of analysisTemplates define) does not hold, at its line, so a
// missing template fails the build rather than the canary in production.
func (s *Spec) CheckTemplates(defined map[string]bool) error {
	var errs []error
	for _, r := range s.TemplateRefs() {
		if !defined[r.Name] {
			errs = append(errs, s.errorf(r.Path, "%q is not defined by any file in analysisTemplates", r.Name))
		}
	}
	return errors.Join(errs...)
}

func (s *Spec) setDefaults() {
	for _, j := range []*Job{s.Migrations, s.Tests} {
		if j != nil && j.Timeout.Duration == 0 {
			j.Timeout.Duration = 5 * time.Minute
		}
	}
	if s.IsService() {
		return // no replicas, no rollout: nothing else applies
	}
	if s.Run.PortEnv == "" {
		s.Run.PortEnv = "PORT"
	}
	if s.Run.HealthPath == "" {
		s.Run.HealthPath = "/healthz"
	}
	if s.Run.Replicas == 0 {
		s.Run.Replicas = 1
	}
	if s.Run.ReadinessPath == "" {
		s.Run.ReadinessPath = s.Run.HealthPath
	}
	if s.Run.ReadinessPeriod.Duration == 0 {
		s.Run.ReadinessPeriod.Duration = DefaultReadinessPeriod
	}
	if s.Run.ReadinessFailureThreshold == 0 {
		s.Run.ReadinessFailureThreshold = DefaultFailureThreshold
	}
	// Liveness stays unset without its path: setting its period or
	// threshold alone is an error, not a probe.
	if s.Run.LivenessPath != "" {
		if s.Run.LivenessPeriod.Duration == 0 {
			s.Run.LivenessPeriod.Duration = DefaultLivenessPeriod
		}
		if s.Run.LivenessFailureThreshold == 0 {
			s.Run.LivenessFailureThreshold = DefaultFailureThreshold
		}
	}
	if s.ProgressDeadlineSeconds == 0 {
		s.ProgressDeadlineSeconds = DefaultProgressDeadline
	}
}

func (s *Spec) validate() error {
	var errs []error
	if s.APIVersion != "" && s.APIVersion != "runway.dev/v1alpha1" {
		errs = append(errs, s.errorf("apiVersion", "%q is not runway.dev/v1alpha1", s.APIVersion))
	}
	if s.Kind != "" && s.Kind != KindApp && s.Kind != KindService {
		errs = append(errs, s.errorf("kind", "%q is not %s or %s", s.Kind, KindApp, KindService))
	}
	if !ValidName(s.Name) {
		errs = append(errs, s.errorf("name", "%q must be a DNS label ([a-z0-9-], at most 40 characters)", s.Name))
	}
	if s.IsService() {
		errs = append(errs, s.validateService()...)
	} else {
		errs = append(errs, s.validateApp()...)
	}
	for _, j := range []struct {
		name string
		job  *Job
	}{{"migrations", s.Migrations}, {"tests", s.Tests}} {
		if j.job == nil {
			continue
		}
		if len(j.job.Command) == 0 {
			errs = append(errs, s.errorf(j.name+".command", "is required"))
		}
		if j.job.Timeout.Duration < 0 {
			errs = append(errs, s.errorf(j.name+".timeout", "is negative"))
		}
		if strings.TrimSpace(s.Build.Pipeline) == "" && !s.IsService() { // a service's is required, said once
			errs = append(errs, s.errorf(j.name, "needs build.pipeline to build the pipeline artifact"))
		}
	}
	sortByLine(errs)
	return errors.Join(errs...)
}

// validateApp checks what an app's spec has and a service's has not: the
// app artifact, how to run it and how to roll it out.
func (s *Spec) validateApp() []error {
	var errs []error
	if strings.TrimSpace(s.Build.App) == "" {
		errs = append(errs, s.errorf("build.app", "is required"))
	}
	if len(s.Run.Command) == 0 {
		errs = append(errs, s.errorf("run.command", "is required"))
	}
	if s.Run.Replicas < 0 || s.Run.Replicas > 32 {
		errs = append(errs, s.errorf("run.replicas", "%d is out of range 1..32", s.Run.Replicas))
	}
	errs = append(errs, s.validateProbes()...)
	if d := s.ProgressDeadlineSeconds; d < 1 || d > MaxProgressDeadline {
		errs = append(errs, s.errorf("progressDeadlineSeconds", "%d is out of range 1..%d", d, MaxProgressDeadline))
	}
	for i, n := range s.Needs {
		if n != "postgres" {
			errs = append(errs, s.errorf(fmt.Sprintf("needs[%d]", i), "unknown service %q (known: postgres)", n))
		}
	}
	for i, p := range s.AnalysisTemplates {
		if err := CheckRepoPath(p); err != nil {
			errs = append(errs, s.errorf(fmt.Sprintf("analysisTemplates[%d]", i), "%v", err))
		}
	}
	if c := s.Strategy.Canary; c != nil {
		errs = append(errs, s.validateCanary(c)...)
	}
	return errs
}

// validateService checks a service's spec (kind Service): Runway runs the
// service itself (the environment's PostgreSQL server), so the spec
// builds only the pipeline artifact, whose migrations and tests run
// against the databases of the environment's apps. Each field of an app's
// that would be ignored is an error, so that no one believes it applies.
func (s *Spec) validateService() []error {
	var errs []error
	notAllowed := func(field string, set bool, why string) {
		if set {
			errs = append(errs, s.errorf(field, "not allowed with kind %s: %s", KindService, why))
		}
	}
	notAllowed("build.app", s.Build.App != "",
		"a service has no app artifact (build.pipeline builds its migrations and tests)")
	notAllowed("run", s.has("run") || !reflect.ValueOf(s.Run).IsZero(),
		"a service has no replicas to run or probe (no command, readiness or liveness): Runway runs the environment's PostgreSQL server itself")
	notAllowed("needs", s.has("needs") || len(s.Needs) > 0,
		"a service's jobs get the database of every app that needs postgres (RUNWAY_DATABASE_APPS)")
	notAllowed("strategy", s.has("strategy") || s.Strategy.Canary != nil,
		"a service has no canary: its change reaches production as a new revision of its manifest entry")
	notAllowed("progressDeadlineSeconds", s.has("progressDeadlineSeconds") || s.ProgressDeadlineSeconds != 0,
		"a service has no canary")
	notAllowed("analysisTemplates", s.has("analysisTemplates") || len(s.AnalysisTemplates) > 0,
		"a service has no canary to analyse")
	if strings.TrimSpace(s.Build.Pipeline) == "" {
		errs = append(errs, s.errorf("build.pipeline", "is required with kind %s: it builds the service's migrations and tests", KindService))
	}
	return errs
}

// has reports whether the parsed file sets key at its top level, even to
// an empty value ("run: {}").
func (s *Spec) has(key string) bool {
	return s.doc != nil && s.doc.Line(key) > 0
}

// validateProbes checks the health, readiness and liveness fields of run.
func (s *Spec) validateProbes() []error {
	r := &s.Run
	var errs []error
	paths := []struct {
		field, path string
		check       bool
	}{
		{"run.healthPath", r.HealthPath, true},
		// Inherited from healthPath, it is checked there.
		{"run.readinessPath", r.ReadinessPath, r.ReadinessPath != r.HealthPath},
		{"run.livenessPath", r.LivenessPath, r.LivenessPath != ""},
	}
	for _, p := range paths {
		if !p.check {
			continue
		}
		if err := checkProbePath(p.path); err != nil {
			errs = append(errs, s.errorf(p.field, "%v", err))
		}
	}
	periods := []struct {
		field string
		d     time.Duration
	}{{"run.readinessPeriod", r.ReadinessPeriod.Duration}, {"run.livenessPeriod", r.LivenessPeriod.Duration}}
	for _, p := range periods {
		if p.d != 0 && (p.d < MinProbePeriod || p.d > MaxProbePeriod) {
			errs = append(errs, s.errorf(p.field, "%s is out of range %s..%s", p.d, MinProbePeriod, MaxProbePeriod))
		}
	}
	thresholds := []struct {
		field string
		n     int
	}{{"run.readinessFailureThreshold", r.ReadinessFailureThreshold}, {"run.livenessFailureThreshold", r.LivenessFailureThreshold}}
	for _, t := range thresholds {
		if t.n != 0 && (t.n < 1 || t.n > MaxFailureThreshold) {
			errs = append(errs, s.errorf(t.field, "%d is out of range 1..%d", t.n, MaxFailureThreshold))
		}
	}
	if r.LivenessPath == "" {
		if r.LivenessPeriod.Duration != 0 {
			errs = append(errs, s.errorf("run.livenessPeriod", "needs run.livenessPath"))
		}
		if r.LivenessFailureThreshold != 0 {
			errs = append(errs, s.errorf("run.livenessFailureThreshold", "needs run.livenessPath"))
		}
	}
	return errs
}

// checkProbePath reports whether p may be probed: an absolute URL path
// of at most MaxProbePath bytes, without spaces or control characters.
func checkProbePath(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q must start with /", p)
	case len(p) > MaxProbePath:
		return fmt.Errorf("is %d bytes, more than %d", len(p), MaxProbePath)
	case strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f || r == utf8.RuneError }):
		return fmt.Errorf("%q has a space or a control character", p)
	}
	return nil
}

// sortByLine orders located errors by line, keeping the order of equal
// ones; errors about absent fields come last.
func sortByLine(errs []error) {
	line := func(err error) int {
		var e *yamlfield.Error
		if errors.As(err, &e) {
			return e.Line
		}
		return 0
	}
	key := func(err error) int {
		if l := line(err); l > 0 {
			return l
		}
		return math.MaxInt // a field absent from the file: after the others
	}
	slices.SortStableFunc(errs, func(a, b error) int { return cmp.Compare(key(a), key(b)) })
}

// CheckRepoPath reports whether p may name a file of the repository: a
// relative slash-separated path that stays inside it.
func CheckRepoPath(p string) error {
	clean := path.Clean(p)
	switch {
	case p == "" || strings.ContainsRune(p, 0):
		return fmt.Errorf("%q is not a file path", p)
	case path.IsAbs(clean) || strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q is absolute: want a path relative to the repository root", p)
	case clean == "." || clean == ".." || strings.HasPrefix(clean, "../"):
		return fmt.Errorf("%q is outside the repository", p)
	case strings.Contains(p, `\`):
		return fmt.Errorf("%q has a backslash: want / between directories", p)
	}
	return nil
}

func (s *Spec) validateCanary(c *Canary) []error {
	var errs []error
	for i, st := range c.Steps {
		p := fmt.Sprintf("strategy.canary.steps[%d]", i)
		n := 0
		if st.SetWeight != nil {
			n++
			if w := *st.SetWeight; w < 0 || w > 100 {
				errs = append(errs, s.errorf(p+".setWeight", "%d is out of range 0..100", w))
			}
		}
		if st.Pause != nil {
			n++
			if st.Pause.Duration.Duration < 0 {
				errs = append(errs, s.errorf(p+".pause.duration", "is negative"))
			}
		}
		if st.Analysis != nil {
			n++
			if len(st.Analysis.Templates) == 0 {
				errs = append(errs, s.errorf(p+".analysis.templates", "is empty"))
			}
			for j, t := range st.Analysis.Templates {
				if t.TemplateName == "" {
					errs = append(errs, s.errorf(fmt.Sprintf("%s.analysis.templates[%d].templateName", p, j), "is required"))
				}
			}
		}
		if n != 1 {
			errs = append(errs, s.errorf(p, "must set exactly one of setWeight, pause, analysis"))
		}
	}
	if a := c.Analysis; a != nil {
		if len(a.Templates) == 0 {
			errs = append(errs, s.errorf("strategy.canary.analysis.templates", "is empty"))
		}
		for j, t := range a.Templates {
			if t.TemplateName == "" {
				errs = append(errs, s.errorf(fmt.Sprintf("strategy.canary.analysis.templates[%d].templateName", j), "is required"))
			}
		}
		if a.StartingStep < 0 || a.StartingStep > len(c.Steps) {
			errs = append(errs, s.errorf("strategy.canary.analysis.startingStep", "%d is out of range 0..%d", a.StartingStep, len(c.Steps)))
		}
	}
	return errs
}
