package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/pipeline"
)

// A commit message or name carrying a terminal escape sequence is shown,
// not obeyed: table cells and fields print no control character.
func TestTableCellsPrintNoControlCharacters(t *testing.T) {
	hostile := "fix\x1b]0;pwned\x07 \x1b[2J\u009b31m\r\nend"
	var out bytes.Buffer
	p := &printer{out: &out}
	tb := &table{header: []string{"MESSAGE", "AUTHOR"}}
	tb.add(cell{text: hostile}, cell{text: "ada"})
	if err := tb.write(p); err != nil {
		t.Fatal(err)
	}
	if err := p.fields(cell{text: "Message"}, cell{text: hostile}); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, bad := range []string{"\x1b", "\x07", "\r", "\u009b"} {
		if strings.Contains(got, bad) {
			t.Errorf("output carries %q:\n%q", bad, got)
		}
	}
	if !strings.Contains(got, "pwned") || strings.Count(got, "\n") != 3 {
		t.Errorf("output %q: want the text shown, one line per row and field", got)
	}
}

// Text from the server outside tables (a failed pipeline's reason in the
// error, an event line) is shown the same way.
func TestServerTextOutsideTables(t *testing.T) {
	err := endedBadly(&pipeline.Pipeline{ID: "p1", Phase: pipeline.Failed, Reason: "boom\x1b[2J\u202Eevil\r\nsecond line"})
	if err == nil || strings.ContainsAny(err.Error(), "\x1b\r\n\u202E") {
		t.Fatalf("error %q carries control or format characters", err)
	}
	var out bytes.Buffer
	p := &printer{out: &out}
	if err := p.eventLine(events.Event{Kind: "Pipeline", Name: "p1", Reason: "Failed", Message: "x\x1b]0;pwned\x07\ry"}); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(out.String(), "\x1b\x07\r") {
		t.Fatalf("event line %q carries control characters", out.String())
	}
}
