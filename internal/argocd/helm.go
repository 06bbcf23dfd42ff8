package argocd

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// A chart template is written as an object whose per-environment values
// are markers (markerPrefix + n + markerSuffix, a plain YAML scalar) in
// place of Helm actions. The object is marshalled with sorted keys, every
// "{{" and "}}" of the literal text is escaped (an AnalysisTemplate's
// {{args.env}} must reach Argo Rollouts as written, and nothing in an app
// spec may become a Helm action), and only then is each marker replaced by
// its action. Every action ends in Helm's quote (Go's %q, whose escapes
// are all YAML double-quoted escapes of the same characters: a control
// character or a line break included), or toJson for a boolean, so a
// value from a manifest is always one YAML scalar and can never add a
// field. (toJson alone would not do: JSON leaves DEL and the C1 controls
// raw, which YAML refuses.)
const (
	markerPrefix = "zzrunwayvalue"
	markerSuffix = "zz"
)

var markerRE = regexp.MustCompile(markerPrefix + `[0-9]+` + markerSuffix)

// template collects the actions of one chart file.
type template struct {
	actions []string
}

// action returns the marker standing for a Helm action, such as
// `{{ .Values.env | quote }}`, that must print one YAML scalar.
func (t *template) action(a string) string {
	t.actions = append(t.actions, a)
	return markerPrefix + strconv.Itoa(len(t.actions)-1) + markerSuffix
}

// value is the marker of `{{ <pipeline> | quote }}`: a string.
func (t *template) value(pipeline string) string {
	return t.action("{{ " + pipeline + " | quote }}")
}

// boolean is the marker of `{{ <pipeline> | toJson }}`: true or false.
func (t *template) boolean(pipeline string) string {
	return t.action("{{ " + pipeline + " | toJson }}")
}

// escaper writes literal "{{" and "}}" as Helm actions printing them.
var escaper = strings.NewReplacer("{{", `{{ "{{" }}`, "}}", `{{ "}}" }}`)

// render writes obj as the text of a chart template. A non-empty cond is
// a Helm pipeline: the object is rendered only where it is true.
func (t *template) render(obj any, cond string) ([]byte, error) {
	b, err := yaml.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encoding chart template: %w", err)
	}
	text := escaper.Replace(string(b))
	var errs []string
	seen := 0
	text = markerRE.ReplaceAllStringFunc(text, func(m string) string {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(m, markerPrefix), markerSuffix))
		if err != nil || n >= len(t.actions) {
			errs = append(errs, m)
			return m
		}
		seen++
		return t.actions[n]
	})
	if len(errs) > 0 || seen != len(t.actions) {
		// A marker was cut, quoted or duplicated by the encoder, or the
		// literal text had one: the template would not say what it means.
		return nil, fmt.Errorf("encoding chart template: %d of %d value markers placed (stray: %v)", seen, len(t.actions), errs)
	}
	if cond != "" {
		text = "{{- if " + cond + " }}\n" + text + "{{- end }}\n"
	}
	return []byte(text), nil
}

// quote is a Go (and text/template) string literal.
func quote(s string) string { return strconv.Quote(s) }

// plain writes obj as YAML with sorted keys: a file that is not a template.
func plain(obj any) ([]byte, error) {
	b, err := yaml.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encoding %T: %w", obj, err)
	}
	return b, nil
}
