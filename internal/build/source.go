package build

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/runway-cd/runway/internal/analysis"
	"github.com/runway-cd/runway/internal/appspec"
)

// loadSpec reads and validates the app spec of the checkout at src and
// every AnalysisTemplate it lists, whole, before anything is built: each
// template file parses strictly, every address it names is allowed and
// every templateName the canary refers to is defined. Errors name the
// file, the line and the field path. No file is read through a symlink.
func (s *Store) loadSpec(src string) (*appspec.Spec, error) {
	root, err := os.OpenRoot(src)
	if err != nil {
		return nil, fmt.Errorf("opening checkout: %w", err)
	}
	defer root.Close()
	data, err := readRepoFile(root, appspec.FileName, appspec.MaxBytes)
	if err != nil {
		return nil, fmt.Errorf("reading app spec: %s: %w", appspec.FileName, err)
	}
	spec, err := appspec.Parse(data)
	if err != nil {
		return nil, err
	}
	if err := s.checkTemplates(root, spec); err != nil {
		return nil, fmt.Errorf("invalid analysis templates: %w", err)
	}
	return spec, nil
}

// checkTemplates parses every file of spec.AnalysisTemplates and checks
// the templates against the spec's references and the address allow-list.
func (s *Store) checkTemplates(root *os.Root, spec *appspec.Spec) error {
	allowed := analysis.NewAddresses(s.opts.PrometheusAddresses)
	definedIn := map[string]string{}
	var errs []error
	for i, f := range spec.AnalysisTemplates {
		data, err := readRepoFile(root, f, analysis.MaxTemplateBytes)
		if err != nil {
			errs = append(errs, spec.Errorf(fmt.Sprintf("analysisTemplates[%d]", i), "%q: %v", f, err))
			continue
		}
		ts, err := analysis.ParseFile(f, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, t := range ts {
			if other, dup := definedIn[t.Metadata.Name]; dup {
				errs = append(errs, t.Errorf("metadata.name", "%q is also defined in %s", t.Metadata.Name, other))
			}
			definedIn[t.Metadata.Name] = f
			if err := t.CheckAddresses(allowed); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		// References are checked once every file parsed: a broken file
		// would also make each of its templates "not defined".
		return errors.Join(errs...)
	}
	defined := make(map[string]bool, len(definedIn))
	for n := range definedIn {
		defined[n] = true
	}
	return spec.CheckTemplates(defined)
}

// readRepoFile reads rel, a slash-separated path of the repository at
// root, refusing a symlink anywhere on the way (relative or absolute,
// pointing in or out), anything but a regular file, and a file of more
// than limit bytes.
func readRepoFile(root *os.Root, rel string, limit int64) ([]byte, error) {
	if err := appspec.CheckRepoPath(rel); err != nil {
		return nil, err
	}
	clean := path.Clean(rel)
	parts := strings.Split(clean, "/")
	for i := range parts {
		p := filepath.FromSlash(strings.Join(parts[:i+1], "/"))
		fi, err := root.Lstat(p)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the path is rel, named here
			}
			return nil, fmt.Errorf("%s: %w", rel, err)
		}
		last := i == len(parts)-1
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			return nil, fmt.Errorf("%s is a symlink: Runway copies only regular files of the repository, never what a link points to", strings.Join(parts[:i+1], "/"))
		case !last && !fi.IsDir():
			return nil, fmt.Errorf("%s is not a directory", strings.Join(parts[:i+1], "/"))
		case last && !fi.Mode().IsRegular():
			return nil, fmt.Errorf("%s is not a regular file", rel)
		}
	}
	// O_NOFOLLOW and the identity check make a swap after the Lstat fail
	// rather than read what a new link points to.
	f, err := root.OpenFile(filepath.FromSlash(clean), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", rel, err)
	}
	defer f.Close()
	opened, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", rel, err)
	}
	again, err := root.Lstat(filepath.FromSlash(clean))
	if err != nil || !opened.Mode().IsRegular() || !os.SameFile(opened, again) {
		return nil, fmt.Errorf("%s changed while it was read", rel)
	}
	if opened.Size() > limit {
		return nil, fmt.Errorf("%s is %d bytes, more than %d", rel, opened.Size(), limit)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", rel, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is more than %d bytes", rel, limit)
	}
	return data, nil
}

// copyFile copies rel, a regular file of the checkout at src (never
// through a symlink, see readRepoFile), to the same path under dst, as a
// file 0644 in directories 0755 of Runway's own.
func copyFile(src, dst, rel string) error {
	srcRoot, err := os.OpenRoot(src)
	if err != nil {
		return fmt.Errorf("copying %s into artifact: %w", rel, err)
	}
	defer srcRoot.Close()
	data, err := readRepoFile(srcRoot, rel, max(appspec.MaxBytes, analysis.MaxTemplateBytes))
	if err != nil {
		return fmt.Errorf("copying %s into artifact: %w", rel, err)
	}
	dstRoot, err := os.OpenRoot(dst)
	if err != nil {
		return fmt.Errorf("copying %s into artifact: %w", rel, err)
	}
	defer dstRoot.Close()
	target := filepath.FromSlash(path.Clean(rel))
	if dir := filepath.Dir(target); dir != "." {
		if err := dstRoot.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("copying %s into artifact: %w", rel, err)
		}
	}
	if fi, err := dstRoot.Lstat(target); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("copying %s into artifact: %s is already there and not a file", rel, rel)
	}
	f, err := dstRoot.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return fmt.Errorf("copying %s into artifact: %w", rel, err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = dstRoot.Chmod(target, 0o644) // whatever the umask
	}
	if err != nil {
		return fmt.Errorf("copying %s into artifact: %w", rel, err)
	}
	return nil
}
