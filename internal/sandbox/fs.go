package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Traversable makes sure sandbox uids can walk down to path (not list
// what is on the way). An ancestor without o+x is given it only when it is
// a temporary directory (below os.TempDir(), the usual case being a 0700
// directory of a test or the demo); any other, such as a home directory,
// is left alone and Traversable fails naming it, since adding o+x there
// would open whatever world-readable files it holds to app code. A no-op
// when the sandbox is disabled.
func (s *Sandbox) Traversable(path string) error {
	if !s.Enabled() {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("making %s traversable: %w", path, err)
	}
	tmp := filepath.Clean(os.TempDir())
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("checking %s is traversable: %w", dir, err)
		}
		if perm := fi.Mode().Perm(); perm&0o001 == 0 {
			if rel, err := filepath.Rel(tmp, dir); err != nil || rel == "." || strings.HasPrefix(rel, "..") {
				return fmt.Errorf("app code cannot reach %s: %s is mode %#o without o+x; "+
					"give it o+x yourself (chmod o+x %s) or choose a workDir outside it, such as /var/lib/runway-work", path, dir, perm, dir)
			}
			if err := os.Chmod(dir, fi.Mode()|0o001); err != nil {
				return fmt.Errorf("making %s traversable for app code: %w", dir, err)
			}
			s.opts.Logger.Warn("sandbox: made a temporary directory traversable (not listable) for app code", "path", dir, "mode", fmt.Sprintf("%#o", perm|0o001))
		}
		if dir == filepath.Dir(dir) {
			return nil
		}
	}
}

// Dir creates dir (and missing parents, 0711) with mode perm, owned by
// root or, when key is not "", by key's uid. An existing dir gets the mode
// and owner too, so a layout made by an older Runway is tightened.
func (s *Sandbox) Dir(dir string, perm os.FileMode, key string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o711); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(dir), err)
	}
	if err := os.Mkdir(dir, perm); err != nil && !os.IsExist(err) {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("creating %s: not a directory", dir)
	}
	if fi.Mode().Perm() != perm {
		if err := os.Chmod(dir, perm); err != nil {
			return fmt.Errorf("setting the mode of %s: %w", dir, err)
		}
	}
	if key != "" {
		return s.Chown(dir, key)
	}
	if s.Enabled() {
		if err := os.Lchown(dir, 0, 0); err != nil {
			return fmt.Errorf("handing %s to root: %w", dir, err)
		}
	}
	return nil
}
