package image

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// FuzzExtract feeds layers of any bytes to the extractor: whatever it
// does, nothing outside dest changes, dest is empty after an error, and
// no symlink in dest resolves outside it.
func FuzzExtract(f *testing.F) {
	for _, entries := range [][]tarEntry{
		{{name: "etc/", typ: tar.TypeDir}, {name: "etc/f", body: "x"}, {name: "etc/.wh.f"}},
		{{name: "self", typ: tar.TypeSymlink, linkname: "."}, {name: "up", typ: tar.TypeSymlink, linkname: "self/.."}},
		{{name: "up", typ: tar.TypeSymlink, linkname: "self/.."}, {name: "self", typ: tar.TypeSymlink, linkname: "."}, {name: "up/outside/f", body: "x"}},
		{{name: "l", typ: tar.TypeSymlink, linkname: "/"}, {name: "l/../outside/f", body: "x"}},
		{{name: "h", typ: tar.TypeLink, linkname: "../outside/f"}},
		{{name: "a/b/l", typ: tar.TypeSymlink, linkname: "../../outside/f"}, {name: "h", typ: tar.TypeLink, linkname: "a/b/l"}},
		{{name: "a/", typ: tar.TypeDir}, {name: "d/e/s", typ: tar.TypeSymlink, linkname: "../../a"},
			{name: "d/e/s/l", typ: tar.TypeSymlink, linkname: "self/../../../outside"}, {name: "d/e/s/", typ: tar.TypeDir},
			{name: "a/self", typ: tar.TypeSymlink, linkname: "."}},
		{{name: "d/", typ: tar.TypeDir}, {name: "d/.wh..wh..opq"}, {name: "d/x", body: "y"}},
	} {
		f.Add(tarBytes(f, entries...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		})
		if err != nil {
			return
		}
		img, err := mutate.AppendLayers(empty.Image, l)
		if err != nil {
			return
		}
		base := t.TempDir()
		outside := filepath.Join(base, "outside")
		must(t, os.Mkdir(outside, 0o755))
		must(t, os.WriteFile(filepath.Join(outside, "f"), []byte("keep"), 0o644))
		dest := filepath.Join(base, "x", "rootfs")
		err = extractImage(t.Context(), img, dest, 1<<20)

		if b, rerr := os.ReadFile(filepath.Join(outside, "f")); rerr != nil || string(b) != "keep" {
			t.Fatalf("outside/f = %q, %v after extracting (%v)", b, rerr, err)
		}
		entries, rerr := os.ReadDir(base)
		if rerr != nil || len(entries) != 2 {
			t.Fatalf("base has %d entries, %v; want outside and x", len(entries), rerr)
		}
		if entries, _ := os.ReadDir(filepath.Join(base, "x")); len(entries) != 1 {
			t.Fatalf("x has %d entries, want rootfs only", len(entries))
		}
		if err != nil {
			if entries, _ := os.ReadDir(dest); len(entries) != 0 {
				t.Fatalf("dest has %d entries after %v", len(entries), err)
			}
			return
		}
		realDest, rerr := filepath.EvalSymlinks(dest)
		must(t, rerr)
		must(t, filepath.WalkDir(dest, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.Type()&os.ModeSymlink == 0 {
				return err
			}
			if r, err := filepath.EvalSymlinks(p); err == nil && !within(realDest, r) {
				t.Errorf("symlink %s resolves to %s, outside dest", p, r)
			}
			return nil
		}))
		// An extracted tree is the caller's to remove.
		must(t, os.RemoveAll(dest))
	})
}

// tarBytes is an uncompressed tar of entries.
func tarBytes(tb testing.TB, entries ...tarEntry) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ, mode := e.typ, e.mode
		if typ == 0 {
			typ = tar.TypeReg
		}
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		hdr := &tar.Header{Typeflag: typ, Name: e.name, Mode: mode, Linkname: e.linkname}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			tb.Fatal(err)
		}
		if _, err := io.Copy(tw, strings.NewReader(e.body)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}
