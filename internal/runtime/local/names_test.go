package local

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/runway-cd/runway/internal/runtime"
)

// TestNamesOutsideTheRuntimeDir: an environment name is a path element
// under the runtime dir. Before names were checked, Destroy("..") removed
// the runtime dir's parent (Runway's work dir), EnsurePostgres("../x")
// ran initdb beside the runtime dir and RunJob ran a job in a home there.
// Now each is refused before anything is touched.
func TestNamesOutsideTheRuntimeDir(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "envs")
	rt := newRuntimeIn(t, dir)
	keep := filepath.Join(base, "keep.txt")
	if err := os.WriteFile(keep, []byte("not the runtime's\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	calls := []struct {
		name string
		call func() error
	}{
		{"Destroy ..", func() error { return rt.Destroy(ctx, "..") }},
		{"Destroy ../keep.txt", func() error { return rt.Destroy(ctx, "../keep.txt") }},
		{"EnsurePostgres ../escape", func() error { return rt.EnsurePostgres(ctx, "../escape") }},
		{"RunJob ../escape", func() error {
			return rt.RunJob(ctx, runtime.Job{Env: "../escape", Name: "tests", Dir: appDir, Command: []string{"true"}, Log: io.Discard})
		}},
		{"RunJob without an environment", func() error {
			return rt.RunJob(ctx, runtime.Job{Name: "tests", Dir: appDir, Command: []string{"true"}, Log: io.Discard})
		}},
		{"Start ../escape", func() error { _, err := rt.Start(ctx, testReplicaSet("../escape", "v1", 1)); return err }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			if err := c.call(); !errors.Is(err, runtime.ErrInvalidName) {
				t.Errorf("%s = %v, want ErrInvalidName", c.name, err)
			}
		})
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("a file beside the runtime dir after the calls: %v", err)
	}
	entries, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range entries {
		names = append(names, de.Name())
	}
	if want := []string{"envs", "keep.txt", "secrets"}; !slices.Equal(names, want) {
		t.Errorf("beside the runtime dir: %v, want %v", names, want)
	}
}

// TestEnvsListsOnlyWhatHasSomething: asking for a database or stopping a
// version in an environment the runtime holds nothing of does not make it
// an environment (Envs would list it, and its controller destroy it); a
// directory that is no valid name is not the runtime's and is not listed.
func TestEnvsListsOnlyWhatHasSomething(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "envs")
	rt := newRuntimeIn(t, dir)
	ctx := t.Context()
	if _, err := rt.Database(ctx, "asked", "web"); !errors.Is(err, runtime.ErrUnsatisfiable) {
		t.Fatalf("Database without postgres = %v, want ErrUnsatisfiable", err)
	}
	if err := rt.Stop(ctx, "stopped", "web", "v1"); err != nil {
		t.Fatalf("Stop of nothing: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "Not An Env"), 0o700); err != nil {
		t.Fatal(err)
	}
	if got := rt.Envs(); len(got) != 0 {
		t.Errorf("Envs = %v, want none", got)
	}
}
