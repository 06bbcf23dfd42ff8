package analysis

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/runway-cd/runway/internal/yamlfield"
)

// APIVersion is the only apiVersion of AnalysisTemplate documents Runway reads.
const APIVersion = "argoproj.io/v1alpha1"

// Template is an Argo Rollouts AnalysisTemplate (or ClusterAnalysisTemplate)
// in the subset Runway supports. Its fields keep Argo's names and JSON shape
// so the same document works on Kubernetes.
type Template struct {
	APIVersion string       `json:"apiVersion"`
	Kind       string       `json:"kind"`
	Metadata   TemplateMeta `json:"metadata"`
	Spec       TemplateSpec `json:"spec"`

	doc *yamlfield.Doc // the parsed document, to give errors their lines
}

// TemplateMeta is the part of Kubernetes object metadata a template may carry.
// Only Name is used; the others are accepted so real manifests parse.
type TemplateMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// TemplateSpec holds the arguments and metrics of a template.
type TemplateSpec struct {
	Args    []Arg        `json:"args,omitempty"`
	Metrics []MetricSpec `json:"metrics"`
}

// Arg declares an argument. A nil Value means the run must supply it.
type Arg struct {
	Name  string  `json:"name"`
	Value *string `json:"value,omitempty"`
}

// MetricSpec is one metric as written in a template. Every string field
// may use {{args.NAME}}; durations are Go/Argo durations ("10s", "1m"),
// counts and limits are integers or strings holding integers.
type MetricSpec struct {
	Name                  string       `json:"name"`
	Interval              string       `json:"interval,omitempty"`
	InitialDelay          string       `json:"initialDelay,omitempty"`
	Count                 *IntOrString `json:"count,omitempty"`
	SuccessCondition      string       `json:"successCondition,omitempty"`
	FailureCondition      string       `json:"failureCondition,omitempty"`
	FailureLimit          *IntOrString `json:"failureLimit,omitempty"`
	InconclusiveLimit     *IntOrString `json:"inconclusiveLimit,omitempty"`
	ConsecutiveErrorLimit *IntOrString `json:"consecutiveErrorLimit,omitempty"`
	Provider              ProviderSpec `json:"provider"`
}

// ProviderSpec selects the metric provider. Only prometheus is supported.
type ProviderSpec struct {
	Prometheus *PrometheusSpec `json:"prometheus,omitempty"`
}

// PrometheusSpec is a PromQL query and where to run it. An empty Address
// means Runway's embedded PromQL over its own metrics.
type PrometheusSpec struct {
	Address string `json:"address,omitempty"`
	Query   string `json:"query"`
}

// ParseTemplates parses one or more YAML documents separated by "---" lines,
// each an AnalysisTemplate. Empty documents are skipped. Any field Runway
// does not support is an error naming it, with its path and line.
func ParseTemplates(data []byte) ([]*Template, error) {
	return ParseFile("", data)
}

// ParseFile is ParseTemplates for the file named file (a path of the app
// repository, as listed in its spec's analysisTemplates): every error
// names the file, the line and the field path, as in
//
//	analysis/rate.yaml:14: spec.metrics[0].interval: "10 seconds" is not a duration like 10s or 1m
func ParseFile(file string, data []byte) ([]*Template, error) {
	if len(data) > MaxTemplateBytes {
		return nil, fmt.Errorf("parsing analysis templates%s: %d bytes, more than %d", inFile(file), len(data), MaxTemplateBytes)
	}
	var out []*Template
	for _, d := range splitDocuments(data) {
		t, err := parseDocument(file, d.data, d.offset)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("parsing analysis templates%s: no document found", inFile(file))
	}
	return out, nil
}

func inFile(file string) string {
	if file == "" {
		return ""
	}
	return " in " + file
}

// MaxTemplateBytes bounds what is parsed of a template file: templates are
// small, and YAML can be made to expand.
const MaxTemplateBytes = 1 << 20

// ParseTemplate parses exactly one AnalysisTemplate YAML (or JSON) document.
func ParseTemplate(doc []byte) (*Template, error) {
	if len(doc) > MaxTemplateBytes {
		return nil, fmt.Errorf("parsing analysis template: %d bytes, more than %d", len(doc), MaxTemplateBytes)
	}
	return parseDocument("", doc, 0)
}

// parseDocument parses one document that starts after offset lines of file.
func parseDocument(file string, data []byte, offset int) (*Template, error) {
	// Errors are located (file:line: field path: problem) and need no
	// other prefix.
	doc, err := yamlfield.Parse(file, data, offset)
	if err != nil {
		return nil, err
	}
	var generic any
	if err := yaml.Unmarshal(data, &generic); err != nil {
		return nil, doc.Locate(err)
	}
	if _, ok := generic.(map[string]any); !ok {
		return nil, doc.Errorf("", "the document is not an object (an AnalysisTemplate)")
	}
	// An Argo field Runway does not support (provider.web, dryRun,
	// args[].valueFrom...) is reported with its path, never ignored.
	if errs := doc.Check(reflect.TypeFor[Template](), "not supported by Runway"); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// The strict JSON-tag decoding is the source of truth.
	var t Template
	if err := yaml.UnmarshalStrict(data, &t); err != nil {
		return nil, doc.Locate(err)
	}
	t.doc = doc
	if err := t.validate(); err != nil {
		return nil, err
	}
	return &t, nil
}

// Errorf returns an error about the template's field at path ("metadata.name",
// "spec.metrics[0].provider.prometheus.address"), located at its line when
// the template was parsed from a file.
func (t *Template) Errorf(path, format string, args ...any) error {
	return t.errorf(path, format, args...)
}

func (t *Template) errorf(path, format string, args ...any) error {
	if t.doc == nil {
		return &yamlfield.Error{Path: path, Msg: fmt.Sprintf(format, args...)}
	}
	return t.doc.Errorf(path, format, args...)
}

func (t *Template) validate() error {
	if t.APIVersion != APIVersion {
		return t.errorf("apiVersion", "%q: want %q", t.APIVersion, APIVersion)
	}
	if t.Kind != "AnalysisTemplate" && t.Kind != "ClusterAnalysisTemplate" {
		return t.errorf("kind", "%q: want AnalysisTemplate or ClusterAnalysisTemplate", t.Kind)
	}
	if t.Metadata.Name == "" {
		return t.errorf("metadata.name", "is empty")
	}
	if raw, ok := t.Metadata.Annotations[AnnotationMinSamples]; ok {
		if _, err := parseMinSamples(raw); err != nil {
			return t.errorf(yamlfield.Key("metadata.annotations", AnnotationMinSamples), "%v", err)
		}
	}
	if _, err := parseMinSamplesWait(t.Metadata.Annotations); err != nil {
		return t.errorf(yamlfield.Key("metadata.annotations", AnnotationMinSamplesWait), "%v", err)
	}
	seen := map[string]bool{}
	for i, a := range t.Spec.Args {
		p := fmt.Sprintf("spec.args[%d].name", i)
		if a.Name == "" {
			return t.errorf(p, "is empty")
		}
		if seen[a.Name] {
			return t.errorf(p, "arg %q declared twice", a.Name)
		}
		seen[a.Name] = true
	}
	if len(t.Spec.Metrics) == 0 {
		return t.errorf("spec.metrics", "is empty")
	}
	names := map[string]bool{}
	for i, m := range t.Spec.Metrics {
		p := fmt.Sprintf("spec.metrics[%d]", i)
		if m.Name == "" {
			return t.errorf(p+".name", "is empty")
		}
		if names[m.Name] {
			return t.errorf(p+".name", "metric %q declared twice", m.Name)
		}
		names[m.Name] = true
		if m.Provider.Prometheus == nil {
			return t.errorf(p+".provider.prometheus", "is required (the only provider Runway supports)")
		}
		if strings.TrimSpace(m.Provider.Prometheus.Query) == "" {
			return t.errorf(p+".provider.prometheus.query", "is empty")
		}
		err := checkPlaceholders(m, seen)
		if err == nil {
			// Fields that use no argument can be checked now; the others
			// are checked once NewRun has substituted the arguments.
			_, err = resolveMetric(m, nil, true)
		}
		if err != nil {
			var fe *fieldError
			if errors.As(err, &fe) {
				return t.errorf(p+"."+fe.field, "%v", fe.err)
			}
			return t.errorf(p, "%v", err)
		}
	}
	return nil
}

// checkPlaceholders reports a {{...}} that does not name a declared arg.
func checkPlaceholders(m MetricSpec, declared map[string]bool) error {
	args := map[string]string{}
	for k := range declared {
		args[k] = ""
	}
	texts := map[string]string{
		"interval":         m.Interval,
		"initialDelay":     m.InitialDelay,
		"successCondition": m.SuccessCondition,
		"failureCondition": m.FailureCondition,
	}
	for field, v := range map[string]*IntOrString{
		"count":                 m.Count,
		"failureLimit":          m.FailureLimit,
		"inconclusiveLimit":     m.InconclusiveLimit,
		"consecutiveErrorLimit": m.ConsecutiveErrorLimit,
	} {
		if v != nil {
			texts[field] = string(*v)
		}
	}
	texts["provider.prometheus.address"] = m.Provider.Prometheus.Address
	texts["provider.prometheus.query"] = m.Provider.Prometheus.Query
	fieldNames := make([]string, 0, len(texts))
	for f := range texts {
		fieldNames = append(fieldNames, f)
	}
	slices.Sort(fieldNames)
	for _, f := range fieldNames {
		if _, err := substitute(texts[f], args); err != nil {
			return &fieldError{metric: m.Name, field: f, err: err}
		}
	}
	return nil
}

// fieldError is a problem with one field of a metric.
type fieldError struct {
	metric, field string
	err           error
}

func (e *fieldError) Error() string {
	return fmt.Sprintf("metric %q: %s: %v", e.metric, e.field, e.err)
}
func (e *fieldError) Unwrap() error { return e.err }

// document is one YAML document of a stream and the lines before it.
type document struct {
	data   []byte
	offset int
}

// splitDocuments splits a YAML stream on "---" separator lines, keeping
// where each document starts.
func splitDocuments(data []byte) []document {
	var docs []document
	var cur bytes.Buffer
	line, start := 0, 0
	flush := func() {
		if len(bytes.TrimSpace(stripComments(cur.Bytes()))) > 0 {
			docs = append(docs, document{data: bytes.Clone(cur.Bytes()), offset: start})
		}
		cur.Reset()
	}
	for l := range bytes.Lines(data) {
		line++
		trimmed := bytes.TrimRight(l, " \t\r\n")
		if bytes.Equal(trimmed, []byte("---")) || bytes.HasPrefix(trimmed, []byte("--- ")) {
			flush()
			start = line
			continue
		}
		cur.Write(l)
	}
	flush()
	return docs
}

// stripComments drops whole-line comments, so a document of only comments
// counts as empty.
func stripComments(doc []byte) []byte {
	var out []byte
	for line := range bytes.Lines(doc) {
		if bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			continue
		}
		out = append(out, line...)
	}
	return out
}
