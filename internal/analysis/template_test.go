package analysis

import (
	"os"
	"strings"
	"testing"
	"time"
)

// doc builds a one-metric template whose metric body is the given lines.
func doc(metric string) string {
	return `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: t
spec:
  args:
  - name: app
  - name: count
    value: "3"
  metrics:
  - name: m
` + metric
}

const promQuery = `    provider:
      prometheus:
        query: up{app="{{args.app}}"}
`

func TestParseTemplate(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string // substring; "" means success
		assert  func(*testing.T, *Template)
	}{
		{
			name: "argo shapes: int and string counts, durations, address",
			yaml: doc(`    interval: 1m
    initialDelay: 30s
    count: 5
    failureLimit: "2"
    inconclusiveLimit: 1
    consecutiveErrorLimit: "{{args.count}}"
    successCondition: result[0] >= 0.95
    failureCondition: result[0] < 0.5
    provider:
      prometheus:
        address: http://prometheus.example:9090
        query: sum(up{app="{{args.app}}"})
`),
			assert: func(t *testing.T, tp *Template) {
				m := tp.Spec.Metrics[0]
				if m.Interval != "1m" || m.InitialDelay != "30s" || *m.Count != "5" || *m.FailureLimit != "2" || *m.ConsecutiveErrorLimit != "{{args.count}}" {
					t.Errorf("metric = %+v", m)
				}
				if m.Provider.Prometheus.Address != "http://prometheus.example:9090" {
					t.Errorf("address = %q", m.Provider.Prometheus.Address)
				}
			},
		},
		{
			name: "metadata namespace labels annotations accepted",
			yaml: strings.Replace(doc(promQuery), "  name: t\n", "  name: t\n  namespace: prod\n  labels: {a: b}\n  annotations: {c: d}\n", 1),
		},
		{
			name:    "web provider is named",
			yaml:    doc("    provider:\n      web:\n        url: http://x\n"),
			wantErr: "spec.metrics[0].provider.web",
		},
		{
			name:    "dryRun is named",
			yaml:    doc(promQuery) + "  dryRun:\n  - metricName: m\n",
			wantErr: "spec.dryRun",
		},
		{
			name:    "measurementRetention is named",
			yaml:    doc(promQuery) + "  measurementRetention:\n  - metricName: m\n    limit: 2\n",
			wantErr: "spec.measurementRetention",
		},
		{
			name:    "unknown metric field is named",
			yaml:    doc("    consecutiveSuccessLimit: 2\n" + promQuery),
			wantErr: "spec.metrics[0].consecutiveSuccessLimit",
		},
		{
			name:    "arg valueFrom is named",
			yaml:    strings.Replace(doc(promQuery), "  - name: app\n", "  - name: app\n    valueFrom:\n      podTemplateHashValue: Latest\n", 1),
			wantErr: "spec.args[0].valueFrom",
		},
		{
			name:    "prometheus timeout is named",
			yaml:    doc(promQuery + "        timeout: 10\n"),
			wantErr: "provider.prometheus.timeout",
		},
		{
			name:    "bad duration",
			yaml:    doc("    interval: 10 seconds\n" + promQuery),
			wantErr: `interval: "10 seconds" is not a duration`,
		},
		{
			name:    "duration without unit",
			yaml:    doc("    interval: 10\n" + promQuery),
			wantErr: "interval",
		},
		{
			name:    "count not an integer",
			yaml:    doc("    interval: 10s\n    count: many\n" + promQuery),
			wantErr: `count: "many" is not an integer`,
		},
		{
			name:    "negative failure limit",
			yaml:    doc("    failureLimit: -1\n" + promQuery),
			wantErr: "failureLimit: -1 is negative",
		},
		{
			name:    "count above one without interval",
			yaml:    doc("    count: 3\n" + promQuery),
			wantErr: "spec.metrics[0].count: 3 needs an interval",
		},
		{
			name:    "undeclared arg",
			yaml:    doc("    provider:\n      prometheus:\n        query: up{v=\"{{args.version}}\"}\n"),
			wantErr: "args.version",
		},
		{
			name:    "unsupported placeholder",
			yaml:    doc("    provider:\n      prometheus:\n        query: up{v=\"{{metadata.name}}\"}\n"),
			wantErr: "{{metadata.name}}",
		},
		{
			name:    "condition syntax error",
			yaml:    doc("    successCondition: result[0] >=\n" + promQuery),
			wantErr: "successCondition",
		},
		{
			name:    "condition not boolean",
			yaml:    doc("    failureCondition: result[0] + 1\n" + promQuery),
			wantErr: "failureCondition",
		},
		{
			name:    "no provider",
			yaml:    doc("    interval: 10s\n"),
			wantErr: "line 11: spec.metrics[0].provider.prometheus: is required",
		},
		{
			name:    "wrong kind",
			yaml:    strings.Replace(doc(promQuery), "kind: AnalysisTemplate", "kind: Rollout", 1),
			wantErr: `line 2: kind: "Rollout": want AnalysisTemplate`,
		},
		{
			name:    "wrong apiVersion",
			yaml:    strings.Replace(doc(promQuery), "v1alpha1", "v1", 1),
			wantErr: "apiVersion",
		},
		{
			name:    "not yaml object",
			yaml:    "- a\n- b\n",
			wantErr: "not an object",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, err := ParseTemplate([]byte(tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.assert != nil {
				tt.assert(t, tp)
			}
		})
	}
}

func TestParseTemplatesMultiDocument(t *testing.T) {
	stream := "# leading comment\n---\n" + doc(promQuery) + "---\n" +
		strings.Replace(strings.Replace(doc(promQuery), "name: t\n", "name: u\n", 1), "- name: m\n", "- name: n\n", 1) + "---\n"
	ts, err := ParseTemplates([]byte(stream))
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].Metadata.Name != "t" || ts[1].Metadata.Name != "u" {
		t.Fatalf("got %d templates", len(ts))
	}
	if _, err := ParseTemplates([]byte("---\n# nothing\n")); err == nil {
		t.Error("empty stream: want error")
	}
	bad := doc(promQuery) + "---\n" + doc("    provider:\n      job: {}\n")
	want := "line 28: spec.metrics[0].provider.job: not supported by Runway" // line 28 of the stream, in document 2
	if _, err := ParseTemplates([]byte(bad)); err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}

func TestMaintainSuccessRate(t *testing.T) {
	fixture, err := os.ReadFile("testdata/maintain-success-rate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(fixture) != MaintainSuccessRate {
		t.Fatal("MaintainSuccessRate differs from testdata/maintain-success-rate.yaml")
	}
	tp, err := ParseTemplate(fixture)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewRun("r", []*Template{tp}, map[string]string{"app": "homelabping"}); err == nil || !strings.Contains(err.Error(), `arg "version"`) {
		t.Fatalf("missing version: err = %v", err)
	}
	run, err := NewRun("r", []*Template{tp}, map[string]string{"app": "homelabping", "version": "v20240101000000", "unused": "x"})
	if err != nil {
		t.Fatal(err)
	}
	m := run.Metrics[0]
	want := Metric{
		Name: "success-rate", Interval: 10 * time.Second, FailureLimit: 3,
		ConsecutiveErrorLimit: DefaultConsecutiveErrorLimit, SuccessCondition: "result[0] <= 0.2",
	}
	m.Query = ""
	if m != want {
		t.Errorf("metric = %+v\nwant %+v", m, want)
	}
	q := run.Metrics[0].Query
	for _, s := range []string{`app="homelabping"`, `version="v20240101000000"`, `env="production"`, `code=~"5.."`} {
		if !strings.Contains(q, s) {
			t.Errorf("query lacks %s:\n%s", s, q)
		}
	}
	if strings.Contains(q, "{{") {
		t.Errorf("query still has placeholders:\n%s", q)
	}
}

func FuzzParseTemplates(f *testing.F) {
	f.Add([]byte(MaintainSuccessRate))
	f.Add([]byte(doc(promQuery)))
	f.Add([]byte("---\nkind: x\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, err := ParseTemplates(data)
		if err != nil {
			return
		}
		for _, tp := range ts {
			if tp.Metadata.Name == "" || len(tp.Spec.Metrics) == 0 {
				t.Fatalf("accepted an invalid template: %+v", tp)
			}
		}
	})
}

// TestParseFileErrors asserts the exact message of mistyped and hostile
// template files: the file, the line and the field path.
func TestParseFileErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"unsupported provider", doc("    provider:\n      web:\n        url: http://x\n"),
			"rate.yaml:13: spec.metrics[0].provider.web: not supported by Runway"},
		{"args valueFrom", strings.Replace(doc(promQuery), "  - name: app\n", "  - name: app\n    valueFrom: {secretKeyRef: {name: s}}\n", 1),
			"rate.yaml:8: spec.args[0].valueFrom: not supported by Runway"},
		{"count of the wrong shape", doc("    count: [1]\n" + promQuery),
			"rate.yaml:12: spec.metrics[0].count: want an integer or a string, got [1]"},
		{"metrics not a list", strings.Split(doc(""), "  metrics:")[0] + "  metrics: {name: m}\n",
			"rate.yaml:10: spec.metrics: want a list, got an object"},
		{"bad interval", doc("    interval: 10 seconds\n" + promQuery),
			`rate.yaml:12: spec.metrics[0].interval: "10 seconds" is not a duration like 10s or 1m`},
		{"undeclared arg", doc("    provider:\n      prometheus:\n        query: up{v=\"{{args.version}}\"}\n"),
			`rate.yaml:14: spec.metrics[0].provider.prometheus.query: {{args.version}}: the template declares no arg "version"`},
		{"condition syntax", doc("    successCondition: result[0] >=\n" + promQuery),
			`rate.yaml:12: spec.metrics[0].successCondition: "result[0] >=": unexpected token EOF (1:12)` + "\n | result[0] >=\n | ...........^"},
		{"empty query", doc("    provider:\n      prometheus:\n        query: \" \"\n"),
			"rate.yaml:14: spec.metrics[0].provider.prometheus.query: is empty"},
		{"duplicate metric", doc(promQuery + "  - name: m\n" + promQuery),
			`rate.yaml:15: spec.metrics[1].name: metric "m" declared twice`},
		{"not an object", "- a\n", "rate.yaml: the document is not an object (an AnalysisTemplate)"},
		{"not yaml", "a: [\n", "rate.yaml:1: invalid YAML: did not find expected node content"},
		{"second document, absolute line", doc(promQuery) + "---\n" + strings.Replace(doc(promQuery), "kind: AnalysisTemplate", "kind: Rollout", 1),
			`rate.yaml:17: kind: "Rollout": want AnalysisTemplate or ClusterAnalysisTemplate`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseFile("rate.yaml", []byte(tt.yaml))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("ParseFile error:\n%v\nwant:\n%s", err, tt.want)
			}
		})
	}
}
