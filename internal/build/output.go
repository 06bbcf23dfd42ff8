package build

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// importOutput copies what a build script wrote to out (a directory the
// build uid owns and may still change while this runs) into art, as
// Runway's own files. It reads through an os.Root on out, so no symlink,
// however swapped in, leads it outside; symlinks, devices, pipes and
// sockets in the output are refused. A file at the path of one of the app
// spec's files (keep, already in art) is ignored: the checkout's wins.
func importOutput(out, art string, keep []string, log io.Writer) error {
	root, err := os.OpenRoot(out)
	if err != nil {
		return fmt.Errorf("opening build output: %w", err)
	}
	defer root.Close()
	kept := make([]string, len(keep))
	for i, k := range keep {
		kept[i] = filepath.ToSlash(filepath.Clean(filepath.FromSlash(k)))
	}
	return fs.WalkDir(root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("reading build output: %w", err)
		}
		if rel == "." {
			return nil
		}
		target := filepath.Join(art, filepath.FromSlash(rel))
		switch t := d.Type(); {
		case t.IsDir():
			if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("copying build output %s: %w", rel, err)
			}
			return nil
		case !t.IsRegular():
			return fmt.Errorf("build output %s is a %s: an artifact holds only files and directories", rel, kindOf(t))
		}
		if slices.Contains(kept, rel) {
			fmt.Fprintf(log, "build output %s ignored: the app spec's file of the commit is kept\n", rel)
			return nil
		}
		return copyOutputFile(root, rel, target)
	})
}

// copyOutputFile copies one regular file of the output. It opens without
// blocking (a file swapped for a pipe must not hang the build) and checks
// what it opened.
func copyOutputFile(root *os.Root, rel, target string) error {
	f, err := root.OpenFile(filepath.FromSlash(rel), os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("copying build output %s: %w", rel, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("copying build output %s: %w", rel, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("build output %s is a %s: an artifact holds only files and directories", rel, kindOf(fi.Mode().Type()))
	}
	perm := os.FileMode(0o644)
	if fi.Mode().Perm()&0o111 != 0 {
		perm = 0o755
	}
	w, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("copying build output %s: %w", rel, err)
	}
	_, err = io.Copy(w, f)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copying build output %s: %w", rel, err)
	}
	return nil
}

func kindOf(t fs.FileMode) string {
	switch {
	case t&fs.ModeSymlink != 0:
		return "symlink"
	case t&fs.ModeNamedPipe != 0:
		return "named pipe"
	case t&fs.ModeSocket != 0:
		return "socket"
	case t&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// normalizeModes gives the assembled artifact its stored modes whatever
// the umask: directories 0755, files 0755 when executable, else 0644.
func normalizeModes(dir string) error {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		perm := os.FileMode(0o644)
		switch {
		case d.IsDir():
			perm = 0o755
		case !d.Type().IsRegular():
			return fmt.Errorf("%s is not a regular file", p)
		case info.Mode().Perm()&0o111 != 0:
			perm = 0o755
		}
		if info.Mode().Perm() == perm {
			return nil
		}
		return os.Chmod(p, perm)
	})
	if err != nil {
		return fmt.Errorf("setting artifact modes: %w", err)
	}
	return nil
}
