package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/runway-cd/runway/internal/atomicfile"
)

const (
	// templateFormat changes whenever what a template holds changes in a
	// way templateKey does not see, so that older templates go unused.
	// 2: the template holds spareDatabase.
	templateFormat = 2
	// templatePassword is the file, in a template, holding the password
	// its superuser was initialised with; Runway's OS user alone reads it.
	templatePassword = "password"
	// templateData is the cluster inside a template.
	templateData = "data"
	// templateLockWait bounds the wait for another process building the
	// same template (initdb takes about a second).
	templateLockWait = 2 * time.Minute
	// initialPasswordFile, in the secrets dir, holds the superuser password
	// of a cluster copied from a template until Start has replaced it with
	// the instance's own. Its name is no role's (a role name has no '-').
	initialPasswordFile = "runway-initial" + passwordSuffix
)

// template is a finished template: a cluster initialised once and copied
// into every new instance with the same key.
type template struct {
	dataDir  string
	password string // the superuser's in dataDir; replaced in every copy
}

// initdbSettings are initdb's options for every cluster, besides its data
// dir and password file. They are part of the template key.
func initdbSettings() []string {
	return []string{
		"--no-sync",
		"--no-instructions",
		"--auth-local=scram-sha-256",
		"--auth-host=scram-sha-256",
		"-U", superuser,
		"-E", "UTF8",
		"--locale=C",
	}
}

// templateKey names the template for cfg's PostgreSQL run by own: it
// changes with the server binary (path, size, modification time: an
// upgrade makes a new template), initdb's settings, the pg_hba.conf a new
// cluster gets and the OS user owning its files. It starts with the major
// version for whoever looks at the directory: pg15-0123456789abcdef.
func templateKey(cfg Config, own owner) (string, error) {
	bin, err := filepath.EvalSymlinks(filepath.Join(cfg.BinDir, "postgres"))
	if err != nil {
		return "", fmt.Errorf("resolving the postgres binary: %w", err)
	}
	fi, err := os.Stat(bin)
	if err != nil {
		return "", fmt.Errorf("checking the postgres binary: %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "format %d\nbinary %s %d %d\n", templateFormat, bin, fi.Size(), fi.ModTime().UnixNano())
	fmt.Fprintf(h, "owner %v %d %d euid %d\n", own.switchUser, own.uid, own.gid, os.Geteuid())
	fmt.Fprintf(h, "initdb %q\nhba %q\n", initdbSettings(), hbaContent(nil))
	prefix := "pg"
	if v := majorVersion(cfg.BinDir); v > 0 {
		prefix += strconv.FormatFloat(v, 'f', -1, 64)
	}
	return prefix + "-" + hex.EncodeToString(h.Sum(nil)[:8]), nil
}

// ensureTemplate returns the template for cfg and own under
// cfg.TemplateDir, building it first if it does not exist. Builders take
// turns on a lock file, so processes starting instances at once build one
// template; each builds in a directory of its own renamed into place only
// when complete, so a killed builder leaves nothing that is later used.
// Layout: <TemplateDir>/<key>/{data,password}, <key>.lock, and
// <key>.build.* while building.
//
// Beside each template is its pool of ready copies (warm spares, see
// ready.go): <key>.ready/<random>/{data,password}, up to readyCopies (2)
// complete copies made in the background, and <key>.ready.lock, held by
// the one process refilling the pool. A new instance renames a ready
// copy's data into its data.init.* dir (a rename on the same file system:
// both are under Runway's work dir) instead of copying the template (0.5
// to 0.9 s, ~1,300 files), and the pool is refilled after every take and
// on a template's first use. The pool costs readyCopies times the
// template's size on disk (~40–50 MB each, so ~80–100 MB per template).
// Crash safety: a copy is made in <random>.tmp and renamed when complete;
// only names without .tmp are taken, and the next refill removes .tmp
// leftovers (and copies whose data a killed taker had already renamed).
// Taking is one rename, so two instances starting at once never take the
// same copy; the loser tries the next or copies the template. Each copy
// keeps the password of the template it was copied from, so a template
// rebuilt under the same key cannot hand out a copy with a wrong one.
// Nothing removes the templates (nor pools) of keys no longer used, e.g.
// after a PostgreSQL upgrade: removing <key> along with <key>.ready and
// <key>.ready.lock by hand, once no process of the old binary runs, is
// safe; a cleanup of old keys should remove all three.
func ensureTemplate(ctx context.Context, cfg Config, own owner) (template, error) {
	key, err := templateKey(cfg, own)
	if err != nil {
		return template{}, err
	}
	root, err := filepath.Abs(cfg.TemplateDir)
	if err != nil {
		return template{}, fmt.Errorf("resolving template dir: %w", err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return template{}, fmt.Errorf("creating template dir: %w", err)
	}
	final := filepath.Join(root, key)
	if t, err := readTemplate(final); err == nil {
		tidyTemplates(cfg, root, key)
		return t, nil
	}
	unlock, err := lockFile(ctx, filepath.Join(root, key+".lock"), templateLockWait)
	if err != nil {
		return template{}, fmt.Errorf("waiting to build PostgreSQL template %s: %w", key, err)
	}
	defer unlock()
	if t, err := readTemplate(final); err == nil {
		return t, nil // another process built it meanwhile
	}
	removeBuilds(cfg, root, key)
	if err := buildTemplate(ctx, cfg, own, root, key); err != nil {
		return template{}, err
	}
	return readTemplate(final)
}

// readTemplate reads a finished template.
func readTemplate(dir string) (template, error) {
	password, err := readPassword(filepath.Join(dir, templatePassword))
	if err != nil {
		return template{}, err
	}
	data := filepath.Join(dir, templateData)
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		return template{}, fmt.Errorf("checking template %s: %w", dir, err)
	}
	return template{dataDir: data, password: password}, nil
}

// buildTemplate initialises root/key: initdb into root/key.build.<n>/data
// with a random superuser password kept beside it, the spare database
// (createSpare), then the rename.
func buildTemplate(ctx context.Context, cfg Config, own owner, root, key string) error {
	began := time.Now()
	build := filepath.Join(root, fmt.Sprintf("%s.build.%d", key, time.Now().UnixNano()))
	data := filepath.Join(build, templateData)
	fail := func(err error) error {
		_ = os.RemoveAll(build)
		return fmt.Errorf("building PostgreSQL template %s: %w", key, err)
	}
	if err := os.Mkdir(build, 0o700); err != nil {
		return fail(err)
	}
	if err := os.Mkdir(data, 0o700); err != nil {
		return fail(err)
	}
	if err := own.chown(data); err != nil {
		return fail(err)
	}
	if err := own.makeReachable(data, cfg.Logger); err != nil {
		return fail(err)
	}
	raw := make([]byte, passwordBytes)
	if _, err := rand.Read(raw); err != nil {
		return fail(err)
	}
	password := hex.EncodeToString(raw)
	if err := atomicfile.Write(filepath.Join(build, templatePassword), []byte(password+"\n"), secretFileMode); err != nil {
		return fail(err)
	}
	if err := runInitdb(ctx, cfg, own, build, data, password); err != nil {
		return fail(err)
	}
	if err := createSpare(ctx, cfg, own, build, data, password); err != nil {
		return fail(err)
	}
	if err := os.Rename(build, filepath.Join(root, key)); err != nil {
		return fail(err)
	}
	cfg.Logger.Info("postgres: built cluster template", "template", filepath.Join(root, key), "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// createSpare starts the server of a template being built once, as an
// instance in build would be started (own's, on a private socket dir and a
// free loopback port, a child of this process even with a Launcher: it
// runs for a moment), creates spareDatabase in it the way ensureOwnedDatabase
// creates an app's database, owned by the superuser until an app takes it,
// and shuts it down (fast shutdown, waiting for it to exit). The cluster is
// left as a clean shutdown leaves it: no postmaster.pid, nothing to
// recover. The server's log, socket dir and postmaster.opts are removed;
// on failure the caller removes build, and the error quotes the log.
func createSpare(ctx context.Context, cfg Config, own owner, build, data, password string) error {
	sock, err := prepareSocketDir(build, own, cfg.Logger)
	if err != nil {
		return err
	}
	defer os.RemoveAll(sock.path)
	srv := &Instance{
		dir:      build,
		dataDir:  data,
		sockDir:  sock.path,
		password: password,
		logPath:  filepath.Join(build, "postgres.log"),
		log:      cfg.Logger,
	}
	cfg.Launcher = nil
	if err := srv.launchOnFreePort(ctx, cfg, own); err != nil {
		return fmt.Errorf("starting the template's server: %w", err)
	}
	err = srv.createSpareDatabase(ctx)
	if stopErr := srv.Stop(ctx); err == nil {
		err = stopErr
	}
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("the template's server did not shut down cleanly (postmaster.pid: %v); log %s ends:\n%s", err, srv.logPath, logTail(srv.logPath, 0))
	}
	for _, f := range []string{srv.logPath, filepath.Join(data, "postmaster.opts")} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// createSpareDatabase creates spareDatabase in the template's running server.
func (i *Instance) createSpareDatabase(ctx context.Context) error {
	conn, err := i.connect(ctx, "postgres")
	if err != nil {
		return fmt.Errorf("connecting to the template's server: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// As ensureOwnedDatabase creates an app's: from template1, with its
	// encoding and locale.
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{spareDatabase}.Sanitize()); err != nil {
		return fmt.Errorf("creating the spare database: %w", err)
	}
	return nil
}

// removeBuilds removes the build dirs of key that never finished. The
// caller holds key's lock, so no live builder uses them; an initdb a
// killed builder left running may still write into one, which is why every
// build has a directory of its own.
func removeBuilds(cfg Config, root, key string) {
	builds, _ := filepath.Glob(filepath.Join(root, key+".build.*"))
	for _, b := range builds {
		if err := os.RemoveAll(b); err != nil {
			cfg.Logger.Warn("postgres: could not remove an unfinished template build yet", "dir", b, "err", err)
			continue
		}
		cfg.Logger.Info("postgres: removed an unfinished template build", "dir", b)
	}
}

// tidyTemplates removes unfinished builds of a finished template, if no
// process holds its lock right now.
func tidyTemplates(cfg Config, root, key string) {
	builds, _ := filepath.Glob(filepath.Join(root, key+".build.*"))
	if len(builds) == 0 {
		return
	}
	unlock, err := lockFile(context.Background(), filepath.Join(root, key+".lock"), 0)
	if err != nil {
		return // someone else holds it; a later start tidies
	}
	defer unlock()
	removeBuilds(cfg, root, key)
}

// lockFile takes an exclusive flock on path (created 0600), waiting for at
// most wait (0: not at all) or until ctx ends. The lock goes with the
// process: a killed holder releases it.
func lockFile(ctx context.Context, path string, wait time.Duration) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	deadline := time.Now().Add(wait)
	p := newPoller()
	defer p.stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if !time.Now().Before(deadline) {
			f.Close()
			return nil, fmt.Errorf("locking %s: held by another process for over %v", path, wait)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, ctx.Err())
		case <-p.wait():
		}
	}
}

// copyCluster copies the template's cluster to dst (which must not exist),
// keeping every file's mode and owner (the template's files are own's, as
// its key says). It runs cp -a where there is one, which copies a cluster
// in about a third of the time copyTree takes, and copyTree elsewhere.
func copyCluster(ctx context.Context, src, dst string, own owner) error {
	cp, err := exec.LookPath("cp")
	if err != nil {
		return copyTree(src, dst, own)
	}
	cmd := exec.CommandContext(ctx, cp, "-a", "-T", "--", src, dst)
	cmd.Env = []string{"LC_ALL=C"}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("copying cluster template %s: %w: %s", src, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// copyTree copies the template's cluster to dst (which must not exist),
// keeping every file's mode and handing it to own.
func copyTree(src, dst string, own owner) error {
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(to, fi.Mode().Perm()); err != nil {
				return err
			}
			if err := os.Chmod(to, fi.Mode().Perm()); err != nil { // past the umask
				return err
			}
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, to); err != nil {
				return err
			}
		case d.Type().IsRegular():
			if err := copyFile(path, to, fi.Mode().Perm()); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unexpected file type %v", path, d.Type())
		}
		return own.chown(to)
	})
	if err != nil {
		return fmt.Errorf("copying cluster template %s: %w", src, err)
	}
	return nil
}

// copyFile copies a regular file; io.Copy between files lets the kernel
// copy (copy_file_range).
func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, perm)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Chmod(perm) // past the umask
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// storeInitialPassword keeps a copied cluster's superuser password in the
// secrets dir until secure replaces it.
func storeInitialPassword(secretsDir, password string) error {
	if err := atomicfile.Write(filepath.Join(secretsDir, initialPasswordFile), []byte(password+"\n"), secretFileMode); err != nil {
		return fmt.Errorf("storing the initial superuser password: %w", err)
	}
	return nil
}

// initialPassword is the pending initial superuser password of a copied
// cluster, "" when there is none.
func initialPassword(secretsDir string) string {
	pw, err := readPassword(filepath.Join(secretsDir, initialPasswordFile))
	if err != nil {
		return ""
	}
	return pw
}

// dropInitialPassword forgets the initial password once the superuser has
// the instance's own.
func dropInitialPassword(secretsDir string) error {
	err := os.Remove(filepath.Join(secretsDir, initialPasswordFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the initial superuser password: %w", err)
	}
	return nil
}
