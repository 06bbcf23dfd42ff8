package sqlite_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/runway-cd/runway/internal/store/sqlite"
)

// TestFileModes opens the database under a umask that lets everything
// through: the file and its -wal and -shm files are still 0600.
func TestFileModes(t *testing.T) {
	tests := []struct {
		name string
		// before prepares the directory (an older, world-readable file).
		before func(t *testing.T, path string)
	}{
		{name: "new database"},
		{name: "existing world-readable database", before: func(t *testing.T, path string) {
			db, err := sqlite.Open(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			db.Close()
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				if err := os.Chmod(p, 0o644); err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
			}
		}},
	}
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "runway.db")
			if tt.before != nil {
				tt.before(t, path)
			}
			db, err := sqlite.Open(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			// A write makes sure the -wal and -shm files exist.
			if _, err := db.SQL().ExecContext(t.Context(), "CREATE TABLE IF NOT EXISTS mode_probe (x INTEGER)"); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatalf("%s: %v", filepath.Base(p), err)
				}
				if got := fi.Mode().Perm(); got != fs.FileMode(0o600) {
					t.Errorf("%s has mode %o, want 600", filepath.Base(p), got)
				}
			}
		})
	}
}
