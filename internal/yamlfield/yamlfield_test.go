package yamlfield

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

type dur struct{ time.Duration }

func (d *dur) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string")
	}
	v, err := time.ParseDuration(s)
	d.Duration = v
	return err
}

type item struct {
	Name  string `json:"name"`
	Count int    `json:"count,omitempty"`
	Wait  dur    `json:"wait,omitempty"`
}

type root struct {
	Name   string            `json:"name"`
	Items  []item            `json:"items,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	Nested *struct {
		On bool `json:"on"`
	} `json:"nested,omitempty"`
	Skipped string `json:"-"`
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name   string
		yaml   string
		offset int
		want   []string
	}{
		{"valid", "name: a\nitems:\n- name: b\n  count: 2\n  wait: 1s\nlabels: {x.y: z}\nnested: {on: true}\n", 0, nil},
		{"null everywhere is fine", "name: ~\nitems:\nnested:\n", 0, nil},
		{"numbers and booleans pass for strings", "name: 8080\nlabels: {a: true}\n", 0, nil},
		{"case-insensitive like encoding/json", "NAME: a\n", 0, nil},
		{"unknown field", "name: a\nitems:\n- name: b\n  cuont: 2\n", 0, []string{"f.yaml:4: items[0].cuont: unknown"}},
		{"json:\"-\" is unknown", "Skipped: x\n", 0, []string{"f.yaml:1: Skipped: unknown"}},
		{"offset is added", "name: a\nbad: 1\n", 10, []string{"f.yaml:12: bad: unknown"}},
		{"duplicate key", "name: a\nname: b\n", 0, []string{"f.yaml:2: name: set twice"}},
		{"duplicate map key", "labels:\n  a: x\n  a: y\n", 0, []string{`f.yaml:3: labels.a: set twice`}},
		{"list for object", "nested: [1]\n", 0, []string{"f.yaml:1: nested: want an object, got a list"}},
		{"object for list", "items: {name: a}\n", 0, []string{"f.yaml:1: items: want a list, got an object"}},
		{"string for int", "items:\n- count: lots\n", 0, []string{`f.yaml:2: items[0].count: want an integer, got the string "lots"`}},
		{"float for int", "items:\n- count: 1.5\n", 0, []string{"f.yaml:2: items[0].count: want an integer, got the number 1.5"}},
		{"string for bool", "nested: {on: maybe}\n", 0, []string{`f.yaml:1: nested.on: want a boolean, got the string "maybe"`}},
		{"object for string", "name: {a: b}\n", 0, []string{"f.yaml:1: name: want a string, got an object"}},
		{"custom type decodes itself", "items:\n- wait: soon\n", 0, []string{`f.yaml:2: items[0].wait: time: invalid duration "soon"`}},
		{"map key with a dot is quoted", "labels:\n  a.b: {x: 1}\n", 0, []string{`f.yaml:2: labels["a.b"]: want a string, got an object`}},
		{"alias resolved", "base: &b {name: x, cnt: 1}\n", 0, []string{"f.yaml:1: base: unknown"}},
		{"all at once, in order", "x: 1\nname: a\ny: 2\n", 0, []string{"f.yaml:1: x: unknown", "f.yaml:3: y: unknown"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Parse("f.yaml", []byte(tt.yaml), tt.offset)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range d.Check(reflect.TypeFor[root](), "unknown") {
				got = append(got, e.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("Check:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestLine(t *testing.T) {
	const doc = `name: a
items:
- name: b
- name: c
  count: 3
labels:
  x.y: z
`
	d, err := Parse("f.yaml", []byte(doc), 0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want int
	}{
		{"name", 1},
		{"items", 2},
		{"items[0]", 3},
		{"items[1].count", 5},
		{"items[1].missing", 4},
		{"items[9].name", 2},
		{`labels["x.y"]`, 7},
		{"absent", 0},
		{"", 0},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if got := d.Line(tt.path); got != tt.want {
				t.Fatalf("Line(%q) = %d, want %d", tt.path, got, tt.want)
			}
		})
	}
}

func TestParseSyntaxError(t *testing.T) {
	_, err := Parse("f.yaml", []byte("a: b\nc: [\n"), 4)
	var e *Error
	if !errors.As(err, &e) || e.Line != 6 || !strings.HasPrefix(err.Error(), "f.yaml:6: invalid YAML: ") {
		t.Fatalf("err = %v, want a located syntax error at line 6 (line 2 of the document)", err)
	}
}

func TestLocate(t *testing.T) {
	d, err := Parse("f.yaml", []byte("name: a\nitems:\n- name: b\n  extra: 1\n"), 0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"unknown field", errors.New(`error unmarshaling JSON: while decoding JSON: json: unknown field "extra"`), "f.yaml:4: items[0].extra: unknown field"},
		{"type error", &json.UnmarshalTypeError{Value: "number", Type: reflect.TypeFor[string](), Field: "name"}, "f.yaml:1: name: want string, got a JSON number"},
		{"anything else", errors.New("boom"), "f.yaml: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := d.Locate(tt.err).Error(); got != tt.want {
				t.Fatalf("Locate = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestErrorWithoutFile(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{Line: 3, Path: "a", Msg: "bad"}, "line 3: a: bad"},
		{Error{Path: "a", Msg: "bad"}, "a: bad"},
		{Error{File: "f", Msg: "bad"}, "f: bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v = %q, want %q", tt.e, got, tt.want)
		}
	}
}

func FuzzCheck(f *testing.F) {
	f.Add([]byte("name: a\nitems:\n- name: b\n  count: 2\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("<<: {name: a}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse("f.yaml", data, 0)
		if err != nil {
			return
		}
		for _, e := range d.Check(reflect.TypeFor[root](), "unknown") {
			if !strings.HasPrefix(e.Error(), "f.yaml") {
				t.Fatalf("error without the file: %v", e)
			}
		}
		_ = d.Line("items[0].name")
	})
}

// TestCheckBillionLaughs: aliases of aliases must not make the walk
// exponential.
func TestCheckBillionLaughs(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [", i, i)
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString("items: *a9\n")
	d, err := Parse("f.yaml", []byte(b.String()), 0)
	if err != nil {
		t.Fatal(err)
	}
	type laughs struct {
		Items [][][][][][][][][][]string `json:"items"`
	}
	start := time.Now()
	errs := d.Check(reflect.TypeFor[laughs](), "unknown")
	if len(errs) == 0 || !strings.Contains(errors.Join(errs...).Error(), "expands to more than") {
		t.Fatalf("Check of a billion laughs: %v", errs)
	}
	t.Logf("refused in %v", time.Since(start))
	if _, line := find(d.root, "", "nothere", 0, new(maxVisits)); line != 0 {
		t.Fatal("found a key that is not there")
	}
}
