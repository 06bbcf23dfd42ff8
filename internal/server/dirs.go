package server

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
)

// prepareDirs creates the data dir 0700 (Runway's secrets and store: no
// other user, and no app code, may enter it) and the work dir 0711 (app
// code passes through to its own directories but cannot list it). An
// existing dir with a looser mode is tightened, and the log says so.
func prepareDirs(cfg Config, log *slog.Logger) error {
	for _, d := range []struct {
		what, path string
		perm       os.FileMode
	}{{"data dir", cfg.DataDir, 0o700}, {"work dir", cfg.WorkDir, 0o711}} {
		if err := os.MkdirAll(d.path, d.perm); err != nil {
			return fmt.Errorf("creating %s: %w", d.what, err)
		}
		fi, err := os.Stat(d.path)
		if err != nil {
			return fmt.Errorf("checking %s: %w", d.what, err)
		}
		if got := fi.Mode().Perm(); got != d.perm {
			if err := os.Chmod(d.path, d.perm); err != nil {
				return fmt.Errorf("setting the mode of %s %s: %w", d.what, d.path, err)
			}
			log.Warn("tightened the mode of the "+d.what, "path", d.path, "was", fmt.Sprintf("%#o", got), "now", fmt.Sprintf("%#o", d.perm))
		}
	}
	// An older Runway kept these in the data dir; they are not used (nor
	// adopted) from there.
	for _, old := range []string{"envs", "artifacts"} {
		if _, err := os.Stat(filepath.Join(cfg.DataDir, old)); err == nil {
			log.Warn("an older Runway's "+old+" directory is in the data dir; it now lives in the work dir and this one is not used: stop what still runs from it and remove it",
				"path", filepath.Join(cfg.DataDir, old), "workDir", cfg.WorkDir)
		}
	}
	return nil
}
