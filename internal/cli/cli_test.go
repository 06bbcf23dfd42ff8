package cli

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	badYAML := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badYAML, []byte("dataDir: [\n"), 0o644)
	unknown := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknown, []byte("dataDir: /tmp/x\nlisten: 127.0.0.1:0\nfrobnicate: true\n"), 0o644)
	incomplete := filepath.Join(dir, "incomplete.yaml")
	os.WriteFile(incomplete, []byte("listen: 127.0.0.1:0\n"), 0o644)
	tests := []struct {
		name    string
		args    []string
		code    int
		wantOut string
		wantErr string
	}{
		{"help", []string{"--help"}, 0, "serve", ""},
		{"unknown command", []string{"frob"}, 2, "", "unknown command"},
		{"missing config", []string{"serve", "-c", filepath.Join(dir, "none.yaml")}, 1, "", "reading config"},
		{"malformed config", []string{"serve", "-c", badYAML}, 1, "", "parsing config"},
		{"unknown config field", []string{"serve", "-c", unknown}, 1, "", "frobnicate"},
		{"incomplete config", []string{"serve", "-c", incomplete}, 1, "", "dataDir is required"},
		{"demo without examples", []string{"demo", "--examples", dir}, 1, "", "examples not found"},
		{"api unreachable", []string{"pipelines", "--api", "http://127.0.0.1:1"}, 5, "", "calling Runway"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Run(context.Background(), tt.args, &out, &errb)
			if code != tt.code {
				t.Fatalf("exit code %d, want %d (stderr %q)", code, tt.code, errb.String())
			}
			if !strings.Contains(out.String(), tt.wantOut) || !strings.Contains(errb.String(), tt.wantErr) {
				t.Fatalf("stdout %q stderr %q, want %q / %q", out.String(), errb.String(), tt.wantOut, tt.wantErr)
			}
		})
	}
}

// TestHelpHasExamples walks the command tree: every command of ours says
// how it is used.
func TestHelpHasExamples(t *testing.T) {
	a := &app{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, lookupEnv: func(string) (string, bool) { return "", false }, now: time.Now, terminal: func(io.Writer) bool { return false }}
	// The tree as run builds it; --help runs nothing.
	if code := a.run(context.Background(), []string{"--help"}); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	var walk func(c *cobra.Command)
	var missing []string
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" || (c.HasParent() && c.Parent().Name() == "completion") {
			return
		}
		if c.Example == "" {
			missing = append(missing, c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(a.root)
	if len(missing) > 0 {
		t.Fatalf("commands without examples: %s", strings.Join(missing, ", "))
	}
}
