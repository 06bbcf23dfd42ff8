package argocd

import (
	"strings"
	"testing"
)

func TestTemplateRender(t *testing.T) {
	tests := []struct {
		name    string
		obj     func(t *template) any
		cond    string
		values  map[string]any
		want    string // the rendered YAML
		wantErr string // from render
	}{
		{
			name:   "value",
			obj:    func(t *template) any { return map[string]any{"a": t.value(".Values.x")} },
			values: map[string]any{"x": "v1"},
			want:   "a: v1\n",
		},
		{
			name:   "literal braces kept",
			obj:    func(t *template) any { return map[string]any{"q": `{{args.env}} }} {{`} },
			values: map[string]any{},
			want:   "q: '{{args.env}} }} {{'\n",
		},
		{
			name:   "condition false renders nothing",
			obj:    func(t *template) any { return map[string]any{"a": "b"} },
			cond:   ".Values.on",
			values: map[string]any{"on": false},
			want:   "",
		},
		{
			name: "marker in literal text refused",
			obj: func(t *template) any {
				return map[string]any{"a": t.value(".Values.x"), "b": markerPrefix + "0" + markerSuffix}
			},
			wantErr: "value markers placed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := &template{}
			text, err := tp.render(tt.obj(tp), tt.cond)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("render: %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			files := []File{{Path: "c/values.yaml", Data: []byte("{}\n")}, {Path: "c/templates/x.yaml", Data: text}}
			got := renderText(t, files, tt.values)
			if got != tt.want {
				t.Fatalf("rendered %q, want %q (template %q)", got, tt.want, text)
			}
		})
	}
}

// renderText is the text chart c's one template renders to.
func renderText(t *testing.T, files []File, values map[string]any) string {
	t.Helper()
	objs, err := helmTemplate(files, "c", values)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, obj := range objs {
		data, err := plain(obj)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	return b.String()
}
