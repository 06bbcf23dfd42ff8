package build

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/runway-cd/runway/internal/sandbox"
)

// The build caches: CacheDir is root's and 0711 (every build uid passes
// through, none lists or writes it); CacheDir/<app> is 0700 and its app's
// build uid's, holding that app's GOCACHE and GOMODCACHE.

// prepareCacheRoot creates CacheDir. The go-build and mod an earlier
// Runway kept at its top were the caches of every app's builds, written
// by all of them: they go (unless they are an app's cache, named like
// them), so that no app's builds start from what another app's wrote.
func prepareCacheRoot(sb *sandbox.Sandbox, dir string, log *slog.Logger) error {
	for _, name := range []string{"go-build", "mod"} {
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if _, err := os.Lstat(filepath.Join(p, "gocache")); err == nil {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("removing the build cache all apps shared: %w", err)
		}
		log.Info("build: removed the cache the builds of all apps shared; each app's builds now have their own", "path", p)
	}
	if err := sb.Dir(dir, 0o711, ""); err != nil {
		return fmt.Errorf("creating build cache: %w", err)
	}
	return sb.Traversable(dir)
}

// appCache prepares CacheDir/<app>, 0700 and key's uid's, with gocache and
// gomodcache in it, and returns its path. A cache another uid owns (the
// app got a new uid when the uid table was lost; an unsandboxed Runway
// filled it) is handed over whole: it is this app's. But while something
// runs as that uid, the cache is in use by another Runway sharing
// CacheDir (test harnesses do): taking it would break that Runway's
// build, so this build gets an empty cache in work, removed with it. Call
// appCache only while no process of key's uid runs, so none swaps a
// directory for a symlink under the walk.
func (s *Store) appCache(work, app, key string, log io.Writer) (string, error) {
	sb := s.opts.Sandbox
	dir := filepath.Join(s.opts.CacheDir, app)
	uid, err := sb.UID(key)
	if err != nil {
		return "", err
	}
	handOver := false
	if fi, err := os.Lstat(dir); err == nil && sb.Enabled() {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != uid {
			if st.Uid != 0 && len(sandbox.Processes(st.Uid)) > 0 {
				fmt.Fprintf(log, "build cache %s is in use by uid %d (another Runway sharing the cache dir?): this build starts from an empty cache\n", dir, st.Uid)
				dir = filepath.Join(work, "cache")
			} else {
				handOver = true
			}
		}
	}
	if err := sb.Dir(dir, 0o700, key); err != nil {
		return "", fmt.Errorf("preparing the build cache of %s: %w", app, err)
	}
	if handOver {
		if err := sb.ChownTree(dir, key); err != nil {
			return "", fmt.Errorf("handing the build cache of %s to its build uid: %w", app, err)
		}
	}
	for _, sub := range []string{"gocache", "gomodcache"} {
		// Dir refuses what is not a directory: a build that swapped one
		// for a symlink broke its own app's cache, which removing dir
		// resets.
		if err := sb.Dir(filepath.Join(dir, sub), 0o700, key); err != nil {
			return "", fmt.Errorf("preparing the build cache of %s (removing %s resets it): %w", app, dir, err)
		}
	}
	return dir, nil
}
