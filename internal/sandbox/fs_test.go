package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTraversable: a 0700 directory on the way to the work dir is given
// o+x only when it is a temporary one; any other is named in the error
// and left as it is.
func TestTraversable(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	// The test's own temporary directories are 0700: open the way to base.
	for dir := base; dir != filepath.Clean(os.TempDir()); dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(base, "tmp")
	private := filepath.Join(base, "home", "operator")
	for _, d := range []string{filepath.Join(tmp, "demo"), private} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(tmp, 0o1777); err != nil { // as /tmp is
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", tmp)
	s := newSandbox(t, filepath.Join(base, "uids.json"), 10)

	if err := s.Traversable(filepath.Join(tmp, "demo", "data-work")); err != nil {
		t.Fatalf("a work dir in a temporary directory: %v", err)
	}
	if fi, _ := os.Stat(filepath.Join(tmp, "demo")); fi.Mode().Perm() != 0o701 {
		t.Errorf("temporary directory is %#o, want 0701", fi.Mode().Perm())
	}

	err := s.Traversable(filepath.Join(private, "runway-work"))
	if err == nil || !strings.Contains(err.Error(), private+" is mode 0700 without o+x") {
		t.Fatalf("a work dir in a private directory: %v, want a refusal naming %s", err, private)
	}
	if fi, _ := os.Stat(private); fi.Mode().Perm() != 0o700 {
		t.Errorf("the private directory was changed to %#o", fi.Mode().Perm())
	}
}
