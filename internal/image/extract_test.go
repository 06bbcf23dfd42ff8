package image

import (
	"archive/tar"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// imageOf is an image of layers on an empty base.
func imageOf(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestExtractRefusesUnsafeEntries(t *testing.T) {
	reg := startRegistry(t)
	for _, tc := range []struct {
		name   string
		layers [][]tarEntry
	}{
		{name: "dot dot", layers: [][]tarEntry{{{name: "../escaped", body: "x"}}}},
		{name: "dot dot inside a path", layers: [][]tarEntry{{{name: "a/../../escaped", body: "x"}}}},
		{name: "absolute path", layers: [][]tarEntry{{{name: "/tmp/escaped", body: "x"}}}},
		{name: "symlink leaving by dot dot", layers: [][]tarEntry{{{name: "link", typ: tar.TypeSymlink, linkname: "../../.."}}}},
		{name: "symlink then a write through it", layers: [][]tarEntry{
			{{name: "link", typ: tar.TypeSymlink, linkname: "../outside"}, {name: "link/escaped", body: "x"}},
		}},
		{name: "symlink through a symlink to the root", layers: [][]tarEntry{
			{{name: "self", typ: tar.TypeSymlink, linkname: "."}, {name: "up", typ: tar.TypeSymlink, linkname: "self/.."}},
		}},
		{name: "symlink through a symlink, in a later layer", layers: [][]tarEntry{
			{{name: "d/", typ: tar.TypeDir}, {name: "d/self", typ: tar.TypeSymlink, linkname: ".."}},
			{{name: "d/up", typ: tar.TypeSymlink, linkname: "self/../outside"}},
		}},
		{name: "write through a symlink that leaves only once another is made", layers: [][]tarEntry{
			{{name: "up", typ: tar.TypeSymlink, linkname: "self/.."}, {name: "self", typ: tar.TypeSymlink, linkname: "."},
				{name: "up/outside/target/file", body: "overwritten"}},
		}},
		{name: "whiteout through a symlink that leaves", layers: [][]tarEntry{
			{{name: "up", typ: tar.TypeSymlink, linkname: "self/.."}, {name: "self", typ: tar.TypeSymlink, linkname: "."}},
			{{name: "up/outside/.wh.target"}},
		}},
		{name: "hard link out", layers: [][]tarEntry{{{name: "hard", typ: tar.TypeLink, linkname: "../outside/target"}}}},
		{name: "hard link to an absolute path", layers: [][]tarEntry{{{name: "hard", typ: tar.TypeLink, linkname: "/etc/passwd"}}}},
		{name: "whiteout out", layers: [][]tarEntry{{{name: "../.wh.outside", body: ""}}}},
		// A hard link to a symlink is a symlink with the same target in
		// another directory, where the target may lead somewhere else.
		{name: "hard link to a symlink that leaves from where the link is", layers: [][]tarEntry{
			{{name: "a/b/l", typ: tar.TypeSymlink, linkname: "../../outside/target/file"}, {name: "l2", typ: tar.TypeLink, linkname: "a/b/l"}},
		}},
		{name: "hard link to a symlink, in a later layer", layers: [][]tarEntry{
			{{name: "a/b/l", typ: tar.TypeSymlink, linkname: "../../outside"}},
			{{name: "l2", typ: tar.TypeLink, linkname: "a/b/l"}},
		}},
		{name: "hard link to a symlink to a symlink", layers: [][]tarEntry{
			{{name: "self", typ: tar.TypeSymlink, linkname: "."}, {name: "a/b/l", typ: tar.TypeSymlink, linkname: "self/../outside"},
				{name: "l2", typ: tar.TypeLink, linkname: "a/b/l"}},
		}},
		{name: "hard link to a symlink to a symlink made after it", layers: [][]tarEntry{
			{{name: "a/b/l", typ: tar.TypeSymlink, linkname: "self/../outside"}, {name: "l2", typ: tar.TypeLink, linkname: "a/b/l"}},
			{{name: "self", typ: tar.TypeSymlink, linkname: "."}},
		}},
		{name: "hard link to a hard link to a symlink", layers: [][]tarEntry{
			{{name: "a/b/l", typ: tar.TypeSymlink, linkname: "../../outside"}, {name: "a/b/l2", typ: tar.TypeLink, linkname: "a/b/l"},
				{name: "l3", typ: tar.TypeLink, linkname: "a/b/l2"}},
		}},
		{name: "hard link to a symlink through a symlink", layers: [][]tarEntry{
			{{name: "a/b/l", typ: tar.TypeSymlink, linkname: "../../outside"}, {name: "s", typ: tar.TypeSymlink, linkname: "a/b"},
				{name: "l2", typ: tar.TypeLink, linkname: "s/l"}},
		}},
		{name: "hard link to a symlink, then a write through it", layers: [][]tarEntry{
			{{name: "a/b/l", typ: tar.TypeSymlink, linkname: "../../outside"}, {name: "l2", typ: tar.TypeLink, linkname: "a/b/l"},
				{name: "l2/target/file", body: "overwritten"}},
		}},
		// A symlink made through a symlinked directory is checked where it
		// lands, even once that directory link is gone.
		{name: "symlink made through a symlink that is then replaced", layers: [][]tarEntry{
			{{name: "a/", typ: tar.TypeDir}, {name: "d/e/s", typ: tar.TypeSymlink, linkname: "../../a"},
				{name: "d/e/s/l", typ: tar.TypeSymlink, linkname: "self/../../../outside"}},
			{{name: "d/e/s/", typ: tar.TypeDir}, {name: "a/self", typ: tar.TypeSymlink, linkname: "."}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var layers []v1.Layer
			for _, entries := range tc.layers {
				layers = append(layers, layerOf(t, entries...))
			}
			ref := reg.push(t, "hostile:"+strings.NewReplacer(" ", "-", ",", "").Replace(tc.name), imageOf(t, layers...))

			// dest is base/x/rootfs; base/outside is what an escape would hit.
			base := t.TempDir()
			outside := filepath.Join(base, "outside")
			must(t, os.MkdirAll(filepath.Join(outside, "target"), 0o755))
			must(t, os.WriteFile(filepath.Join(outside, "target", "file"), []byte("keep"), 0o644))
			dest := filepath.Join(base, "x", "rootfs")
			_, err := Extract(t.Context(), ref, dest, reg.options())
			if !errors.Is(err, ErrUnsafeEntry) {
				t.Fatalf("Extract = %v, want ErrUnsafeEntry", err)
			}
			if !strings.Contains(err.Error(), "extracting image "+ref) {
				t.Errorf("error %q does not say which image", err)
			}
			var got []string
			must(t, filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
				if err != nil {
					return err
				}
				rel, _ := filepath.Rel(base, p)
				got = append(got, rel)
				return nil
			}))
			want := []string{".", "outside", "outside/target", "outside/target/file", "x", "x/rootfs"}
			if !slices.Equal(got, want) {
				t.Errorf("files: %q, want %q: outside untouched, dest empty", got, want)
			}
			if b, err := os.ReadFile(filepath.Join(outside, "target", "file")); err != nil || string(b) != "keep" {
				t.Errorf("outside/target/file = %q, %v; want it untouched", b, err)
			}
		})
	}
}

func TestExtractLayers(t *testing.T) {
	reg := startRegistry(t)
	img := imageOf(t,
		layerOf(t,
			tarEntry{name: "./etc/", typ: tar.TypeDir},
			tarEntry{name: "./etc/keep", body: "keep"},
			tarEntry{name: "./etc/gone", body: "gone"},
			tarEntry{name: "opaque/", typ: tar.TypeDir},
			tarEntry{name: "opaque/old", body: "old"},
			tarEntry{name: "opaque/olddir/", typ: tar.TypeDir},
			tarEntry{name: "opaque/olddir/f", body: "f"},
			tarEntry{name: "usr/bin/tool", body: "v1", mode: 0o755},
			tarEntry{name: "usr/bin/same", typ: tar.TypeLink, linkname: "usr/bin/tool"},
			tarEntry{name: "bin", typ: tar.TypeSymlink, linkname: "/usr/bin"},
			// Hard links to symlinks are symlinks with the same target.
			tarEntry{name: "usr/bin/alias", typ: tar.TypeSymlink, linkname: "tool"},
			tarEntry{name: "usr/bin/alias2", typ: tar.TypeLink, linkname: "usr/bin/alias"},
			tarEntry{name: "usr/bin/up", typ: tar.TypeSymlink, linkname: "../bin/tool"},
			tarEntry{name: "usr/sbin/tool", typ: tar.TypeLink, linkname: "usr/bin/up"},
			tarEntry{name: "usr/local/bin", typ: tar.TypeLink, linkname: "bin"}, // still the image's /usr/bin
			tarEntry{name: "ro/", typ: tar.TypeDir, mode: 0o555},
			tarEntry{name: "ro/file", body: "ro", mode: 0o444},
			tarEntry{name: "replaced", body: "a file"},
			tarEntry{name: "dev/null", typ: tar.TypeChar},
		),
		layerOf(t,
			tarEntry{name: "etc/.wh.gone"},
			tarEntry{name: "opaque/.wh..wh..opq"},
			tarEntry{name: "opaque/new", body: "new"},
			tarEntry{name: "usr/bin/tool", body: "v2", mode: 0o700},
			tarEntry{name: "replaced/", typ: tar.TypeDir},
			tarEntry{name: "replaced/inside", body: "now a dir"},
			tarEntry{name: "etc/.wh.never-there"},
		),
	)
	ref := reg.push(t, "layers:v1", img)
	dest := filepath.Join(t.TempDir(), "rootfs")
	if _, err := Extract(t.Context(), ref, dest, reg.options()); err != nil {
		t.Fatal(err)
	}
	var got []string
	must(t, filepath.WalkDir(dest, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dest, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		s := rel + " " + fi.Mode().String()
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s += " " + string(b)
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			s += " -> " + target
		}
		got = append(got, s)
		return nil
	}))
	want := []string{
		". drwxr-xr-x",
		"bin Lrwxrwxrwx -> usr/bin",
		"etc drwxr-xr-x",
		"etc/keep -rw-r--r-- keep",
		"opaque drwxr-xr-x",
		"opaque/new -rw-r--r-- new",
		"replaced drwxr-xr-x",
		"replaced/inside -rw-r--r-- now a dir",
		"ro drwxr-xr-x", // u+rwx added: the tree stays removable
		"ro/file -r--r--r-- ro",
		"usr drwxr-xr-x",
		"usr/bin drwxr-xr-x",
		"usr/bin/alias Lrwxrwxrwx -> tool",
		"usr/bin/alias2 Lrwxrwxrwx -> tool",
		"usr/bin/same -rwxr-xr-x v1",
		"usr/bin/tool -rwx------ v2",
		"usr/bin/up Lrwxrwxrwx -> ../bin/tool",
		"usr/local drwxr-xr-x",
		"usr/local/bin Lrwxrwxrwx -> ../bin",
		"usr/sbin drwxr-xr-x",
		"usr/sbin/tool Lrwxrwxrwx -> ../bin/tool",
	}
	if !slices.Equal(got, want) {
		t.Errorf("extracted:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, p := range []string{"usr/bin/alias2", "usr/sbin/tool", "usr/local/bin/tool"} {
		if b, err := os.ReadFile(filepath.Join(dest, p)); err != nil || string(b) != "v2" {
			t.Errorf("%s = %q, %v; want usr/bin/tool through the links", p, b, err)
		}
	}
}

func TestExtractDest(t *testing.T) {
	reg := startRegistry(t)
	ref := reg.push(t, "small:v1", imageOf(t, layerOf(t, tarEntry{name: "f", body: "0123456789"})))
	t.Run("not empty", func(t *testing.T) {
		dest := t.TempDir()
		must(t, os.WriteFile(filepath.Join(dest, "x"), nil, 0o644))
		if _, err := Extract(t.Context(), ref, dest, reg.options()); err == nil || !strings.Contains(err.Error(), "not empty") {
			t.Errorf("Extract = %v, want a not empty error", err)
		}
	})
	t.Run("empty dir", func(t *testing.T) {
		dest := t.TempDir()
		if _, err := Extract(t.Context(), ref, dest, reg.options()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		img, err := mutate.AppendLayers(empty.Image, layerOf(t, tarEntry{name: "f", body: "0123456789"}))
		must(t, err)
		err = extractImage(t.Context(), img, filepath.Join(t.TempDir(), "d"), 9)
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("extractImage with 9 bytes allowed = %v, want ErrTooLarge", err)
		}
		err = extractImage(t.Context(), img, filepath.Join(t.TempDir(), "d"), 10)
		if err != nil {
			t.Errorf("extractImage with 10 bytes allowed = %v", err)
		}
	})
	t.Run("missing image", func(t *testing.T) {
		_, err := Extract(t.Context(), reg.host+"/nothing:v1", t.TempDir(), reg.options())
		if err == nil || !strings.Contains(err.Error(), "pulling image "+reg.host+"/nothing:v1") {
			t.Errorf("Extract = %v, want a pulling error", err)
		}
	})
	t.Run("bad reference", func(t *testing.T) {
		_, err := Extract(t.Context(), "not a ref!", t.TempDir(), reg.options())
		if err == nil || !strings.Contains(err.Error(), "parsing image reference") {
			t.Errorf("Extract = %v, want a parsing error", err)
		}
	})
}
