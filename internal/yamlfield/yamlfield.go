// Package yamlfield locates fields of YAML files that Runway reads from app
// repositories (runway.yaml, AnalysisTemplates) so that every error names
// the file, the line and the field path, as in
//
//	runway.yaml:7: run.replicaCount: unknown field
//
// A [Doc] is the YAML parsed into a node tree (go.yaml.in/yaml/v3, which
// keeps lines); [Doc.Check] walks it against the Go type the file decodes
// into, by its JSON tags, and reports unknown fields, duplicate keys and
// values of the wrong shape. The strict JSON-tag decoding the callers run
// afterwards stays the source of truth: [Doc.Locate] turns its errors into
// located ones when the walk found nothing.
package yamlfield

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is a problem with one field of a file.
type Error struct {
	File string
	Line int // 0 when the field is not in the file (a required one)
	Path string
	Msg  string
}

// Error formats the problem as file:line: path: message ("line N: ..."
// when the file has no name).
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File == "" && e.Line > 0:
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	case e.File == "":
	case e.Line > 0:
		b.WriteString(e.File + ":" + strconv.Itoa(e.Line) + ": ")
	default:
		b.WriteString(e.File + ": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Doc is one YAML document of a file.
type Doc struct {
	file   string
	offset int // lines of the file before the document
	root   *yaml.Node
}

// Parse parses data, a YAML document that starts after offset lines of
// file. A syntax error names the file and the line.
func Parse(file string, data []byte, offset int) (*Doc, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		return nil, syntaxError(file, offset, err)
	}
	root := &n
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	return &Doc{file: file, offset: offset, root: root}, nil
}

var lineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func syntaxError(file string, offset int, err error) error {
	msg := err.Error()
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: offset + n, Msg: "invalid YAML: " + m[2]}
	}
	return &Error{File: file, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// Errorf returns an error about the field at path, located at its line
// (or at the nearest enclosing field present in the file).
func (d *Doc) Errorf(path, format string, args ...any) *Error {
	return &Error{File: d.file, Line: d.Line(path), Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Line is the line of the field at path ("a.b[2].c"): the line of its key,
// or of the element for a list index. A field absent from the file gets
// the line of the nearest enclosing one present, the top level 0.
func (d *Doc) Line(path string) int {
	n, line := d.root, 0
	for _, seg := range splitPath(path) {
		n = resolve(n)
		if n == nil {
			break
		}
		var next *yaml.Node
		switch {
		case seg.index >= 0 && n.Kind == yaml.SequenceNode:
			if seg.index < len(n.Content) {
				next = n.Content[seg.index]
				line = next.Line
			}
		case seg.index < 0 && n.Kind == yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == seg.key {
					next = n.Content[i+1]
					line = n.Content[i].Line
					break
				}
			}
		}
		if next == nil {
			break
		}
		n = next
	}
	if line == 0 {
		return 0
	}
	return d.offset + line
}

type segment struct {
	key   string
	index int // -1 for a key
}

var segRE = regexp.MustCompile(`\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]|([^.\[]+)`)

// splitPath splits "a.b[2].c" and `a.env["x.y"]` into segments.
func splitPath(path string) []segment {
	var out []segment
	for _, m := range segRE.FindAllStringSubmatch(path, -1) {
		switch {
		case m[1] != "":
			i, _ := strconv.Atoi(m[1])
			out = append(out, segment{index: i})
		case strings.HasPrefix(m[0], `["`):
			k, err := strconv.Unquote(`"` + m[2] + `"`)
			if err != nil {
				k = m[2]
			}
			out = append(out, segment{key: k, index: -1})
		default:
			out = append(out, segment{key: m[3], index: -1})
		}
	}
	return out
}

// Key joins a map key or field name to path.
func Key(path, key string) string {
	if key == "" || strings.ContainsAny(key, ".[]\"") {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// Index joins a list index to path.
func Index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.AliasNode {
		return nil
	}
	return n
}

// Check walks the document against t (the Go type it decodes into, by the
// JSON tags of its fields) and returns every unknown field (reported as
// unknown), duplicate key and value of the wrong shape, in file order.
func (d *Doc) Check(t reflect.Type, unknown string) []error {
	c := &checker{doc: d, unknown: unknown}
	c.walk(d.root, t, "")
	return c.errs
}

type checker struct {
	doc     *Doc
	unknown string
	errs    []error
	depth   int
	visits  int // nodes walked, aliases counted each time they are used
}

// maxVisits bounds the walk: aliases of aliases can make a small file
// stand for billions of nodes ("billion laughs").
const maxVisits = 200_000

var unmarshaler = reflect.TypeFor[json.Unmarshaler]()

func (c *checker) add(line int, path, format string, args ...any) {
	c.errs = append(c.errs, &Error{File: c.doc.file, Line: c.doc.offset + line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) walk(n *yaml.Node, t reflect.Type, path string) {
	if c.depth > 64 {
		return // the decoder bounds nesting; nothing Runway reads is this deep
	}
	if c.visits++; c.visits == maxVisits {
		c.add(n.Line, "", "the document expands to more than %d values (aliases of aliases?)", maxVisits)
	}
	if c.visits >= maxVisits {
		return
	}
	c.depth++
	defer func() { c.depth-- }()
	n = resolve(n)
	if n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return // null leaves the zero value, as in JSON
	}
	if reflect.PointerTo(t).Implements(unmarshaler) {
		c.custom(n, t, path)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		c.walk(n, t.Elem(), path)
	case reflect.Struct:
		c.object(n, t, path)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			c.add(n.Line, path, "want an object, got %s", describe(n))
			return
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if seen[k.Value] {
				c.add(k.Line, Key(path, k.Value), "set twice")
			}
			seen[k.Value] = true
			c.walk(v, t.Elem(), Key(path, k.Value))
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			c.add(n.Line, path, "want a list, got %s", describe(n))
			return
		}
		for i, e := range n.Content {
			c.walk(e, t.Elem(), Index(path, i))
		}
	case reflect.String:
		// Any scalar: sigs.k8s.io/yaml turns 8080 or true into "8080" or
		// "true" for a string field.
		if n.Kind != yaml.ScalarNode {
			c.add(n.Line, path, "want a string, got %s", describe(n))
		}
	case reflect.Bool:
		c.scalar(n, path, "a boolean", "!!bool")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		c.scalar(n, path, "an integer", "!!int")
	case reflect.Float32, reflect.Float64:
		c.scalar(n, path, "a number", "!!int", "!!float")
	}
}

func (c *checker) scalar(n *yaml.Node, path, want string, tags ...string) {
	if n.Kind == yaml.ScalarNode {
		for _, tag := range tags {
			if n.Tag == tag {
				return
			}
		}
	}
	c.add(n.Line, path, "want %s, got %s", want, describe(n))
}

// custom checks a value of a type that decodes itself (a duration, an
// int-or-string) by decoding it.
func (c *checker) custom(n *yaml.Node, t reflect.Type, path string) {
	var v any
	if err := n.Decode(&v); err != nil {
		c.add(n.Line, path, "%v", err)
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		c.add(n.Line, path, "want a string or a number, got %s", describe(n))
		return
	}
	if err := reflect.New(t).Interface().(json.Unmarshaler).UnmarshalJSON(b); err != nil {
		c.add(n.Line, path, "%v", err)
	}
}

func (c *checker) object(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		c.add(n.Line, path, "want an object, got %s", describe(n))
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "<<" {
			continue // a merge key: the decoder expands it
		}
		p := Key(path, k.Value)
		if seen[k.Value] {
			c.add(k.Line, p, "set twice")
			continue
		}
		seen[k.Value] = true
		f, ok := field(t, k.Value)
		if !ok {
			c.add(k.Line, p, "%s", c.unknown)
			continue
		}
		c.walk(v, f.Type, p)
	}
}

// field finds the struct field JSON decoding would fill for key: an exact
// tag match first, then a case-insensitive one, as encoding/json does.
func field(t reflect.Type, key string) (reflect.StructField, bool) {
	var fold *reflect.StructField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if name == key {
			return f, true
		}
		if fold == nil && strings.EqualFold(name, key) {
			fold = &f
		}
	}
	if fold != nil {
		return *fold, true
	}
	return reflect.StructField{}, false
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "an object"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.Tag {
	case "!!str":
		return fmt.Sprintf("the string %q", n.Value)
	case "!!int":
		return "the integer " + n.Value
	case "!!float":
		return "the number " + n.Value
	case "!!bool":
		return "the boolean " + n.Value
	}
	return fmt.Sprintf("%q", n.Value)
}

var unknownRE = regexp.MustCompile(`unknown field "([^"]*)"`)

// Locate turns an error of the strict decoding into a located one: a type
// error by its field path, an unknown field by the first key of that name.
// Anything else is returned with the file name.
func (d *Doc) Locate(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return d.Errorf(te.Field, "want %s, got a JSON %s", te.Type, te.Value)
	}
	if m := unknownRE.FindStringSubmatch(err.Error()); m != nil {
		budget := maxVisits
		if p, line := find(d.root, "", m[1], 0, &budget); line > 0 {
			return &Error{File: d.file, Line: d.offset + line, Path: p, Msg: "unknown field"}
		}
	}
	return &Error{File: d.file, Msg: err.Error()}
}

// find returns the path and line of the first key named key, walking at
// most budget nodes.
func find(n *yaml.Node, path, key string, depth int, budget *int) (string, int) {
	n = resolve(n)
	if *budget--; n == nil || depth > 64 || *budget <= 0 {
		return "", 0
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return Key(path, key), n.Content[i].Line
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if p, l := find(n.Content[i+1], Key(path, n.Content[i].Value), key, depth+1, budget); l > 0 {
				return p, l
			}
		}
	case yaml.SequenceNode:
		for i, e := range n.Content {
			if p, l := find(e, Index(path, i), key, depth+1, budget); l > 0 {
				return p, l
			}
		}
	}
	return "", 0
}
