package oneline

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClean(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		limit int
		want  string
	}{
		{name: "plain", in: "analysis failed", limit: 200, want: "analysis failed"},
		{name: "newline trailer", in: "bad\nSigned-off-by: x", limit: 200, want: "bad Signed-off-by: x"},
		{name: "crlf and tabs collapse", in: "a\r\n\t\tb", limit: 200, want: "a b"},
		{name: "trim", in: "  \n a \n ", limit: 200, want: "a"},
		{name: "control chars", in: "a\x00b\x1bc\x7fd", limit: 200, want: "a b c d"},
		{name: "unicode line separators and bidi", in: "a\u2028b\u2029c\u202ed\u0085e", limit: 200, want: "a b c d e"},
		{name: "invalid utf8", in: "a\xffb", limit: 200, want: "a b"},
		{name: "cut", in: "abcdefghij", limit: 4, want: "abcd"},
		{name: "cut rune-safe", in: "aé€", limit: 4, want: "aé"},
		{name: "cut does not end in space", in: "abc def", limit: 4, want: "abc"},
		{name: "no limit", in: strings.Repeat("x", 300), limit: 0, want: strings.Repeat("x", 300)},
		{name: "empty", in: "", limit: 10, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Clean(tt.in, tt.limit); got != tt.want {
				t.Fatalf("Clean(%q, %d) = %q, want %q", tt.in, tt.limit, got, tt.want)
			}
		})
	}
}

func TestReasonLong(t *testing.T) {
	in := strings.Repeat("ü\n", 70<<10)
	got := Reason(in)
	if len(got) > MaxReason || !utf8.ValidString(got) || strings.ContainsAny(got, "\n\r") {
		t.Fatalf("Reason gave %d bytes, valid=%v: %q", len(got), utf8.ValidString(got), got)
	}
	if len(got) < MaxReason-3 {
		t.Fatalf("Reason cut too much: %d bytes", len(got))
	}
}

func FuzzClean(f *testing.F) {
	f.Add("a\nb", 10)
	f.Add("aé€\u2028", 3)
	f.Fuzz(func(t *testing.T, s string, limit int) {
		got := Clean(s, limit)
		if limit > 0 && len(got) > limit {
			t.Fatalf("len %d > %d", len(got), limit)
		}
		if !utf8.ValidString(got) {
			t.Fatalf("invalid utf8 %q", got)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' {
				t.Fatalf("control char %q in %q", r, got)
			}
		}
	})
}
