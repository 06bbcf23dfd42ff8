package cli

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/ with what the commands print")

// golden compares got with testdata/name.golden (rewriting it with
// -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to write it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", name, path, got, want)
	}
}

func TestGolden(t *testing.T) {
	srv := newTestAPI(t, nil)
	commands := []struct {
		name string
		args []string
	}{
		{"pipelines-ls", []string{"pipelines", "ls"}},
		{"pipelines-ls-filtered", []string{"pipelines", "ls", "--app", "web", "--status", "running,queued"}},
		{"pipelines-get-running", []string{"pipelines", "get", "web-3"}},
		{"pipelines-get-failed", []string{"pipelines", "get", "api-7"}},
		{"pipelines-logs", []string{"pipelines", "logs", "api-7"}},
		{"pipelines-logs-step", []string{"pipelines", "logs", "api-7", "--step", "staging-functional-tests"}},
		{"envs-ls", []string{"envs", "ls"}},
		{"envs-get", []string{"envs", "get", "production"}},
		{"rollout-ls", []string{"rollout", "ls"}},
		{"rollout-get", []string{"rollout", "get", "web"}},
		{"analysisruns-ls", []string{"analysisruns", "ls"}},
		{"analysisruns-get", []string{"analysisruns", "get", "web-v20261201114500-step3-1"}},
	}
	formats := []string{formatTable, formatWide, formatJSON, formatYAML}
	for _, c := range commands {
		for _, format := range formats {
			if strings.Contains(c.name, "logs") && format != formatTable {
				continue
			}
			if format == formatWide && !strings.HasSuffix(c.args[1], "ls") {
				continue
			}
			name := c.name
			if format != formatTable {
				name += "." + format
			}
			t.Run(name, func(t *testing.T) {
				args := append(append([]string(nil), c.args...), "-o", format)
				r := cliEnv{}.run(t.Context(), srv, args...)
				if r.code != 0 {
					t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
				}
				golden(t, name, r.stdout)
			})
		}
	}
	t.Run("legacy forms list and get", func(t *testing.T) {
		for _, tt := range []struct{ legacy, now []string }{
			{[]string{"pipelines"}, []string{"pipelines", "ls"}},
			{[]string{"pipelines", "web-3"}, []string{"pipelines", "get", "web-3"}},
			{[]string{"envs", "production"}, []string{"envs", "get", "production"}},
			{[]string{"analysisruns"}, []string{"analysisruns", "ls"}},
			{[]string{"rollout", "list"}, []string{"rollout", "ls"}},
		} {
			old, cur := cliEnv{}.run(t.Context(), srv, tt.legacy...), cliEnv{}.run(t.Context(), srv, tt.now...)
			if old.code != 0 || old.stdout != cur.stdout {
				t.Errorf("%q: exit %d, printed\n%s\nwant what %q prints:\n%s", tt.legacy, old.code, old.stdout, tt.now, cur.stdout)
			}
		}
	})
}
