package gitops

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestOpenReclonesDamagedClone stands in for a control plane killed while
// go-git rewrote a ref of its clone (it truncates the file, then writes):
// the next Open must clone again rather than fail on every fetch.
func TestOpenReclonesDamagedClone(t *testing.T) {
	ctx := t.Context()
	url := newStateRepo(t)
	dir := filepath.Join(t.TempDir(), "clone")
	r, err := Open(ctx, url, dir, "main", nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := r.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		damage func(t *testing.T)
	}{
		{"every ref file empty", func(t *testing.T) {
			err := filepath.WalkDir(filepath.Join(dir, ".git", "refs"), func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				return os.Truncate(p, 0)
			})
			if err != nil {
				t.Fatal(err)
			}
		}},
		{"branch points to a missing commit", func(t *testing.T) {
			err := os.WriteFile(filepath.Join(dir, ".git", "refs", "heads", "main"), []byte("1111111111111111111111111111111111111111\n"), 0o644)
			if err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.damage(t)
			r, err := Open(ctx, url, dir, "main", nil)
			if err != nil {
				t.Fatalf("Open of a damaged clone: %v", err)
			}
			got, err := r.Snapshot(ctx)
			if err != nil {
				t.Fatalf("Snapshot after Open of a damaged clone: %v", err)
			}
			if got.Revision != want.Revision {
				t.Fatalf("revision %s, want %s", got.Revision, want.Revision)
			}
		})
	}
}
