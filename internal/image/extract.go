package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// MaxExtractSize bounds what Extract writes: 2 GiB of file contents in
// all, whiteouts not subtracted.
const MaxExtractSize int64 = 2 << 30

// maxExtractEntries bounds the entries of an image's layers together.
const maxExtractEntries = 1 << 20

// ErrUnsafeEntry is returned by Extract for a layer entry that would land
// outside dest or make a link out of it.
var ErrUnsafeEntry = errors.New("unsafe entry in image layer")

// ErrTooLarge is returned by Extract when an image is over
// MaxExtractSize (or has over a million entries).
var ErrTooLarge = errors.New("image too large to extract")

// Extract pulls ref and unpacks its filesystem into dest (created; it must
// not exist or be empty), refusing entries that would land outside dest,
// and returns the image's config. A multi-platform ref gives its
// linux/<GOARCH> image.
//
// Layers are applied in order with their whiteouts (.wh.name removes
// name, .wh..wh..opq empties a directory of what earlier layers put
// there). Entries with an absolute path or one leaving dest through "..",
// hard links to outside it and symlinks that would resolve outside it
// are refused with ErrUnsafeEntry; an absolute symlink target is the
// image's root, so it is made relative to stay inside dest. A hard link
// to a symlink is made as a symlink with the same target, checked from
// where it is. All writes go through an os.Root at dest, so no symlink,
// however made, is followed out. Permission bits are kept (directories
// also get u+rwx, so that the tree stays the caller's to remove);
// ownership and times are not; device and fifo entries are skipped. At
// most MaxExtractSize bytes of file contents are written, else
// ErrTooLarge. On an error after pulling, dest is left empty.
func Extract(ctx context.Context, ref, dest string, o Options) (Config, error) {
	r, err := o.parseRef(ref)
	if err != nil {
		return Config{}, fmt.Errorf("extracting image: %w", err)
	}
	img, err := remote.Image(r, o.remoteOptions(ctx)...)
	if err != nil {
		return Config{}, fmt.Errorf("pulling image %s: %w", r, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return Config{}, fmt.Errorf("pulling image %s: reading config: %w", r, err)
	}
	if err := extractImage(ctx, img, dest, MaxExtractSize); err != nil {
		return Config{}, fmt.Errorf("extracting image %s into %s: %w", r, dest, err)
	}
	return configOf(cf), nil
}

// extractImage unpacks img's layers into dest, writing at most limit bytes
// of file contents.
// On error, dest is left empty: no hostile half of an image stays.
func extractImage(ctx context.Context, img v1.Image, dest string, limit int64) (err error) {
	if err := prepareDest(dest); err != nil {
		return err
	}
	defer func() {
		if err == nil {
			return
		}
		if cerr := emptyDir(dest); cerr != nil {
			err = fmt.Errorf("%w (and emptying %s: %v)", err, dest, cerr)
		}
	}()
	root, err := os.OpenRoot(dest)
	if err != nil {
		return err
	}
	defer root.Close()
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("listing layers: %w", err)
	}
	x := &extractor{root: root, limit: limit, budget: limit, dirModes: make(map[string]fs.FileMode), absLinks: make(map[string]string)}
	for i, l := range layers {
		if err := x.layer(ctx, l); err != nil {
			d, _ := l.Digest()
			return fmt.Errorf("layer %d (%s): %w", i, d, err)
		}
	}
	return x.finish()
}

// prepareDest makes dest an empty directory.
func prepareDest(dest string) error {
	entries, err := os.ReadDir(dest)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return os.MkdirAll(dest, 0o755)
	case err != nil:
		return err
	case len(entries) > 0:
		return fmt.Errorf("%s is not empty", dest)
	}
	return nil
}

// emptyDir removes what is in dir (never following a symlink).
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}

// extractor applies layers to its root.
type extractor struct {
	root     *os.Root
	limit    int64
	budget   int64 // bytes of contents left to write
	entries  int
	dirModes map[string]fs.FileMode // applied last: a read-only dir is filled first
	// absLinks has the absolute targets of the symlinks made with one, by
	// path, so that a hard link to one elsewhere keeps its meaning.
	absLinks map[string]string
}

func (x *extractor) layer(ctx context.Context, l v1.Layer) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	created := make(map[string]bool) // this layer's paths, for opaque whiteouts
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading layer: %w", err)
		}
		if x.entries++; x.entries > maxExtractEntries {
			return fmt.Errorf("over %d entries: %w", maxExtractEntries, ErrTooLarge)
		}
		p, err := entryPath(hdr.Name)
		if err != nil {
			return err
		}
		if p == "." {
			continue
		}
		dir, base := path.Split(p)
		dir = path.Clean(dir)
		switch {
		case base == ".wh..wh..opq":
			if err := x.opaque(dir, created); err != nil {
				return fmt.Errorf("applying opaque whiteout %s: %w", hdr.Name, markEscape(err))
			}
			continue
		case strings.HasPrefix(base, ".wh."):
			gone := path.Join(dir, strings.TrimPrefix(base, ".wh."))
			if err := x.root.RemoveAll(gone); err != nil {
				return fmt.Errorf("applying whiteout %s: %w", hdr.Name, markEscape(err))
			}
			continue
		}
		if err := x.entry(p, hdr, tr); err != nil {
			return fmt.Errorf("extracting %s: %w", hdr.Name, markEscape(err))
		}
		for q := p; q != "."; q = path.Dir(q) {
			created[q] = true
		}
	}
}

// markEscape makes os.Root's refusal of a path that leaves it (through
// symlinks that each pointed inside when made) an ErrUnsafeEntry. The os
// package does not export that error.
func markEscape(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Err.Error() == "path escapes from parent" && !errors.Is(err, ErrUnsafeEntry) {
		return fmt.Errorf("%w: %w", ErrUnsafeEntry, err)
	}
	return err
}

// entryPath is the clean relative path of a layer entry's name.
func entryPath(name string) (string, error) {
	if path.IsAbs(name) || filepath.IsAbs(name) {
		return "", fmt.Errorf("%q: absolute path: %w", name, ErrUnsafeEntry)
	}
	p := path.Clean(name)
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("%q: leaves the image root: %w", name, ErrUnsafeEntry)
	}
	return p, nil
}

func (x *extractor) entry(p string, hdr *tar.Header, r io.Reader) error {
	mode := fs.FileMode(hdr.Mode).Perm()
	switch hdr.Typeflag {
	case tar.TypeDir:
		return x.dir(p, mode)
	case tar.TypeReg: // the reader gives old-style files as TypeReg too
		return x.file(p, mode, r)
	case tar.TypeSymlink:
		return x.symlink(p, hdr.Linkname)
	case tar.TypeLink:
		return x.hardlink(p, hdr.Linkname)
	default:
		// Devices and fifos need privileges and mean nothing to a
		// process run from dest; other types carry no file.
		return nil
	}
}

// clear removes what is at p unless it is a directory and keepDir.
func (x *extractor) clear(p string, keepDir bool) error {
	fi, err := x.root.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return x.root.MkdirAll(path.Dir(p), 0o755)
	}
	if err != nil {
		return err
	}
	if keepDir && fi.IsDir() {
		return nil
	}
	return x.root.RemoveAll(p)
}

func (x *extractor) dir(p string, mode fs.FileMode) error {
	if err := x.clear(p, true); err != nil {
		return err
	}
	if err := x.root.MkdirAll(p, 0o755); err != nil {
		return err
	}
	x.dirModes[p] = mode | 0o700
	return nil
}

func (x *extractor) file(p string, mode fs.FileMode, r io.Reader) error {
	if err := x.clear(p, false); err != nil {
		return err
	}
	f, err := x.root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, io.LimitReader(r, x.budget+1))
	x.budget -= n
	if err == nil && x.budget < 0 {
		err = fmt.Errorf("over %d bytes: %w", x.limit, ErrTooLarge)
	}
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// symlink makes p a symlink to target, which must stay in the image: an
// absolute target (the image's root) is made relative to p.
func (x *extractor) symlink(p, target string) error {
	if target == "" {
		return fmt.Errorf("symlink with no target: %w", ErrUnsafeEntry)
	}
	abs := ""
	if path.IsAbs(target) {
		abs = path.Clean(target)
		target = relTarget(p, abs)
	} else if _, err := entryPath(path.Join(path.Dir(p), target)); err != nil {
		return fmt.Errorf("symlink to %s: %w", target, ErrUnsafeEntry)
	}
	if err := x.clear(p, false); err != nil {
		return err
	}
	delete(x.absLinks, p)
	if err := x.root.Symlink(target, p); err != nil {
		return err
	}
	if abs != "" {
		x.absLinks[p] = abs
	}
	// Checked here to fail early; finish checks every symlink again, as
	// later entries can change where this one leads.
	return x.checkLink(p)
}

// relTarget is the absolute symlink target abs (a clean path from the
// image's root) made relative to the symlink p.
func relTarget(p, abs string) string {
	rel, err := filepath.Rel("/"+path.Dir(p), abs)
	if err != nil { // both are absolute and clean: cannot happen
		panic(err)
	}
	return filepath.ToSlash(rel)
}

// checkLink refuses the symlink p if following it leaves the root.
// Dangling links and loops are fine: nothing followed leaves the root.
func (x *extractor) checkLink(p string) error {
	_, err := x.root.Stat(p)
	switch {
	case err == nil, errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.ELOOP):
		return nil
	default:
		target, _ := x.root.Readlink(p)
		return fmt.Errorf("symlink %s -> %s: %w (%w)", p, target, ErrUnsafeEntry, err)
	}
}

// hardlink makes p a hard link to target, a path in the image. A hard link
// to a symlink is a symlink with the same target, which may lead
// elsewhere from p's directory: it is made as one, so that it is checked.
func (x *extractor) hardlink(p, target string) error {
	t, err := entryPath(target)
	if err != nil {
		return fmt.Errorf("hard link to %s: %w", target, err)
	}
	fi, err := x.root.Lstat(t)
	if err != nil {
		return fmt.Errorf("hard link to %s: %w", target, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("hard link to directory %s: %w", target, ErrUnsafeEntry)
	}
	if t == p {
		return nil
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		lt, err := x.root.Readlink(t)
		if err != nil {
			return fmt.Errorf("hard link to %s: %w", target, err)
		}
		if abs, ok := x.absLinks[t]; ok && relTarget(t, abs) == lt {
			lt = abs // as it was in the layer: the image's root from anywhere
		}
		if err := x.symlink(p, lt); err != nil {
			return fmt.Errorf("hard link to symlink %s: %w", target, err)
		}
		return nil
	}
	if err := x.clear(p, false); err != nil {
		return err
	}
	return x.root.Link(t, p)
}

// opaque empties dir of what earlier layers put there.
func (x *extractor) opaque(dir string, created map[string]bool) error {
	f, err := x.root.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		if p := path.Join(dir, n); !created[p] {
			if err := x.root.RemoveAll(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// finish checks that no symlink resolves outside the root (one link
// through another can, though each points inside on its own) and sets
// directory modes, deepest first. Every symlink in the tree is checked,
// found by walking it: the path a symlink was made by can name something
// else by now (made through a symlinked directory since replaced).
func (x *extractor) finish() error {
	err := fs.WalkDir(x.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink == 0 {
			return err
		}
		return x.checkLink(p)
	})
	if err != nil {
		return err
	}
	dirs := make([]string, 0, len(x.dirModes))
	for p := range x.dirModes {
		dirs = append(dirs, p)
	}
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	for _, p := range dirs {
		fi, err := x.root.Lstat(p)
		if err != nil || !fi.IsDir() {
			continue
		}
		if err := x.root.Chmod(p, x.dirModes[p]); err != nil {
			return err
		}
	}
	return nil
}
