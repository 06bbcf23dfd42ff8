package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
)

// Traversable adds o+x to every ancestor of path that lacks it, so sandbox
// uids can walk down to the directories made for them (a 0700 temporary
// directory above the work dir is the usual case); listing stays refused.
// A no-op when the sandbox is disabled.
func (s *Sandbox) Traversable(path string) error {
	if !s.Enabled() {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("making %s traversable: %w", path, err)
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("checking %s is traversable: %w", dir, err)
		}
		if perm := fi.Mode().Perm(); perm&0o001 == 0 {
			if err := os.Chmod(dir, fi.Mode()|0o001); err != nil {
				return fmt.Errorf("making %s traversable for app code: %w", dir, err)
			}
			s.opts.Logger.Info("sandbox: made directory traversable (not listable) for app code", "path", dir, "mode", fmt.Sprintf("%#o", perm|0o001))
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
