package analysis

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultConsecutiveErrorLimit is Argo Rollouts' default consecutiveErrorLimit.
const DefaultConsecutiveErrorLimit = 4

// DefaultErrorRetryInterval is how long a metric without an interval waits
// before retrying after an Error measurement (Argo Rollouts' value).
const DefaultErrorRetryInterval = 10 * time.Second

// Metric is a metric of a [Run]: arguments substituted, durations and limits
// parsed, defaults applied. The zero value of each field means what it
// means in a template: no interval, no initial delay, limits 0.
type Metric struct {
	Name string
	// Interval between the end of a measurement and the start of the next;
	// 0 means a single measurement (or back-to-back retries after errors,
	// spaced by DefaultErrorRetryInterval).
	Interval     time.Duration
	InitialDelay time.Duration
	// Count is the number of non-error measurements to take. 0 means 1 when
	// Interval is 0, and "until the run is terminated" otherwise.
	Count                 int
	SuccessCondition      string
	FailureCondition      string
	FailureLimit          int
	InconclusiveLimit     int
	ConsecutiveErrorLimit int
	// Address of the Prometheus server; "" is the embedded provider.
	Address string
	Query   string
	// MinSamples, when above 0, is the number of samples SamplesQuery must
	// count before the metric is judged (from AnnotationMinSamples); until
	// then a measurement is NotCounted, for at most MinSamplesWait (from
	// AnnotationMinSamplesWait; 0 means DefaultMinSamplesWait). A caller
	// with a deadline of its own may lower MinSamplesWait to it.
	MinSamples     int
	SamplesQuery   string
	MinSamplesWait time.Duration
}

// effectiveCount returns how many measurements complete the metric, and
// false when it runs until terminated.
func (m Metric) effectiveCount() (int, bool) {
	switch {
	case m.Count > 0:
		return m.Count, true
	case m.Interval == 0:
		return 1, true
	default:
		return 0, false
	}
}

// Run is an analysis run: templates resolved with their arguments.
type Run struct {
	Name    string
	Metrics []Metric
	// StartedAt is when the run started; initialDelay counts from it. The
	// zero value means when Execute is called. Set it when resuming a run
	// after a restart so the delay is not served twice.
	StartedAt time.Time
	// Clock is the source of time; nil means the system clock.
	Clock Clock
}

// NewRun resolves templates with args into a run. Every argument a
// template declares must get a value, from args or from the template's
// default; args the templates do not declare are ignored, so a caller can
// pass the same standard set (app, env, version) to every template.
func NewRun(name string, templates []*Template, args map[string]string) (*Run, error) {
	if len(templates) == 0 {
		return nil, fmt.Errorf("analysis run %q: no template", name)
	}
	values, err := mergeArgs(templates, args)
	if err != nil {
		return nil, fmt.Errorf("analysis run %q: %w", name, err)
	}
	run := &Run{Name: name}
	owner := map[string]string{}
	for _, t := range templates {
		for _, spec := range t.Spec.Metrics {
			if prev, ok := owner[spec.Name]; ok {
				return nil, fmt.Errorf("analysis run %q: metric %q is in both templates %q and %q", name, spec.Name, prev, t.Metadata.Name)
			}
			owner[spec.Name] = t.Metadata.Name
			m, err := resolveMetric(spec, values, false)
			if err != nil {
				return nil, fmt.Errorf("analysis run %q: template %q: %w", name, t.Metadata.Name, err)
			}
			rule, err := minSamples(t, values)
			if err != nil {
				return nil, fmt.Errorf("analysis run %q: template %q: %w", name, t.Metadata.Name, err)
			}
			m.MinSamples, m.SamplesQuery, m.MinSamplesWait = rule.min, rule.query, rule.wait
			run.Metrics = append(run.Metrics, m)
		}
	}
	return run, nil
}

func mergeArgs(templates []*Template, args map[string]string) (map[string]string, error) {
	values := map[string]string{}
	declaredBy := map[string]string{}
	for _, t := range templates {
		for _, a := range t.Spec.Args {
			if _, ok := declaredBy[a.Name]; !ok {
				declaredBy[a.Name] = t.Metadata.Name
			}
			if _, ok := values[a.Name]; !ok && a.Value != nil {
				values[a.Name] = *a.Value
			}
		}
	}
	for k, v := range args {
		if _, ok := declaredBy[k]; ok {
			values[k] = v
		}
	}
	names := make([]string, 0, len(declaredBy))
	for k := range declaredBy {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if _, ok := values[k]; !ok {
			return nil, fmt.Errorf("arg %q of template %q has no value and none was given", k, declaredBy[k])
		}
	}
	return values, nil
}

// resolveMetric substitutes args into spec and parses it. With partial set,
// fields still holding a {{...}} placeholder are skipped: templates are
// checked that way at parse time, before arguments are known.
func resolveMetric(spec MetricSpec, args map[string]string, partial bool) (Metric, error) {
	r := resolver{args: args, partial: partial, metric: spec.Name}
	m := Metric{
		Name:                  spec.Name,
		Interval:              r.duration("interval", spec.Interval),
		InitialDelay:          r.duration("initialDelay", spec.InitialDelay),
		Count:                 r.integer("count", spec.Count, 0),
		SuccessCondition:      r.text("successCondition", spec.SuccessCondition),
		FailureCondition:      r.text("failureCondition", spec.FailureCondition),
		FailureLimit:          r.integer("failureLimit", spec.FailureLimit, 0),
		InconclusiveLimit:     r.integer("inconclusiveLimit", spec.InconclusiveLimit, 0),
		ConsecutiveErrorLimit: r.integer("consecutiveErrorLimit", spec.ConsecutiveErrorLimit, DefaultConsecutiveErrorLimit),
	}
	if p := spec.Provider.Prometheus; p != nil {
		m.Address = r.text("provider.prometheus.address", p.Address)
		m.Query = r.text("provider.prometheus.query", p.Query)
	}
	if r.err != nil {
		return Metric{}, r.err
	}
	if m.Count > 1 && m.Interval == 0 && !(partial && hasPlaceholder(spec.Interval)) {
		return Metric{}, &fieldError{metric: m.Name, field: "count", err: fmt.Errorf("%d needs an interval", m.Count)}
	}
	if _, err := compileConditions(m, partial); err != nil {
		var fe *fieldError
		if errors.As(err, &fe) {
			fe.metric = m.Name
			return Metric{}, fe
		}
		return Metric{}, fmt.Errorf("metric %q: %w", m.Name, err)
	}
	return m, nil
}

// resolver substitutes and parses fields, keeping the first error.
type resolver struct {
	args    map[string]string
	partial bool
	metric  string
	err     error
}

func (r *resolver) fail(field string, err error) {
	if r.err == nil {
		r.err = &fieldError{metric: r.metric, field: field, err: err}
	}
}

// text returns s with args substituted; in partial mode a templated
// field is returned unchanged.
func (r *resolver) text(field, s string) string {
	if r.partial && hasPlaceholder(s) {
		return s
	}
	out, err := substitute(s, r.args)
	if err != nil {
		r.fail(field, err)
	}
	return out
}

func (r *resolver) duration(field, s string) time.Duration {
	if r.partial && hasPlaceholder(s) {
		return 0
	}
	s = r.text(field, s)
	if s == "" || r.err != nil {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		r.fail(field, fmt.Errorf("%q is not a duration like 10s or 1m", s))
		return 0
	}
	if d < 0 {
		r.fail(field, fmt.Errorf("%q is negative", s))
		return 0
	}
	return d
}

func (r *resolver) integer(field string, v *IntOrString, def int) int {
	if v == nil {
		return def
	}
	if r.partial && hasPlaceholder(string(*v)) {
		return def
	}
	s := strings.TrimSpace(r.text(field, string(*v)))
	if r.err != nil {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		r.fail(field, fmt.Errorf("%q is not an integer", s))
		return def
	}
	if n < 0 {
		r.fail(field, fmt.Errorf("%d is negative", n))
		return def
	}
	return n
}

func hasPlaceholder(s string) bool { return strings.Contains(s, "{{") }

// substitute replaces every {{args.NAME}} (spaces inside the braces allowed)
// by the value of NAME; any other placeholder, or an arg that has no
// value, is an error naming it.
func substitute(s string, args map[string]string) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		j := strings.Index(s[i+2:], "}}")
		if j < 0 {
			return "", fmt.Errorf("unterminated placeholder %q", s[i:])
		}
		tag := strings.TrimSpace(s[i+2 : i+2+j])
		name, ok := strings.CutPrefix(tag, "args.")
		if !ok {
			return "", fmt.Errorf("unsupported placeholder {{%s}}: only {{args.NAME}} is supported", tag)
		}
		val, ok := args[name]
		if !ok {
			return "", fmt.Errorf("{{args.%s}}: the template declares no arg %q", name, name)
		}
		b.WriteString(s[:i])
		b.WriteString(val)
		s = s[i+2+j+2:]
	}
}
