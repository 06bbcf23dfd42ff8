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

func TestOpenWithRemoteGone(t *testing.T) {
	ctx := t.Context()
	url := newStateRepo(t)
	dir := filepath.Join(t.TempDir(), "clone")
	if _, err := Open(ctx, url, dir, "main", nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(url, url+".away"); err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, url, dir, "main", nil)
	if err != nil {
		t.Fatalf("Open with the remote gone and a sound clone: %v", err)
	}
	if _, err := r.Snapshot(ctx); err == nil {
		t.Fatal("Snapshot with the remote gone succeeded: it must not confirm anything")
	}
	if err := os.Truncate(filepath.Join(dir, ".git", "refs", "heads", "main"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, url, dir, "main", nil); err == nil {
		t.Fatal("Open with the remote gone and a damaged clone succeeded")
	}
}
