package image

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// artifact is a small artifact dir: an executable, data files of several
// modes, a nested dir and symlinks inside the dir.
func artifact(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeTree(t, dir, map[string]treeFile{
		"testapp":          {body: "#!/bin/sh\necho hello\n", mode: 0o755},
		"data/config.json": {body: `{"a":1}`, mode: 0o644},
		"data/secret":      {body: "s3cret", mode: 0o600},
		"data/empty/":      {mode: 0o750},
		"current":          {link: "data"},
		"data/up":          {link: "../testapp"},
	})
	// An absolute link into the dir becomes relative.
	if err := os.Symlink(filepath.Join(dir, "data", "config.json"), filepath.Join(dir, "config")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestBuildExtractRoundTrip(t *testing.T) {
	reg := startRegistry(t)
	ctx := t.Context()
	b, err := New(reg.options())
	if err != nil {
		t.Fatal(err)
	}
	dir := artifact(t)
	entrypoint := []string{"./testapp", "-host", "$(POD_IP)"}
	ref, err := b.Build(ctx, "hello", "v1", dir, entrypoint)
	if err != nil {
		t.Fatal(err)
	}
	if want := reg.host + "/runway/hello@sha256:"; !strings.HasPrefix(ref, want) {
		t.Fatalf("Build = %q, want %s...", ref, want)
	}
	// The tag names the same image.
	desc, err := remote.Head(mustRef(t, reg.host+"/runway/hello:v1"))
	if err != nil {
		t.Fatal(err)
	}
	if got := reg.host + "/runway/hello@" + desc.Digest.String(); got != ref {
		t.Errorf("tag v1 is %s, Build returned %s", got, ref)
	}

	dest := filepath.Join(t.TempDir(), "rootfs")
	cfg, err := Extract(ctx, ref, dest, reg.options())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Entrypoint, entrypoint) || cfg.WorkingDir != AppDir || len(cfg.Cmd) != 0 {
		t.Errorf("config = %+v, want entrypoint %q, working dir %s, no cmd", cfg, entrypoint, AppDir)
	}
	if !slices.Contains(cfg.Env, "PATH="+DefaultPath) {
		t.Errorf("env = %q, want PATH=%s", cfg.Env, DefaultPath)
	}

	app := filepath.Join(dest, filepath.FromSlash(AppDir))
	for _, tc := range []struct {
		name string
		mode os.FileMode
		body string
		link string
	}{
		{name: "testapp", mode: 0o755, body: "#!/bin/sh\necho hello\n"},
		{name: "data/config.json", mode: 0o644, body: `{"a":1}`},
		{name: "data/secret", mode: 0o600, body: "s3cret"},
		{name: "data/empty", mode: os.ModeDir | 0o750},
		{name: "current", link: "data"},
		{name: "data/up", link: "../testapp"},
		{name: "config", link: "data/config.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(app, filepath.FromSlash(tc.name))
			fi, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			if tc.link != "" {
				target, err := os.Readlink(p)
				if err != nil || target != tc.link {
					t.Fatalf("link = %q, %v; want %q", target, err, tc.link)
				}
				return
			}
			if fi.Mode() != tc.mode {
				t.Errorf("mode = %v, want %v", fi.Mode(), tc.mode)
			}
			if tc.body != "" {
				got, err := os.ReadFile(p)
				if err != nil || string(got) != tc.body {
					t.Errorf("content = %q, %v; want %q", got, err, tc.body)
				}
			}
		})
	}

	// The layer itself: sorted, owned by root, at the epoch.
	img, err := remote.Image(mustRef(t, ref))
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v; want 1", len(layers), err)
	}
	var names []string
	for hdr := range tarHeaders(t, layers[0]) {
		names = append(names, hdr.Name)
		if hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" || !hdr.ModTime.Equal(epoch) {
			t.Errorf("%s: uid %d gid %d %q %q mtime %v; want 0 0, no names, the epoch", hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname, hdr.ModTime)
		}
	}
	want := []string{"runway/", "runway/app/", "runway/app/config", "runway/app/current", "runway/app/data/",
		"runway/app/data/config.json", "runway/app/data/empty/", "runway/app/data/secret", "runway/app/data/up", "runway/app/testapp"}
	if !slices.Equal(names, want) {
		t.Errorf("layer entries = %q, want %q", names, want)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform = %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
}

func TestBuildReproducible(t *testing.T) {
	reg := startRegistry(t)
	ctx := t.Context()
	files := map[string]treeFile{
		"app":       {body: "binary", mode: 0o755},
		"etc/a.txt": {body: "a"},
		"etc/b.txt": {body: "b"},
		"link":      {link: "etc/a.txt"},
	}
	build := func(t *testing.T, dir string, entrypoint ...string) string {
		t.Helper()
		b, err := New(reg.options()) // a new Builder: nothing remembered
		if err != nil {
			t.Fatal(err)
		}
		ref, err := b.Build(ctx, "repro", "v1", dir, entrypoint)
		if err != nil {
			t.Fatal(err)
		}
		return ref
	}
	dir1, dir2, dir3 := t.TempDir(), t.TempDir(), t.TempDir()
	writeTree(t, dir1, files)
	writeTree(t, dir2, files)
	writeTree(t, dir3, files)
	// Other times, and another umask's permissions on the data files.
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	for _, p := range []string{"app", "etc/a.txt", "etc"} {
		if err := os.Chtimes(filepath.Join(dir2, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir3, "etc/b.txt"), []byte("B"), 0o600); err != nil {
		t.Fatal(err)
	}

	first := build(t, dir1, "./app")
	if again := build(t, dir2, "./app"); again != first {
		t.Errorf("same files, other mtimes: %s, first %s", again, first)
	}
	if other := build(t, dir3, "./app"); other == first {
		t.Errorf("other content gave the same image %s", other)
	}
	if other := build(t, dir1, "./app", "-v"); other == first {
		t.Errorf("other entrypoint gave the same image %s", other)
	}
	if err := os.Chmod(filepath.Join(dir2, "etc/a.txt"), 0o640); err != nil {
		t.Fatal(err)
	}
	if other := build(t, dir2, "./app"); other == first {
		t.Errorf("other mode gave the same image %s", other)
	}
}

func TestBuildMemoized(t *testing.T) {
	reg := startRegistry(t)
	ctx := t.Context()
	b, err := New(reg.options())
	if err != nil {
		t.Fatal(err)
	}
	dir := artifact(t)
	first, err := b.Build(ctx, "memo", "v1", dir, []string{"./testapp"})
	if err != nil {
		t.Fatal(err)
	}
	writes := reg.writes.Load()
	// Change the dir behind the Builder's back: a memoized build does not
	// read it again (artifact dirs are immutable).
	if err := os.WriteFile(filepath.Join(dir, "testapp"), []byte("changed"), 0o755); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	refs := make([]string, 4)
	errs := make([]error, 4)
	for i := range refs {
		wg.Go(func() { refs[i], errs[i] = b.Build(ctx, "memo", "v1", dir, []string{"./testapp"}) })
	}
	wg.Wait()
	for i := range refs {
		if errs[i] != nil || refs[i] != first {
			t.Errorf("build %d again = %q, %v; want %q", i, refs[i], errs[i], first)
		}
	}
	if got := reg.writes.Load(); got != writes {
		t.Errorf("building the same dir again made %d write requests, want none; requests: %q", got-writes, reg.requestLog())
	}

	// Another tag of the same artifact: its manifest is pushed, no blob.
	before := len(reg.requestLog())
	second, err := b.Build(ctx, "memo", "v2", dir, []string{"./testapp"})
	if err != nil {
		t.Fatal(err)
	}
	if second != first {
		t.Errorf("tag v2 = %s, want %s", second, first)
	}
	for _, r := range reg.requestLog()[before:] {
		if strings.HasPrefix(r, "POST") || strings.HasPrefix(r, "PATCH") || (strings.HasPrefix(r, "PUT") && strings.Contains(r, "/blobs/")) {
			t.Errorf("tagging a built image uploaded a blob: %s", r)
		}
	}
	// Another entrypoint is another image.
	third, err := b.Build(ctx, "memo", "v3", dir, []string{"./testapp", "-x"})
	if err != nil {
		t.Fatal(err)
	}
	if third == first {
		t.Errorf("other entrypoint gave the memoized image %s", third)
	}
}

func TestBuildOnBase(t *testing.T) {
	reg := startRegistry(t)
	ctx := t.Context()
	baseImage := func(t *testing.T, arch, marker string) v1.Image {
		img, err := mutate.AppendLayers(empty.Image,
			layerOf(t, tarEntry{name: "etc/", typ: tar.TypeDir}, tarEntry{name: "etc/base.txt", body: marker}, tarEntry{name: "bin/tool", body: "tool", mode: 0o755}),
			layerOf(t, tarEntry{name: "etc/second.txt", body: "second"}))
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", arch
		cf.Config.Env = []string{"PATH=/bin:/usr/bin", "BASE=1"}
		cf.Config.Cmd = []string{"/bin/tool"}
		img, err = mutate.ConfigFile(img, cf)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	other := "arm64"
	if runtime.GOARCH == other {
		other = "amd64"
	}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: baseImage(t, other, "wrong arch"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: other}}},
		mutate.IndexAddendum{Add: baseImage(t, runtime.GOARCH, "base"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	baseRef, err := name.NewTag(reg.host+"/base:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(baseRef, idx); err != nil {
		t.Fatal(err)
	}

	o := reg.options()
	o.Base = baseRef.String()
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	dir := artifact(t)
	ref, err := b.Build(ctx, "onbase", "v1", dir, []string{"./testapp"})
	if err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	cfg, err := Extract(ctx, ref, dest, o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Env, []string{"PATH=/bin:/usr/bin", "BASE=1"}) {
		t.Errorf("env = %q, want the base's", cfg.Env)
	}
	if len(cfg.Cmd) != 0 || cfg.WorkingDir != AppDir {
		t.Errorf("config = %+v, want no cmd (the base's is not the app's arguments) and working dir %s", cfg, AppDir)
	}
	for n, want := range map[string]string{
		"etc/base.txt":           "base",
		"etc/second.txt":         "second",
		"bin/tool":               "tool",
		"runway/app/testapp":     "#!/bin/sh\necho hello\n",
		"runway/app/data/secret": "s3cret",
	} {
		got, err := os.ReadFile(filepath.Join(dest, n))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", n, got, err, want)
		}
	}
	img, err := remote.Image(mustRef(t, ref))
	if err != nil {
		t.Fatal(err)
	}
	if layers, err := img.Layers(); err != nil || len(layers) != 3 {
		t.Errorf("layers = %d, %v; want the base's 2 and the app's", len(layers), err)
	}
}

func TestBuildRefuses(t *testing.T) {
	reg := startRegistry(t)
	outside := t.TempDir()
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{
			name:  "symlink out of the dir",
			setup: func(t *testing.T, dir string) { must(t, os.Symlink("../../etc/passwd", filepath.Join(dir, "passwd"))) },
			want:  "points outside the artifact dir",
		},
		{
			name:  "absolute symlink out of the dir",
			setup: func(t *testing.T, dir string) { must(t, os.Symlink(outside, filepath.Join(dir, "out"))) },
			want:  "points outside the artifact dir",
		},
		{
			name: "fifo",
			setup: func(t *testing.T, dir string) {
				must(t, syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644))
			},
			want: "named pipe",
		},
		{
			name:  "no dir",
			setup: func(t *testing.T, dir string) { must(t, os.RemoveAll(dir)) },
			want:  "resolving artifact dir",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "art")
			writeTree(t, dir, map[string]treeFile{"app": {body: "x", mode: 0o755}})
			tc.setup(t, dir)
			b, err := New(reg.options())
			if err != nil {
				t.Fatal(err)
			}
			before := reg.writes.Load()
			_, err = b.Build(t.Context(), "refused", "v1", dir, []string{"./app"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build = %v, want an error with %q", err, tc.want)
			}
			if tc.name != "no dir" && !errors.Is(err, ErrUnsupportedFile) {
				t.Errorf("error %v is not ErrUnsupportedFile", err)
			}
			if reg.writes.Load() != before {
				t.Errorf("a refused build pushed something")
			}
		})
	}
}

func TestNewAndBuildNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{name: "no registry", opts: Options{}, want: "no registry"},
		{name: "scheme", opts: Options{Registry: "http://127.0.0.1:5000"}, want: "invalid registry"},
		{name: "no host", opts: Options{Registry: "runway"}, want: "invalid registry"},
		{name: "bad characters", opts: Options{Registry: "127.0.0.1:5000/Bad Name"}, want: "invalid registry"},
		{name: "trailing slash", opts: Options{Registry: "127.0.0.1:5000/"}, want: "invalid registry"},
		{name: "bad base", opts: Options{Registry: "127.0.0.1:5000", Base: "not a base!"}, want: "base"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, %v; want an error with %q", b, err, tc.want)
			}
		})
	}

	b, err := New(Options{Registry: "127.0.0.1:5000/runway", Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, app, tag string }{
		{name: "upper case app", app: "Hello", tag: "v1"},
		{name: "space in tag", app: "hello", tag: "v 1"},
		{name: "empty tag", app: "hello", tag: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.Build(t.Context(), tc.app, tc.tag, t.TempDir(), nil)
			if err == nil || !strings.Contains(err.Error(), "invalid image name or tag") {
				t.Fatalf("Build = %v, want an invalid name error", err)
			}
		})
	}
}

func TestRegistryDown(t *testing.T) {
	addr := closedAddr(t)
	o := Options{Registry: addr + "/runway", Insecure: true}
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err = b.Build(ctx, "hello", "v1", artifact(t), []string{"./testapp"})
	t.Logf("Build: %v", err)
	if err == nil || !strings.Contains(err.Error(), "pushing image "+addr+"/runway/hello:v1: ") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Build = %v, want pushing image %s/runway/hello:v1: ... connection refused", err, addr)
	}
	_, err = Extract(ctx, addr+"/runway/hello:v1", t.TempDir(), o)
	if err == nil || !strings.Contains(err.Error(), "pulling image "+addr+"/runway/hello:v1: ") {
		t.Errorf("Extract = %v, want pulling image %s/runway/hello:v1: ...", err, addr)
	}
	o.Base = addr + "/base:v1"
	b, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Build(ctx, "hello", "v1", artifact(t), []string{"./testapp"})
	if err == nil || !strings.Contains(err.Error(), "pulling base image "+addr+"/base:v1: ") {
		t.Errorf("Build on a base = %v, want pulling base image %s/base:v1: ...", err, addr)
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// tarHeaders yields the headers of a layer's tar.
func tarHeaders(t *testing.T, l v1.Layer) func(func(*tar.Header) bool) {
	return func(yield func(*tar.Header) bool) {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !yield(hdr) {
				return
			}
		}
	}
}

func TestBuildCanceled(t *testing.T) {
	reg := startRegistry(t)
	b, err := New(reg.options())
	if err != nil {
		t.Fatal(err)
	}
	dir := artifact(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := b.Build(ctx, "canceled", "v1", dir, []string{"./testapp"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Build with a canceled context = %v, want context.Canceled", err)
	}
	// The failed build is not remembered.
	ref, err := b.Build(t.Context(), "canceled", "v1", dir, []string{"./testapp"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Extract(t.Context(), ref, t.TempDir(), reg.options()); err != nil {
		t.Fatal(err)
	}
}
