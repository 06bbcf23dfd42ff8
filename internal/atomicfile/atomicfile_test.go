package atomicfile

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
		perm    fs.FileMode
	}{
		{"new file", func(*testing.T, string) {}, 0o600},
		{"replaces a wider file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, 0o600},
		{"replaces a symlink, not its target", func(t *testing.T, path string) {
			target := filepath.Join(filepath.Dir(path), "target")
			if err := os.WriteFile(target, []byte("target"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}, 0o644},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f.json")
			tt.prepare(t, path)
			if err := Write(path, []byte("new\n"), tt.perm); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if !fi.Mode().IsRegular() || fi.Mode().Perm() != tt.perm {
				t.Fatalf("%s is %v, want a regular file %v", path, fi.Mode(), tt.perm)
			}
			if b, _ := os.ReadFile(path); string(b) != "new\n" {
				t.Fatalf("content %q", b)
			}
			if b, err := os.ReadFile(filepath.Join(dir, "target")); err == nil && string(b) != "target" {
				t.Fatalf("the symlink's target was written: %q", b)
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if e.Name() != "f.json" && e.Name() != "target" {
					t.Errorf("left behind: %s", e.Name())
				}
			}
		})
	}
}

func TestWriteMissingDir(t *testing.T) {
	if err := Write(filepath.Join(t.TempDir(), "missing", "f"), []byte("x"), 0o600); err == nil {
		t.Fatal("Write into a missing directory succeeded")
	}
}

func TestWriteOwned(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to hand a file to another uid")
	}
	path := filepath.Join(t.TempDir(), "pg_hba.conf")
	if err := WriteOwned(path, []byte("local all runway scram-sha-256\n"), 0o600, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65534 || st.Gid != 65534 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s is uid %d gid %d mode %#o, want 65534 65534 0600", path, st.Uid, st.Gid, fi.Mode().Perm())
	}
}
