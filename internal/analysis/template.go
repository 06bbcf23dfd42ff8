package analysis

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
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
// does not support is an error naming it, with its path.
func ParseTemplates(data []byte) ([]*Template, error) {
	if len(data) > maxTemplateBytes {
		return nil, fmt.Errorf("parsing analysis templates: %d bytes, more than %d", len(data), maxTemplateBytes)
	}
	var out []*Template
	for i, doc := range splitDocuments(data) {
		t, err := ParseTemplate(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("parsing analysis templates: no document found")
	}
	return out, nil
}

// maxTemplateBytes bounds what is parsed: templates are small, and YAML
// can be made to expand.
const maxTemplateBytes = 1 << 20

// ParseTemplate parses exactly one AnalysisTemplate YAML (or JSON) document.
func ParseTemplate(doc []byte) (*Template, error) {
	if len(doc) > maxTemplateBytes {
		return nil, fmt.Errorf("parsing analysis template: %d bytes, more than %d", len(doc), maxTemplateBytes)
	}
	var generic any
	if err := yaml.Unmarshal(doc, &generic); err != nil {
		return nil, fmt.Errorf("parsing analysis template: %w", err)
	}
	if _, ok := generic.(map[string]any); !ok {
		return nil, fmt.Errorf("parsing analysis template: document is not an object")
	}
	if err := checkFields("", generic, templateSchema()); err != nil {
		return nil, fmt.Errorf("parsing analysis template%s: %w", nameSuffix(generic), err)
	}
	var t Template
	if err := yaml.UnmarshalStrict(doc, &t); err != nil {
		return nil, fmt.Errorf("parsing analysis template%s: %w", nameSuffix(generic), err)
	}
	if err := t.validate(); err != nil {
		return nil, fmt.Errorf("analysis template %q: %w", t.Metadata.Name, err)
	}
	return &t, nil
}

func (t *Template) validate() error {
	if t.APIVersion != APIVersion {
		return fmt.Errorf("apiVersion %q: want %q", t.APIVersion, APIVersion)
	}
	if t.Kind != "AnalysisTemplate" && t.Kind != "ClusterAnalysisTemplate" {
		return fmt.Errorf("kind %q: want AnalysisTemplate or ClusterAnalysisTemplate", t.Kind)
	}
	if t.Metadata.Name == "" {
		return fmt.Errorf("metadata.name is empty")
	}
	if raw, ok := t.Metadata.Annotations[AnnotationMinSamples]; ok {
		if n, err := strconv.Atoi(strings.TrimSpace(raw)); err != nil || n < 1 {
			return fmt.Errorf("metadata.annotations[%s]: %q is not a positive integer", AnnotationMinSamples, raw)
		}
	}
	seen := map[string]bool{}
	for i, a := range t.Spec.Args {
		if a.Name == "" {
			return fmt.Errorf("spec.args[%d].name is empty", i)
		}
		if seen[a.Name] {
			return fmt.Errorf("spec.args: arg %q declared twice", a.Name)
		}
		seen[a.Name] = true
	}
	if len(t.Spec.Metrics) == 0 {
		return fmt.Errorf("spec.metrics is empty")
	}
	names := map[string]bool{}
	for i, m := range t.Spec.Metrics {
		if m.Name == "" {
			return fmt.Errorf("spec.metrics[%d].name is empty", i)
		}
		if names[m.Name] {
			return fmt.Errorf("spec.metrics: metric %q declared twice", m.Name)
		}
		names[m.Name] = true
		if m.Provider.Prometheus == nil {
			return fmt.Errorf("metric %q: provider.prometheus is required (the only provider Runway supports)", m.Name)
		}
		if strings.TrimSpace(m.Provider.Prometheus.Query) == "" {
			return fmt.Errorf("metric %q: provider.prometheus.query is empty", m.Name)
		}
		if err := checkPlaceholders(m, seen); err != nil {
			return err
		}
		// Fields that use no argument can be checked now; the others are
		// checked once NewRun has substituted the arguments.
		if _, err := resolveMetric(m, nil, true); err != nil {
			return err
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
			return fmt.Errorf("metric %q: %s: %w", m.Name, f, err)
		}
	}
	return nil
}

// splitDocuments splits a YAML stream on "---" separator lines.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if len(bytes.TrimSpace(stripComments(cur.Bytes()))) > 0 {
			docs = append(docs, bytes.Clone(cur.Bytes()))
		}
		cur.Reset()
	}
	for line := range bytes.Lines(data) {
		trimmed := bytes.TrimRight(line, " \t\r\n")
		if bytes.Equal(trimmed, []byte("---")) || bytes.HasPrefix(trimmed, []byte("--- ")) {
			flush()
			continue
		}
		cur.Write(line)
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

func nameSuffix(generic any) string {
	obj, _ := generic.(map[string]any)
	meta, _ := obj["metadata"].(map[string]any)
	if name, ok := meta["name"].(string); ok && name != "" {
		return fmt.Sprintf(" %q", name)
	}
	return ""
}
