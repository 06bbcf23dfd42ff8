package image

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// epoch is every entry's modification time: the same files give the same
// layer whenever and wherever they were written.
var epoch = time.Unix(0, 0).UTC()

// ErrUnsupportedFile is returned when an artifact dir holds something a
// layer cannot carry faithfully: a symlink leaving the dir, a device, a
// socket or a named pipe.
var ErrUnsupportedFile = errors.New("unsupported file in artifact dir")

// writeLayer writes dir's files to w as a gzipped tar with every entry
// under AppDir: in lexical order, mtimes at the epoch, owned by 0:0 with no
// user or group names, permission bits kept. Symlinks stay symlinks when
// they point inside dir (an absolute target inside dir is made relative);
// one pointing outside is refused.
func writeLayer(w io.Writer, dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("resolving artifact dir %s: %w", dir, err)
	}
	root, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return fmt.Errorf("resolving artifact dir %s: %w", dir, err)
	}
	if fi, err := os.Stat(root); err != nil {
		return fmt.Errorf("reading artifact dir %s: %w", dir, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("reading artifact dir %s: not a directory", dir)
	}

	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	appDir := strings.TrimPrefix(AppDir, "/")
	// The directories leading to AppDir, then AppDir itself.
	parts := strings.Split(appDir, "/")
	for i := range parts {
		if err := tw.WriteHeader(dirHeader(strings.Join(parts[:i+1], "/"), 0o755)); err != nil {
			return fmt.Errorf("writing layer: %w", err)
		}
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		return writeEntry(tw, root, abs, p, path.Join(appDir, filepath.ToSlash(rel)))
	})
	if err != nil {
		return fmt.Errorf("writing layer: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("writing layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("writing layer: %w", err)
	}
	return nil
}

func dirHeader(name string, mode fs.FileMode) *tar.Header {
	return &tar.Header{
		Typeflag: tar.TypeDir,
		Name:     name + "/",
		Mode:     int64(mode.Perm()),
		ModTime:  epoch,
	}
}

// writeEntry writes the file at p (in the dir root, also known as alias)
// as the entry called name.
func writeEntry(tw *tar.Writer, root, alias, p, name string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	mode := fi.Mode()
	switch {
	case mode.IsDir():
		return tw.WriteHeader(dirHeader(name, mode))
	case mode.IsRegular():
		return writeFile(tw, p, name, fi)
	case mode&fs.ModeSymlink != 0:
		target, err := linkTarget(root, alias, p)
		if err != nil {
			return err
		}
		return tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeSymlink,
			Name:     name,
			Linkname: target,
			Mode:     0o777,
			ModTime:  epoch,
		})
	default:
		return fmt.Errorf("%s is a %s: %w", p, fileKind(mode), ErrUnsupportedFile)
	}
}

// fileKind names a type of file a layer does not carry.
func fileKind(mode fs.FileMode) string {
	switch {
	case mode&fs.ModeNamedPipe != 0:
		return "named pipe"
	case mode&fs.ModeSocket != 0:
		return "socket"
	case mode&fs.ModeCharDevice != 0:
		return "character device"
	case mode&fs.ModeDevice != 0:
		return "device"
	default:
		return "irregular file"
	}
}

func writeFile(tw *tar.Writer, p, name string, fi fs.FileInfo) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Mode:     int64(fi.Mode().Perm()),
		Size:     fi.Size(),
		ModTime:  epoch,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, f, fi.Size()); err != nil {
		return fmt.Errorf("copying %s: %w", p, err)
	}
	return nil
}

// linkTarget is the target of the symlink p for the layer: relative and
// inside the dir root (alias is root as the caller named it).
func linkTarget(root, alias, p string) (string, error) {
	target, err := os.Readlink(p)
	if err != nil {
		return "", err
	}
	linkDir := filepath.Dir(p)
	resolved := target
	if !filepath.IsAbs(target) {
		resolved = filepath.Join(linkDir, target)
	}
	resolved = filepath.Clean(resolved)
	inside := within(root, resolved)
	if !inside && alias != root && within(alias, resolved) {
		// An absolute target through the name the caller used for dir.
		rel, _ := filepath.Rel(alias, resolved)
		resolved, inside = filepath.Join(root, rel), true
	}
	if !inside {
		return "", fmt.Errorf("symlink %s -> %s points outside the artifact dir: %w", p, target, ErrUnsupportedFile)
	}
	if !filepath.IsAbs(target) {
		return filepath.ToSlash(target), nil
	}
	rel, err := filepath.Rel(linkDir, resolved)
	if err != nil {
		return "", err
	}
	return filepath.ToSlash(rel), nil
}

// within says whether the clean path p is dir or under it.
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	if err != nil {
		return false
	}
	return rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}
