package gatewayproc

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/runway-cd/runway/internal/gateway"
)

// socketName is the admin socket's file name.
const socketName = "admin.sock"

// shortDirPrefix names the admin socket dirs made under os.TempDir().
const shortDirPrefix = "runway-gw-"

// socketPath is where the admin socket goes.
type socketPath struct {
	path    string
	created bool // a short dir made now; removed again if the start fails
}

// adminSocket returns the admin socket path for o: o.AdminSocket, else
// admin.sock beside the state file, else, when that is too long for a unix
// socket, admin.sock in a short private directory under os.TempDir(): the
// one rec names if it is still one of ours, or a new one (0700).
func adminSocket(o Options, rec *Record) (socketPath, error) {
	if o.AdminSocket != "" {
		if len(o.AdminSocket) > gateway.MaxSocketPath {
			return socketPath{}, fmt.Errorf("admin socket %s: path longer than %d bytes", o.AdminSocket, gateway.MaxSocketPath)
		}
		return socketPath{path: o.AdminSocket}, nil
	}
	p := filepath.Join(filepath.Dir(o.StatePath), socketName)
	if len(p) <= gateway.MaxSocketPath {
		return socketPath{path: p}, nil
	}
	if rec != nil && filepath.Base(rec.Admin) == socketName && isShortDir(filepath.Dir(rec.Admin)) {
		return socketPath{path: rec.Admin}, nil
	}
	dir, err := os.MkdirTemp(os.TempDir(), shortDirPrefix)
	if err != nil {
		return socketPath{}, fmt.Errorf("creating short admin socket dir: %w", err)
	}
	p = filepath.Join(dir, socketName)
	if len(p) > gateway.MaxSocketPath {
		_ = os.RemoveAll(dir)
		return socketPath{}, fmt.Errorf("admin socket %s: path longer than %d bytes even under os.TempDir()", p, gateway.MaxSocketPath)
	}
	return socketPath{path: p, created: true}, nil
}

// isShortDir reports whether dir is a short admin socket dir of this user:
// directly under os.TempDir(), named by shortDirPrefix, a real directory
// (not a symlink), owned by this user and closed to everyone else. Anything
// else under a shared /tmp could be another user's trap.
func isShortDir(dir string) bool {
	if filepath.Dir(dir) != filepath.Clean(os.TempDir()) || !strings.HasPrefix(filepath.Base(dir), shortDirPrefix) {
		return false
	}
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}
