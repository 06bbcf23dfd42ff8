package postgres

import (
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// owner is the OS user an instance runs as. The zero owner (switchUser false)
// means "the current user": nothing is chowned and no credential is set.
type owner struct {
	switchUser bool
	name       string
	uid, gid   uint32
}

// resolveOwner picks who runs the server: the current user, or when that is
// root, cfg.RunAsUser ("postgres" if it exists, else "nobody").
func resolveOwner(cfg Config) (owner, error) {
	if os.Geteuid() != 0 {
		return owner{}, nil
	}
	name := cfg.RunAsUser
	if name == "" {
		name = "nobody"
		if _, err := user.Lookup("postgres"); err == nil {
			name = "postgres"
		}
	}
	u, err := user.Lookup(name)
	if err != nil {
		return owner{}, fmt.Errorf("looking up OS user %q to run PostgreSQL as: %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return owner{}, fmt.Errorf("parsing uid of %q: %w", name, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return owner{}, fmt.Errorf("parsing gid of %q: %w", name, err)
	}
	if uid == 0 {
		return owner{}, fmt.Errorf("OS user %q is root; PostgreSQL refuses to run as root", name)
	}
	return owner{switchUser: true, name: name, uid: uint32(uid), gid: uint32(gid)}, nil
}

// sysProcAttr starts a process in its own process group, as the owner.
func (o owner) sysProcAttr() *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: true}
	if o.switchUser {
		attr.Credential = &syscall.Credential{Uid: o.uid, Gid: o.gid, Groups: []uint32{}}
	}
	return attr
}

// chown hands path to the owner; a no-op when no user switch happens.
func (o owner) chown(path string) error {
	if !o.switchUser {
		return nil
	}
	if err := os.Lchown(path, int(o.uid), int(o.gid)); err != nil {
		return fmt.Errorf("handing %s to %s: %w", path, o.name, err)
	}
	return nil
}

// makeReachable adds o+x to every ancestor of path that lacks it, so the
// owner can walk down to path (a 0700 t.TempDir parent is the usual case).
func (o owner) makeReachable(path string, log *slog.Logger) error {
	if !o.switchUser {
		return nil
	}
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("checking %s is traversable: %w", dir, err)
		}
		if perm := fi.Mode().Perm(); perm&0o001 == 0 {
			if err := os.Chmod(dir, perm|0o001); err != nil {
				return fmt.Errorf("making %s traversable for %s: %w", dir, o.name, err)
			}
			log.Info("postgres: made directory traversable", "path", dir, "mode", fmt.Sprintf("%#o", perm|0o001), "for", o.name)
		}
		if dir == filepath.Dir(dir) {
			return nil
		}
	}
}
