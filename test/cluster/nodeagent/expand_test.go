package nodeagent

import "testing"

func TestExpand(t *testing.T) {
	vars := map[string]string{"POD_IP": "127.1.0.7", "PORT": "8080", "EMPTY": ""}
	lookup := func(n string) (string, bool) { v, ok := vars[n]; return v, ok }
	tests := []struct {
		name, in, want string
	}{
		{name: "plain", in: "hello", want: "hello"},
		{name: "one reference", in: "$(POD_IP)", want: "127.1.0.7"},
		{name: "references in text", in: "http://$(POD_IP):$(PORT)/x", want: "http://127.1.0.7:8080/x"},
		{name: "empty value", in: "a$(EMPTY)b", want: "ab"},
		{name: "unknown kept", in: "$(NOPE)-$(PORT)", want: "$(NOPE)-8080"},
		{name: "escaped", in: "$$(PORT)", want: "$(PORT)"},
		{name: "double escape then reference", in: "$$$(PORT)", want: "$8080"},
		{name: "dollar dollar", in: "a$$b", want: "a$b"},
		{name: "dollar before other", in: "$PORT", want: "$PORT"},
		{name: "trailing dollar", in: "cost$", want: "cost$"},
		{name: "unclosed", in: "$(PORT", want: "$(PORT"},
		{name: "unclosed then reference", in: "$($(PORT)", want: "$($(PORT)"},
		{name: "empty name", in: "$()", want: "$()"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := expand(tt.in, lookup); got != tt.want {
				t.Fatalf("expand(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
